"""`robusteval explain`: selection, regeneration, maps through every model family, the sanity and
faithfulness relations on real weights and real images, and the CLI end to end (score → explain → report)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pytorch_grad_cam")
pytest.importorskip("captum")

import torch  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from robusteval.cli import app  # noqa: E402
from robusteval.explain.faithfulness import deletion, rank_correlation  # noqa: E402
from robusteval.explain.layers import LAYOUTS, cam_target  # noqa: E402
from robusteval.explain.methods import METHODS, compute_maps  # noqa: E402
from robusteval.explain.records import ExplainRecord  # noqa: E402
from robusteval.explain.stage import load_explain_model, model_inputs  # noqa: E402
from tests.helpers import val_rows, val_subset

REAL = ("mobilenet_v2", "efficientnet_lite0")


def _load(name: str, weights: str = "default"):
    from robusteval.errors import UserError

    try:
        return load_explain_model(name, weights=weights)
    except UserError as err:
        pytest.skip(f"{name}: {err}")


def test_layouts_make_nchw():
    x = torch.arange(2 * 3 * 4 * 5.0).reshape(2, 3, 4, 5)  # NCHW
    assert torch.equal(LAYOUTS["nhwc"](x.permute(0, 2, 3, 1)), x)
    tokens = torch.cat(
        [torch.full((2, 1, 3), -1.0), x.flatten(2).transpose(1, 2)[:, :16]], dim=1
    )  # cls + 4x4
    out = LAYOUTS["tokens"](tokens)
    assert out.shape == (2, 3, 4, 4) and (out != -1).all()


# Every family produces maps: random weights, the smallest input each takes; the torch scan for VMamba.
FAMILIES = [
    ("timm:resnet18", 64, False),  # no card field: timm feature_info
    ("vmamba_t", 64, True),
    ("convnext_b", 64, True),
    ("swin_b", 224, True),
    ("clip_mamba_vmamba_t220", 64, True),
]


@pytest.mark.parametrize(
    "name,size", [pytest.param(n, s, marks=pytest.mark.slow) if slow else (n, s) for n, s, slow in FAMILIES]
)
def test_every_family_gives_cam_maps(name, size):
    loaded, scan = _load(name, weights="none")
    if "vmamba" in name:
        assert scan == "torch"
    torch.manual_seed(0)
    x = torch.randn(3, 3, size, size)
    layer = cam_target(loaded.module, loaded.card, probe=x)
    maps = compute_maps("gradcam", loaded.module, x, targets=[1, 2, 3], layer=layer)
    assert maps.shape == (3, size, size) and np.isfinite(maps).all()
    # gradients reached the target layer (a single random-weight map may be all zero after the ReLU)
    assert maps.max() == pytest.approx(1.0)


def _clean_batch(val1300: Path, card, n: int):
    from robusteval.datasets.decode import load_rgb

    images = [load_rgb(val1300 / r["path"]) for r in val_rows(val1300)[:n]]
    return model_inputs(card, images, mode="eval", device="cpu")[0]


@pytest.mark.slow
@pytest.mark.parametrize("name", REAL)
def test_maps_pass_sanity_checks_on_real_weights(name, val1300):
    """Adebayo et al.: maps of re-initialised weights differ from the trained model's; maps of two
    classes differ; the trained maps are faithful (deletion beats random order on average)."""
    trained, _ = _load(name)
    rand, _ = _load(name, weights="none")
    x = _clean_batch(val1300, trained.card, 8)
    with torch.no_grad():
        pred = trained.module(x).argmax(1).tolist()
    other = [(p + 500) % 1000 for p in pred]
    lt, rt = cam_target(trained.module, trained.card), cam_target(rand.module, rand.card)
    a = compute_maps("gradcam", trained.module, x, targets=pred, layer=lt)
    again = compute_maps("gradcam", trained.module, x, targets=pred, layer=lt)
    self_level = rank_correlation(a, again).mean()
    assert self_level > 0.99
    assert (
        rank_correlation(a, compute_maps("gradcam", rand.module, x, targets=pred, layer=rt)).mean()
        < self_level - 0.3
    )
    assert (
        rank_correlation(a, compute_maps("gradcam", trained.module, x, targets=other, layer=lt)).mean() < 0.9
    )
    assert deletion(trained.module, x, a, targets=pred).faithfulness.mean() > 0


def test_deletion_rewards_the_pixels_a_model_uses():
    """A model that reads only the top-left quadrant: a map on it is faithful, its mirror is not."""

    class TopLeft(torch.nn.Module):
        def forward(self, x):
            s = x[:, :, :32, :32].mean(dim=(1, 2, 3))
            return torch.stack([s, -s], dim=1)

    x = torch.ones(1, 3, 64, 64)
    ramp = np.add.outer(np.arange(64), np.arange(64)).astype(np.float32)[None]  # top-left lowest
    d_good = deletion(TopLeft(), x, ramp.max() - ramp, targets=[0])  # points at the top left
    d_bad = deletion(TopLeft(), x, ramp, targets=[0])  # points away from it
    assert d_good.faithfulness[0] > 0 > d_bad.faithfulness[0]


def test_shift_source_reads_the_score_record():
    from robusteval.explain.regen import shift_source

    fly = "on the fly: decode pil, resize 256 (PIL bilinear) + center crop 224, perspective severity 3 "
    rec = {"preprocess": fly + "(batched torch op on the device, seed 7); 224 crops ...; normalize"}
    assert shift_source(rec) == shift_source(rec, seed=7) and shift_source(rec).label == "onthefly/torch"
    assert shift_source(rec).seed == 7 and shift_source(rec, seed=3).seed == 3
    imgaug = {"preprocess": fly + "(imgaug per image in decode workers, seed 0); ..."}
    assert shift_source(imgaug).impl == "imgaug"
    assert shift_source({"preprocess": "decode pil; 224 crops of the corrupt stage"}).kind == "tree"


def test_methods_registry_is_complete():
    assert {"gradcam", "hirescam", "gradcam++", "xgradcam", "eigencam", "layercam", "ig", "occlusion"} <= set(
        METHODS.names()
    )


def test_cli_score_explain_report(val1300, tmp_path):
    """score mobilenet_v2 on 40 real images with on-the-fly perspective, explain its flips, report."""
    _load("mobilenet_v2")
    data = val_subset(val1300, tmp_path / "val", val_rows(val1300)[:40])
    runs = tmp_path / "runs"
    common = ["--run", "e2e", "--runs-dir", str(runs)]
    res = CliRunner().invoke(app, ["score", "--models", "mobilenet_v2", "--data", str(data), "--transforms",
                                   "perspective", "--severity", "3", "--workers", "0", *common])  # fmt: skip
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(app, ["explain", "--model", "mobilenet_v2", "--set", "perspective", "--severity", "3",
                                   "--n", "2", "--method", "gradcam", "--data", str(data), *common])  # fmt: skip
    assert res.exit_code == 0, res.output
    lines = (runs / "e2e" / "explain.jsonl").read_text().splitlines()
    recs = [ExplainRecord.from_dict(json.loads(line)) for line in lines]
    assert len(recs) == 2 and {r.method for r in recs} == {"gradcam"}
    for r in recs:  # flipped: right on clean, wrong after the shift, regenerated exactly
        assert r.clean_pred == r.label != r.shifted_pred and r.pred_matches_score
        assert r.source == "onthefly/torch" and r.transform_seed == 0 and r.cam_layer == "features.18"
        assert np.isfinite([r.faithfulness_true, r.faithfulness_pred]).all()
    assert (runs / "e2e" / recs[0].grid).is_file()
    res = CliRunner().invoke(app, ["report", *common])
    assert res.exit_code == 0, res.output
    report = (runs / "e2e" / "report" / "report.md").read_text()
    assert "## Failures" in report and "figures/failures_mobilenet_v2__perspective__s3.png" in report
    assert (runs / "e2e" / "report" / "figures" / "failures_mobilenet_v2__perspective__s3.png").is_file()
    bad = CliRunner().invoke(app, ["explain", "--model", "mobilenet_v2", "--set", "fog", "--severity", "3",
                                   "--data", str(data), *common])  # fmt: skip
    assert bad.exit_code == 2 and "no fog severity 3 cell" in " ".join(bad.output.split())
