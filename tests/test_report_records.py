"""Reading records (append-only, resumable) and parsing gates: the report's inputs."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from robusteval.errors import DataWarning, UserError
from robusteval.report.gates import evaluate_gates, failure_message, parse_gates
from robusteval.report.records import SetInfo, load_run, parse_records, spec_info
from robusteval.report.tables import build_tables
from robusteval.report.tables_accuracy import fmt_level
from tests.helpers import make_record


def _rec(**kw):
    """One line as the engine writes it: a typed Record (fixtures cannot invent fields)."""
    return json.dumps(make_record(**kw).to_json()) + "\n"


def test_last_line_of_a_cell_wins_and_order_is_sorted():
    lines = [
        _rec(cell="b", model="z", set="perspective", suite="study21", severity=2, top1=0.1),
        _rec(cell="a", model="z", set="clean", top1=0.9),
        _rec(cell="b", model="z", set="perspective", suite="study21", severity=2, top1=0.2),
        _rec(cell="c", model="y", set="perspective", suite="study21", severity=1, top1=0.3),
    ]
    recs = parse_records(lines, source="r.jsonl")
    assert [(r["cell"], r["top1"]) for r in recs] == [("a", 0.9), ("c", 0.3), ("b", 0.2)]


def test_cut_short_final_line_is_ignored_but_a_bad_middle_line_is_an_error():
    good = _rec(cell="a")
    assert len(parse_records([good, '{"schema": 1, "mod'], source="r.jsonl")) == 1
    with pytest.warns(DataWarning, match=r"r.jsonl: skipped 1 line"):
        assert len(parse_records(['{"schema": 1, "mod\n', good], source="r.jsonl")) == 1
    with pytest.raises(UserError, match="schema 2"):
        parse_records([_rec(schema=2)], source="r.jsonl")
    with pytest.raises(UserError, match=r"r.jsonl:1 is not a score record \(needs model and set"):
        parse_records([json.dumps({"schema": 1, "top1": 0.3}) + "\n"], source="r.jsonl")
    with pytest.raises(UserError, match="unknown record field 'invented'"):
        parse_records([json.dumps({**make_record().to_json(), "invented": 1}) + "\n"], source="r.jsonl")


def test_load_run_errors_and_kinds(tmp_path):
    with pytest.raises(UserError, match="no records at"):
        load_run(run_dir=tmp_path / "none", sets={})
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "records.jsonl").write_text("\n")
    with pytest.raises(UserError, match="holds no score records"):
        load_run(run_dir=tmp_path / "r", sets={})
    (tmp_path / "r" / "records.jsonl").write_text(
        _rec(cell="1", model="zs", model_kind="clip") + _rec(cell="2", model="unregistered_net")
    )
    run = load_run(run_dir=tmp_path / "r", sets={})
    assert run.kinds == {"zs": "clip", "unregistered_net": "classifier"}
    assert run.preds(run.records[0]) is None  # no preds path: ECE falls back to the record


def test_missing_and_unreadable_preds_fall_back_to_the_record(tmp_path):
    (tmp_path / "r" / "preds").mkdir(parents=True)
    (tmp_path / "r" / "preds" / "bad.npz").write_bytes(b"not a zip")
    (tmp_path / "r" / "records.jsonl").write_text(
        _rec(cell="1", ece=0.125, preds="preds/bad.npz")
        + _rec(cell="2", model="n", ece=0.25, preds="preds/gone.npz")
    )
    run = load_run(run_dir=tmp_path / "r", sets={})
    t = build_tables(run, baseline=None)
    assert list(t.cells["ece"]) == [0.125, 0.25]
    assert set(t.cells["ece_from"]) == {"record"}
    assert t.kappa.empty  # nothing to compare without per-image predictions


def test_spec_info_reads_installed_specs():
    info = spec_info()
    for name, facts in info.items():
        assert isinstance(facts, SetInfo) and facts.suite, name
        assert all(isinstance(s, int) and s >= 1 for s in facts.values), name


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0, "0"),
        (3.0, "3"),
        (1.5, "1.5"),
        (math.inf, "inf"),
        (0.55, "0.55"),
        ([0.0, 0.02], "0–0.02"),
        ("x", "x"),
    ],
)
def test_level_values_print_compactly(value, text):
    assert fmt_level(value) == text


def _summary():
    return pd.DataFrame(
        [
            {
                "model": "a",
                "top1": 0.8,
                "top5": 0.95,
                "mCA": 0.6,
                "relative_robustness": 0.75,
                "acc16": math.nan,
            },
            {"model": "b", "top1": 0.7, "top5": 0.9, "mCA": 0.4, "relative_robustness": 0.57, "acc16": 0.3},
        ]
    )


def test_parse_gates_forms():
    gates = parse_gates(
        ["top1=0.7", "MCA=50%, b:relative_robustness=0.5", "a:crop=0.6"], models=["a", "b"], sets=["crop"]
    )
    assert [(g.metric, g.threshold, g.model) for g in gates] == [
        ("top1", 0.7, None),
        ("mCA", 0.5, None),
        ("relative_robustness", 0.5, "b"),
        ("crop", 0.6, "a"),
    ]
    assert [g.text for g in gates] == ["top1=0.7", "MCA=50%", "b:relative_robustness=0.5", "a:crop=0.6"]
    for bad in ["top1=abc", "top1=-0.1", "=0.3", "c:top1=0.3", "nope=0.3", "top1=nan"]:
        with pytest.raises(UserError):
            parse_gates([bad], models=["a", "b"], sets=["crop"])


def test_evaluate_gates_per_model_and_missing():
    sets = pd.DataFrame([{"model": "a", "set": "crop", "top1": 0.65}])
    gates = parse_gates(["mCA=0.5", "acc16=0.2", "a:crop=0.6"], models=["a", "b"], sets=["crop"])
    results = evaluate_gates(gates, summary=_summary(), set_accuracy=sets)
    assert [(r.gate.text, r.model, r.passed) for r in results] == [
        ("mCA=0.5", "a", True),
        ("mCA=0.5", "b", False),
        ("acc16=0.2", "a", False),  # not measured for a: fails rather than passing silently
        ("acc16=0.2", "b", True),
        ("a:crop=0.6", "a", True),
    ]
    assert failure_message(results) == (
        "2 gates failed: --fail-under mCA=0.5 (b mCA 0.4000 < 0.5000); "
        "--fail-under acc16=0.2 (a acc16 is missing from this run)"
    )
    assert failure_message(results[:1]) is None


def test_clean_only_run_reports_what_is_missing(tmp_path):
    from robusteval.report import make_report

    run = tmp_path / "runs" / "c"
    run.mkdir(parents=True)
    (run / "records.jsonl").write_text(
        _rec(cell="1", model="a", n=10, top5=0.8) + _rec(cell="2", model="b", n=0, top1=None, top5=None)
    )
    res = make_report(run_dir=run, out_dir=tmp_path / "out", baseline="a", fail_under=["b:top1=0.1"], sets={})
    text = res.report.read_text()
    assert "| a | classifier | 50.00 ±26.3 | 80.00 ±22.7 | — | — | — | — | — |" in text  # Wilson, n = 10
    assert "| b | classifier | — | — | — | — | — | — | — |" in text
    assert "Not computed: the run has no corruption sets" in text
    assert "Not computed: needs two models with saved predictions" in text
    assert res.figures == [] and "![" not in text
    assert res.failure == "gate failed: --fail-under b:top1=0.1 (b top1 is missing from this run)"
