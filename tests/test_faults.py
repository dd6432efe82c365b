"""Bad inputs and faults (issue 21): each is a one-line error, a recorded skip or a warning.

Synthetic images keep this tier fast; the SIGKILL/orphan/concurrency harness is in
tests/test_fault_harness.py (slow tier).
"""

from __future__ import annotations

import errno
import json
import os
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from robusteval.cli import app
from robusteval.corrupt.stage import run_corrupt
from robusteval.corrupt.trees import tree_sets
from robusteval.datasets.decode import MAX_ASPECT, BadImage, load_rgb
from robusteval.datasets.imagenet import wnids
from robusteval.datasets.layouts import read_dataset
from robusteval.errors import DataWarning, UserError
from robusteval.jsonl import append_records, atomic_write_bytes, dir_lock, read_records
from robusteval.runs import Preds, RunStore
from tests.helpers import make_record

runner = CliRunner()
WNID = wnids()


def _img(path: Path, seed: int, size: tuple[int, int] = (40, 48)) -> Path:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(path)
    return path


def _csv_data(root: Path, n: int = 4, *, header: str = "path,class_index", encoding: str = "utf-8") -> Path:
    rows = [header]
    for i in range(n):
        _img(root / f"im{i}.png", i)
        rows.append(f"im{i}.png,{i % 3}")
    (root / "labels.csv").write_bytes(("\n".join(rows) + "\n").encode(encoding))
    return root


def _one_line(res) -> str:
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output
    text = " ".join(res.output.split())
    assert text.startswith("error:")
    return text


# --- labels.csv --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "encoding"),
    [("path,class_index", "utf-8-sig"), ("path, class_index", "utf-8"), (" path ,class_index ", "utf-8")],
)
def test_labels_csv_bom_and_header_spaces(tmp_path, header, encoding):
    ds = read_dataset(_csv_data(tmp_path, header=header, encoding=encoding))
    assert [s.label for s in ds.samples] == [0, 1, 2, 0] and not ds.skips


def test_labels_csv_latin1(tmp_path):
    _img(tmp_path / "café.png", 0)
    (tmp_path / "labels.csv").write_bytes("path,class_index\ncafé.png,7\n".encode("latin-1"))
    ds = read_dataset(tmp_path)
    assert [(s.path.name, s.label) for s in ds.samples] == [("café.png", 7)]


def test_labels_csv_missing_columns_are_named(tmp_path):
    _csv_data(tmp_path, header="file,class_index")
    with pytest.raises(UserError, match=r"no 'path' column \(header: file, class_index\)"):
        read_dataset(tmp_path)
    (tmp_path / "labels.csv").write_text("path,label\nim0.png,1\n")
    with pytest.raises(UserError, match=r"no 'class_index' .*header: path, label"):
        read_dataset(tmp_path)


def test_duplicate_ids(tmp_path):
    _csv_data(tmp_path, 2)
    with (tmp_path / "labels.csv").open("a") as fh:
        fh.write("im0.png,0\n")
    ds = read_dataset(tmp_path)
    assert [s.id for s in ds.samples] == ["im0", "im1"]
    assert [k.reason for k in ds.skips] == ["listed twice with the same label; counted once"]
    with (tmp_path / "labels.csv").open("a") as fh:
        fh.write("im1.png,5\n")
    with pytest.raises(UserError, match=r"im1 is listed twice with different labels \(1 and 5\)"):
        read_dataset(tmp_path)


def test_non_utf8_file_name_is_skipped_and_corrupt_runs(tmp_path):
    data = tmp_path / "data"
    _img(data / WNID[3] / "ok.png", 0)
    bad = os.fsencode(data / WNID[3]) + b"/caf\xe9.png"
    with open(bad, "wb") as fh:
        fh.write((data / WNID[3] / "ok.png").read_bytes())
    ds = read_dataset(data)
    assert [s.id for s in ds.samples] == [f"{WNID[3]}/ok"]
    assert ds.skips[0].reason.startswith("file name is not valid UTF-8") and "\\xe9" in ds.skips[0].path
    for _ in range(2):  # the second run resumes on the same folder
        summary = run_corrupt(data=data, out=tmp_path / "out", transforms=["fliplr"], workers=1)
        assert summary.written + summary.reused == 1 and len(summary.skips) == 1
    assert [
        r["reason"][:9] for r in read_records(tmp_path / "out/manifest.jsonl") if r["kind"] == "skip"
    ] == ["file name"]


