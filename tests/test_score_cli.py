"""`robusteval score` end to end on real images and real weights: clean, a corrupted tree from the
corrupt stage, OOD layouts, on-the-fly corruption, bad images, and resume after SIGKILL."""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from robusteval.cli import app
from robusteval.datasets.imagenet import wnids
from robusteval.datasets.labelspace import get_label_space
from robusteval.runs import PER_RUN_FIELDS, Preds, Record, RunStore
from tests.helpers import need_weights, val_rows, val_subset

REPO = Path(__file__).resolve().parents[1]
MODEL = "mobilenet_v2"

# Every record holds exactly the fields of the typed schema.
RECORD_KEYS = {f.name for f in dataclasses.fields(Record)}  # the one schema: writer = reader


def _need_weights() -> None:
    need_weights(MODEL)


@pytest.fixture(scope="module")
def workspace(val1300, tmp_path_factory):
    """12 real val images, a corrupted tree of them, a fake ImageNet-R and 16 mvh stimuli."""
    _need_weights()
    from robusteval.corrupt.stage import run_corrupt

    root = tmp_path_factory.mktemp("score")
    rows = val_rows(val1300)
    r200 = set(wnids()[m[0]] for m in get_label_space("imagenet-r200").imagenet_index)
    in_r = [r for r in rows if r["wnid"] in r200][:4]
    chosen = in_r + [r for r in rows if r not in in_r][:8]
    data = val_subset(val1300, root / "val", chosen)
    run_corrupt(
        data=data,
        out=root / "tree",
        transforms=["gaussian_blur", "invert", "fliplr"],
        severities=[2],
        workers=1,
    )
    for r in in_r:  # ImageNet-R layout: <wnid>/<file>
        (root / "imr" / r["wnid"]).mkdir(parents=True, exist_ok=True)
        shutil.copy(val1300 / r["path"], root / "imr" / r["wnid"] / Path(r["path"]).name)
    stimuli = REPO / "robusteval" / "assets" / "modelvshuman16" / "edges"
    if stimuli.is_dir():
        for cat in sorted(p.name for p in stimuli.iterdir()):
            (root / "mvh" / "edges" / cat).mkdir(parents=True)
            shutil.copy(stimuli / cat / f"{cat}1.png", root / "mvh" / "edges" / cat)
    return {"root": root, "data": data, "tree": root / "tree", "n_r": len(in_r), "n": len(chosen)}


def _invoke(args: list[str]):
    res = CliRunner().invoke(app, ["score", *args])
    assert res.exit_code == 0, res.output + repr(res.exception)
    return res


def _by_cell(store: RunStore) -> dict[str, dict]:
    return {r["cell"]: r for r in store.records()}


