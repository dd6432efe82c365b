"""Do the maps mean something? Deletion curves (faithfulness) and rank correlations (sanity checks).

Deletion (Petsiuk et al. 2018, at patch granularity so the map order and the random order remove
the same kind of thing): the image is cut into ``PATCH`` x ``PATCH`` px patches; patches are
replaced by the mean colour (0 in normalised units) in order of their mean attribution, most
relevant first, and the target class's softmax probability is read after each step in
:data:`FRACTIONS`. The same is done in a seeded random patch order. ``auc`` is the area under
probability vs removed fraction (0..1, probability units); ``faithfulness = (auc_random - auc_map)
/ p_intact``: positive when removing what the map points at hurts the class faster than removing
random patches, in units of the intact image's probability (so low-probability classes compare).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

PATCH = 16
#: Removed fraction of the patches at each step of the curve (0: the intact image).
FRACTIONS = (0.0, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75)


@dataclass(frozen=True)
class Deletion:
    """Per image: ``auc_map``, ``auc_random`` (probability x fraction, normalised by the fraction
    range, so 0..1), ``p_intact`` (the target's probability on the whole image) and
    ``faithfulness = (auc_random - auc_map) / p_intact`` (about -1..1)."""

    auc_map: np.ndarray
    auc_random: np.ndarray
    p_intact: np.ndarray

    @property
    def faithfulness(self) -> np.ndarray:
        return (self.auc_random - self.auc_map) / np.maximum(self.p_intact, 1e-6)


def _patch_scores(maps: np.ndarray, patch: int) -> np.ndarray:
    b, h, w = maps.shape
    gh, gw = h // patch, w // patch
    return (
        maps[:, : gh * patch, : gw * patch].reshape(b, gh, patch, gw, patch).mean(axis=(2, 4)).reshape(b, -1)
    )


def _masked(x: Any, order: np.ndarray, *, patch: int, grid_w: int) -> Any:
    """``x`` [3, H, W] → [len(FRACTIONS), 3, H, W], the first ``f * n`` patches of ``order`` zeroed."""
    n = len(order)
    out = x.unsqueeze(0).repeat(len(FRACTIONS), 1, 1, 1)
    for step, frac in enumerate(FRACTIONS):
        for p in order[: round(frac * n)]:
            r, c = divmod(int(p), grid_w)
            out[step, :, r * patch : (r + 1) * patch, c * patch : (c + 1) * patch] = 0.0
    return out


def _auc(probs: np.ndarray) -> np.ndarray:
    f = np.asarray(FRACTIONS)
    return np.trapezoid(probs, f, axis=-1) / (f[-1] - f[0])


def deletion(
    model: Any, x: Any, maps: np.ndarray, *, targets: list[int], seed: int = 0, patch: int = PATCH,
    batch_size: int = 32,
) -> Deletion:  # fmt: skip
    """Deletion curves of ``maps`` (float [B, H, W] at ``x``'s size) for ``targets`` on ``x`` (float32
    [B, 3, H, W], normalised): one map-ordered and one randomly ordered curve per image."""
    import torch

    h, w = x.shape[-2:]
    scores = _patch_scores(np.asarray(maps, dtype=np.float64), patch)
    grid_w = w // patch
    rng = np.random.default_rng(seed)
    batches = []
    for i in range(len(targets)):
        by_map = np.argsort(-scores[i], kind="stable")
        by_chance = rng.permutation(scores.shape[1])
        batches += [
            _masked(x[i], by_map, patch=patch, grid_w=grid_w),
            _masked(x[i], by_chance, patch=patch, grid_w=grid_w),
        ]
    stacked = torch.cat(batches)
    probs = []
    with torch.no_grad():
        for j in range(0, len(stacked), batch_size):
            probs.append(torch.softmax(model(stacked[j : j + batch_size]).float(), dim=1).cpu())
    p = torch.cat(probs).numpy().reshape(len(targets), 2, len(FRACTIONS), -1)
    tp = np.stack([p[i, :, :, t] for i, t in enumerate(targets)])  # [B, 2, steps]
    return Deletion(auc_map=_auc(tp[:, 0]), auc_random=_auc(tp[:, 1]), p_intact=tp[:, 0, 0])


def rank_correlation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman rank correlation of each pair of maps (``a``, ``b``: [B, H, W]) → float [B] in -1..1.

    A constant map has no ranks; its correlation is reported as 0.
    """
    from scipy.stats import spearmanr

    out = []
    for x, y in zip(a, b, strict=True):
        xf, yf = np.ravel(x), np.ravel(y)
        if np.ptp(xf) == 0 or np.ptp(yf) == 0:
            out.append(0.0)
            continue
        out.append(float(spearmanr(xf, yf).statistic))
    return np.asarray(out)