# --- odd images --------------------------------------------------------------------------------


def test_float_tiff_is_scaled_not_black(tmp_path):
    ramp = np.linspace(0, 1, 32 * 32, dtype=np.float32).reshape(32, 32)
    Image.fromarray(ramp, mode="F").save(tmp_path / "f.tif")
    got = load_rgb(tmp_path / "f.tif")
    assert got.dtype == np.uint8 and got.shape == (32, 32, 3)
    assert got.max() == 255 and abs(got.mean() - 127.5) < 1
    np.testing.assert_array_equal(got[..., 0], np.round(ramp * 255).astype(np.uint8))


def test_tiny_and_extreme_aspect_images_are_refused_before_decoding(tmp_path):
    Image.new("RGB", (1, 1)).save(tmp_path / "one.png")
    with pytest.raises(BadImage, match=r"too small \(1x1 px"):
        load_rgb(tmp_path / "one.png")
    Image.new("RGB", (12000, 8)).save(tmp_path / "long.png")  # a few hundred bytes
    tracemalloc.start()
    with pytest.raises(BadImage, match=rf"extreme aspect ratio \(12000x8 px, over {MAX_ASPECT}:1\)"):
        load_rgb(tmp_path / "long.png")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 5 * 2**20  # refused from the header: no pixel buffer, let alone a 256-px resize


def test_odd_images_are_recorded_skips_in_corrupt(tmp_path):
    data = _csv_data(tmp_path / "data", 2)
    Image.new("RGB", (1, 1)).save(data / "one.png")
    Image.new("RGB", (12000, 9)).save(data / "long.png")
    with (data / "labels.csv").open("a") as fh:
        fh.write("one.png,1\nlong.png,2\n")
    summary = run_corrupt(data=data, out=tmp_path / "out", transforms=["fliplr"], workers=1)
    assert summary.written == 2
    assert sorted(s["reason"].split(" (")[0] for s in summary.skips) == ["extreme aspect ratio", "too small"]


# --- JSONL -------------------------------------------------------------------------------------

GARBAGE = [
    b"\x00" * 64 + b"\n",
    bytes(b for b in range(256) if b != 10) + b"\n",
    b"not json at all\n",
    b"[1, 2]\n",
]


@pytest.mark.parametrize("junk", GARBAGE, ids=["nul", "binary", "text", "array"])
def test_garbage_jsonl_lines_are_skipped_with_a_warning(tmp_path, junk):
    path = tmp_path / "r.jsonl"
    append_records(path, [{"a": 1}])
    with path.open("ab") as fh:
        fh.write(junk)
    append_records(path, [{"a": 2}])
    with pytest.warns(DataWarning, match=r"skipped 1 line\(s\) that are not JSON records \(line 2\)"):
        assert [r["a"] for r in read_records(path)] == [1, 2]