def test_score_cli_end_to_end(workspace):
    ws = workspace
    runs = ws["root"] / "runs"
    args = [
        "--models", MODEL, "--data", str(ws["data"]), "--sets", str(ws["tree"]),
        "--ood", f"imagenet-r={ws['root'] / 'imr'}", "--transforms", "gaussian_blur", "--severity", "2",
        "--transform-impl", "imgaug", "--run", "e2e", "--runs-dir", str(runs), "--workers", "0",
        "--batch-size", "5",
    ]  # fmt: skip
    if (ws["root"] / "mvh").is_dir():
        args += ["--ood", f"mvh={ws['root'] / 'mvh'}"]
    res = _invoke(args)
    store = RunStore(runs, "e2e")
    recs = _by_cell(store)
    expect = {
        ("clean", None, "imagenet1k"), ("clean", None, "imagenet-r200"), ("gaussian_blur", 2, "imagenet1k"),
        ("invert", 1, "imagenet1k"), ("fliplr", 1, "imagenet1k"), ("imagenet-r", None, "imagenet-r200"),
    }  # fmt: skip
    if (ws["root"] / "mvh").is_dir():
        expect.add(("mvh-edges", None, "modelvshuman16"))
    got = {(r["set"], r["severity"], r["label_space"]) for r in recs.values()}
    assert got == expect
    # tree and on-the-fly imgaug make the same cell id: recorded once
    assert len(store.records()) == len(expect)
    for r in recs.values():
        assert set(r) == RECORD_KEYS, set(r) ^ RECORD_KEYS
        assert Record.from_json(r, where="test").to_json() == r
        assert r["model_kind"] == "classifier" and r["command"].startswith("robusteval score --models")
        assert r["forward_batch"] >= 1 and r["decode_batch"] >= 1
        preds = Preds.load(store.dir / r["preds"])
        assert len(preds.ids) == r["n"] and preds.top5.shape == (r["n"], 5)
        assert preds.top5.dtype == np.int16 and preds.top5_prob.dtype == np.float16
        hit = (preds.top5[:, 0] == preds.labels)[preds.labels >= 0]
        assert r["top1"] == pytest.approx(hit.mean())
        assert r["weights"]["sha256"] and r["versions"]["torch"] and r["device"] == "cpu"
        assert r["amp"] == "off" and r["forward_batch"] == r["decode_batch"] == 5 and r["skips"] == []
    clean = recs[f"{MODEL}__clean__s-__imagenet1k"]
    assert clean["n"] == ws["n"] and clean["suite"] == "clean" and "center crop 224" in clean["preprocess"]
    assert clean["data_config"]["interpolation"] == "bilinear" and clean["top1"] >= 0.5  # real weights
    sub = recs[f"{MODEL}__clean__s-__imagenet-r200"]
    assert sub["subset"] == "clean@imagenet-r200" and sub["n"] == ws["n_r"]
    assert recs[f"{MODEL}__imagenet-r__s-__imagenet-r200"]["n"] == ws["n_r"]
    blur = recs[f"{MODEL}__gaussian_blur__s2__imagenet1k"]
    assert blur["suite"] == "study21" and blur["spec_hash"] and blur["params"]
    assert "no second crop" in blur["preprocess"]
    assert f"{MODEL}" in res.output and "done" in res.output

    # on the fly with imgaug gives the very pixels of the tree, so the very predictions (the sets
    # typed space separated, as users type lists)
    fly = RunStore(runs, "fly")
    _invoke(["--models", MODEL, "--data", str(ws["data"]), "--transforms", "gaussian_blur", "invert",
             "--severity", "2", "--transform-impl", "imgaug", "--run", "fly", "--runs-dir", str(runs),
             "--workers", "1"])  # fmt: skip
    fly_recs = _by_cell(fly)
    assert {r["set"] for r in fly_recs.values()} == {"clean", "gaussian_blur", "invert"}
    for cell, r in fly_recs.items():
        if r["set"] == "clean":
            continue
        a, b = Preds.load(fly.dir / r["preds"]), Preds.load(store.dir / recs[cell]["preds"])
        ia, ib = np.argsort(a.ids), np.argsort(b.ids)
        assert a.ids[ia].tolist() == b.ids[ib].tolist() and (a.top5[ia] == b.top5[ib]).all()
        assert (a.top5_prob[ia] == b.top5_prob[ib]).all() and r["top1"] == recs[cell]["top1"]
        assert "on the fly" in r["preprocess"] and r["spec_hash"] == recs[cell]["spec_hash"]

    # a second call finds everything finished and writes nothing
    before = store.records_path.read_bytes()
    res = _invoke(args)
    assert "already finished" in res.output and store.records_path.read_bytes() == before


def test_score_bad_images_are_skipped_and_recorded(val1300, tmp_path):
    _need_weights()
    from tests.badcorpus import CASES, build_bad_corpus

    good = [val1300 / r["path"] for r in val_rows(val1300)[:2]]
    root = build_bad_corpus(tmp_path / "bad", good=good)
    res = _invoke(["--models", MODEL, "--data", str(root), "--run", "bad", "--runs-dir", str(tmp_path / "runs"),
                   "--workers", "1"])  # fmt: skip
    assert "Traceback" not in res.output
    (rec,) = RunStore(tmp_path / "runs", "bad").records()
    # decode failures carry the file's full path; labels-file problems the row's relative path
    reasons = {Path(s["path"]).name: s["reason"] for s in rec["skips"] if Path(s["path"]).is_absolute()}
    rows = {s["path"]: s["reason"] for s in rec["skips"] if not Path(s["path"]).is_absolute()}
    n_good = 2
    for name, fragment in CASES.items():
        if fragment is None:
            n_good += 1
            assert name not in reasons
        elif name == "unreadable.jpg" and os.access(root / "images" / name, os.R_OK):
            n_good += 1  # root reads mode-000 files
        else:
            assert fragment in reasons[name], (name, reasons.get(name))
            line = [ln for ln in res.output.splitlines() if name in ln and "skip" in ln]
            assert line, f"no one-line message for {name}"
    assert "missing file" in rows["images/missing.jpg"] and "does not match" in rows["images/good_rgb.jpg"]
    assert rec["n"] == n_good


