"""Score engine units: label spaces, the run store, device preprocessing, set listing, metrics."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from robusteval.corrupt.trees import tree_sets
from robusteval.datasets.imagenet import wnid_to_index, wnids
from robusteval.datasets.items import Head
from robusteval.datasets.labelspace import LABEL_SPACES, get_label_space
from robusteval.datasets.ood import OOD_SETS, ood_sets
from robusteval.errors import UserError
from robusteval.jsonl import read_records
from robusteval.metrics import cell_metrics, expected_calibration_error
from robusteval.runs import Preds, RunStore, cell_id
from robusteval.score.preprocess import apply_view, make_view, normalize
from robusteval.score.sets import parse_pairs
from tests.helpers import make_record

# --- label spaces ------------------------------------------------------------------------------


@pytest.mark.parametrize("entry", list(LABEL_SPACES), ids=lambda e: e.name)
def test_label_space_probs_are_distributions(entry):
    space = get_label_space(entry.name)
    logits = torch.randn(7, 1000, generator=torch.Generator().manual_seed(0)) * 3
    p = space.probs(logits)
    assert p.shape == (7, space.num_classes) and p.dtype == torch.float32
    assert torch.allclose(p.sum(1), torch.ones(7), atol=1e-5) and (p >= 0).all()
    # every class's ImageNet members are valid, distinct indices
    flat = [i for m in space.imagenet_index for i in m]
    assert len(flat) == len(set(flat)) and all(0 <= i < 1000 for i in flat)


def test_subset_spaces_are_the_official_200():
    a, r = get_label_space("imagenet-a200"), get_label_space("imagenet-r200")
    a_idx = [m[0] for m in a.imagenet_index]
    r_idx = [m[0] for m in r.imagenet_index]
    assert len(a_idx) == len(r_idx) == 200
    # anchors from the official eval code: ImageNet-A maps 6 (stingray) → 0, 151 → 37, 530 → 104,
    # 988 → 199; ImageNet-R's list starts 1 (goldfish), 2 and ends 988.
    assert (a_idx[0], a_idx[37], a_idx[104], a_idx[-1]) == (6, 151, 530, 988)
    assert (r_idx[0], r_idx[1], r_idx[-1]) == (1, 2, 988)
    assert wnids()[a_idx[0]] == "n01498041" and wnids()[r_idx[0]] == "n01443537"
    # masking: the argmax of the subset is the best subset class, whatever the other 800 say
    logits = torch.full((1, 1000), -5.0)
    logits[0, 0] = 50.0  # tench is in neither subset
    logits[0, a_idx[3]] = 2.0
    assert a.probs(logits).argmax(1).item() == 3
    labels = np.array([6, 0, 988, -1])
    assert a.labels_from(labels, source="imagenet1k").tolist() == [0, -1, 199, -1]


def test_modelvshuman16_is_mean_probability_per_category():
    from robusteval.datasets.sixteen import CATEGORIES16, category_indices

    space = get_label_space("modelvshuman16")
    cats = category_indices()
    logits = torch.zeros(1, 1000)
    # one very confident dog class loses to a category whose members are all fairly likely
    logits[0, cats["dog"][0]] = 6.0
    logits[0, cats["knife"]] = 5.0
    p = space.probs(logits)
    assert CATEGORIES16[p.argmax(1).item()] == "knife"
    soft = logits.softmax(1)[0]
    mean = torch.stack([soft[cats[c]].mean() for c in CATEGORIES16])
    assert torch.allclose(p[0], mean / mean.sum(), atol=1e-6)
    dog = CATEGORIES16.index("dog")
    assert space.labels_from(np.array([cats["dog"][5], 0]), source="imagenet1k").tolist() == [dog, -1]


# --- metrics -----------------------------------------------------------------------------------


def test_ece_and_cell_metrics():
    conf = np.array([0.95, 0.95, 0.55, 0.55])
    hit = np.array([1, 1, 0, 1])
    # bin (0.933, 1]: acc 1 vs conf .95 → .05 * 2/4; bin (.533, .6]: acc .5 vs .55 → .05 * 2/4
    assert expected_calibration_error(confidence=conf, correct=hit) == pytest.approx(0.05)
    preds = Preds(
        ids=np.array(["a", "b", "c"]),
        labels=np.array([3, 4, -1]),
        top5=np.array([[3, 1, 2, 0, 5], [1, 2, 4, 0, 3], [0, 1, 2, 3, 4]], dtype=np.int16),
        top5_prob=np.array([[0.9, 0.05, 0, 0, 0], [0.6, 0.2, 0.1, 0, 0], [1, 0, 0, 0, 0]], dtype=np.float16),
    )
    m = cell_metrics(top5=preds.top5, top5_prob=preds.top5_prob, labels=preds.labels, num_classes=1000)
    assert m["top1"] == 0.5 and m["top5"] == 1.0  # the unknown label is not counted
    assert m["ece"] == pytest.approx(abs(1 - 0.9) / 2 + abs(0 - 0.6) / 2, abs=1e-3)


# --- the run store ----------------------------------------------------------------------------


def _preds(n=3, seed=0):
    rng = np.random.default_rng(seed)
    return Preds(
        ids=np.array([f"img{i}" for i in range(n)]),
        labels=rng.integers(0, 1000, n),
        top5=rng.integers(0, 1000, (n, 5)).astype(np.int16),
        top5_prob=rng.random((n, 5)).astype(np.float16),
    )


def test_cell_ids_are_stable_and_file_safe():
    a = cell_id(model="vmamba_b", set_name="clean", severity=None, label_space="imagenet1k")
    assert a == "vmamba_b__clean__s-__imagenet1k"
    b = cell_id(model="hf-hub:org/m", set_name="gaussian_blur", severity=3, label_space="imagenet1k")
    c = cell_id(model="hf-hub:org_m", set_name="gaussian_blur", severity=3, label_space="imagenet1k")
    assert "/" not in b and ":" not in b and b != c


def test_store_append_roundtrip_and_torn_lines(tmp_path):
    store = RunStore(tmp_path, "r")
    store.dir.mkdir(parents=True)
    rec = make_record(cell="c1")
    store.append(rec, _preds())
    got = Preds.load(store.dir / "preds/c1.npz")
    assert got.ids.tolist() == ["img0", "img1", "img2"] and got.top5.dtype == np.int16
    assert got.top5_prob.dtype == np.float16 and got.labels.dtype == np.int64
    # a kill mid-write leaves a torn line; it is ignored, and the next record starts a new line
    with store.records_path.open("ab") as fh:
        fh.write(b'{"cell": "c2", "preds": "preds/c2.np')
    assert list(store.finished()) == ["c1"]
    store.append(make_record(cell="c3"), _preds(seed=1))
    assert list(store.finished()) == ["c1", "c3"]
    assert [r["cell"] for r in read_records(store.records_path)] == ["c1", "c3"]
    # a record whose preds file vanished is not finished; an orphan npz without a record neither
    os.remove(store.dir / "preds/c1.npz")
    (store.dir / "preds/c9.npz").write_bytes(_preds().to_bytes())
    assert list(store.finished()) == ["c3"]


def test_store_lock_refuses_a_second_scorer(tmp_path):
    store = RunStore(tmp_path, "r")
    with store.lock(), pytest.raises(UserError, match="another process"), RunStore(tmp_path, "r").lock():
        pass
    with store.lock():  # released
        pass
    with pytest.raises(UserError):
        RunStore(tmp_path, "../evil")


# --- device preprocessing --------------------------------------------------------------------


class _DC:
    def __init__(self, size=224, interp="bilinear", crop_pct=0.875, crop_mode="center"):
        self.input_size, self.interpolation, self.crop_pct, self.crop_mode = size, interp, crop_pct, crop_mode


def test_eval_view_matches_pil_eval_transform():
    from torchvision import transforms as T

    rng = np.random.default_rng(0)
    # smooth content (as photos are), odd sizes, portrait and landscape
    base = rng.integers(0, 256, (12, 16, 3)).astype(np.uint8)
    for hw in [(375, 500), (500, 333), (227, 227)]:
        img = np.asarray(Image.fromarray(base).resize(hw[::-1], Image.BICUBIC))
        for interp, pil in (
            ("bilinear", T.InterpolationMode.BILINEAR),
            ("bicubic", T.InterpolationMode.BICUBIC),
        ):
            view = make_view(_DC(interp=interp), mode="eval")
            ref = T.Compose([T.Resize(256, interpolation=pil), T.CenterCrop(224)])(Image.fromarray(img))
            ref = np.asarray(ref).astype(int)
            got = (
                apply_view([torch.from_numpy(img.copy()).permute(2, 0, 1)], view)[0].permute(1, 2, 0).numpy()
            )
            diff = np.abs(got.astype(int) - ref)
            assert got.shape == (224, 224, 3)
            assert diff.mean() < 0.6 and (diff <= 2).mean() > 0.99, (hw, interp, diff.mean())


def test_views_group_sizes_and_keep_order():
    view = make_view(_DC(size=32, crop_pct=1.0), mode="eval")
    imgs = [
        torch.full((3, h, w), v, dtype=torch.uint8) for v, (h, w) in enumerate([(40, 50), (60, 30), (40, 50)])
    ]
    out = apply_view(imgs, view)
    assert out.shape == (3, 3, 32, 32) and out[:, 0, 5, 5].tolist() == [0, 1, 2]
    rs = make_view(_DC(size=256), mode="resize")
    x = torch.randint(0, 255, (2, 3, 224, 224), dtype=torch.uint8)
    assert apply_view(x, rs).shape == (2, 3, 256, 256)
    assert apply_view(x, make_view(_DC(size=224), mode="resize")) is x  # 224 crops pass untouched
    y = normalize(x, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), channels_last=True)
    assert y.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(y, (x.float() / 255 - 0.5) / 0.25, atol=1e-5)
    with pytest.raises(ValueError):
        make_view(_DC(crop_mode="border"), mode="eval")


# --- what to score ---------------------------------------------------------------------------


def _png(path: Path, value: int = 0, size=(24, 32)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((*size, 3), value, np.uint8)).save(path)


def test_ood_layouts(tmp_path):
    idx = wnid_to_index()
    for w in ("n01498041", "n01443537"):
        _png(tmp_path / "a" / w / "x.jpg")
        _png(tmp_path / "sk" / "sketch" / w / "s.JPEG")
    _png(tmp_path / "v2" / "imagenetv2-matched-frequency-format-val" / "472" / "q.jpeg")
    (a,), heads = ood_sets("imagenet-a", tmp_path / "a")
    assert heads == ("imagenet-a200",) and a.heads == [Head("imagenet-a200")]
    assert sorted(a.head_labels(a.heads[0]).tolist()) == [-1, 0]  # goldfish is not an ImageNet-A class
    (r,), heads = ood_sets("imagenet-r", tmp_path / "a")
    assert heads == ("imagenet-r200",) and sorted(r.head_labels(r.heads[0]).tolist()) == [0, 3]
    (sk,), _ = ood_sets("imagenet-sketch", tmp_path / "sk")
    assert sorted(it.label for it in sk.items) == sorted([idx["n01498041"], idx["n01443537"]])
    (v2,), _ = ood_sets("imagenetv2", tmp_path / "v2")
    assert [it.label for it in v2.items] == [472]
    with pytest.raises(UserError, match="unknown OOD set.*imagenet-sketch"):
        ood_sets("imagenet-z", tmp_path)
    assert {"imagenet-a", "imagenet-r", "imagenet-sketch", "imagenetv2", "mvh"} <= set(OOD_SETS.names())


def test_mvh_folders_and_labels_csv(tmp_path):
    from robusteval.datasets.sixteen import CATEGORIES16

    _png(tmp_path / "m" / "edges" / "dog" / "dog1.png")
    _png(tmp_path / "m" / "edges" / "oven" / "oven1.png")
    _png(tmp_path / "m" / "silhouettes" / "cat" / "cat1.png")
    got = {s.name: sorted(it.label for it in s.items) for s in ood_sets("mvh", tmp_path / "m")[0]}
    dog, oven, cat = (CATEGORIES16.index(c) for c in ("dog", "oven", "cat"))
    assert got == {"mvh-edges": sorted([dog, oven]), "mvh-silhouettes": [cat]}
    assets = Path(__file__).resolve().parents[1] / "robusteval" / "assets" / "modelvshuman16"
    if (assets / "labels.csv").is_file():
        sets = {s.name: s for s in ood_sets("mvh", assets)[0]}
        assert set(sets) == {"mvh-edges", "mvh-filled-silhouettes"}
        assert len(sets["mvh-edges"].items) == 160 and sets["mvh-edges"].heads == [Head("modelvshuman16")]


def test_tree_sets_from_manifest(tmp_path):
    recs = [{"kind": "run", "label_space": "imagenet1k"}]
    for sev in (1, 2):
        for i, w in enumerate(("n01440764", "n01443537")):
            rel = f"blur/{sev}/{w}/img{i}.png"
            _png(tmp_path / rel, size=(224, 224))
            recs.append({"kind": "output", "set": "blur", "suite": "study21", "severity": sev, "params": {"s": sev},
                         "spec_hash": f"h{sev}", "id": f"x/img{i}", "label": i, "wnid": w, "path": rel})  # fmt: skip
    recs.append({**recs[-1], "path": "blur/2/n01443537/gone.png", "id": "x/gone"})
    (tmp_path / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    sets = tree_sets(tmp_path)
    assert [(s.name, s.severity, s.mode, len(s.items)) for s in sets] == [
        ("blur", 1, "resize", 2),
        ("blur", 2, "resize", 2),
    ]
    assert sets[1].params == {"s": 2} and sets[1].spec_hash == "h2" and sets[1].suite == "study21"
    assert [sk["reason"] for sk in sets[1].skips] == ["listed in the manifest but missing"]
    with pytest.raises(UserError, match="manifest"):
        tree_sets(tmp_path / "blur")


def test_parse_pairs():
    assert parse_pairs(["imagenet-r=/d/r", "a = b"], option="--ood", example="imagenet-r=/d/r") == [
        ("imagenet-r", "/d/r"),
        ("a", "b"),
    ]
    with pytest.raises(UserError, match="NAME=VALUE"):
        parse_pairs(["imagenet-r"], option="--ood", example="imagenet-r=/d/r")


# --- resident models -------------------------------------------------------------------------


def test_out_of_memory_halves_the_chunk_and_carries_on():
    from types import SimpleNamespace

    from robusteval.models.registry import DataConfig
    from robusteval.score.runner import ResidentModel

    class Picky(torch.nn.Module):
        """Runs out of 'device memory' above 3 images per call; logits = mean pixel per class."""

        def forward(self, x):
            if x.shape[0] > 3:
                raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
            return x.mean(dim=(1, 2, 3))[:, None].repeat(1, 1000)

    card = SimpleNamespace(name="picky", data=DataConfig(input_size=8, crop_pct=1.0))
    notes = []
    model = ResidentModel(
        SimpleNamespace(card=card, module=Picky(), weights={}), device="cpu", amp="off",
        channels_last=False, compile=False, batch_size=16, notify=notes.append,
    )  # fmt: skip
    x = torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1).expand(10, 3, 8, 8).contiguous()
    out = model.logits(x)
    assert out.shape == (10, 1000) and model.chunk == 2 and model.min_chunk == 2
    expect = normalize(x, mean=card.data.mean, std=card.data.std).mean(dim=(1, 2, 3))
    assert torch.allclose(out[:, 0], expect)  # every image scored once, in order
    assert len(notes) == 3 and "out of memory at batch 16; continuing with 8" in notes[0]


def test_jpeg_batches_travel_as_one_buffer(tmp_path):
    """Workers pack a batch's JPEG bytes into one tensor; the device side splits it back exactly."""
    from robusteval.score.loader import Job, Stream, _JobSet

    paths = []
    for i, size in enumerate([(40, 30), (30, 40), (50, 50)]):
        path = tmp_path / f"{i}.jpg"
        Image.fromarray(np.full((*size[::-1], 3), 60 * i, np.uint8)).save(path, quality=90)
        paths.append(str(path))
    png = tmp_path / "3.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(png)
    paths.append(str(png))
    item = _JobSet([Stream(tuple(paths), gpu_jpeg=True)], [Job(0, (0, 1, 2, 3))])[0]
    assert item["jpeg_slots"] == [0, 1, 2]
    parts = item["jpeg_blob"].split(item["jpeg_sizes"])
    assert [bytes(p.numpy()) for p in parts] == [Path(p).read_bytes() for p in paths[:3]]
    assert item["pixels"][:3] == [None, None, None] and tuple(item["pixels"][3].shape) == (3, 8, 8)


