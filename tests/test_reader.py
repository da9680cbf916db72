"""Reading datasets back (fgdepth.data.reader): the documented dict, exact masks and depth, on-the-fly ==
materialised, rank/worker splitting, and the webdataset library on our shards."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from conftest import SIZE
from fgdepth.config import FactoryConfig, from_dict
from fgdepth.data import codec, schema
from fgdepth.data.reader import (
    FolderDataset,
    OnTheFlyDataset,
    ShardDataset,
    collate,
    iter_tar,
    open_dataset,
    random_samples,
    split_for_rank_and_worker,
)
from fgdepth.factory import Composer, make_plan
from fgdepth.world import load_world

# mean |JPEG q90 - pixels| on the fixtures' noisy textures is ~4.5 levels; a wrong image is ~50
JPEG_MEAN_ERROR = 8.0


def composer_of(root: Path) -> Composer:
    """The factory's composer for a finished dataset, rebuilt from its run record and stored world."""
    cfg = from_dict(FactoryConfig, json.loads((root / schema.RUN_NAME).read_text())["config"])
    world = load_world(root)
    return Composer(cfg, world, make_plan(cfg, world))


def check_tensor_sample(s: dict) -> None:
    assert set(s) == {*schema.BATCH_KEYS, schema.KEY}
    for k in (schema.BACKGROUND, schema.COMPOSITE):
        assert s[k].shape == (3, SIZE, SIZE) and s[k].dtype == torch.float32
        assert s[k].min() >= 0.0 and s[k].max() <= 1.0
    for k in (schema.MASK, schema.DEPTH, schema.DEPTH_VALID):
        assert s[k].shape == (1, SIZE, SIZE) and s[k].dtype == torch.float32
    assert set(s[schema.MASK].unique().tolist()) <= {0.0, 1.0} and s[schema.MASK].sum() > 0
    assert torch.equal(s[schema.DEPTH_VALID], (s[schema.DEPTH] > 0).float())
    assert 1.0 < s[schema.DEPTH].max() < 7.0  # metres
    assert isinstance(s[schema.KEY], str)


def assert_matches_composer(s: dict, composer: Composer, index_of: dict[str, int]) -> None:
    """A tensor sample against the factory's composition of the same index."""
    ref = composer.sample(index_of[s[schema.KEY]])
    c = ref.composed
    np.testing.assert_array_equal(s[schema.MASK][0].numpy().astype(bool), c.mask)
    np.testing.assert_allclose(s[schema.DEPTH][0].numpy(), c.depth, atol=0.0005, rtol=0)
    comp = s[schema.COMPOSITE].permute(1, 2, 0).numpy() * 255
    assert np.abs(comp - c.composite.astype(np.float32)).mean() < JPEG_MEAN_ERROR
    jpeg = codec.decode_image(codec.encode_jpeg(c.composite, 90))  # exactly the JPEG of the composed pixels
    np.testing.assert_allclose(comp, jpeg, atol=1e-3)
    b = composer.world.bg_ids.index(ref.meta["bg_id"])
    bg = s[schema.BACKGROUND].permute(1, 2, 0).numpy() * 255
    np.testing.assert_allclose(bg, composer.world.backgrounds[b].rgb, atol=1e-3)


def index_by_key(root: Path) -> dict[str, int]:
    m = json.loads((root / schema.MANIFEST_NAME).read_text())
    out = {}
    if m["format"] == "webdataset":
        for u in m["units"]:
            for key, files in iter_tar(root / u["path"]):
                out[key] = json.loads(files[schema.EXT_META])["index"]
    else:
        for p in (root / schema.META_DIR).iterdir():
            out[p.stem] = json.loads(p.read_text())["index"]
    return out


def test_shard_dataset_round_trip(shard_dataset):
    composer, index_of = composer_of(shard_dataset), index_by_key(shard_dataset)
    ds = ShardDataset(shard_dataset, "all")
    samples = list(ds)
    assert len(samples) == len(ds) == 120 == len({s[schema.KEY] for s in samples})
    for s in samples:
        check_tensor_sample(s)
        assert_matches_composer(s, composer, index_of)


def test_folder_dataset_round_trip(folder_dataset):
    composer, index_of = composer_of(folder_dataset), index_by_key(folder_dataset)
    ds = FolderDataset(folder_dataset, "all")
    assert len(ds) == 120
    for i in range(len(ds)):
        s = ds[i]
        check_tensor_sample(s)
        assert_matches_composer(s, composer, index_of)


