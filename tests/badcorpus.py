"""Builds a corpus of the bad inputs users really have, next to a few good images."""

from __future__ import annotations

import csv
import os
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

# name → (reason fragment expected in the skip, or None for images that must be processed)
CASES: dict[str, str | None] = {
    "good_rgb.jpg": None,
    "cmyk.jpg": None,
    "gray.png": None,
    "png16.png": None,
    "palette_alpha.png": None,
    "truncated.jpg": "decode failed",
    "empty.jpg": "empty file",
    "not_image.jpg": "not an image",
    "bomb.png": "decompression-bomb",
    "unreadable.jpg": "unreadable",
}


def build_bad_corpus(root: Path, *, good: list[Path] | None = None) -> Path:
    """Write a labels.csv data set under ``root`` with every case in :data:`CASES`.

    Also adds a labels row pointing at nothing and a row with an unknown wnid. ``good``: real
    images to include too (copied as-is). Returns ``root``.
    """
    img_dir = root / "images"
    img_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(img_dir / "good_rgb.jpg", quality=90)
    Image.fromarray(rgb).convert("CMYK").save(img_dir / "cmyk.jpg", quality=90)
    Image.fromarray(rgb[..., 0]).save(img_dir / "gray.png")
    Image.fromarray(rgb[..., 1].astype(np.uint16) * 257).save(img_dir / "png16.png")
    pal = Image.fromarray(rgb).convert("P", palette=Image.ADAPTIVE, colors=16)
    pal.info["transparency"] = 0
    pal.save(img_dir / "palette_alpha.png", transparency=0)
    data = (img_dir / "good_rgb.jpg").read_bytes()
    (img_dir / "truncated.jpg").write_bytes(data[: len(data) // 3])
    (img_dir / "empty.jpg").write_bytes(b"")
    (img_dir / "not_image.jpg").write_text("this is a text file, not a JPEG\n")
    # A tiny file whose header claims more pixels than PIL's bomb limit allows.
    side = int((Image.MAX_IMAGE_PIXELS * 2.2) ** 0.5) + 1
    Image.new("1", (side, side)).save(img_dir / "bomb.png", optimize=True)
    shutil.copy(img_dir / "good_rgb.jpg", img_dir / "unreadable.jpg")
    os.chmod(img_dir / "unreadable.jpg", 0)
    rows = [(f"images/{name}", 7, "n01514668") for name in CASES]
    rows.append(("images/missing.jpg", 7, "n01514668"))  # points at nothing
    rows.append(("images/good_rgb.jpg", 7, "n99999999"))  # wnid does not match the index
    for i, src in enumerate(good or []):
        dst = img_dir / f"real_{i}{src.suffix}"
        shutil.copy(src, dst)
        rows.append((f"images/{dst.name}", 7, "n01514668"))
    with (root / "labels.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "class_index", "wnid"])
        w.writerows(rows)
    return root
