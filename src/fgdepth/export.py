"""ONNX export of a DualUNet, checked against PyTorch with onnxruntime, and a small runner for predict code.

The ONNX graph has inputs ``background`` and ``composite``: (B, 3, H, W) float32 in [0, 1] (the model
normalises them itself) and outputs ``mask_logits`` and ``depth``: (B, 1, h, w) float32, with dynamic B, H, W.
A model with a canonical camera exports depth as through that camera and records it in the metadata
(``fgdepth.canonical_hfov``).
onnx / onnxruntime are optional dependencies (``pip install fgdepth[onnx]``), imported inside the functions.
"""

from __future__ import annotations

import copy
import os
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fgdepth.data.schema import BACKGROUND, COMPOSITE, DEPTH_PRED, MASK_LOGITS
from fgdepth.intrinsics import focal_from_hfov

INPUT_NAMES = (BACKGROUND, COMPOSITE)
OUTPUT_NAMES = (MASK_LOGITS, DEPTH_PRED)
# metadata key: a model with a canonical camera exports its depth as through that camera; readers rescale it
# for theirs (fgdepth.intrinsics.depth_at_focal), as OnnxRunner.canonical_focal and Predictor do
META_CANONICAL_HFOV = "fgdepth.canonical_hfov"
# metadata key: the input size (short side, px) the checkpoint was trained for, so that predict --onnx defaults to
# it as predict -c does (a network judges distance partly by apparent size: another size biases its depth)
META_INPUT_SIZE = "fgdepth.input_size"


