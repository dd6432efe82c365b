"""The 16 model-vs-human categories and their ImageNet class indices (standard mapping)."""

from __future__ import annotations

import csv
from functools import cache
from importlib import resources

CATEGORIES16 = (
    "airplane", "bear", "bicycle", "bird", "boat", "bottle", "car", "cat",
    "chair", "clock", "dog", "elephant", "keyboard", "knife", "oven", "truck",
)  # fmt: skip


@cache
def category_indices() -> dict[str, list[int]]:
    """Category → ImageNet-1k class indices (from the packaged categories16.csv)."""
    text = resources.files("robusteval").joinpath("assets/categories16.csv").read_text()
    out = {
        row["category"]: [int(i) for i in row["imagenet_class_indices"].split()]
        for row in csv.DictReader(text.splitlines())
    }
    if tuple(out) != CATEGORIES16:
        raise RuntimeError("categories16.csv does not list the 16 categories in order")
    return out
