"""Every export format written from the golden fixture run and read back the way its anchor reads it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from robusteval.errors import UserError
from robusteval.export import EXPORTS, export_run
from robusteval.export.api import load_export_run

GOLDEN = Path(__file__).parent / "golden" / "runs" / "golden"
FINAL = {r["cell"]: r for r in map(json.loads, (GOLDEN / "records.jsonl").read_text().splitlines())}


def _top1(model: str, set_name: str, sev: int | None) -> float:
    (rec,) = [
        r for r in FINAL.values() if r["model"] == model and r["set"] == set_name and r["severity"] == sev
    ]
    return rec["top1"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    import robusteval.export.formats  # noqa: F401

    out = tmp_path_factory.mktemp("export")
    return {
        name: (out / name, export_run(run_dir=GOLDEN, fmt=name, out_dir=out / name))
        for name in EXPORTS.names()
    }


def test_every_registered_format_writes_files(exported):
    assert set(exported) == {"robustbench", "clip-benchmark", "timm-csv", "model-vs-human"}
    assert all(files and all(f.is_file() for f in files) for _, files in exported.values())


def test_robustbench_round_trip(exported):
    out, _ = exported["robustbench"]
    folder = out / "model_info" / "imagenet" / "corruptions"
    # RobustBench's own reader (robustbench/eval.py, corruptions_evaluation)
    df = pd.read_csv(folder / "unaggregated_results.csv", header=[0, 1], index_col=0)
    df.columns = df.columns.set_levels([df.columns.levels[0], df.columns.levels[1].astype(int)])
    assert set(df.columns.get_level_values(0)) == {"gaussian_noise", "fog"}  # speckle: not one of the 15
    assert df.loc["alpha_net", ("fog", 3)] == pytest.approx(_top1("alpha_net", "fog", 3))
    assert df.loc["beta_net", ("gaussian_noise", 5)] == pytest.approx(
        _top1("beta_net", "c_gaussian_noise", 5)
    )
    assert np.isnan(df.loc["clip_tiny", ("fog", 1)])  # clip_tiny never scored fog
    info = json.loads((folder / "alpha_net.json").read_text())
    assert list(info)[:3] == ["link", "name", "authors"] and info["dataset"] == "imagenet"
    assert float(info["corruptions_acc"]) == pytest.approx(100 * df.loc["alpha_net"].mean(), abs=0.006)
    assert float(info["clean_acc"]) == pytest.approx(
        100 * FINAL["alpha_net__clean__clean"]["top1"], abs=0.006
    )
    assert float(info["corruptions_mce"]) > 0


def test_clip_benchmark_round_trip(exported):
    out, files = exported["clip-benchmark"]
    dumps = [json.loads(f.read_text()) for f in files]
    assert all(set(d) == {"dataset", "model", "pretrained", "task", "metrics", "language"} for d in dumps)
    by = {(d["dataset"], d["model"]): d for d in dumps}
    clip = by[("imagenet1k", "clip_tiny")]
    assert clip["task"] == "zeroshot_classification"
    assert clip["metrics"]["acc1"] == pytest.approx(FINAL["clip_tiny__clean__clean"]["top1"])
    # mean per-class recall by hand from the npz
    with np.load(GOLDEN / "preds" / "clip_tiny__clean__clean.npz") as z:
        known = z["labels"] >= 0
        lab, hit = z["labels"][known], z["top5"][known, 0] == z["labels"][known]
    recall = np.mean([hit[lab == c].mean() for c in np.unique(lab)])
    assert clip["metrics"]["mean_per_class_recall"] == pytest.approx(recall)
    assert ("robusteval/crop_s3", "alpha_net") in by and by[("imagenet-r", "beta_net")][
        "task"
    ] == "classification"


def test_timm_csv_round_trip(exported):
    out, files = exported["timm-csv"]
    names = {f.name for f in files}
    assert {
        "results-imagenet.csv",
        "results-imagenet-r.csv",
        "results-imagenet-r-clean.csv",
        "results-sketch.csv",
    } <= names
    clean = pd.read_csv(out / "results-imagenet.csv", thousands=",")
    assert list(clean.columns) == [
        "model",
        "top1",
        "top1_err",
        "top5",
        "top5_err",
        "param_count",
        "img_size",
        "crop_pct",
        "interpolation",
    ]
    assert list(clean["model"]) == ["alpha_net", "beta_net", "clip_tiny"]  # ranked by top-1
    row = clean.set_index("model").loc["alpha_net"]
    assert row["top1"] == pytest.approx(100 * FINAL["alpha_net__clean__clean"]["top1"], abs=5e-4)
    assert row["top1"] + row["top1_err"] == pytest.approx(100)
    assert (row["img_size"], row["crop_pct"], row["interpolation"]) == (224, 0.875, "bicubic")
    sketch = pd.read_csv(out / "results-sketch.csv").set_index("model")
    assert list(sketch.columns)[-3:] == ["top1_diff", "top5_diff", "rank_diff"]
    assert sketch.loc["beta_net", "top1_diff"] == pytest.approx(
        sketch.loc["beta_net", "top1"] - clean.set_index("model").loc["beta_net", "top1"], abs=2e-3
    )


def test_model_vs_human_round_trip(exported):
    out, files = exported["model-vs-human"]
    # clip_tiny's silhouettes have no saved predictions: 3 models x edges + 2 x silhouettes
    assert sorted(f.relative_to(out).as_posix() for f in files) == [
        "raw-data/edge/edge_alpha-net_session-1.csv",
        "raw-data/edge/edge_beta-net_session-1.csv",
        "raw-data/edge/edge_clip-tiny_session-1.csv",
        "raw-data/silhouette/silhouette_alpha-net_session-1.csv",
        "raw-data/silhouette/silhouette_beta-net_session-1.csv",
    ]
    df = pd.read_csv(
        out / "raw-data/edge/edge_alpha-net_session-1.csv"
    )  # as model-vs-human's analysis reads it
    assert list(df.columns) == [
        "subj",
        "session",
        "trial",
        "rt",
        "object_response",
        "category",
        "condition",
        "imagename",
    ]
    assert (df["object_response"] == df["category"]).mean() == pytest.approx(
        _top1("alpha_net", "mvh-edges", None)
    )
    assert list(df["trial"]) == list(range(1, len(df) + 1))


def test_export_errors_are_one_line(tmp_path):
    with pytest.raises(UserError):
        export_run(run_dir=tmp_path / "nope", fmt="timm-csv", out_dir=tmp_path / "o")
    with pytest.raises(UserError):
        export_run(run_dir=GOLDEN, fmt="csv-of-doom", out_dir=tmp_path / "o")
    assert len(load_export_run(GOLDEN).records) == len(FINAL)


def test_cli_export(tmp_path):
    from robusteval.cli import app

    res = CliRunner().invoke(
        app,
        [
            "export",
            "--run",
            "golden",
            "--runs-dir",
            str(GOLDEN.parent),
            "--format",
            "timm-csv",
            "--out",
            str(tmp_path),
        ],
    )
    assert res.exit_code == 0, res.output
    assert (tmp_path / "results-imagenet.csv").is_file()
    bad = CliRunner().invoke(
        app,
        [
            "export",
            "--run",
            "golden",
            "--runs-dir",
            str(GOLDEN.parent),
            "--format",
            "nope",
            "--out",
            str(tmp_path),
        ],
    )
    assert bad.exit_code == 2
