"""The transfer stage: protocol cards, batched heads, ILM-VP pieces, and learning on real images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from robusteval.metrics import expected_calibration_error
from robusteval.transfer import finetune, lp, vp  # noqa: F401  (register the methods)
from robusteval.transfer.protocol import CARDS, METHODS
from robusteval.transfer.records import FILE, TransferRecord, load_transfer_records

CHANCE16 = 1 / 16


def test_cards_match_the_study():
    for name in ("lp", "ilm-vp"):
        c = CARDS[name]
        assert (c.optimizer, c.lr, c.epochs, c.milestones, c.gamma, c.amp) == (
            "adam",
            0.01,
            100,
            (0.5, 0.72),
            0.1,
            True,
        )
        assert [c.batch_size(k) for k in (1, 10, 50, 100, None)] == [8, 32, 64, 128, 256]
        assert [c.lr_at(e, epochs=100) for e in (0, 49, 50, 71, 72, 99)] == pytest.approx(
            [0.01, 0.01, 0.001, 0.001, 1e-4, 1e-4]
        )
    assert CARDS["lp"].batch_size(5) == 32 and CARDS["lp"].batch_size(500) == 256
    assert set(METHODS.names()) == set(CARDS)
    assert len({c.digest() for c in CARDS.values()}) == len(CARDS)


def test_batched_ece_is_the_metrics_ece():
    from robusteval.transfer.pixels import batched_ece

    rng = np.random.default_rng(0)
    conf = rng.uniform(0, 1, (3, 500))
    conf[0, :5] = [0.0, 1.0, 1 / 15, 2 / 15, 0.5]
    hit = rng.uniform(0, 1, (3, 500)) < conf
    got = batched_ece(torch.tensor(conf, dtype=torch.float64), torch.tensor(hit)).numpy()
    want = [expected_calibration_error(confidence=conf[s], correct=hit[s]) for s in range(3)]
    assert got == pytest.approx(want, abs=1e-6)


def test_frequency_mapping_is_greedy_one_to_one():
    counts = torch.tensor([[5, 0, 0], [9, 8, 0], [0, 7, 1], [0, 0, 0]])
    # 9 → (1, 0); strike row 1 and column 0; then 7 → (2, 1); then column 2: best left is row 0 or 3 (0)
    m = vp.frequency_mapping(counts)
    assert m[0] == 1 and m[1] == 2 and m[2] in (0, 3)
    assert len(set(m.tolist())) == 3


def test_prompt_frame_only_touches_the_border():
    f = vp.PromptFrame(inner=32, frame=224)
    x = torch.rand(2, 3, 32, 32)
    y = f(x)
    assert y.shape == (2, 3, 224, 224)
    assert torch.equal(y[:, :, 96:128, 96:128], x)
    assert torch.allclose(y[:, :, :96], torch.full_like(y[:, :, :96], 0.5))  # sigmoid(0) at init
    assert torch.count_nonzero(f(x, prompt=False)[:, :, :96]) == 0


def test_batched_heads_train_like_separate_heads():
    rng = np.random.default_rng(0)
    centers = rng.normal(0, 3, (4, 16))
    y = np.repeat(np.arange(4), 30)
    x = centers[y] + rng.normal(0, 1, (120, 16))
    tx, ty = torch.tensor(x, dtype=torch.float32), torch.tensor(y)
    subsets = [np.arange(0, 120, 2), np.arange(1, 120, 7)]
    kw = dict(train_x=tx, train_y=ty, test_x=tx, test_y=ty, n_classes=4, card=CARDS["lp"], epochs=6)
    both = lp.train_heads(subsets=subsets, batch_sizes=[8, 32], seeds=[1, 2], **kw)
    alone = [
        lp.train_heads(subsets=[s], batch_sizes=[b], seeds=[k], **kw)
        for s, b, k in zip(subsets, [8, 32], [1, 2], strict=True)
    ]
    assert np.allclose(both.top1, np.concatenate([a.top1 for a in alone]), atol=1e-6)
    assert np.allclose(both.ece, np.concatenate([a.ece for a in alone]), atol=1e-5)
    assert both.top1[:, -1].min() > 0.6  # separable blobs are learnt (chance 0.25)


def test_batched_adam_is_torch_adam():
    """One head of the closed-form batched grid follows nn.Linear + CrossEntropyLoss + torch.optim.Adam."""
    import math

    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), 30)
    x = rng.normal(0, 3, (4, 16))[y] + rng.normal(0, 1, (120, 16))
    tx, ty = torch.tensor(x, dtype=torch.float32), torch.tensor(y)
    sub, card, epochs = np.arange(0, 120, 2), CARDS["lp"], 3
    grid = lp.train_heads(
        train_x=tx, train_y=ty, test_x=tx, test_y=ty, subsets=[sub], batch_sizes=[8], seeds=[1],
        n_classes=4, card=card, epochs=epochs,
    )  # fmt: skip
    init = torch.empty(17, 4).uniform_(-0.25, 0.25, generator=torch.Generator().manual_seed(1))
    W, b = init[:16].clone().requires_grad_(), init[16].clone().requires_grad_()
    opt = torch.optim.Adam([W, b], lr=card.lr)
    gen, accs = np.random.default_rng(1 + 7919), []
    for e in range(epochs):
        for group in opt.param_groups:
            group["lr"] = card.lr_at(e, epochs=epochs)
        perm = sub[gen.permutation(len(sub))]
        for t in range(math.ceil(len(sub) / 8)):
            ix = torch.tensor(perm[t * 8 : (t + 1) * 8])
            loss = torch.nn.functional.cross_entropy(tx[ix] @ W + b, ty[ix])
            opt.zero_grad()
            loss.backward()
            opt.step()
        accs.append(float(((tx @ W + b).argmax(1) == ty).float().mean()))
    assert grid.top1[0] == pytest.approx(accs, abs=1e-6)


def _split(mvh16: Path, out: Path, *, n_train: int) -> str:
    """Class-balanced imagefolder split of the 16-class silhouettes (symlinks): n_train per class."""
    for cdir in sorted((mvh16 / "filled-silhouettes").iterdir()):
        for i, f in enumerate(sorted(cdir.iterdir())):
            d = out / ("train" if i < n_train else "test") / cdir.name
            d.mkdir(parents=True, exist_ok=True)
            (d / f.name).symlink_to(f.resolve())
    return f"imagefolder:{out / 'train'},{out / 'test'}"


def _cli(*args: str):
    from typer.testing import CliRunner

    from robusteval.cli import app

    res = CliRunner().invoke(app, list(args))
    assert res.exit_code == 0, res.output
    return res


def test_cli_lp_learns_resumes_and_reports(mvh16, tmp_path):
    """mobilenet_v2 (real weights) LP on real 16-class images: accuracy rises with shots, far above chance."""
    ds = _split(mvh16, tmp_path / "mvh", n_train=6)
    args = ["transfer", "--models", "mobilenet_v2", "--dataset", ds, "--method", "lp", "--shots", "1", "3", "full",
            "--seeds", "1", "2", "--run", "lp", "--epochs", "40", "--runs-dir", str(tmp_path), "--device", "cpu",
            "--batch-size", "32"]  # fmt: skip
    _cli(*args)
    recs = load_transfer_records(tmp_path / "lp")
    assert len(recs) == 6 and all(isinstance(r, TransferRecord) for r in recs)
    acc = {k: np.mean([r.final_top1 for r in recs if r.shots == k]) for k in (1, 3, None)}
    assert acc[1] < acc[3] < acc[None], acc
    assert acc[1] > 2 * CHANCE16 and acc[None] > 6 * CHANCE16, acc
    r = recs[0]
    assert len(r.top1) == len(r.ece) == 40 and r.n_test == 64 and r.scan_backend is None
    assert {x.n_train for x in recs} == {16, 48, 96} and r.feature_seconds > 0
    # rerun: every cell is finished, nothing is trained again; a torn last line is ignored
    path = tmp_path / "lp" / FILE
    with path.open("a") as fh:
        fh.write('{"cell": "torn')
    again = _cli(*args)
    assert "0 cells written, 6 already finished" in " ".join(again.output.split())
    # report of a run with only transfer records
    out = tmp_path / "report"
    _cli("report", "--run", "lp", "--runs-dir", str(tmp_path), "--out", str(out))
    text = (out / "report.md").read_text()
    assert "## Transfer" in text and (out / "figures" / "transfer_shots.png").stat().st_size > 1000
    table = json.loads((out / "tables" / "transfer_accuracy.json").read_text())
    assert {t["shots"] for t in table} == {"1", "3", "full"} and all(t["seeds"] == 2 for t in table)


@pytest.mark.slow
def test_ilm_vp_beats_unprompted_baseline(mvh16, tmp_path):
    """The prompt learns: mobilenet_v2 (real weights) on real silhouettes, mapped ImageNet outputs.

    A short budget (5 epochs of 6 batches) with a larger constant lr than the study's card (which
    spends 100 epochs at 0.01 with decays) so that the check runs in a few minutes on a CPU.
    """
    import dataclasses

    from robusteval.models.factory import create_model
    from robusteval.transfer.datasets import open_dataset, sample_shots
    from robusteval.transfer.pixels import loader

    sp = open_dataset(_split(mvh16, tmp_path / "mvh", n_train=6), root=None)
    net = vp._Prompted(create_model("mobilenet_v2"), inner=128, device="cpu", amp=False)
    card = dataclasses.replace(CARDS["ilm-vp"], lr=0.1, milestones=())
    idx = sample_shots(sp.train_labels, shots=None, seed=1)
    c = dict(side=128, workers=0, device="cpu")
    train = {
        "ordered": loader(sp.train, indices=idx, batch_size=96, shuffle_seed=None, **c),
        "shuffled": loader(sp.train, indices=idx, batch_size=16, shuffle_seed=1, **c),
    }
    test = loader(sp.test, indices=None, batch_size=64, shuffle_seed=None, **c)
    top1, ece, base = vp.train_prompt(
        net, train=train, test=test, n_source=1000, n_target=16, epochs=5, card=card, seed=1
    )
    assert len(top1) == len(ece) == 5 and base > 2 * CHANCE16
    assert top1[-1] > base + 0.05, (base, top1)


@pytest.mark.slow
def test_finetune_and_freeze_cells(mvh16, tmp_path):
    from robusteval.transfer.stage import TransferRequest, run_transfer

    ds = _split(mvh16, tmp_path / "mvh", n_train=6)
    req = TransferRequest(
        models=["mobilenet_v2"], datasets=[ds], methods=["finetune", "freeze"], shots=[3], seeds=[1],
        run="ft", runs_dir=tmp_path, epochs=2, device="cpu", feature_batch=32,
    )  # fmt: skip
    ft, fz = run_transfer(req).written
    assert ft.method == "finetune" and fz.method == "freeze" and 0 < fz.frozen_fraction < 1
    assert ft.final_top1 > CHANCE16 and fz.final_top1 > CHANCE16 and ft.frozen_fraction is None
    from robusteval.report.extensions import SectionContext
    from robusteval.report.transfer_section import transfer_section

    (tmp_path / "out" / "figures").mkdir(parents=True)
    sec = transfer_section(SectionContext(tmp_path / "ft", tmp_path / "out", tmp_path / "out" / "figures"))
    assert "transfer_freeze" in sec.tables and len(sec.tables["transfer_freeze"]) == 1
