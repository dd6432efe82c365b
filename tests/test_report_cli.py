"""`robusteval report` through Typer's CliRunner: gates pass and fail, errors, GITHUB_STEP_SUMMARY."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from robusteval.cli import app

RUNS = Path(__file__).parent / "golden" / "runs"
runner = CliRunner()


@pytest.fixture(autouse=True)
def _no_ci_summary(monkeypatch):
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)


def _report(tmp_path: Path, *args: str):
    return runner.invoke(
        app, ["report", "--run", "golden", "--runs-dir", str(RUNS), "--out", str(tmp_path / "out"), *args]
    )


def test_gates_pass_exit_zero_and_step_summary_is_appended(tmp_path, monkeypatch):
    summary = tmp_path / "step_summary.md"
    summary.write_text("previous step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    res = _report(tmp_path, "--fail-under", "top1=0.4", "--fail-under", "alpha_net:mCA=70%,rr=0.8")
    assert res.exit_code == 0, res.output
    assert "report:" in res.stdout and "3 models" in res.stdout
    assert f"summary appended to {summary}" in res.stdout
    text = (tmp_path / "out" / "report.md").read_text()
    assert "| `--fail-under alpha_net:mCA=70%` | alpha_net | 0.7417 | 0.7000 | pass |" in text
    assert "**FAIL**" not in text

    appended = summary.read_text()
    assert appended.startswith("previous step\n## robusteval: run `golden`\n")  # appended, not replaced
    assert "| alpha_net | classifier | 86.67 ±17.1 | 93.33 ±14.3 |" in appended
    assert "| `--fail-under top1=0.4` | clip_tiny | 0.4667 | 0.4000 | pass |" in appended
    assert "## Provenance" not in appended  # the summary, not the whole report
    assert appended.endswith("\n\n")  # a blank line keeps the next step's markdown apart


def test_failed_gate_exits_one_naming_the_gate(tmp_path):
    res = _report(tmp_path, "--fail-under", "alpha_net:mCA=0.8")
    assert res.exit_code == 1
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert lines == ["error: gate failed: --fail-under alpha_net:mCA=0.8 (alpha_net mCA 0.7417 < 0.8000)"]
    # the report is still written, with the failure in it
    assert "**FAIL**" in (tmp_path / "out" / "report.md").read_text()


def test_gates_on_every_model_on_a_set_and_on_a_missing_value(tmp_path):
    res = _report(tmp_path, "--fail-under", "perspective=0.5,jpeg_compression=0.1")
    assert res.exit_code == 1
    msg = res.stderr.strip()
    assert "\n" not in msg
    # perspective: alpha 61.25 and beta 51.25 pass, clip_tiny 31.25 fails; clip_tiny never scored
    # jpeg_compression, and a gate on a value the run lacks cannot pass silently
    assert msg == (
        "error: 2 gates failed: --fail-under perspective=0.5 (clip_tiny perspective 0.3125 < 0.5000); "
        "--fail-under jpeg_compression=0.1 (clip_tiny jpeg_compression is missing from this run)"
    )


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--fail-under", "accuracy=0.5"], "unknown metric 'accuracy'"),
        (["--fail-under", "top1=1.5"], "is not a fraction in 0..1"),
        (["--fail-under", "top1"], "expected METRIC=VALUE"),
        (["--fail-under", "ghost:top1=0.5"], "no model 'ghost' in this run"),
        (["--baseline", "ghost"], "--baseline ghost: no such model in run golden"),
    ],
)
def test_bad_arguments_give_one_line_and_exit_two(tmp_path, args, needle):
    res = _report(tmp_path, *args)
    assert res.exit_code == 2
    assert needle in res.stderr
    assert len([ln for ln in res.stderr.splitlines() if ln.strip()]) == 1
    assert "Traceback" not in res.output


def test_missing_run_says_what_to_type(tmp_path):
    res = runner.invoke(app, ["report", "--run", "nope", "--runs-dir", str(tmp_path)])
    assert res.exit_code == 2
    assert "no records at" in res.stderr and "robusteval score" in res.stderr