def test_both_formats_hold_the_same_samples(shard_dataset, folder_dataset):
    shards = {s[schema.KEY]: s for s in ShardDataset(shard_dataset, "all")}
    folders = FolderDataset(folder_dataset, "all")
    assert sorted(shards) == folders.stems
    for i in range(0, len(folders), 7):
        f = folders[i]
        s = shards[f[schema.KEY]]
        for k in schema.BATCH_KEYS:
            assert torch.equal(f[k], s[k]), k  # same bytes: same JPEG, same PNGs


def test_on_the_fly_equals_materialised(shard_dataset):
    composer, index_of = composer_of(shard_dataset), index_by_key(shard_dataset)
    otf = OnTheFlyDataset(shard_dataset, "all")
    shards = {s[schema.KEY]: s for s in ShardDataset(shard_dataset, "all")}
    assert len(otf) == len(shards)
    for i in range(len(otf)):
        raw = otf.load_numpy(i)
        ref = composer.sample(index_of[raw[schema.KEY]]).composed
        # exactly the factory's composition before encoding
        np.testing.assert_array_equal(raw[schema.COMPOSITE], ref.composite)
        np.testing.assert_array_equal(raw[schema.MASK], ref.mask)
        np.testing.assert_array_equal(raw[schema.DEPTH], ref.depth)
        # and the materialised sample: mask and depth exactly, composite within JPEG error
        t, m = otf[i], shards[raw[schema.KEY]]
        assert torch.equal(t[schema.MASK], m[schema.MASK])
        assert torch.equal(t[schema.DEPTH], m[schema.DEPTH])
        assert torch.equal(t[schema.BACKGROUND], m[schema.BACKGROUND])
        assert (t[schema.COMPOSITE] - m[schema.COMPOSITE]).abs().mean() < JPEG_MEAN_ERROR / 255
        # the JPEG itself: same as encoding the on-the-fly pixels with the dataset's quality
        jpeg = codec.decode_image(codec.encode_jpeg(raw[schema.COMPOSITE], 90))
        assert torch.equal(torch.from_numpy(jpeg).permute(2, 0, 1).float() / 255, m[schema.COMPOSITE])


def test_on_the_fly_selection_matches_shards(shard_dataset):
    for selection in ("train", "test_new_room"):
        otf = OnTheFlyDataset(shard_dataset, selection)
        keys = sorted(otf.load_numpy(i)[schema.KEY] for i in range(len(otf)))
        assert keys and keys == sorted(s[schema.KEY] for s in ShardDataset(shard_dataset, selection))


def test_ranks_see_disjoint_shards_covering_all(shard_dataset):
    everything = ShardDataset(shard_dataset, "all")
    parts = [ShardDataset(shard_dataset, "all", rank=r, world_size=2) for r in (0, 1)]
    shards = [set(p.shards_for_this_process()) for p in parts]
    assert shards[0] and shards[1] and not shards[0] & shards[1]
    assert shards[0] | shards[1] == set(everything.shards)
    keys = [[s[schema.KEY] for s in p] for p in parts]
    assert not set(keys[0]) & set(keys[1])
    assert sorted(keys[0] + keys[1]) == sorted(s[schema.KEY] for s in everything)


def test_split_for_rank_and_worker_round_robin():
    items = list(range(10))
    assert split_for_rank_and_worker(items, 0, 2) == [0, 2, 4, 6, 8]
    assert split_for_rank_and_worker(items, 1, 2) == [1, 3, 5, 7, 9]
    assert split_for_rank_and_worker(items, 0, 1) == items


def test_loader_workers_share_the_shards(shard_dataset):
    ds = ShardDataset(shard_dataset, "all")
    loader = DataLoader(ds, batch_size=8, num_workers=2, collate_fn=collate)
    keys = [k for batch in loader for k in batch[schema.KEY]]
    assert len(keys) == len(set(keys)) == len(ds)


def test_shuffle_changes_order_per_epoch_not_content(shard_dataset):
    ds = ShardDataset(shard_dataset, "all", shuffle=True, seed=1, buffer_size=16)
    a = [s[schema.KEY] for s in ds]
    ds.set_epoch(1)
    b = [s[schema.KEY] for s in ds]
    ds.set_epoch(0)
    assert a == [s[schema.KEY] for s in ds]  # seeded
    assert a != b and sorted(a) == sorted(b)
    assert sorted(a) == sorted(s[schema.KEY] for s in ShardDataset(shard_dataset, "all"))


def test_collate_stacks_tensors_keeps_keys(shard_dataset):
    batch = collate(list(ShardDataset(shard_dataset, "train"))[:3])
    assert batch[schema.COMPOSITE].shape == (3, 3, SIZE, SIZE)
    assert batch[schema.MASK].shape == (3, 1, SIZE, SIZE)
    assert isinstance(batch[schema.KEY], list) and len(batch[schema.KEY]) == 3


