"""The Transfer report section on records built with the record dataclass (no model needed)."""

from __future__ import annotations

import pytest

from robusteval.jsonl import append_records
from robusteval.transfer.records import FILE, TransferRecord, transfer_cell


def _rec(model: str, params_m: float, method: str, shots: int | None, seed: int) -> TransferRecord:
    acc = {1: 0.3, 10: 0.6, None: 0.8}[shots] - (0.1 if method == "ilm-vp" else 0.0) + 0.01 * seed
    acc -= 0.03 if method == "freeze" else 0.0
    return TransferRecord(
        run="r", cell=transfer_cell(model=model, dataset="cifar10", method=method, shots=shots, seed=seed),
        model=model, dataset="cifar10", method=method, shots=shots, seed=seed, epochs=2, batch_size=8,
        top1=[acc / 2, acc], ece=[0.2, 0.05], final_top1=acc, final_ece=0.05,
        top1_init=0.1 if method == "ilm-vp" else None, seconds=8.0 if method == "freeze" else 10.0,
        feature_seconds=1.0, n_train=10, n_test=100, n_classes=10, scan_backend="torch", card="c",
        params_m=params_m, weights="none", device="cpu", amp="off",
        frozen_fraction=0.4 if method == "freeze" else None, created="2026-01-01T00:00:00+00:00",
    )  # fmt: skip


def test_transfer_only_run_gets_a_report(tmp_path):
    from robusteval.report.api import make_report

    recs = [
        _rec(m, p, method, k, s)
        for m, p in (("vmamba_t", 30.2), ("timm:deit_small_patch16_224", 22.0))
        for method in ("lp", "ilm-vp", "finetune", "freeze")
        for k in (1, 10, None)
        for s in (1, 2)
    ]
    append_records(tmp_path / "r" / FILE, [r.to_dict() for r in recs])
    res = make_report(run_dir=tmp_path / "r", out_dir=tmp_path / "out", baseline=None, fail_under=[])
    text = res.report.read_text()
    assert "## Transfer" in text and "transfer_shots.png" in text and "transfer_gap.png" in text
    import pandas as pd

    gap = pd.read_csv(tmp_path / "out" / "tables" / "transfer_gap.csv")
    assert len(gap) == 6 and gap["gap"].to_numpy() == pytest.approx(0.1)
    frz = pd.read_csv(tmp_path / "out" / "tables" / "transfer_freeze.csv")
    assert frz["time_saved"].to_numpy() == pytest.approx(0.2)
    kept = [(0.8 + 0.01 * s - 0.03) / (0.8 + 0.01 * s) for s in (1, 2)]  # per seed, then the mean
    assert frz.loc[frz["shots"] == "full", "accuracy_kept"].to_numpy() == pytest.approx(sum(kept) / 2)
    acc = pd.read_csv(tmp_path / "out" / "tables" / "transfer_accuracy.csv")
    row = acc[(acc["method"] == "ilm-vp") & (acc["shots"] == "1") & (acc["model"] == "vmamba_t")].iloc[0]
    assert row["top1_mean"] == pytest.approx(0.215) and row["top1_init_mean"] == pytest.approx(0.1)
    assert row["top1_std"] == pytest.approx(0.00707, abs=1e-4)


def test_no_transfer_records_no_section(tmp_path):
    from robusteval.report.extensions import SectionContext
    from robusteval.report.transfer_section import transfer_section

    (tmp_path / "figs").mkdir()
    assert transfer_section(SectionContext(tmp_path, tmp_path, tmp_path / "figs")) is None
