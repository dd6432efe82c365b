"""Reading corrupted trees: ours (through their ``manifest.jsonl``) and released ImageNet-C folders.

Released trees come without a manifest and are read as they are:

Layout ``ROOT/<folder>/<severity>/<wnid>/<file>``; ``<folder>`` is a released corruption name
(``gaussian_noise``, ...) mapped to our set through the spec's ``folder`` key, or any set name.
Images are already 224 crops, so they are scored like our own trees (resize + normalise).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from robusteval.corrupt.spec import load_specs
from robusteval.datasets.imagenet import wnid_to_index
from robusteval.datasets.items import Head, Item, ScoreSet
from robusteval.datasets.layouts import IMAGE_SUFFIXES
from robusteval.errors import UserError
from robusteval.jsonl import read_records

MANIFEST = "manifest.jsonl"


def _folder_to_spec() -> dict[str, str]:
    specs = load_specs()
    table = {name: name for name in specs}
    # Released folder names win over same-named sets of other suites (jpeg_compression, gaussian_blur):
    # a manifest-less tree with those names is the released ImageNet-C.
    table.update({str(s.extra["folder"]): name for name, s in specs.items() if "folder" in s.extra})
    return table


def released_tree_sets(root: Path):
    """One :class:`~robusteval.datasets.items.ScoreSet` per ``<folder>/<severity>`` found under ``root``."""
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


def tree_sets(root: Path) -> list[ScoreSet]:
    """One set per (set, severity) listed in ``root/manifest.jsonl``; images are 224 crops."""
    root = Path(root)
    manifest = root / MANIFEST
    if not manifest.is_file():
        released = released_tree_sets(root) if root.is_dir() else []
        if released:
            return released
        raise UserError(
            f"--sets {root}: no {MANIFEST} there, nor released ImageNet-C folders (<corruption>/<1..5>/<wnid>/)",
            hint="point --sets at the --out folder of `robusteval corrupt`",
        )
    spaces: set[str] = set()
    samples: set[str] = set()
    outputs: dict[str, dict[str, Any]] = {}
    for rec in read_records(manifest):
        if rec.get("kind") == "run":
            spaces.add(rec.get("label_space") or "imagenet1k")
            if rec.get("sample_sha256"):
                samples.add(rec["sample_sha256"])
        elif rec.get("kind") == "output" and _complete(rec):
            outputs[rec["path"]] = rec  # a re-run's record of the same file wins
    if len(samples) > 1:
        raise UserError(
            f"--sets {root}: holds {len(samples)} different samples of images (e.g. two --per-class runs)",
            hint="corrupt each sample to its own --out and score them separately",
        )
    if len(spaces) > 1:
        raise UserError(
            f"--sets {root}: mixes label spaces {sorted(spaces)}",
            hint="corrupt each data set to its own --out",
        )
    space = spaces.pop() if spaces else "imagenet1k"
    groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for rec in outputs.values():
        groups.setdefault((rec["set"], int(rec["severity"])), []).append(rec)
    out = []
    for (name, sev), recs in sorted(groups.items()):
        recs.sort(key=lambda r: r["id"])
        first = recs[0]
        items, skips = [], []
        for r in recs:
            path = root / r["path"]
            if path.is_file():
                items.append(Item(str(path), r["id"], int(r["label"])))
            else:
                skips.append({"path": str(path), "reason": "listed in the manifest but missing"})
        out.append(ScoreSet(
            name=name, suite=first.get("suite") or _suite_of(name), items=items, source_space=space,
            heads=[Head(space)], mode="resize", severity=sev, params=first.get("params"),
            spec_hash=first.get("spec_hash"), skips=skips,
        ))  # fmt: skip
    if not out:
        raise UserError(
            f"--sets {root}: the manifest lists no outputs", hint="run `robusteval corrupt` first"
        )
    return out


def _complete(rec: dict[str, Any]) -> bool:
    """An output record with the fields a set needs (a hand-edited or foreign line may lack them)."""
    try:
        int(rec["severity"]), int(rec["label"])
    except (KeyError, TypeError, ValueError):
        return False
    return all(isinstance(rec.get(k), str) for k in ("path", "set", "id"))


def _suite_of(set_name: str) -> str:
    from robusteval.corrupt.spec import load_specs

    spec = load_specs().get(set_name)
    return spec.suite if spec else "unknown"