def test_open_dataset_picks_the_reader(shard_dataset, folder_dataset):
    assert isinstance(open_dataset(shard_dataset), ShardDataset)
    assert isinstance(open_dataset(folder_dataset), FolderDataset)
    with pytest.raises(ValueError, match="FolderDataset"):
        ShardDataset(folder_dataset)
    with pytest.raises(ValueError, match="valid"):
        ShardDataset(shard_dataset, "training")


@pytest.mark.parametrize("cut", ["header", "data"])
def test_a_truncated_shard_is_an_error_naming_it(shard_dataset, tmp_path, cut):
    # tarfile ends quietly at a cut header after the first member: the shard read as a shorter one (a sample
    # without its meta.json included); a cut member raised tarfile.ReadError naming no file (a traceback in show)
    import tarfile

    src = shard_dataset / json.loads((shard_dataset / schema.MANIFEST_NAME).read_text())["units"][0]["path"]
    with tarfile.open(src) as tar:
        member = tar.getmembers()[6]  # the third member of the second sample
    shard = tmp_path / src.name
    at = member.offset if cut == "header" else member.offset_data + 10
    shard.write_bytes(src.read_bytes()[:at])
    with pytest.raises(codec.DecodeError, match=f"{shard}: truncated or corrupt tar"):
        list(iter_tar(shard))
    assert len(list(iter_tar(src))) > 2  # the whole shard reads


@pytest.mark.parametrize("which", ["shard_dataset", "folder_dataset"])
def test_random_samples(which, request):
    root = request.getfixturevalue(which)
    a = random_samples(root, 5, seed=3)
    assert len(a) == 5 and len({s[schema.KEY] for s in a}) == 5
    assert [s[schema.KEY] for s in a] == [s[schema.KEY] for s in random_samples(root, 5, seed=3)]
    s = a[0]
    assert s[schema.COMPOSITE].shape == (SIZE, SIZE, 3) and s[schema.MASK].dtype == bool
    assert s[schema.DEPTH].dtype == np.float32


@pytest.mark.parametrize("which", ["shard_dataset", "folder_dataset"])
def test_random_samples_takes_every_sample_asked_for(which, request):
    # shards: each shard gave at most n / shards + 1 samples, so a large shard was cut short while small ones ran
    # out; asking for the whole dataset (or more) returned part of it (fgdepth show --n)
    root = request.getfixturevalue(which)
    total = len(open_dataset(root, "all"))
    for n in (total, total + 5):
        got = random_samples(root, n)
        assert len(got) == total and len({s[schema.KEY] for s in got}) == total


def test_folder_dataset_reads_a_foreign_reference_layout(folder_dataset, tmp_path):
    """Someone else's folders: no manifest, no meta, no depth."""
    import shutil

    root = tmp_path / "ref"
    for sub in (schema.BG_DIR, schema.COMP_DIR, schema.MASK_DIR):
        shutil.copytree(folder_dataset / sub, root / sub)
    ds = FolderDataset(root)
    assert len(ds) == 120
    s = ds[0]
    assert s[schema.DEPTH].abs().sum() == 0 and s[schema.DEPTH_VALID].sum() == 0 and s[schema.MASK].sum() > 0


def test_webdataset_library_reads_our_shards(shard_dataset):
    wds = pytest.importorskip("webdataset")
    m = json.loads((shard_dataset / schema.MANIFEST_NAME).read_text())
    urls = [str(shard_dataset / u["path"]) for u in m["units"]]
    samples = list(wds.WebDataset(urls, shardshuffle=False, empty_check=False))
    assert len(samples) == m["counts"]["samples"]
    ours = {key: files for u in m["units"] for key, files in iter_tar(shard_dataset / u["path"])}
    for s in samples:
        exts = {k for k in s if not k.startswith("__")}
        assert exts == {schema.EXT_COMP, schema.EXT_MASK, schema.EXT_DEPTH, schema.EXT_META}
        assert ours[s["__key__"]] == {k: s[k] for k in exts}
    # decoded the webdataset way: depth needs the unchanged 16-bit decode
    depth = codec.decode_depth(samples[0][schema.EXT_DEPTH])
    assert depth.dtype == np.float32 and 1.0 < depth.max() < 7.0


def _selected(splits: dict, stems: list[str], selection: str) -> list[str]:
    bg_ok, fg_ok = schema.SELECTIONS[selection]
    people = splits["people"]
    out = []
    for stem in stems:
        if splits["backgrounds"][stem.split("_", 1)[0]] not in bg_ok:
            continue
        if people:
            fg = schema.parse_stem(stem)[1]
            if people[fg[:-1] if fg.endswith("f") and fg[:-1] in people else fg] not in fg_ok:
                continue
        out.append(stem)
    return out


