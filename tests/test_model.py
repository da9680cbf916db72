"""DualUNet: one base test class subclassed per preset, plus config, registry and checkpoint tests."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

import fgdepth
from fgdepth.data.schema import DEPTH_LAYERS, DEPTH_PRED, MASK_LOGITS
from fgdepth.model import (
    DualUNet,
    DualUNetConfig,
    count_parameters,
    create_model,
    list_models,
    load_model,
    model_config,
    save_model,
)
from fgdepth.model.checkpoint import checkpoint_dict
from fgdepth.model.dual_unet import DecoderBlock, compose_layers

pytestmark = pytest.mark.usefixtures("one_thread")


def _inputs(b: int, h: int, w: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 3, h, w, generator=g), torch.rand(b, 3, h, w, generator=g)


def _randomise_norm_stats(model: torch.nn.Module, seed: int = 0) -> None:
    """Give BatchNorms non-default running stats so that a round trip that drops them is caught."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)


class BaseModelTest:
    """Menu of checks every preset must pass; subclasses set ``preset``."""

    preset: str = ""

    @pytest.fixture(scope="class")
    @classmethod
    def model(cls) -> DualUNet:
        torch.manual_seed(0)
        return create_model(cls.preset)

    @pytest.mark.parametrize(("b", "h", "w"), [(1, 64, 64), (2, 65, 97)])
    def test_forward_shapes(self, model: DualUNet, b: int, h: int, w: int) -> None:
        model.eval()
        with torch.no_grad():
            out = model(*_inputs(b, h, w))
        assert set(out) == {MASK_LOGITS, DEPTH_PRED}
        hh, ww = model.output_size(h, w)
        assert (hh, ww) == (-(-h // model.output_stride), -(-w // model.output_stride))
        for v in out.values():
            assert v.shape == (b, 1, hh, ww)
            assert v.dtype == torch.float32
            assert torch.isfinite(v).all()
        assert (out[DEPTH_PRED] >= 0).all()

    def test_backward_reaches_both_stems(self, model: DualUNet) -> None:
        model.train()
        model.zero_grad()
        out = model(*_inputs(2, 33, 47))
        (out[MASK_LOGITS].square().mean() + out[DEPTH_PRED].mean()).backward()
        for stem in (model.encoder.stem_background, model.encoder.stem_composite):
            grads = [p.grad for p in stem.parameters()]
            assert all(g is not None for g in grads)
            assert sum(float(g.abs().sum()) for g in grads) > 0
        model.zero_grad()

    def test_save_load_round_trip(self, model: DualUNet, tmp_path: Path) -> None:
        _randomise_norm_stats(model)
        model.eval()
        bg, comp = _inputs(2, 40, 56, seed=1)
        with torch.no_grad():
            ref = model(bg, comp)
        paths = [save_model(model, tmp_path / "m.safetensors"), tmp_path / "m.pt", tmp_path / "m.ckpt"]
        torch.save(checkpoint_dict(model), paths[1])
        lightning_like = {
            "hyper_parameters": {"model_config": model.config.to_dict(), "lr": 1e-3},
            "state_dict": {f"model._orig_mod.{k}": v for k, v in model.state_dict().items()}
            | {"loss.log_vars": torch.zeros(2)},
            "epoch": 3,
        }
        torch.save(lightning_like, paths[2])
        for p in paths:
            loaded = load_model(p)
            assert loaded.config == model.config
            assert not loaded.training
            with torch.no_grad():
                out = loaded(bg, comp)
            for k in ref:
                torch.testing.assert_close(out[k], ref[k], rtol=0, atol=0, msg=f"{p.suffix} {k}")


class TestTiny(BaseModelTest):
    preset = "tiny"


class TestSmall(BaseModelTest):
    preset = "small"


class TestBase(BaseModelTest):
    preset = "base"


# --- options of the architecture ---------------------------------------------------------------------------


@pytest.mark.parametrize("fusion", ["concat", "diff", "both"])
@pytest.mark.parametrize("stride", [1, 2, 4])
def test_fusion_and_output_stride(fusion: str, stride: int) -> None:
    model = create_model("tiny", fusion=fusion, output_stride=stride, refine_channels=0).eval()
    with torch.no_grad():
        out = model(*_inputs(1, 97, 131))
    expected = (1, 1, -(-97 // stride), -(-131 // stride))
    assert out[MASK_LOGITS].shape == expected == out[DEPTH_PRED].shape
    assert model.output_size(97, 131) == expected[2:]


@pytest.mark.parametrize("stride", [2, 4])
def test_refinement_gives_full_resolution_outputs(stride: int) -> None:
    model = create_model("tiny", output_stride=stride, refine_channels=6).eval()
    with torch.no_grad():
        out = model(*_inputs(2, 97, 131))
    assert out[MASK_LOGITS].shape == (2, 1, 97, 131) == out[DEPTH_PRED].shape
    assert model.output_stride == 1 and model.output_size(97, 131) == (97, 131)


def test_strided_depthwise_conv_runs_in_float32_under_cpu_autocast() -> None:
    from fgdepth.model.blocks import ConvNormAct, StridedDepthwiseConv2d

    assert type(ConvNormAct(8, 8, 3, stride=2, groups=8)[0]) is StridedDepthwiseConv2d
    assert type(ConvNormAct(8, 8, 3, stride=1, groups=8)[0]) is torch.nn.Conv2d
    assert type(ConvNormAct(8, 16, 3, stride=2)[0]) is torch.nn.Conv2d
    conv = StridedDepthwiseConv2d(8, 8, 3, 2, 1, groups=8, bias=False)
    plain = torch.nn.Conv2d(8, 8, 3, 2, 1, groups=8, bias=False)
    plain.load_state_dict(conv.state_dict())  # same parameters, same checkpoints
    x = torch.randn(2, 8, 11, 13)
    torch.testing.assert_close(conv(x), plain(x))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = conv(x.bfloat16().requires_grad_(True))
        y_plain = plain(x)
    assert y.dtype == torch.float32 and y_plain.dtype == torch.bfloat16
    torch.testing.assert_close(y, plain(x.bfloat16().float()))
    y.sum().backward()
    assert conv.weight.grad is not None


@pytest.mark.parametrize("own_depth", [False, True])
def test_mask_scale_enlarges_the_mask_networks_input_and_gives_outputs_at_the_inputs_size(
    own_depth: bool,
) -> None:
    over = {"depth_branch": None} if own_depth else {}
    model = create_model("tiny", mask_scale=1.6, **over).eval()
    seen: dict[str, tuple] = {}

    def record(name: str):
        def hook(module: torch.nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            seen[name] = tuple(inputs[0].shape)

        return hook

    model.encoder.stem_composite.register_forward_hook(record("main"))
    if not own_depth:
        model.depth_net.encoder.stem_composite.register_forward_hook(record("branch"))
    with torch.no_grad():
        out = model(*_inputs(2, 61, 90))
    assert out[MASK_LOGITS].shape == (2, 1, 61, 90) == out[DEPTH_PRED].shape
    assert seen["main"] == (2, 3, 97, 144)  # floor(61 * 1.6), floor(90 * 1.6)
    if not own_depth:
        assert seen["branch"] == (2, 3, 36, 54)  # the branch's view is still depth_scale (0.6) of the input
    # at 1 the network sees the input itself
    plain = create_model("tiny", mask_scale=1.0, **over).eval()
    x = torch.rand(1, 3, 20, 30)
    assert plain.mask_view(x) is x and model.mask_view(x).shape[-2:] == (32, 48)


def test_mask_head_starts_at_the_prior() -> None:
    model = create_model("tiny", mask_prior=0.05).eval()
    with torch.no_grad():
        p = torch.sigmoid(model(*_inputs(1, 32, 32))[MASK_LOGITS])
    assert abs(float(p.mean()) - 0.05) < 0.02


def test_bounded_depth_and_init() -> None:
    model = create_model("tiny", max_depth=8.0, init_depth=2.0, depth_branch=None).eval()
    with torch.no_grad():
        d = model(*_inputs(1, 32, 32))[DEPTH_PRED]
    assert (d >= 0).all() and (d <= 8.0).all()
    assert abs(float(d.mean()) - 2.0) < 0.2  # the head's bias starts at init_depth


@pytest.mark.parametrize("activation", ["softplus", "exp"])
def test_unbounded_depth_starts_at_init_depth(activation: str) -> None:
    model = create_model("tiny", depth_activation=activation, init_depth=4.0, depth_branch=None).eval()
    with torch.no_grad():
        d = model(*_inputs(2, 40, 40))[DEPTH_PRED]
    assert (d > 0).all()
    assert abs(float(d.mean()) - 4.0) < 0.2


def test_exp_depth_is_log_linear_and_never_overflows() -> None:
    model = create_model("tiny", depth_activation="exp").eval()
    raw = torch.tensor([0.0, 1.0, 2.0, 1e4])
    d = model._activate_depth(raw)
    assert torch.allclose(d[1] / d[0], d[2] / d[1])  # equal steps in raw = equal depth ratios
    assert torch.isfinite(d).all()


def test_depth_from_decoder_features_upsampled_to_the_mask() -> None:
    model = create_model("tiny", depth_features="decoder", refine_channels=8, depth_branch=None).eval()
    assert model.depth_head[-1].in_channels == model.decoder.out_channels != 8
    with torch.no_grad():
        out = model(*_inputs(2, 61, 90))
    assert out[DEPTH_PRED].shape == out[MASK_LOGITS].shape == (2, 1, 61, 90)
    # the refinement reads the images at full resolution; the depth must not: a one-pixel edit in the
    # composite moves the mask logits but the depth only through the decoder's smooth, upsampled features
    model.train()
    model.zero_grad()
    model(*_inputs(1, 61, 90))[DEPTH_PRED].mean().backward()
    assert all(p.grad is None or not p.grad.any() for p in model.refine_guide.parameters())


def test_group_norm_silu() -> None:
    branch = model_config("tiny").depth_branch | {"norm": "group", "act": "silu"}
    model = create_model("tiny", norm="group", act="silu", depth_branch=branch)
    out = model(*_inputs(1, 24, 40))  # batch 1 at 1x1 deep features: BatchNorm would refuse
    out[DEPTH_PRED].mean().backward()


def test_channels_last_bf16_autocast() -> None:
    model = create_model("tiny").to(memory_format=torch.channels_last)
    bg, comp = (x.contiguous(memory_format=torch.channels_last) for x in _inputs(2, 48, 48))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(bg, comp)
    assert out[MASK_LOGITS].dtype == torch.float32 == out[DEPTH_PRED].dtype
    (out[MASK_LOGITS].mean() + out[DEPTH_PRED].mean()).backward()


@pytest.mark.parametrize("skip_size", [(10, 14), (9, 13)])  # exact 2x, and odd sizes
def test_decoder_block_equals_its_concatenation_formula(skip_size: tuple[int, int]) -> None:
    """The block projects x before upsampling it; the result must be the 1x1 conv of [upsample(x), skip]."""
    torch.manual_seed(0)
    block = DecoderBlock(c_x=12, c_skip=6, c_out=8, norm="batch", act="relu").train()
    x = torch.randn(2, 12, 5, 7, requires_grad=True)
    skip = torch.randn(2, 6, *skip_size, requires_grad=True)
    leaves = (x, skip, block.reduce[0].weight)
    got = block(x, skip)
    got.square().mean().backward()
    grads = [t.grad.clone() for t in leaves]
    for t in leaves:
        t.grad = None
    up = torch.nn.functional.interpolate(x, size=skip_size, mode="bilinear", align_corners=False)
    want = block.conv(block.reduce(torch.cat([up, skip], dim=1)))
    want.square().mean().backward()
    assert got.shape == (2, 8, *skip_size)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    for g, t in zip(grads, leaves):
        torch.testing.assert_close(g, t.grad, atol=1e-6, rtol=1e-4)


def test_encoder_out_channels() -> None:
    model = create_model("tiny")
    feats = model.encoder(*_inputs(1, 64, 64))
    assert tuple(f.shape[1] for f in feats) == model.encoder.out_channels
    assert model.encoder.out_channels == (model.config.stem_channels, *model.config.encoder_channels)


# --- input validation --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bg", "comp", "match"),
    [
        (torch.rand(1, 1, 32, 32), torch.rand(1, 1, 32, 32), r"background must be \(B, 3, H, W\)"),
        (torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 33), "differ in shape"),
        (torch.rand(2, 3, 32, 32), torch.rand(1, 3, 32, 32), "differ in shape"),
        (torch.rand(3, 32, 32), torch.rand(3, 32, 32), r"must be \(B, 3, H, W\)"),
        (torch.zeros(1, 3, 8, 8, dtype=torch.uint8), torch.zeros(1, 3, 8, 8, dtype=torch.uint8), "float"),
    ],
)
def test_input_validation(bg: torch.Tensor, comp: torch.Tensor, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        create_model("tiny")(bg, comp)


# --- config and registry -----------------------------------------------------------------------------------


def test_config_round_trip() -> None:
    cfg = model_config("small", fusion="diff", max_depth=12.0)
    assert DualUNetConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown DualUNetConfig fields"):
        DualUNetConfig.from_dict({"stem_chanels": 8})


@pytest.mark.parametrize(
    "bad",
    [
        {"output_stride": 3},
        {"fusion": "sum"},
        {"decoder_channels": (8, 8)},
        {"max_depth": 2.0, "init_depth": 3.0},
        {"block_kinds": ("fused", "fused", "inverted", "nope")},
        {"depth_activation": "relu"},
        {"depth_features": "stem"},
        {"mask_scale": 0.0},
        {"mask_scale": 8.0},
    ],
)
def test_config_errors(bad: dict) -> None:
    with pytest.raises(ValueError):
        create_model("tiny", **bad)


def test_registry() -> None:
    names = list_models()
    assert {"tiny", "small", "base"} <= set(names)
    with pytest.raises(ValueError, match="tiny, small, base"):
        create_model("huge")
    sizes = {n: count_parameters(create_model(n)) for n in ("tiny", "small", "base")}
    # tiny's two networks (mask, depth branch) hold more weights than small's one (0.74 M against 0.72 M)
    assert max(sizes["tiny"], sizes["small"]) < sizes["base"]
    assert 150_000 < sizes["tiny"] < 900_000
    tiny = create_model("tiny")
    assert tiny.depth_net is not None and tiny.depth_head is None
    assert create_model("small").depth_net is None
    assert create_model("tiny", stem_channels=8).config.stem_channels == 8


# --- checkpoints -------------------------------------------------------------------------------------------


def test_load_rejects_foreign_files(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    foreign_pt = tmp_path / "other.pt"
    torch.save({"state_dict": {"w": torch.zeros(1)}}, foreign_pt)
    with pytest.raises(ValueError, match="other.pt is not a fgdepth checkpoint"):
        load_model(foreign_pt)
    foreign_st = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(1)}, str(foreign_st))
    with pytest.raises(ValueError, match="other.safetensors is not a fgdepth checkpoint"):
        load_model(foreign_st)
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match="garbage.ckpt is not a fgdepth checkpoint"):
        load_model(garbage)
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "missing.ckpt")
    corrupt = tmp_path / "corrupt.safetensors"  # a truncated download: safetensors' own error, no file named
    corrupt.write_bytes(b"not safetensors")
    with pytest.raises(ValueError, match="corrupt.safetensors is not a fgdepth checkpoint"):
        load_model(corrupt)
    # weights of another architecture than the recorded config (another version's checkpoint): a RuntimeError of
    # hundreds of lines naming no file
    other = checkpoint_dict(create_model("tiny"))
    other["model_config"] = create_model("small").config.to_dict()
    torch.save(other, tmp_path / "other_arch.pt")
    with pytest.raises(ValueError, match="other_arch.pt: its weights do not fit its model config"):
        load_model(tmp_path / "other_arch.pt")


def test_package_level_load_model(tmp_path: Path) -> None:
    model = create_model("tiny", fusion="concat")
    path = save_model(model, tmp_path / "m.safetensors")
    assert fgdepth.load_model(path).config == model.config
    # the README's fgdepth.load_model("best.ckpt", mask_scale=1.3): the re-export took the path only (TypeError)
    assert fgdepth.load_model(path, mask_scale=1.3).config.mask_scale == 1.3


def test_save_compiled_like_wrapper(tmp_path: Path) -> None:
    model = create_model("tiny")

    class Wrapper(torch.nn.Module):  # what torch.compile returns: the model under _orig_mod
        def __init__(self) -> None:
            super().__init__()
            self._orig_mod = model

    path = save_model(Wrapper(), tmp_path / "w.safetensors")
    loaded = load_model(path)
    assert set(loaded.state_dict()) == set(model.state_dict())


# --- learning ----------------------------------------------------------------------------------------------


def test_tiny_overfits_one_batch() -> None:
    from fgdepth.data.augment import resize_batch
    from fgdepth.losses import MultiTaskLoss
    from fgdepth.train import model_step

    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    b = 4
    bg = torch.rand(b, 3, 32, 32, generator=g)
    # blocky targets (8x8 cells): exact at the 16x16 output, so the optimum loss is ~0
    mask = (torch.rand(b, 1, 8, 8, generator=g) > 0.5).float()
    mask = torch.nn.functional.interpolate(mask, size=(32, 32), mode="nearest")
    comp = bg * (1 - mask) + mask * torch.tensor([0.9, 0.2, 0.1]).view(1, 3, 1, 1)
    depth = torch.nn.functional.interpolate(1 + 3 * torch.rand(b, 1, 8, 8, generator=g), size=(32, 32))
    batch = {
        "background": bg,
        "composite": comp,
        "mask": mask,
        "depth": depth,
        "depth_valid": torch.ones_like(depth),
    }
    model = create_model("tiny")
    assert model.depth_net is not None
    # as training runs it: the mask network on the batch, the depth branch on its whole view (0.6 x 32 = 19 px)
    batch["depth_view"] = resize_batch(batch, math.floor(32 * model.config.depth_scale))
    crit = MultiTaskLoss()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    first = None
    for _step in range(300):
        loss = model_step(model, crit, batch)[1]["loss"]
        value = float(loss.detach())
        first = value if first is None else first
        if value < first / 10:
            break
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert value < first / 10, (first, value, _step)


# --- depth branch ------------------------------------------------------------------------------------------


def _branch_model(**overrides) -> DualUNet:
    torch.manual_seed(0)
    branch = {"stem_channels": 8, "encoder_channels": (8, 16), "blocks_per_stage": (1, 1)}
    branch |= {"block_kinds": ("fused", "fused"), "decoder_channels": (16, 8), "depth_activation": "exp"}
    return create_model("tiny", depth_branch=branch, **overrides)


def test_depth_branch_sees_a_smaller_whole_view_and_owns_depth() -> None:
    model = _branch_model(depth_scale=0.5, mask_scale=1.0).eval()  # forward_main = forward's mask at 1
    assert model.depth_head is None and model.depth_net is not None
    assert model.depth_net.config.stem_channels == 8
    seen = []
    model.depth_net.encoder.register_forward_pre_hook(lambda m, args: seen.append(args[0].shape))
    with torch.no_grad():
        out = model(*_inputs(2, 61, 90))
        main = model.forward_main(*_inputs(2, 61, 90))
    assert seen == [(2, 3, 30, 45)]
    assert out[DEPTH_PRED].shape == out[MASK_LOGITS].shape == (2, 1, 61, 90)
    assert (out[DEPTH_PRED] > 0).all()
    assert set(main) == {MASK_LOGITS}
    torch.testing.assert_close(main[MASK_LOGITS], out[MASK_LOGITS])
    # each task trains its own network: depth's gradient stays in the branch, the mask's out of it
    model.train()
    for key, reached, untouched in (
        (DEPTH_PRED, model.depth_net, model.encoder),
        (MASK_LOGITS, model.encoder, model.depth_net),
    ):
        model.zero_grad()
        model(*_inputs(1, 40, 40))[key].mean().backward()
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in reached.parameters()), key
        assert all(p.grad is None or not p.grad.any() for p in untouched.parameters()), key


