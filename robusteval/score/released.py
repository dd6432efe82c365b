"""Corrupted trees that came without a manifest: the released ImageNet-C folders, as they are.

Layout ``ROOT/<folder>/<severity>/<wnid>/<file>``; ``<folder>`` is a released corruption name
(``gaussian_noise``, ...) mapped to our set through the spec's ``folder`` key, or any set name.
Images are already 224 crops, so they are scored like our own trees (resize + normalise).
"""

from __future__ import annotations

from pathlib import Path

from robusteval.corruptions.spec import load_specs
from robusteval.data.imagenet import wnid_to_index
from robusteval.data.layouts import IMAGE_SUFFIXES


def _folder_to_spec() -> dict[str, str]:
    specs = load_specs()
    table = {name: name for name in specs}
    # Released folder names win over same-named sets of other suites (jpeg_compression, gaussian_blur):
    # a manifest-less tree with those names is the released ImageNet-C.
    table.update({str(s.extra["folder"]): name for name, s in specs.items() if "folder" in s.extra})
    return table


def released_tree_sets(root: Path):
    """One :class:`~robusteval.score.sets.ScoreSet` per ``<folder>/<severity>`` found under ``root``."""
    from robusteval.score.sets import Head, Item, ScoreSet

    specs = load_specs()
    names = _folder_to_spec()
    index = wnid_to_index()
    out = []
    for folder in sorted(p for p in Path(root).iterdir() if p.is_dir() and p.name in names):
        spec = specs[names[folder.name]]
        for sev_dir in sorted(
            (p for p in folder.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name)
        ):
            items, skips = [], []
            for class_dir in sorted(p for p in sev_dir.iterdir() if p.is_dir()):
                if class_dir.name not in index:
                    skips.append(
                        {"path": str(class_dir), "reason": f"folder {class_dir.name!r} is not a wnid"}
                    )
                    continue
                for f in sorted(class_dir.iterdir()):
                    if f.suffix.lower() in IMAGE_SUFFIXES:
                        rel = f.relative_to(root).with_suffix("").as_posix()
                        items.append(Item(str(f), rel.split("/", 2)[2], index[class_dir.name]))
            sev = int(sev_dir.name)
            known = 1 <= sev <= len(spec.levels)
            out.append(ScoreSet(
                name=spec.name, suite=spec.suite, items=items, source_space="imagenet1k",
                heads=[Head("imagenet1k")], mode="resize", severity=sev,
                params=spec.params(sev) if known else None, spec_hash=spec.spec_hash(sev) if known else None,
                skips=skips,
            ))  # fmt: skip
    return [s for s in out if s.items]
