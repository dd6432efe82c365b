"""Intervals, paired claims and the interval / baseline-run gates of the report, on the golden fixture run."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from robusteval import stats
from robusteval.errors import UserError
from robusteval.report import make_report
from robusteval.report.gates import compare_runs, evaluate_gates, parse_gates
from robusteval.report.records import load_run
from robusteval.report.tables import build_tables

GOLDEN = Path(__file__).parent / "golden"
RUN = GOLDEN / "runs" / "golden"
_spec = importlib.util.spec_from_file_location("make_fixtures", GOLDEN / "make_fixtures.py")
MF = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(MF)


@pytest.fixture(scope="module")
def tables():
    return build_tables(load_run(run_dir=RUN, sets=MF.set_facts(RUN)), baseline="beta_net")


def _correct(model: str, cell: str) -> dict[str, bool]:
    with np.load(RUN / "preds" / f"{model}__{cell}.npz") as z:
        ok = (z["top5"][:, 0] == z["labels"]) & (z["labels"] >= 0)
        return {i: bool(c) for i, c, lab in zip(z["ids"], ok, z["labels"], strict=True) if lab >= 0}


def test_cell_intervals_are_wilson_of_the_record(tables):
    c = tables.cells
    row = c[(c["model"] == "alpha_net") & (c["set"] == "fliplr")].iloc[0]
    assert (row["top1_lo"], row["top1_hi"]) == pytest.approx(
        stats.wilson_interval(k=round(row["top1"] * row["n"]), n=int(row["n"]))
    )
    ok = c["top1_lo"].notna()
    assert ok.all() and (c["top1_lo"] <= c["top1"]).all() and (c["top1"] <= c["top1_hi"]).all()
    s = tables.summary.set_index("model")
    for m in s.index:
        assert s.loc[m, "mCA_lo"] < s.loc[m, "mCA"] < s.loc[m, "mCA_hi"]
    m = tables.mce
    assert (m["mce_lo"] <= m["mce"] + 1e-12).all() and (m["mce"] <= m["mce_hi"] + 1e-12).all()


def test_paired_rows_follow_from_the_preds(tables):
    p = tables.paired
    row = p[(p["model_a"] == "alpha_net") & (p["model_b"] == "clip_tiny") & (p["set"] == "fliplr")].iloc[0]
    a, b = _correct("alpha_net", "fliplr__s1"), _correct("clip_tiny", "fliplr__s1")
    ids = sorted(set(a) & set(b))
    only_a = sum(a[i] and not b[i] for i in ids)
    only_b = sum(b[i] and not a[i] for i in ids)
    assert (row["n"], row["only_a"], row["only_b"]) == (len(ids), only_a, only_b)
    assert row["p"] == pytest.approx(stats.mcnemar_exact(b=only_a, c=only_b))
    fam = p[(p["model_a"] == "alpha_net") & (p["model_b"] == "clip_tiny")]
    assert list(fam["p_holm"]) == pytest.approx(stats.holm(list(fam["p"])))
    sig = fam[fam["p_holm"] < 0.05]
    assert len(sig) and set(sig["verdict"]) == {"alpha_net > clip_tiny"}
    assert set(fam[fam["p_holm"] >= 0.05]["verdict"]) == {"cannot tell"}
    pw = tables.power.set_index(["model_a", "model_b", "label_space"]).loc[
        ("alpha_net", "clip_tiny", "imagenet1k")
    ]
    need = stats.mcnemar_pairs_needed(discordance=pw["discordance"])
    assert pw["per_class_needed"] == np.ceil(need / 1000)


def test_interval_gates(tables):
    gates = parse_gates(
        ["alpha_net:top1.lower=0.7", "mCA.upper=0.5", "crop.lower=50%"],
        models=["alpha_net", "beta_net", "clip_tiny"],
        sets=["crop"],
    )
    assert [g.bound for g in gates] == ["lower", "upper", "lower"]
    res = evaluate_gates(gates, summary=tables.summary, set_accuracy=tables.set_accuracy)
    lo = float(tables.summary.set_index("model").loc["alpha_net", "top1_lo"])
    assert res[0].value == pytest.approx(lo) and res[0].passed == (lo >= 0.7)
    assert [r.passed for r in res[1:4]] == [True, True, False]  # clip_tiny's mCA upper bound is below 0.5
    with pytest.raises(UserError):
        parse_gates(["nothing.lower=0.5"], models=["alpha_net"], sets=["crop"])


def _worse_copy(tmp_path: Path) -> Path:
    """The golden run with alpha_net wrong on every crop image: significantly worse than the original."""
    run = tmp_path / "runs" / "candidate"
    shutil.copytree(RUN, run)
    for f in (run / "preds").glob("alpha_net__crop__s*.npz"):
        with np.load(f) as z:
            arrays = {k: z[k] for k in z.files}
        arrays["top5"][:, 0] = (arrays["labels"] + 1) % 1000
        np.savez(f, **arrays)
    return run


def test_compare_runs_flags_only_the_regressed_set(tmp_path):
    run = _worse_copy(tmp_path)
    regs = compare_runs(load_run(run_dir=run, sets={}), load_run(run_dir=RUN, sets={}))
    worse = [(r.model, r.set) for r in regs if r.worse]
    assert worse == [("alpha_net", "crop")]
    same = [r for r in regs if r.model == "beta_net"]
    assert same and all(r.diff == 0 and r.p_holm == 1.0 for r in same)


@pytest.mark.slow
def test_fail_if_worse_than_fails_the_report(tmp_path):
    run = _worse_copy(tmp_path)
    shutil.copytree(RUN, tmp_path / "runs" / "release")
    res = make_report(
        run_dir=run, out_dir=tmp_path / "out", baseline=None, fail_under=[], sets={}, worse_than="release"
    )
    assert res.failure is not None and "alpha_net on crop" in res.failure
    text = res.report.read_text()
    assert "## Against baseline run `release`" in text and "## Claims (paired comparisons)" in text
    assert json.loads((tmp_path / "out" / "tables" / "paired.json").read_text())