def test_depth_branch_config_is_stored_in_full_and_round_trips(tmp_path: Path) -> None:
    model = _branch_model()
    stored = model.config.to_dict()["depth_branch"]
    assert set(stored) == set(DualUNetConfig().to_dict())  # every field, not the overrides alone
    assert DualUNetConfig.from_dict(model.config.to_dict()) == model.config
    _assert_round_trip(model, tmp_path / "branch.safetensors", 48, 64)


def _assert_round_trip(model: DualUNet, path: Path, h: int, w: int) -> dict[str, torch.Tensor]:
    """Save ``model`` (with non-default BatchNorm stats) to ``path``, load it back; outputs must be identical.
    Returns the outputs for a (1, 3, h, w) pair."""
    _randomise_norm_stats(model)
    model.eval()
    bg, comp = _inputs(1, h, w, seed=2)
    loaded = load_model(save_model(model, path))
    with torch.no_grad():
        ref, out = model(bg, comp), loaded(bg, comp)
    for k in ref:
        torch.testing.assert_close(out[k], ref[k], rtol=0, atol=0)
    return ref


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"depth_branch": {"depth_branch": {}}}, "cannot have a depth_branch"),
        ({"depth_branch": {"stem_chanels": 4}}, "unknown DualUNetConfig fields"),
        ({"depth_branch": {}, "depth_scale": 0.0}, "depth_scale"),
        ({"depth_branch": "tiny"}, "must be None or a dict"),
    ],
)
def test_depth_branch_config_errors(overrides: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        create_model("tiny", **overrides)


# --- layered depth -----------------------------------------------------------------------------------------


def test_compose_layers_known_values_and_errors() -> None:
    layers = torch.stack([torch.full((2, 3), 5.0), torch.full((2, 3), 2.0)])[None]  # scene 5 m, people 2 m
    person = torch.tensor([[[[0.0, 1.0, 0.5], [0.25, 0.0, 1.0]]]])
    expected = torch.tensor([[[[5.0, 2.0, 3.5], [4.25, 5.0, 2.0]]]])
    torch.testing.assert_close(compose_layers(layers, person), expected)
    with pytest.raises(ValueError, match=r"layers must be \(B, 2, h, w\)"):
        compose_layers(layers[:, :1], person)
    with pytest.raises(ValueError, match="person"):
        compose_layers(layers, person[..., :2])


def test_layered_branch_depth_follows_the_main_mask_at_full_resolution() -> None:
    model = _branch_model(depth_scale=0.5)
    model.depth_net = DualUNet(DualUNetConfig.from_dict({**model.config.depth_branch, "layered_depth": True}))
    model.eval()
    bg, comp = _inputs(2, 41, 60)
    with torch.no_grad():
        out = model(bg, comp)
        branch = model.depth_net.forward_main(model.depth_view(bg), model.depth_view(comp))
    assert set(out) == {MASK_LOGITS, DEPTH_PRED}  # the layers stay inside (ONNX exports the two outputs)
    assert branch[DEPTH_LAYERS].shape == (2, 2, 10, 15)  # a 20 x 30 view at output stride 2
    assert (branch[DEPTH_LAYERS] > 0).all()
    layers = torch.nn.functional.interpolate(branch[DEPTH_LAYERS], size=(41, 60), mode="bilinear")
    torch.testing.assert_close(out[DEPTH_PRED], compose_layers(layers, torch.sigmoid(out[MASK_LOGITS])))
    # the branch on its own composes its layers with its own (coarse) mask
    with torch.no_grad():
        alone = model.depth_net(model.depth_view(bg), model.depth_view(comp))
    assert set(alone) == {MASK_LOGITS, DEPTH_PRED}
    torch.testing.assert_close(
        alone[DEPTH_PRED], compose_layers(branch[DEPTH_LAYERS], torch.sigmoid(alone[MASK_LOGITS]))
    )


def test_layered_depth_one_network_round_trips(tmp_path: Path) -> None:
    model = create_model("tiny", depth_branch=None, layered_depth=True)
    assert model.depth_head[-1].out_channels == 2
    ref = _assert_round_trip(model, tmp_path / "layered.safetensors", 33, 47)
    assert set(ref) == {MASK_LOGITS, DEPTH_PRED} and ref[DEPTH_PRED].shape == (1, 1, 33, 47)


def test_layered_branch_trains_on_the_views_true_mask() -> None:
    from fgdepth.data.augment import resize_batch
    from fgdepth.losses import resize_mask
    from fgdepth.train import model_step

    model = _branch_model(depth_scale=0.5)
    model.depth_net = DualUNet(DualUNetConfig.from_dict({**model.config.depth_branch, "layered_depth": True}))
    model.eval()
    bg, comp = _inputs(2, 32, 32, seed=4)
    mask = torch.zeros(2, 1, 32, 32)
    mask[:, :, 8:24, 10:20] = 1
    depth = torch.full((2, 1, 32, 32), 4.0)
    batch = {"background": bg, "composite": comp, "mask": mask, "depth": depth, "depth_valid": mask * 0 + 1}
    batch["depth_view"] = view = resize_batch(batch, 16)
    seen = {}

    def loss_fn(out, batch, depth_view):
        seen["view_out"] = depth_view[0]
        return {"loss": out["mask_logits"].mean()}

    with torch.no_grad():
        model_step(model, loss_fn, batch)
        layers = model.depth_net.forward_main(view["background"], view["composite"])[DEPTH_LAYERS]
    person = resize_mask(view["mask"], tuple(layers.shape[-2:]))
    assert 0 < person.mean() < 1
    torch.testing.assert_close(seen["view_out"][DEPTH_PRED], compose_layers(layers, person))
    assert DEPTH_LAYERS not in seen["view_out"]


def test_training_crops_are_not_enlarged_by_mask_scale() -> None:
    """model_step: a training batch is crops at the input's scale, seen as they are; whole images are enlarged."""
    from fgdepth.losses import MultiTaskLoss
    from fgdepth.train import model_step

    model = create_model("tiny", mask_scale=2.0, depth_branch=None, canonical_hfov=None)
    seen: list[int] = []
    model.encoder.stem_composite.register_forward_pre_hook(lambda m, args: seen.append(args[0].shape[-1]))
    bg, comp = _inputs(2, 24, 24)
    batch = {"background": bg, "composite": comp, "mask": (bg[:, :1] > 0.5).float(), "depth": 1 + bg[:, :1]}
    batch["depth_valid"] = torch.ones_like(batch["depth"])
    for training, width in ((True, 24), (False, 48)):
        out, losses = model_step(model, MultiTaskLoss(), batch, training=training)
        assert seen[-1] == width and out[DEPTH_PRED].shape == (2, 1, 24, 24) == out[MASK_LOGITS].shape
        assert torch.isfinite(losses["loss"])


def test_a_training_step_runs_each_network_once() -> None:
    """model_step with a depth view: one forward of the main network (crops) and one of the branch (view)."""
    from fgdepth.losses import MultiTaskLoss
    from fgdepth.train import model_step

    model = _branch_model()
    calls = {"main": 0, "branch": 0}

    def count(name: str):
        def hook(module: torch.nn.Module, args: tuple) -> None:
            calls[name] += 1

        return hook

    model.encoder.register_forward_pre_hook(count("main"))
    model.depth_net.encoder.register_forward_pre_hook(count("branch"))
    bg, comp = _inputs(2, 24, 24)
    batch = {"background": bg, "composite": comp, "mask": (bg[:, :1] > 0.5).float(), "depth": 1 + bg[:, :1]}
    batch["depth_valid"] = torch.ones_like(batch["depth"])
    batch["depth_view"] = {k: v[..., :16, :16].clone() for k, v in batch.items()}
    model_step(model, MultiTaskLoss(), batch, training=True)
    assert calls == {"main": 1, "branch": 1}