def test_device_prefetch_keeps_order_raises_and_stops_early():
    import threading

    from robusteval.score.loader import _prefetched

    assert list(_prefetched(iter(range(7)), depth=2)) == list(range(7))

    def failing():
        yield 1
        raise ValueError("boom")

    got = []
    with pytest.raises(ValueError, match="boom"):
        for x in _prefetched(failing()):
            got.append(x)
    assert got == [1]

    closed = threading.Event()

    def endless():
        try:
            n = 0
            while True:
                yield n
                n += 1
        finally:
            closed.set()

    it = _prefetched(endless())
    assert [next(it) for _ in range(3)] == [0, 1, 2]
    it.close()
    assert closed.wait(5)


def test_nvjpeg_is_chosen_only_with_few_decode_workers_unless_asked():
    from robusteval.score.plan import NVJPEG_BELOW_WORKERS
    from robusteval.score.plan import use_nvjpeg as _use_nvjpeg
    from robusteval.score.request import ScoreRequest

    auto = ScoreRequest(models=["m"], run="r")
    assert not _use_nvjpeg(auto, device="cpu", workers=0)
    assert _use_nvjpeg(auto, device="cuda", workers=NVJPEG_BELOW_WORKERS - 1)
    assert not _use_nvjpeg(auto, device="cuda:0", workers=NVJPEG_BELOW_WORKERS)
    forced = ScoreRequest(models=["m"], run="r", gpu_decode=True)
    assert _use_nvjpeg(forced, device="cuda", workers=15) and not _use_nvjpeg(forced, device="cpu", workers=1)
    assert not _use_nvjpeg(ScoreRequest(models=["m"], run="r", gpu_decode=False), device="cuda", workers=0)


