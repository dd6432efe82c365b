"""One PNG per model and set: rows = images; columns clean | shifted | per method: true-class map |
predicted-class map (each map over the shifted image), captions with class names, probabilities
and each map's faithfulness."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

CELL_IN = 2.3  # inches per grid cell
NAME_CHARS = 20


@dataclass(frozen=True)
class GridRow:
    """One image: uint8 HWC ``clean`` and ``shifted`` (same size), captions, and per method the two
    maps (float [H, W] in 0..1 at the shifted image's size) with their captions."""

    clean: np.ndarray
    shifted: np.ndarray
    clean_caption: str
    shifted_caption: str
    maps: list[tuple[np.ndarray, str]]  # (map, caption), two per method: true class, predicted class


def short(name: str) -> str:
    return name if len(name) <= NAME_CHARS else name[: NAME_CHARS - 1] + "…"


def write_grid(rows: list[GridRow], path: Path, *, title: str) -> Path:
    """Draw ``rows`` to ``path`` (PNG, 100 dpi); returns ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from robusteval.jsonl import atomic_write_bytes

    ncols = 2 + max(len(r.maps) for r in rows)
    fig, axes = plt.subplots(len(rows), ncols, figsize=(CELL_IN * ncols, CELL_IN * 1.12 * len(rows) + 0.5),
                             squeeze=False)  # fmt: skip
    for r, row in enumerate(rows):
        cells = [(row.clean, None, row.clean_caption), (row.shifted, None, row.shifted_caption)]
        cells += [(row.shifted, m, cap) for m, cap in row.maps]
        for c, ax in enumerate(axes[r]):
            ax.set_axis_off()
            if c >= len(cells):
                continue
            img, heat, cap = cells[c]
            ax.imshow(img)
            if heat is not None:
                ax.imshow(heat, cmap="jet", alpha=0.5, vmin=0.0, vmax=1.0,
                          extent=(-0.5, img.shape[1] - 0.5, img.shape[0] - 0.5, -0.5))  # fmt: skip
            ax.set_title(cap, fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return path