def test_foreign_splits_hold_out_rooms_and_people_of_a_reference_folder():
    from fgdepth.data.reader import foreign_splits

    stems = [
        f"bg{b:03d}_fg{p:03d}{m}_{k:02d}"
        for b in range(20)
        for p in range(10)
        for m in ("", "f")
        for k in (0, 1)
    ]
    splits = foreign_splits(stems)
    assert splits == foreign_splits(list(reversed(stems)))  # seeded, whatever the order
    assert sorted(splits["backgrounds"].values()).count("test") == 2 and len(splits["people"]) == 10
    parts = {sel: _selected(splits, stems, sel) for sel in ("train", "val", "test")}
    assert all(parts.values())
    rooms = {sel: {s.split("_")[0] for s in part} for sel, part in parts.items()}
    people = {sel: {s.split("_")[1].rstrip("f") for s in part} for sel, part in parts.items()}
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        assert not rooms[a] & rooms[b] and not people[a] & people[b]


@pytest.mark.parametrize(
    "stems",
    [
        [f"cam{b}_frame{k:04d}" for b in range(6) for k in range(3)],  # names that are not <bg>_<fg>_<kk>
        [
            f"room{b}_p{b}_00" for b in range(6)
        ],  # every room with its own person: no person split leaves a test
    ],
)
def test_foreign_splits_fall_back_to_rooms_alone(stems):
    from fgdepth.data.reader import foreign_splits

    splits = foreign_splits(stems)
    assert splits["people"] == {}
    assert sorted(splits["backgrounds"].values()) == ["test", "train", "train", "train", "train", "val"]


def test_foreign_folder_selections_are_disjoint_and_all_is_everything(folder_dataset, tmp_path):
    import shutil

    root = tmp_path / "ref"
    for sub in (schema.BG_DIR, schema.COMP_DIR, schema.MASK_DIR):
        shutil.copytree(folder_dataset / sub, root / sub)
    parts = {sel: set(FolderDataset(root, sel).stems) for sel in ("train", "val", "test", "all")}
    assert parts["all"] == set(FolderDataset(root).stems) and len(parts["all"]) == 120
    assert parts["train"] and parts["val"] and parts["test"]
    assert not (parts["train"] & parts["val"]) and not (parts["train"] & parts["test"])
    assert not (parts["val"] & parts["test"])
    rooms = {sel: {s.split("_")[0] for s in parts[sel]} for sel in ("train", "val", "test")}
    assert not (rooms["train"] & rooms["test"]) and not (rooms["train"] & rooms["val"])


def test_foreign_background_of_another_size_is_fitted_and_a_mismatched_mask_is_named(tmp_path):
    import cv2

    root = tmp_path / "ref"
    for sub in (schema.BG_DIR, schema.COMP_DIR, schema.MASK_DIR):
        (root / sub).mkdir(parents=True)
    rng = np.random.default_rng(0)
    cv2.imwrite(str(root / schema.BG_DIR / "room.jpg"), rng.integers(0, 255, (120, 160, 3), dtype=np.uint8))
    cv2.imwrite(
        str(root / schema.COMP_DIR / "room_a_00.jpg"), rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)
    )
    cv2.imwrite(str(root / schema.MASK_DIR / "room_a_00.png"), np.zeros((60, 80), np.uint8))
    s = FolderDataset(root).load_numpy(0)
    assert s[schema.BACKGROUND].shape == s[schema.COMPOSITE].shape == (60, 80, 3)
    cv2.imwrite(str(root / schema.MASK_DIR / "room_a_00.png"), np.zeros((30, 40), np.uint8))
    with pytest.raises(
        ValueError, match=r"room_a_00.png: size 40x30 differs from its composite room_a_00.jpg's 80x60"
    ):
        FolderDataset(root).load_numpy(0)


def test_on_the_fly_on_a_folder_without_a_stored_world_says_what_it_needs(folder_dataset, tmp_path):
    """OnTheFlyDataset (fgdepth train --source on-the-fly) on anyone's reference-layout folder failed with
    "[Errno 2] No such file or directory: .../run.json", not saying that on-the-fly composition needs a dataset
    made by fgdepth make-dataset; the error names the folder, the source and what to do."""
    import shutil

    foreign = tmp_path / "foreign"
    for sub in (schema.BG_DIR, schema.COMP_DIR, schema.MASK_DIR):
        shutil.copytree(folder_dataset / sub, foreign / sub)
    with pytest.raises(
        FileNotFoundError, match="on-the-fly composition needs a dataset made by fgdepth make-dataset"
    ):
        OnTheFlyDataset(foreign, "train")