def test_nul_padded_record_is_kept(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_bytes(b'\x00\x00\x00{"a":1}\n')
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert list(read_records(path)) == [{"a": 1}]


def test_append_after_a_torn_line_starts_a_fresh_line(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_bytes(b'{"kind":"output","pa')  # killed mid-write
    append_records(path, [{"kind": "skip"}])
    with pytest.warns(DataWarning):
        assert list(read_records(path)) == [{"kind": "skip"}]


def test_garbage_in_manifest_never_breaks_resume_or_score(tmp_path):
    data = _csv_data(tmp_path / "data", 3)
    out = tmp_path / "out"
    run_corrupt(data=data, out=out, transforms=["fliplr"], workers=1)
    with (out / "manifest.jsonl").open("ab") as fh:
        fh.write(
            b"\x00" * 100 + b"\n" + bytes(b for b in range(200) if b != 10) + b"\n" + b'{"kind":"output"}\n'
        )
    with pytest.warns(DataWarning):
        again = run_corrupt(data=data, out=out, transforms=["fliplr"], workers=1)
        assert again.reused == 3 and again.written == 0
        (s,) = tree_sets(out)
    assert len(s.items) == 3


def test_garbage_in_records_never_breaks_report(tmp_path):
    from robusteval.report.records import load_run

    run = tmp_path / "r"
    run.mkdir()
    rec = make_record(cell="c", n=2).to_json()
    (run / "records.jsonl").write_bytes(
        b"\x00" * 50 + b"\n" + json.dumps(rec).encode() + b"\n" + bytes(range(128, 256)) + b"\n"
    )
    with pytest.warns(DataWarning, match="skipped 2 line"):
        assert len(load_run(run_dir=run, sets={}).records) == 1


# --- corrupt: lock, resume keyed by what was written, samples ----------------------------------


def test_second_corrupt_on_one_out_is_refused(tmp_path):
    data = _csv_data(tmp_path / "data", 2)
    out = tmp_path / "out"
    out.mkdir()
    with (
        dir_lock(out, busy="held", hint="by the test"),
        pytest.raises(UserError, match="is being written by another `robusteval corrupt`"),
    ):
        run_corrupt(data=data, out=out, transforms=["fliplr"], workers=1)
    assert not (out / "manifest.jsonl").exists()
    assert run_corrupt(data=data, out=out, transforms=["fliplr"], workers=1).written == 2


def test_other_seed_or_spec_rewrites_instead_of_reusing(tmp_path, monkeypatch):
    data = _csv_data(tmp_path / "data", 3)
    out = tmp_path / "out"
    kw = dict(data=data, out=out, transforms=["additive_gaussian_noise"], severities=[3], workers=1)
    a = run_corrupt(seed=0, **kw)
    png = sorted(out.rglob("*.png"))[0]
    first = png.read_bytes()
    b = run_corrupt(seed=1, **kw)
    assert (a.written, b.written, b.reused, b.replaced) == (3, 3, 0, 3)
    assert png.read_bytes() != first
    assert run_corrupt(seed=1, **kw).reused == 3  # same seed again: resumed
    from robusteval.corrupt.spec import SetSpec

    monkeypatch.setattr(SetSpec, "spec_hash", lambda self, severity: "changed-spec")
    c = run_corrupt(seed=1, **kw)
    assert (c.written, c.replaced) == (3, 3)
    recs = {r["path"]: r for r in read_records(out / "manifest.jsonl") if r["kind"] == "output"}
    assert {r["spec_hash"] for r in recs.values()} == {"changed-spec"}


def test_two_per_class_samples_in_one_out_are_refused(tmp_path):
    data = tmp_path / "data"
    rows = ["path,class_index"]
    for i in range(8):
        _img(data / f"im{i}.png", i)
        rows.append(f"im{i}.png,{i % 2}")
    (data / "labels.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "out"
    run_corrupt(data=data, out=out, transforms=["fliplr"], per_class=1, seed=0, workers=1)
    seeds = [s for s in range(1, 20) if s != 0]
    with pytest.raises(UserError, match="holds outputs of a different sample"):
        for s in seeds:  # some seed picks another image per class
            run_corrupt(data=data, out=out, transforms=["fliplr"], per_class=1, seed=s, workers=1)
    assert len(tree_sets(out)[0].items) == 2


def test_old_tree_with_two_samples_is_refused_by_score(tmp_path):
    out = tmp_path / "out"
    append_records(
        out / "manifest.jsonl", [{"kind": "run", "sample_sha256": "a"}, {"kind": "run", "sample_sha256": "b"}]
    )
    with pytest.raises(UserError, match="2 different samples"):
        tree_sets(out)


def _boom_on_im2(sample, targets, out, seed):
    from robusteval.corrupt import stage

    if sample.id == "im2":
        raise RuntimeError("injected worker failure")
    return stage._real_process_image(sample, targets, out, seed)


def test_worker_failure_keeps_every_finished_output(tmp_path, monkeypatch):
    from robusteval.corrupt import stage

    data = _csv_data(tmp_path / "data", 6)
    out = tmp_path / "out"
    monkeypatch.setattr(stage, "_real_process_image", stage._process_image, raising=False)
    monkeypatch.setattr(stage, "_process_image", _boom_on_im2)
    with pytest.raises(
        UserError, match=r"1 image\(s\) failed in the workers \(first: RuntimeError: injected"
    ):
        run_corrupt(data=data, out=out, transforms=["fliplr"], workers=2)
    recorded = {r["path"] for r in read_records(out / "manifest.jsonl") if r["kind"] == "output"}
    on_disk = {p.relative_to(out).as_posix() for p in out.rglob("*.png")}
    assert recorded == on_disk and len(on_disk) >= 2 and not list(out.rglob("*.tmp"))
    monkeypatch.undo()
    again = run_corrupt(data=data, out=out, transforms=["fliplr"], workers=2)
    assert again.reused == len(recorded) and again.written == 6 - len(recorded)


# --- full disk ---------------------------------------------------------------------------------


def _enospc_after(monkeypatch, module, n_ok: int) -> None:
    real = os.write
    calls = [0]

    def write(fd, data):
        calls[0] += 1
        if calls[0] > n_ok:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, data)

    monkeypatch.setattr(module.os, "write", write)


def test_enospc_in_corrupt_is_one_line_and_leaves_no_temp(tmp_path, monkeypatch):
    import robusteval.jsonl

    data = _csv_data(tmp_path / "data", 6)
    out = tmp_path / "out"
    _enospc_after(monkeypatch, robusteval.jsonl, 7)  # png, manifest, png, manifest, ... then full
    with pytest.raises(UserError, match="disk full writing"):
        run_corrupt(data=data, out=out, transforms=["fliplr"], workers=1)
    monkeypatch.undo()
    assert not list(out.rglob("*.tmp"))
    recs = [r for r in read_records(out / "manifest.jsonl") if r["kind"] == "output"]
    assert len(recs) >= 2 and all((out / r["path"]).is_file() for r in recs)
    again = run_corrupt(data=data, out=out, transforms=["fliplr"], workers=1)
    assert again.reused == len(recs) and again.reused + again.written == 6


def test_enospc_in_score_store_cleans_its_temp(tmp_path, monkeypatch):
    import robusteval.jsonl

    store = RunStore(tmp_path, "r")
    preds = Preds(np.array(["a"]), np.array([1]), np.zeros((1, 5), np.int16), np.zeros((1, 5), np.float16))
    _enospc_after(monkeypatch, robusteval.jsonl, 0)
    with pytest.raises(UserError, match="disk full writing .*c1.npz"):
        store.append(make_record(cell="c1"), preds)
    monkeypatch.undo()
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]
    assert store.finished() == {}


def test_atomic_write_keeps_old_content_on_failure(tmp_path, monkeypatch):
    import robusteval.jsonl

    target = tmp_path / "x.bin"
    atomic_write_bytes(target, b"old")
    _enospc_after(monkeypatch, robusteval.jsonl, 0)
    with pytest.raises(UserError):
        atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["x.bin"]


# --- CLI one-liners ----------------------------------------------------------------------------


def test_out_at_a_file_or_unwritable_place(tmp_path):
    data = _csv_data(tmp_path / "data", 1)
    afile = tmp_path / "afile"
    afile.write_text("x")
    for out, want in ((afile, "is a file, not a folder"), (Path("/proc/robusteval-x/y"), "cannot create")):
        text = _one_line(
            runner.invoke(app, ["corrupt", "-t", "fliplr", "--data", str(data), "--out", str(out)])
        )
        assert want in text
    text = _one_line(
        runner.invoke(
            app, ["score", "-m", "mobilenet_v2", "--run", "r", "--data", str(data), "--runs-dir", str(afile)]
        )
    )
    assert "--runs-dir" in text and "is a file" in text


def test_report_out_at_a_file(tmp_path):
    run = tmp_path / "runs" / "r"
    run.mkdir(parents=True)
    (run / "records.jsonl").write_text("")
    afile = tmp_path / "afile"
    afile.write_text("x")
    text = _one_line(
        runner.invoke(
            app, ["report", "--run", "r", "--runs-dir", str(tmp_path / "runs"), "--out", str(afile)]
        )
    )
    assert "is a file, not a folder" in text


def test_long_run_name(tmp_path):
    data = _csv_data(tmp_path / "data", 1)
    text = _one_line(runner.invoke(app, ["score", "-m", "mobilenet_v2", "--run", "r" * 300, "--data", str(data),
                                         "--runs-dir", str(tmp_path)]))  # fmt: skip
    assert "folder names hold at most 255 bytes" in text


def test_trusted_pickle_with_unimportable_class(tmp_path):
    from robusteval.models.checkpoint import _read_torch

    ckpt = tmp_path / "bad.pth"
    # protocol-2 pickle whose GLOBAL names a module that does not exist
    ckpt.write_bytes(b"\x80\x02cno_such_module_xyz\nThing\nq\x00)\x81q\x01.")
    with pytest.raises(UserError, match="class cannot be imported"):
        _read_torch(ckpt, trust=True)


def test_errors_and_warnings_keep_markup_like_text(capsys):
    import typer

    from robusteval.cli.common import _one_line_warning, user_errors

    with pytest.raises(typer.Exit), user_errors():
        raise UserError("mvh-edges [modelvshuman16]: bad [bold]x[/]")
    _one_line_warning(DataWarning("skipped [red]1[/] line"), DataWarning, "f.py", 1)
    err = " ".join(capsys.readouterr().err.split())
    assert "error: mvh-edges [modelvshuman16]: bad [bold]x[/]" in err
    assert "warning: skipped [red]1[/] line" in err


def test_report_help_keeps_its_default():
    res = runner.invoke(app, ["report", "--help"])
    assert "[default:RUNS_DIR/NAME/report]" in "".join(res.output.replace("│", " ").split())


def test_plain_progress_lines():
    from robusteval.cli.common import plain_progress_line

    line = plain_progress_line("score r", 640, 1280, unit="img", seconds=20.0)
    assert line == "score r: 640/1280 img (50%), 32.0 img/s, eta 20 s"


def test_demo_sh_resolves_relative_paths_from_the_callers_folder(tmp_path):
    import subprocess

    repo = Path(__file__).resolve().parents[1]
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "python3").write_text('#!/usr/bin/env bash\necho "$@" >> "$LOG"\n')
    (fake / "python3").chmod(0o755)
    caller = tmp_path / "here"
    caller.mkdir()
    env = {**os.environ, "PATH": f"{fake}:{os.environ['PATH']}", "LOG": str(tmp_path / "log")}
    subprocess.run(["bash", str(repo / "scripts/demo.sh"), "--data", "val", "--out=res", "--severity", "2"],
                   cwd=caller, env=env, check=True)  # fmt: skip
    last = (tmp_path / "log").read_text().splitlines()[-1]
    assert last == f"-m robusteval demo --data {caller}/val --out={caller}/res --severity 2"