def test_resume_after_sigkill_gives_identical_records(workspace, tmp_path):
    from robusteval.score.engine import ScoreRequest, run_score

    ws = workspace
    common = dict(models=[MODEL], data=ws["data"], sets_dir=ws["tree"], batch_size=2, workers=0)
    run_score(ScoreRequest(run="ref", runs_dir=tmp_path, **common))
    ref = RunStore(tmp_path, "ref")
    total = len(ref.records())
    cmd = [sys.executable, "-m", "robusteval", "score", "--models", MODEL, "--data", str(ws["data"]),
           "--sets", str(ws["tree"]), "--run", "kill", "--runs-dir", str(tmp_path), "--batch-size", "2",
           "--workers", "0"]  # fmt: skip
    killed = RunStore(tmp_path, "kill")
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while not killed.records() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    done_at_kill = len(killed.records())
    assert 1 <= done_at_kill < total, "the kill should land mid-run"
    run_score(ScoreRequest(run="kill", runs_dir=tmp_path, **common))
    a, b = _by_cell(ref), _by_cell(killed)
    assert len(killed.records()) == total and a.keys() == b.keys()
    for cell in a:
        ra = {k: v for k, v in a[cell].items() if k not in PER_RUN_FIELDS}
        rb = {k: v for k, v in b[cell].items() if k not in PER_RUN_FIELDS}
        assert ra == rb
        pa, pb = Preds.load(ref.dir / a[cell]["preds"]), Preds.load(killed.dir / b[cell]["preds"])
        for field in ("ids", "labels", "top5", "top5_prob"):
            assert (getattr(pa, field) == getattr(pb, field)).all()


def test_onthefly_torch_hook_matches_the_tree(workspace, tmp_path, monkeypatch):
    """Registered batched torch ops run on decoded clean crops (decoded once, then cached)."""
    import torch

    from robusteval import seeding
    from robusteval.corrupt import batched
    from robusteval.registry import Registry
    from robusteval.score import loader
    from robusteval.score.engine import ScoreRequest, run_score

    ws = workspace
    ops = Registry("batched torch op")
    monkeypatch.setattr(batched, "BATCH_OPS", ops)
    monkeypatch.setattr(batched, "BATCH_OP_MODULES", [])
    seen = []

    @ops.register("iaa_invert")
    def invert(images, *, seeds, p):
        assert images.dtype == torch.uint8 and images.shape[1:] == (3, 224, 224) and p == 1.0
        assert seeds.dtype == torch.int64 and len(seeds) == len(images)
        seen.append(seeds.tolist())
        return 255 - images

    @ops.register("iaa_fliplr")
    def fliplr(images, *, seeds, p):
        return images.flip(-1)

    decoded = []
    real_load = loader.load_rgb
    monkeypatch.setattr(loader, "load_rgb", lambda path: decoded.append(path) or real_load(path))
    common = dict(models=[MODEL], runs_dir=tmp_path, workers=0, batch_size=5)
    run_score(
        ScoreRequest(
            run="torch", data=ws["data"], transforms=["invert", "fliplr"], transform_impl="torch", **common
        )
    )
    assert len(decoded) == 2 * ws["n"]  # clean pass + one pass filling the crop cache for both sets
    from robusteval.datasets.layouts import read_dataset

    ids = [s.id for s in read_dataset(ws["data"]).samples]
    # the corrupt stage's per-image seeds, in item order
    assert sum(seen, []) == seeding.image_seeds(seed=0, set_name="invert", severity=1, ids=ids).tolist()
    run_score(ScoreRequest(run="tree", sets_dir=ws["tree"], **common))
    fly, tree = _by_cell(RunStore(tmp_path, "torch")), _by_cell(RunStore(tmp_path, "tree"))
    for name in ("invert", "fliplr"):
        cell = f"{MODEL}__{name}__s1__imagenet1k"
        assert "batched torch op" in fly[cell]["preprocess"]
        a = Preds.load(tmp_path / "torch" / fly[cell]["preds"])
        b = Preds.load(tmp_path / "tree" / tree[cell]["preds"])
        ia, ib = np.argsort(a.ids), np.argsort(b.ids)
        assert a.ids[ia].tolist() == b.ids[ib].tolist()
        assert (a.top5[ia] == b.top5[ib]).all() and fly[cell]["top1"] == tree[cell]["top1"]
