"""Real numbers: MobileNetV2 (torchvision IMAGENET1K_V1 weights) on the 1,300 shared val images.

Reference, measured independently with the standard eval preprocessing (resize 256, center crop
224, ImageNet mean/std): 79.69% top-1 / 94.54% top-5 (../shared/README.md).
"""

from __future__ import annotations

import pytest
import torch

from robusteval.errors import UserError
from robusteval.runs import Preds
from robusteval.score.engine import ScoreRequest, run_score


def _need_weights() -> None:
    from robusteval.models.factory import create_model

    try:
        create_model("mobilenet_v2")
    except UserError as err:
        pytest.skip(f"mobilenet_v2 weights absent: {err}")


def test_mobilenet_v2_reproduces_reference_accuracy(val1300, tmp_path):
    _need_weights()
    summary = run_score(
        ScoreRequest(
            models=["mobilenet_v2"], data=val1300, run="real", runs_dir=tmp_path, batch_size=50, device="cpu"
        )
    )
    (rec,) = summary.written
    assert rec.n == 1300 and rec.skips == []
    assert rec.top1 == pytest.approx(0.7969, abs=0.003)
    assert rec.top5 == pytest.approx(0.9454, abs=0.003)
    assert 0 < rec.ece < 0.1
    preds = Preds.load(summary.run_dir / rec.preds)
    assert len(set(preds.ids.tolist())) == 1300 and (preds.labels >= 0).all()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize(("amp", "gpu_decode"), [("off", True), ("bf16", True), ("bf16", False)])
def test_mobilenet_v2_gpu_path_reproduces_reference_accuracy(val1300, tmp_path, amp, gpu_decode):
    """The GPU path: nvJPEG or worker decode, resize on the device, autocast; within 0.3 points."""
    _need_weights()
    req = ScoreRequest(
        models=["mobilenet_v2"],
        data=val1300,
        run=f"{amp}-{gpu_decode}",
        runs_dir=tmp_path,
        batch_size=128,
        device="cuda",
        amp=amp,
        gpu_decode=gpu_decode,
    )
    (rec,) = run_score(req).written
    decoder = "nvjpeg" if gpu_decode else "pil"
    assert rec.n == 1300 and f"decode {decoder};" in rec.preprocess and rec.amp == amp
    assert rec.top1 == pytest.approx(0.7969, abs=0.003)
    assert rec.top5 == pytest.approx(0.9454, abs=0.003)
