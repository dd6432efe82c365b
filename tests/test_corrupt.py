"""The corrupt stage end to end: tree, manifest, determinism, resume after SIGKILL, bad inputs."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from PIL import Image
from typer.testing import CliRunner

from robusteval.cli import app
from robusteval.corrupt.spec import suites
from robusteval.corrupt.stage import run_corrupt
from robusteval.datasets.layouts import read_dataset
from tests.badcorpus import build_bad_corpus

runner = CliRunner()


def _subset(val1300: Path, dst: Path, n: int) -> Path:
    ds = read_dataset(val1300)
    dst.mkdir(parents=True, exist_ok=True)
    rows = ["path,class_index,wnid"] + [f"{s.path},{s.label},{s.wnid}" for s in ds.samples[:n]]
    (dst / "labels.csv").write_text("\n".join(rows) + "\n")
    return dst


def _tree(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _manifest(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


def test_cli_end_to_end_on_20_real_images(val1300, tmp_path):
    data = _subset(val1300, tmp_path / "data", 20)
    out = tmp_path / "sets"
    args = ["corrupt", "-t", "perspective", "-t", "fliplr", "-s", "3", "--data", str(data), "--out", str(out),
            "--workers", "2"]  # fmt: skip
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    pngs = sorted(out.rglob("*.png"))
    assert len(pngs) == 40
    assert {p.relative_to(out).parts[:2] for p in pngs} == {("perspective", "3"), ("fliplr", "1")}
    for p in pngs[:5]:
        with Image.open(p) as im:
            assert im.size == (224, 224) and im.mode == "RGB"
    recs = _manifest(out)
    outputs = [r for r in recs if r["kind"] == "output"]
    assert len(outputs) == 40 and recs[0]["kind"] == "run" and recs[0]["n_images"] == 20
    for r in outputs:
        assert hashlib.sha256((out / r["path"]).read_bytes()).hexdigest() == r["sha256"]
        assert r["path"].split("/")[2] == r["wnid"]
    before = _tree(out)
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert _tree(out) == before  # a second run writes nothing and changes no byte, manifest included


def test_same_bytes_whatever_the_worker_count(val1300, tmp_path):
    data = _subset(val1300, tmp_path / "data", 6)
    a = run_corrupt(data=data, out=tmp_path / "a", transforms=["additive_gaussian_noise", "dropout"],
                    severities=[2, 5], workers=1)  # fmt: skip
    b = run_corrupt(data=data, out=tmp_path / "b", transforms=["dropout", "additive_gaussian_noise"],
                    severities=[2, 5], workers=2)  # fmt: skip
    assert a.written == b.written == 24
    ta = {k: v for k, v in _tree(tmp_path / "a").items() if k.endswith(".png")}
    tb = {k: v for k, v in _tree(tmp_path / "b").items() if k.endswith(".png")}
    assert ta == tb


def test_sigkill_then_resume_gives_identical_bytes(val1300, tmp_path):
    data = _subset(val1300, tmp_path / "data", 16)
    sets = ["-t", "piecewise_affine", "-t", "perspective", "-s", "4"]
    ref = tmp_path / "ref"
    assert (
        runner.invoke(
            app, ["corrupt", *sets, "--data", str(data), "--out", str(ref), "--workers", "1"]
        ).exit_code
        == 0
    )
    out = tmp_path / "killed"
    cmd = [
        sys.executable,
        "-m",
        "robusteval",
        "corrupt",
        *sets,
        "--data",
        str(data),
        "--out",
        str(out),
        "--workers",
        "1",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:
        m = out / "manifest.jsonl"
        if m.exists() and m.read_text().count('"kind":"output"') >= 5:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = _manifest(out)
    assert 0 < sum(r["kind"] == "output" for r in partial) < 32, "kill landed outside the run"
    res = runner.invoke(app, ["corrupt", *sets, "--data", str(data), "--out", str(out), "--workers", "2"])
    assert res.exit_code == 0, res.output
    pngs = lambda root: {k: v for k, v in _tree(root).items() if k.endswith(".png")}  # noqa: E731
    assert pngs(out) == pngs(ref)
    assert not list(out.rglob("*.tmp"))
    done = {r["path"] for r in _manifest(out) if r["kind"] == "output"}
    assert done == set(pngs(ref))


def test_bad_inputs_are_skipped_and_recorded(val1300, tmp_path):
    good = [s.path for s in read_dataset(val1300).samples[:2]]
    root = build_bad_corpus(tmp_path / "bad", good=good)
    out = tmp_path / "out"
    res = runner.invoke(
        app, ["corrupt", "-t", "invert", "--data", str(root), "--out", str(out), "--workers", "1"]
    )
    assert res.exit_code == 0, res.output
    assert "Traceback" not in res.output
    skips = {Path(r["source"]).name: r["reason"] for r in _manifest(out) if r["kind"] == "skip"}
    for name in ("truncated.jpg", "empty.jpg", "not_image.jpg", "bomb.png", "missing.jpg"):
        assert name in skips, skips
    if not os.access(root / "images" / "unreadable.jpg", os.R_OK):
        assert "unreadable.jpg" in skips
    assert any("does not match" in r for r in skips.values())
    written = {Path(p).name for p in (str(x) for x in out.rglob("*.png"))}
    for name in ("good_rgb.png", "cmyk.png", "gray.png", "png16.png", "palette_alpha.png", "real_0.png"):
        assert name in written


def test_nothing_usable_exits_non_zero_with_one_line(tmp_path):
    root = tmp_path / "allbad"
    (root / "images").mkdir(parents=True)
    (root / "images" / "a.jpg").write_bytes(b"")
    (root / "labels.csv").write_text("path,class_index\nimages/a.jpg,3\n")
    res = runner.invoke(app, ["corrupt", "-t", "invert", "--data", str(root), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2
    assert "no usable image" in res.output and "Traceback" not in res.output


def test_unknown_transform_says_what_to_type(tmp_path):
    res = runner.invoke(app, ["corrupt", "-t", "perspectiv", "--data", str(tmp_path), "--out", str(tmp_path)])
    assert res.exit_code == 2 and "perspective" in res.output and "robusteval list transforms" in res.output


def test_per_class_sample_is_recorded(val1300, tmp_path):
    run_corrupt(data=val1300, out=tmp_path / "o", transforms=["fliplr"], per_class=1, seed=5, workers=2)
    header = _manifest(tmp_path / "o")[0]
    assert header["per_class"] == 1 and header["seed"] == 5 and header["n_images"] == 725
    assert len(header["sample"]) == 725


def test_parametric_suites_generate(val1300, tmp_path):
    data = _subset(val1300, tmp_path / "data", 2)
    for suite in ("frequency", "ood-parametric"):
        s = run_corrupt(data=data, out=tmp_path / suite, suite=suite, workers=2)
        n_levels = sum(len(v) for _, v in s.sets)
        assert s.written == 2 * n_levels and not s.skips


def test_list_transforms_shows_21_with_5_levels():
    study = suites()["study21"]
    assert len(study) == 21
    res = runner.invoke(app, ["list", "transforms", "--suite", "study21"], env={"COLUMNS": "250"})
    assert res.exit_code == 0
    for name in study:
        assert name in res.output
    res = runner.invoke(app, ["list", "suites"])
    assert "frequency" in res.output and "ood-parametric" in res.output


def test_suite_option_is_repeatable():
    from robusteval.corrupt.spec import resolve_sets

    both = [
        s.name
        for s, _ in resolve_sets(transforms=None, suite=["frequency", "ood-parametric"], severities=None)
    ]
    assert set(suites()["frequency"]) | set(suites()["ood-parametric"]) == set(both)
    one = [s.name for s, _ in resolve_sets(transforms=["invert"], suite="frequency", severities=None)]
    assert one[0] == "invert" and set(one[1:]) == set(suites()["frequency"])
