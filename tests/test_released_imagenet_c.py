"""Released ImageNet-C folders (no manifest) are scorable as they are."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from robusteval.cli import app


def test_released_imagenet_c_tree_scores_as_is(tmp_path):
    root = tmp_path / "ImageNet-C"
    rng = np.random.default_rng(0)
    for folder in ("gaussian_noise", "jpeg_compression"):
        for sev in (1, 5):
            for wnid in ("n01440764", "n02951358"):
                d = root / folder / str(sev) / wnid
                d.mkdir(parents=True)
                for i in range(2):
                    arr = rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)
                    Image.fromarray(arr).save(d / f"ILSVRC2012_val_{i:08d}.JPEG", quality=85)
    (root / "gaussian_noise" / "1" / "not_a_wnid").mkdir()
    runs = tmp_path / "runs"
    res = CliRunner().invoke(app, ["score", "-m", "timm:test_convnext", "--weights", "timm:test_convnext=none",
                                   "--sets", str(root), "--run", "c", "--runs-dir", str(runs), "--device", "cpu",
                                   "--workers", "0"])  # fmt: skip
    assert res.exit_code == 0, res.output
    recs = [json.loads(line) for line in (runs / "c" / "records.jsonl").read_text().splitlines()]
    got = sorted((r["set"], r["severity"], r["n"], r["suite"]) for r in recs)
    assert got == [
        ("c_gaussian_noise", 1, 4, "imagenet-c"),
        ("c_gaussian_noise", 5, 4, "imagenet-c"),
        ("c_jpeg_compression", 1, 4, "imagenet-c"),
        ("c_jpeg_compression", 5, 4, "imagenet-c"),
    ]
    noisy = next(r for r in recs if r["set"] == "c_gaussian_noise" and r["severity"] == 1)
    assert any("not a wnid" in s["reason"] for s in noisy["skips"])
