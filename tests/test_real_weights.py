"""The installed real weights load and classify real ImageNet validation images."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import pytest
import torch

from robusteval.errors import UserError
from robusteval.models import create_model
from robusteval.models.real_weights import EFFICIENTNET_LITE0, MOBILENET_V2, by_key_order

N_VAL = 200  # first rows of labels.csv
MIN_TOP1 = 0.75
REAL = {"mobilenet_v2": MOBILENET_V2, "efficientnet_lite0": EFFICIENTNET_LITE0}


@pytest.fixture(scope="module", params=sorted(REAL))
def real_model(request):
    card = REAL[request.param]
    pkg = card.weights_package.split("/")[0]
    pytest.importorskip(pkg, reason=f"weights package {pkg} not installed")
    return create_model(request.param)


def test_default_weights_are_the_pinned_package_files(real_model):
    card = real_model.card
    source = real_model.weights["source"]
    assert source == f"package:{card.weights_package}"
    assert real_model.weights["sha256"] == card.weights_sha256


def test_data_configs_are_the_ones_the_weights_were_trained_with():
    mnv2 = MOBILENET_V2.data
    assert (mnv2.input_size, mnv2.resize_size, mnv2.interpolation) == (224, 256, "bilinear")
    assert mnv2.mean == (0.485, 0.456, 0.406) and mnv2.std == (0.229, 0.224, 0.225)
    lite = EFFICIENTNET_LITE0.data
    assert (lite.input_size, lite.resize_size, lite.interpolation) == (224, 256, "bicubic")
    # timm's cfg of tf_efficientnet_lite0.in1k (its rounding of TF's (x - 127) / 128)
    assert lite.mean == (0.5, 0.5, 0.5) and lite.std == (0.5, 0.5, 0.5)


def test_key_order_converter_checks_every_shape():
    module = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))
    src = {f"_p{i}": torch.rand_like(v) for i, v in enumerate(module.state_dict().values())}
    out = by_key_order(src, module=module)
    assert list(out) == list(module.state_dict())
    assert torch.equal(out["1.weight"], src["_p2"])
    swapped = dict(reversed(list(src.items())))
    with pytest.raises(UserError, match=r"4 shape mismatches.*#0 _p3 \[2\] vs 0.weight \[3, 4\]"):
        by_key_order(swapped, module=module)
    with pytest.raises(UserError, match="3 tensors, the model 4"):
        by_key_order(dict(list(src.items())[:3]), module=module)


def _eval_transform(data):
    from torchvision import transforms as T

    return T.Compose(
        [
            T.Resize(data.resize_size, interpolation=T.InterpolationMode(data.interpolation)),
            T.CenterCrop(data.input_size),
            T.ToTensor(),
            T.Normalize(data.mean, data.std),
        ]
    )


@pytest.fixture(scope="module")
def val_images(val1300: Path):
    """The first N_VAL validation images (decoded PIL RGB) and their class indices."""
    from PIL import Image

    with open(val1300 / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))[:N_VAL]
    images = [Image.open(val1300 / r["path"]).convert("RGB") for r in rows]
    return images, torch.tensor([int(r["class_index"]) for r in rows])


def test_real_weights_classify_imagenet_val(real_model, val_images):
    images, labels = val_images
    tf = _eval_transform(real_model.card.data)
    # channels_last halves CPU time for these depthwise-conv nets
    module = real_model.module.to(memory_format=torch.channels_last)
    correct = 0
    for i in range(0, len(images), 50):
        x = torch.stack([tf(im) for im in images[i : i + 50]]).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            correct += (module(x).argmax(1) == labels[i : i + 50]).sum().item()
    top1 = correct / len(images)
    assert top1 >= MIN_TOP1, f"{real_model.card.name}: top-1 {top1:.3f} on {len(images)} val images"


def test_random_init_is_not_the_real_model(val_images):
    # The accuracy test can fail: the same pipeline with random weights is at chance.
    images, labels = val_images
    torch.manual_seed(0)
    loaded = create_model("mobilenet_v2", weights=None)
    tf = _eval_transform(loaded.card.data)
    x = torch.stack([tf(im) for im in images[:20]])
    with torch.inference_mode():
        assert (loaded.module(x).argmax(1) == labels[:20]).float().mean() < 0.2


def test_a_tampered_default_file_is_refused(tmp_path, monkeypatch):
    # The pinned sha256 guards default weights; a user's own file is only recorded.
    fake_pkg = tmp_path / "fake_weights_pkg"
    fake_pkg.mkdir()
    (fake_pkg / "__init__.py").write_text("")
    module = create_model("mobilenet_v2", weights=None).module
    torch.save(module.state_dict(), fake_pkg / "w.pth")
    monkeypatch.syspath_prepend(str(tmp_path))
    import dataclasses

    from robusteval.models import resolve

    entry = resolve("mobilenet_v2")
    card = dataclasses.replace(entry.meta["card"], weights_package="fake_weights_pkg/w.pth")
    monkeypatch.setitem(entry.meta, "card", card)
    with pytest.raises(UserError, match="not the mobilenet_v2 release file"):
        create_model("mobilenet_v2")
    own = create_model("mobilenet_v2", weights=str(fake_pkg / "w.pth"))
    assert own.weights["sha256"] == hashlib.sha256((fake_pkg / "w.pth").read_bytes()).hexdigest()