def test_a_tree_whose_files_are_all_missing_scores_nothing_and_records_the_skips(val1300, tmp_path):
    """Every listed PNG deleted: no traceback, the cells are written with n = 0 and every skip."""
    from robusteval.corrupt.stage import run_corrupt
    from robusteval.score.engine import ScoreRequest, run_score
    from tests.helpers import need_weights, val_rows, val_subset

    need_weights("mobilenet_v2")
    data = val_subset(val1300, tmp_path / "val", val_rows(val1300)[:2])
    out = tmp_path / "sets"
    run_corrupt(data=data, out=out, transforms=["invert"], severities=None, workers=1)
    for png in out.rglob("*.png"):
        png.unlink()
    summary = run_score(
        ScoreRequest(models=["mobilenet_v2"], sets_dir=out, run="gone", runs_dir=tmp_path, workers=0)
    )
    (rec,) = summary.written
    assert rec.n == 0 and rec.top1 is None and len(rec.skips) == 2
    assert all("missing" in s["reason"] for s in rec.skips)


def test_decode_workers_run_under_a_long_temp_path(val1300, tmp_path, monkeypatch):
    """A long TMPDIR once overflowed the socket workers pass tensors through (AF_UNIX path too long)."""
    import tempfile

    from robusteval.score.engine import ScoreRequest, run_score
    from tests.helpers import need_weights, val_rows, val_subset

    need_weights("mobilenet_v2")
    long_tmp = tmp_path / ("a-very-long-temporary-folder-name-" * 3) / "deeper"
    long_tmp.mkdir(parents=True)
    monkeypatch.setenv("TMPDIR", str(long_tmp))
    monkeypatch.setattr(tempfile, "tempdir", str(long_tmp))
    data = val_subset(val1300, tmp_path / "val", val_rows(val1300)[:4])
    summary = run_score(
        ScoreRequest(
            models=["mobilenet_v2"], data=data, run="long", runs_dir=tmp_path, workers=1, batch_size=2
        )
    )
    (rec,) = summary.written
    assert rec.n == 4