@pytest.mark.slow  # loads mobilenet_v2 and scores three times
def test_score_cells_are_keyed_by_the_data_they_measured(tmp_path):
    from robusteval.score.engine import ScoreRequest, run_score

    data = _csv_data(tmp_path / "data", 4)
    small = tmp_path / "small"
    small.mkdir()
    (small / "labels.csv").write_text(
        "path,class_index\n" + "".join(f"{data}/im{i}.png,{i % 3}\n" for i in (0, 1))
    )
    seen: list[tuple[str, bool]] = []
    store = RunStore(tmp_path / "runs", "r")

    def on_cell(rec):  # called as each cell is written, not at the end
        seen.append((rec.cell, rec.cell in store.finished()))

    req = dict(models=["mobilenet_v2"], run="r", runs_dir=tmp_path / "runs", batch_size=4, workers=0)
    try:
        first = run_score(ScoreRequest(data=data, **req), on_cell=on_cell)
    except UserError as err:
        pytest.skip(f"mobilenet_v2 weights not available: {err}")
    assert [r.n for r in first.written] == [4] and seen == [(first.written[0].cell, True)]
    notes: list[str] = []
    again = run_score(ScoreRequest(data=data, **req), on_message=notes.append)
    assert again.reused == 1 and not again.written
    other = run_score(ScoreRequest(data=small, **req), on_message=notes.append)
    assert [r.n for r in other.written] == [2] and other.reused == 0
    assert any("measured other images" in n and "n=4 then, 2 images now" in n for n in notes)
    assert store.finished()[first.written[0].cell]["n"] == 2
