"""ImageNet-1k class list in the standard synset order (index 0 = n01440764 tench)."""

from __future__ import annotations

from functools import cache
from importlib import resources


@cache
def _synsets() -> tuple[tuple[str, str], ...]:
    text = resources.files("robusteval").joinpath("assets/imagenet_synsets.txt").read_text()
    rows = []
    for line in text.splitlines():
        wnid, _, names = line.partition(" ")
        rows.append((wnid, names))
    if len(rows) != 1000:
        raise RuntimeError(f"imagenet_synsets.txt has {len(rows)} rows, expected 1000")
    return tuple(rows)


def wnids() -> list[str]:
    """The 1,000 wnids in standard order."""
    return [w for w, _ in _synsets()]


def class_names() -> list[str]:
    """A short readable name per class (first synonym), standard order."""
    return [n.split(",")[0].strip() for _, n in _synsets()]


@cache
def wnid_to_index() -> dict[str, int]:
    return {w: i for i, w in enumerate(wnids())}
