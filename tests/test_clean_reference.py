"""Clean images reach each model exactly as its own reference eval pipeline makes them.

Reference pipelines: torchvision's ``weights.transforms()`` (MobileNetV2) and timm's
``create_transform(**resolve_data_config({}, model=m))`` (EfficientNet-Lite0, and a timm bicubic
model with random weights). Ours: robusteval's clean path (``load_rgb`` in the decode workers, then
``apply_view`` + ``normalize`` on the device).

Tolerance: PIL resizes uint8 in fixed point, torch's antialiased uint8 resize in its own fixed
point, so single pixels may round differently. We allow at most 2 grey levels (of 255) on any value
and a mean absolute difference under 0.02 levels; normalisation constants must be identical.
"""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
timm = pytest.importorskip("timm")

MAX_LEVELS = 2.0
MEAN_LEVELS = 0.02


def _reference(name: str, module):
    if name == "mobilenet_v2":
        from torchvision.models import MobileNet_V2_Weights

        return MobileNet_V2_Weights.IMAGENET1K_V1.transforms(), None
    from timm.data import create_transform, resolve_data_config

    cfg = resolve_data_config({}, model=module)
    return create_transform(**cfg), cfg


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "weights"),
    [("mobilenet_v2", "default"), ("efficientnet_lite0", "default"), ("timm:resnet18.a1_in1k", "none")],
)
def test_clean_tensors_equal_the_reference_pipeline(name, weights, sample1000, val1300):
    from PIL import Image

    from robusteval.datasets.decode import load_rgb
    from robusteval.datasets.layouts import read_dataset
    from robusteval.errors import UserError
    from robusteval.models import create_model
    from robusteval.score.loader import _chw
    from robusteval.score.preprocess import apply_view, make_view, normalize

    try:
        model = create_model(name, weights=weights)
    except UserError as err:  # real weights not installed here
        pytest.skip(str(err))
    data = model.card.data
    ref, cfg = _reference(name, model.module)
    if cfg is not None:  # timm's own constants, not a rounding of them
        assert (tuple(cfg["mean"]), tuple(cfg["std"])) == (tuple(data.mean), tuple(data.std))
        assert (cfg["interpolation"], cfg["crop_pct"]) == (data.interpolation, data.crop_pct)
        assert cfg["input_size"][-1] == data.input_size
    view = make_view(data, mode="eval")
    # native sizes (the resize matters) and the 227 px val JPEGs
    paths = [s.path for s in read_dataset(sample1000).samples[:6]] + [
        s.path for s in read_dataset(Path(val1300)).samples[:4]
    ]
    levels = torch.tensor(data.std).view(3, 1, 1) * 255
    for path in paths:
        ours = normalize(apply_view([_chw(load_rgb(path))], view), mean=data.mean, std=data.std)[0]
        with Image.open(path) as im:
            theirs = ref(im.convert("RGB"))
        assert ours.shape == theirs.shape == (3, data.input_size, data.input_size)
        diff = ((ours - theirs) * levels).abs()
        assert diff.max().item() <= MAX_LEVELS + 1e-3, (name, path.name, diff.max().item())
        assert diff.mean().item() < MEAN_LEVELS, (name, path.name, diff.mean().item())