def _check_sizes(size: int) -> list[tuple[int, int, int]]:
    """(batch, height, width) triples to compare at: the export size, and an odd size with another batch."""
    return [(1, size, size), (3, max(9, size // 2 + 1), size + 7)]


def export_onnx(
    model: nn.Module,
    path: str | Path,
    size: int = 192,
    opset: int = 17,
    atol: float = 1e-4,
    seed: int = 0,
    dynamo: bool = False,
    input_size: int | None = None,
) -> dict[str, Any]:
    """Export ``model`` to ``path`` and check the file; ``input_size`` (the training size, if known) is recorded
    in the metadata (``fgdepth.input_size``) as the size ``fgdepth predict --onnx`` defaults to.

    Runs ``onnx.checker.check_model``, then compares onnxruntime with PyTorch (fp32, eval mode) on random inputs
    at two (batch, height, width): ``(1, size, size)`` and ``(3, size // 2 + 1, size + 7)``.
    Raises RuntimeError if the largest absolute difference exceeds ``atol`` and onnxruntime is also further from
    a float64 copy of the model than twice PyTorch's own float32 error (plus ``atol``): a trained model can
    amplify float32 rounding beyond 1e-4 in PyTorch itself (the demo's: logits up to 11, PyTorch float32 against
    float64 3.8e-4, onnxruntime against float64 3.1e-4, so 3.3e-4 apart), which is no fault of the export.
    The file is written under a temporary name and renamed only once it passes: a failed export leaves nothing
    at ``path`` (and an older file there untouched). The model's train/eval mode is restored afterwards;
    tensors are created on the model's device.

    ``dynamo=False`` (default) uses the TorchScript exporter: about 1 s, robust, dynamic axes checked above.
    ``dynamo=True`` uses the torch.export-based exporter (opset >= 18 is then used): ~25 s on 2 CPU cores,
    same graph semantics (symbolic output sizes ``(height - 1) // s + 1``).

    Returns:
        ``{"path", "opset", "size", "max_abs_diff", "float32_error", "onnx_float64_error", "per_check":
        [{"shape", "mask_logits", "depth", "float32_error", "onnx_float64_error"}, ...]}``: differences are
        the largest absolute ones over both outputs; the last two against the float64 model.
    """
    import onnx

    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    path = final.with_name(f".{final.name}.{os.getpid()}.tmp")
    try:
        report = _export_and_check(model, path, size, opset, atol, seed, dynamo, onnx, input_size)
        os.replace(path, final)
    finally:
        path.unlink(missing_ok=True)
    report["path"] = str(final)
    print(
        f"exported {final} (opset {report['opset']}); onnxruntime vs PyTorch max abs diff "
        f"{report['max_abs_diff']:.2e} (PyTorch's own float32 error: {report['float32_error']:.2e})"
    )
    return report


def parity_ok(
    max_abs_diff: float, onnx_float64_error: float, float32_error: float, atol: float = 1e-4
) -> bool:
    """Whether onnxruntime reproduces the PyTorch model: within ``atol`` of PyTorch's float32 output, or no further
    from the float64 model than twice PyTorch's own float32 error (plus ``atol``). NaN anywhere fails."""
    values = (max_abs_diff, onnx_float64_error, float32_error)
    if not all(np.isfinite(v) for v in values):
        return False
    return max_abs_diff <= atol or onnx_float64_error <= 2 * float32_error + atol


def _export_and_check(
    model: nn.Module,
    path: Path,
    size: int,
    opset: int,
    atol: float,
    seed: int,
    dynamo: bool,
    onnx: Any,
    input_size: int | None = None,
) -> dict[str, Any]:
    model = getattr(model, "_orig_mod", model)
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        gen = torch.Generator().manual_seed(seed)
        dummy = tuple(torch.rand(1, 3, size, size, generator=gen).to(device) for _ in range(2))
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter is deprecated
            if dynamo:
                opset = max(opset, 18)
                dims = {0: torch.export.Dim("batch"), 2: torch.export.Dim("height", min=8, max=8192)}
                dims[3] = torch.export.Dim("width", min=8, max=8192)
                torch.onnx.export(
                    model,
                    dummy,
                    str(path),
                    input_names=list(INPUT_NAMES),
                    output_names=list(OUTPUT_NAMES),
                    dynamic_shapes=dict.fromkeys(INPUT_NAMES, dims),
                    opset_version=opset,
                    dynamo=True,
                )
            else:
                image_axes = {0: "batch", 2: "height", 3: "width"}
                out_axes = {0: "batch", 2: "out_height", 3: "out_width"}
                torch.onnx.export(
                    model,
                    dummy,
                    str(path),
                    input_names=list(INPUT_NAMES),
                    output_names=list(OUTPUT_NAMES),
                    dynamic_axes={
                        **dict.fromkeys(INPUT_NAMES, image_axes),
                        **dict.fromkeys(OUTPUT_NAMES, out_axes),
                    },
                    opset_version=opset,
                    do_constant_folding=True,
                    dynamo=False,
                )
        proto = onnx.load(str(path))
        hfov = getattr(getattr(model, "config", None), "canonical_hfov", None)
        props = {META_CANONICAL_HFOV: repr(float(hfov))} if hfov is not None else {}
        if input_size is not None:
            props[META_INPUT_SIZE] = str(int(input_size))
        if props:
            onnx.helper.set_model_props(proto, props)
            onnx.save(proto, str(path))
        onnx.checker.check_model(proto)
        runner = OnnxRunner(path)
        model64 = copy.deepcopy(model).to("cpu", torch.float64)  # the arbiter of float32 rounding
        per_check = []
        for b, h, w in _check_sizes(size):
            bg, comp = (torch.rand(b, 3, h, w, generator=gen) for _ in range(2))
            with torch.no_grad():
                ref = model(bg.to(device), comp.to(device))
                ref64 = model64(bg.double(), comp.double())
            got = runner(bg.numpy(), comp.numpy())
            check: dict[str, Any] = {"shape": [b, 3, h, w], "float32_error": 0.0, "onnx_float64_error": 0.0}
            for name in OUTPUT_NAMES:
                r = ref[name].float().cpu().numpy()
                r64 = ref64[name].numpy()
                if got[name].shape != r.shape:
                    raise RuntimeError(
                        f"ONNX {name} has shape {got[name].shape}, PyTorch {r.shape} at {(b, h, w)}"
                    )
                check[name] = float(np.abs(got[name] - r).max())
                # np.max, not max(): a NaN must survive to fail the check
                check["float32_error"] = float(np.max([check["float32_error"], np.abs(r - r64).max()]))
                check["onnx_float64_error"] = float(
                    np.max([check["onnx_float64_error"], np.abs(got[name] - r64).max()])
                )
            per_check.append(check)
    finally:
        model.train(was_training)
    report = {
        "opset": opset,
        "size": size,
        "max_abs_diff": float(np.max([[c[n] for n in OUTPUT_NAMES] for c in per_check])),
        "float32_error": float(np.max([c["float32_error"] for c in per_check])),
        "onnx_float64_error": float(np.max([c["onnx_float64_error"] for c in per_check])),
        "per_check": per_check,
    }
    if not parity_ok(report["max_abs_diff"], report["onnx_float64_error"], report["float32_error"], atol):
        raise RuntimeError(
            f"onnxruntime differs from PyTorch by {report['max_abs_diff']:.2e} > {atol:.0e}, and from the float64 "
            f"model by {report['onnx_float64_error']:.2e}, beyond twice PyTorch's own float32 error "
            f"({report['float32_error']:.2e}) (nan: a non-finite output): {per_check}"
        )
    return report


class OnnxRunner:
    """Run an exported DualUNet with onnxruntime; the session is created once.

    ``runner(background, composite)`` takes numpy arrays or torch tensors, (B, 3, H, W) float in [0, 1] (a
    single (3, H, W) image is given a batch axis), and returns ``{"mask_logits", "depth"}`` as float32 numpy
    arrays (B, 1, h, w).
    """

    def __init__(
        self,
        path: str | Path,
        providers: list[str] | None = None,
        intra_op_threads: int | None = None,
    ) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if intra_op_threads is not None:
            opts.intra_op_num_threads = intra_op_threads
        self.path = Path(path)
        self.session = ort.InferenceSession(
            str(self.path), sess_options=opts, providers=providers or ["CPUExecutionProvider"]
        )
        self.output_names = [o.name for o in self.session.get_outputs()]
        meta = self.session.get_modelmeta().custom_metadata_map
        hfov = meta.get(META_CANONICAL_HFOV)
        # the canonical camera's focal (fgdepth.intrinsics) when the depth output is through it, else None
        self.canonical_focal = focal_from_hfov(float(hfov), 1, 1) if hfov else None
        # the input size its checkpoint was trained for, None if the export did not know it
        self.input_size = int(meta[META_INPUT_SIZE]) if meta.get(META_INPUT_SIZE) else None

    @staticmethod
    def _as_array(name: str, x: np.ndarray | torch.Tensor) -> np.ndarray:
        if isinstance(x, torch.Tensor):
            x = x.detach().float().cpu().numpy()
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.ndim == 3:
            x = x[None]
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"{name} must be (B, 3, H, W) or (3, H, W), got shape {x.shape}")
        return x

    def __call__(
        self, background: np.ndarray | torch.Tensor, composite: np.ndarray | torch.Tensor
    ) -> dict[str, np.ndarray]:
        bg, comp = self._as_array(BACKGROUND, background), self._as_array(COMPOSITE, composite)
        if bg.shape != comp.shape:
            raise ValueError(f"background {bg.shape} and composite {comp.shape} differ in shape")
        outs = self.session.run(self.output_names, {BACKGROUND: bg, COMPOSITE: comp})
        return dict(zip(self.output_names, outs))

    def benchmark(self, batch: int = 1, size: int = 192, repeats: int = 20) -> float:
        """Best-of-``repeats`` seconds for one call on random (batch, 3, size, size) inputs."""
        rng = np.random.default_rng(0)
        bg, comp = (rng.random((batch, 3, size, size), dtype=np.float32) for _ in range(2))
        self(bg, comp)
        best = float("inf")
        for _ in range(repeats):
            t = time.perf_counter()
            self(bg, comp)
            best = min(best, time.perf_counter() - t)
        return best
