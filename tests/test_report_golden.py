"""Golden test: the committed fixture run renders to exactly the committed report.md.

If a deliberate change alters the report, re-render and review the diff:
    python tests/golden/make_fixtures.py --expected && git diff tests/golden/expected/report.md
"""

from __future__ import annotations

import difflib
import importlib.util
import json
import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from robusteval.report import make_report
from robusteval.report.tables import Tables

GOLDEN = Path(__file__).parent / "golden"
RUN = GOLDEN / "runs" / "golden"
EXPECTED = GOLDEN / "expected" / "report.md"


def _fixtures():
    spec = importlib.util.spec_from_file_location("make_fixtures", GOLDEN / "make_fixtures.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


MF = _fixtures()
ARGS = {"baseline": "beta_net", "fail_under": ["top1=0.5"]}


def _render(run_dir: Path, out: Path):
    return make_report(run_dir=run_dir, out_dir=out, sets=MF.set_facts(RUN), **ARGS)


def _assert_same(got: str, want: str) -> None:
    if got != want:
        diff = "".join(
            list(difflib.unified_diff(want.splitlines(True), got.splitlines(True), "expected", "got"))[:80]
        )
        pytest.fail("report.md differs from tests/golden/expected/report.md:\n" + diff)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """One render of the committed fixture run (figures take most of the time: share it)."""
    out = tmp_path_factory.mktemp("report") / "out"
    return out, _render(RUN, out)


def test_report_matches_golden(rendered):
    _, result = rendered
    _assert_same(result.report.read_text(encoding="utf-8"), EXPECTED.read_text(encoding="utf-8"))
    # the fixture's clip model is below the gate, the two classifiers pass
    assert [(g.model, g.passed) for g in result.gates] == [
        ("alpha_net", True),
        ("beta_net", True),
        ("clip_tiny", False),
    ]
    assert result.failure == ("gate failed: --fail-under top1=0.5 (clip_tiny top1 0.4667 < 0.5000)")


def test_report_is_stable_under_record_order_and_rerun(tmp_path):
    """Shuffled record lines (minus the superseded duplicate) render to the same bytes."""
    run = tmp_path / "golden"
    (run / "preds").mkdir(parents=True)
    for f in (RUN / "preds").iterdir():
        (run / "preds" / f.name).write_bytes(f.read_bytes())
    lines = (RUN / "records.jsonl").read_text(encoding="utf-8").splitlines()
    lines = [ln for ln in lines if json.loads(ln)["top1"] != 0.0 or "crop__s1" not in ln]
    random.Random(7).shuffle(lines)
    (run / "records.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    _assert_same(
        _render(run, tmp_path / "a").report.read_text(encoding="utf-8"), EXPECTED.read_text(encoding="utf-8")
    )


def test_report_writes_every_table_and_every_referenced_figure(rendered):
    out, result = rendered
    names = [f.name for f in Tables.__dataclass_fields__.values()]
    for name in names:
        csv, js = out / "tables" / f"{name}.csv", out / "tables" / f"{name}.json"
        assert csv.is_file() and js.is_file(), name
        df = pd.read_csv(csv)
        assert len(json.loads(js.read_text())) == len(df), name
    text = result.report.read_text(encoding="utf-8")
    refs = [line.split("](")[1].rstrip(")") for line in text.splitlines() if line.startswith("![")]
    assert sorted(refs) == sorted(p.relative_to(out).as_posix() for p in result.figures)
    assert len(refs) == 6  # heatmap + severity curves for 2 corruption suites, curves for 2 parametric suites
    for ref in refs:
        assert (out / ref).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_golden_numbers_follow_from_the_records(rendered):
    """Spot-check the tables against the fixture records directly (not through the report code)."""
    records = [json.loads(ln) for ln in (RUN / "records.jsonl").read_text().splitlines()]
    final = {r["cell"]: r for r in records}  # last line per cell wins
    out, result = rendered
    summary = pd.read_csv(out / "tables" / "summary.csv").set_index("model")

    def acc(model, name):
        vals = [r["top1"] for r in final.values() if r["model"] == model and r["set"] == name]
        return sum(vals) / len(vals)

    study = ["crop", "perspective", "fliplr", "jpeg_compression"]
    mca = sum(acc("alpha_net", s) for s in study) / 4
    assert summary.loc["alpha_net", "mCA"] == pytest.approx(mca)
    clean = final["alpha_net__clean__clean"]["top1"]
    assert summary.loc["alpha_net", "relative_robustness"] == pytest.approx(mca / clean)
    assert summary.loc["alpha_net", "worst_set"] == "perspective"
    # the resumed cell: the later line (not the stale top1=0.0) is used
    assert acc("alpha_net", "crop") > 0.8
    assert result.report.is_file()


def test_fixture_script_is_deterministic(tmp_path):
    MF.build(tmp_path / "golden")
    assert (tmp_path / "golden" / "records.jsonl").read_bytes() == (RUN / "records.jsonl").read_bytes()
    committed = sorted(p.name for p in (RUN / "preds").iterdir())
    assert sorted(p.name for p in (tmp_path / "golden" / "preds").iterdir()) == committed
    for name in committed[::7]:
        with np.load(RUN / "preds" / name) as a, np.load(tmp_path / "golden" / "preds" / name) as b:
            assert sorted(a.files) == sorted(b.files)
            for key in a.files:
                np.testing.assert_array_equal(a[key], b[key])
