"""Label spaces: how a model's 1,000 ImageNet logits become probabilities over a set's classes.

Each space is one registered function ``probs(logits) -> probs`` (float32 ``[n, 1000]`` logits in,
float32 ``[n, K]`` class probabilities out, rows summing to 1) plus data:

- ``imagenet1k``: softmax over all 1,000 classes;
- ``imagenet-a200`` / ``imagenet-r200``: logits masked to the 200 classes of ImageNet-A / -R
  (``assets/imagenet_{a,r}200_wnids.txt``, the official lists), softmax over those 200;
- ``modelvshuman16``: softmax over 1,000, then the mean probability over each category's ImageNet
  classes (model-vs-human's decision rule), argmax over the 16; the 16 means are rescaled to sum
  to 1 so that confidences (ECE) are comparable, which leaves the ranking unchanged.

Labels of a data set are converted into a space with :meth:`LabelSpace.labels_from`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib import resources

import numpy as np

from robusteval.registry import Registry

LABEL_SPACES: Registry = Registry("label space")


@dataclass(frozen=True)
class LabelSpace:
    """One label space: ``num_classes`` classes; ``imagenet_index[k]`` lists class k's 1k indices."""

    name: str
    num_classes: int
    probs: Callable  # (torch float32 [n, 1000]) -> torch float32 [n, num_classes]
    imagenet_index: tuple[tuple[int, ...], ...]

    def labels_from(self, labels: np.ndarray, *, source: str) -> np.ndarray:
        """Map int labels of label space ``source`` into this space (-1 where a label has no class)."""
        labels = np.asarray(labels, dtype=np.int64)
        if source == self.name:
            return labels.copy()
        if source != "imagenet1k":
            raise ValueError(f"cannot map labels of {source!r} into {self.name!r}")
        table = np.full(1000, -1, dtype=np.int64)
        for k, members in enumerate(self.imagenet_index):
            table[list(members)] = k
        out = np.full(labels.shape, -1, dtype=np.int64)
        known = (labels >= 0) & (labels < 1000)
        out[known] = table[labels[known]]
        return out


def register_label_space(name: str, *, imagenet_index: Callable[[], list[list[int]]]):
    """Decorator: register ``probs(logits)`` for ``name``; ``imagenet_index()`` is read lazily."""

    def deco(fn):
        LABEL_SPACES.register(name, imagenet_index=imagenet_index)(fn)
        return fn

    return deco


@cache
def get_label_space(name: str) -> LabelSpace:
    entry = LABEL_SPACES.get(name)
    index = tuple(tuple(m) for m in entry.meta["imagenet_index"]())
    return LabelSpace(name=name, num_classes=len(index), probs=entry.fn, imagenet_index=index)


@cache
def _wnid_subset(filename: str) -> tuple[int, ...]:
    from robusteval.datasets.imagenet import wnid_to_index

    text = resources.files("robusteval").joinpath(f"assets/{filename}").read_text()
    index = wnid_to_index()
    out = tuple(index[w] for w in text.split())
    if len(out) != 200 or list(out) != sorted(set(out)):
        raise RuntimeError(f"{filename} must list 200 distinct wnids in standard order")
    return out


@cache
def _device_index(indices: tuple[int, ...], device: str):
    """Index tensor on ``device``, made once (a per-batch host copy would stall the GPU queue)."""
    import torch

    return torch.as_tensor(indices, device=device)


@cache
def _mean_matrix(name: str, device: str):
    """float32 [1000, K]: column k averages the probabilities of class k's ImageNet members."""
    import torch

    space = get_label_space(name)
    w = torch.zeros(1000, space.num_classes)
    for k, members in enumerate(space.imagenet_index):
        w[list(members), k] = 1.0 / len(members)
    return w.to(device)


def _subset_probs(logits, indices: tuple[int, ...]):
    idx = _device_index(indices, str(logits.device))
    return logits.float().index_select(1, idx).softmax(dim=1)


@register_label_space("imagenet1k", imagenet_index=lambda: [[i] for i in range(1000)])
def imagenet1k(logits):
    return logits.float().softmax(dim=1)


@register_label_space(
    "imagenet-a200", imagenet_index=lambda: [[i] for i in _wnid_subset("imagenet_a200_wnids.txt")]
)
def imagenet_a200(logits):
    return _subset_probs(logits, _wnid_subset("imagenet_a200_wnids.txt"))


@register_label_space(
    "imagenet-r200", imagenet_index=lambda: [[i] for i in _wnid_subset("imagenet_r200_wnids.txt")]
)
def imagenet_r200(logits):
    return _subset_probs(logits, _wnid_subset("imagenet_r200_wnids.txt"))


def _categories16() -> list[list[int]]:
    from robusteval.datasets.sixteen import category_indices

    return list(category_indices().values())


@register_label_space("modelvshuman16", imagenet_index=_categories16)
def modelvshuman16(logits):
    p = logits.float().softmax(dim=1)
    mean = p @ _mean_matrix("modelvshuman16", str(p.device))
    return mean / mean.sum(dim=1, keepdim=True)
