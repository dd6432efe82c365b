"""What to score: clean val, corrupted trees (via their manifests), OOD sets, on-the-fly corruption.

Every source becomes one or more :class:`ScoreSet` — a list of items (image file, id, label) with
one or more :class:`Head` (a label space, and the items it covers). Each (model, set, severity,
head) is one cell of the run. OOD layouts register themselves in :data:`OOD_SETS`::

    @register_ood("imagenet-r", suite="ood", clean_heads=("imagenet-r200",))
    def imagenet_r(root: Path) -> list[ScoreSet]: ...

``clean_heads`` ask for the clean val to be scored beside them on the same label space (ImageNet-A
and -R are scored on their 200 classes; so is the clean val, as ``clean@imagenet-r200``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from robusteval.errors import UserError
from robusteval.registry import Registry


@dataclass(frozen=True)
class Item:
    path: str
    id: str
    label: int  # in the set's source label space, -1 unknown


@dataclass(frozen=True)
class Head:
    """One label space a set is scored in; ``subset`` names it when it covers only some items."""

    label_space: str
    subset: str | None = None


@dataclass(frozen=True)
class OnTheFly:
    """Corrupt clean images while scoring: the set ``set_name`` at ``severity``, seeded by ``seed``."""

    set_name: str
    severity: int
    seed: int
    impl: str  # "torch" or "imgaug"


@dataclass
class ScoreSet:
    """Items scored together. ``mode``: ``eval`` (full preprocessing) or ``resize`` (224 crops)."""

    name: str
    suite: str
    items: list[Item]
    source_space: str  # label space of ``Item.label``
    heads: list[Head]
    mode: str = "eval"
    severity: int | None = None
    params: dict[str, Any] | None = None
    spec_hash: str | None = None
    skips: list[dict[str, str]] = field(default_factory=list)  # found while listing the set
    onthefly: OnTheFly | None = None

    def head_labels(self, head: Head) -> np.ndarray:
        """Labels of every item in ``head``'s label space (-1: not in it)."""
        from robusteval.score.labelspace import get_label_space

        labels = np.asarray([it.label for it in self.items], dtype=np.int64)
        return get_label_space(head.label_space).labels_from(labels, source=self.source_space)

    def head_members(self, head: Head) -> np.ndarray:
        """Bool mask of the items a head scores: all for a full head, labelled ones for a subset."""
        if head.subset is None:
            return np.ones(len(self.items), dtype=bool)
        return self.head_labels(head) >= 0


def _skips(ds) -> list[dict[str, str]]:
    return [{"path": s.path, "reason": s.reason} for s in ds.skips]


def _items(samples) -> list[Item]:
    return [Item(str(s.path), s.id, int(s.label)) for s in samples]


# --- clean val ----------------------------------------------------------------------------------


def clean_set(data: Path, *, labels: Path | None = None, extra_heads: list[str] = ()) -> ScoreSet:
    """The clean val at ``data`` (any layout :func:`read_dataset` reads), full eval preprocessing."""
    from robusteval.data.layouts import read_dataset

    ds = read_dataset(Path(data), labels=labels)
    if not ds.samples:
        raise UserError(f"--data {data}: no images found", hint="check the folder and its labels file")
    heads = [Head(ds.label_space)]
    if ds.label_space == "imagenet1k":
        heads += [Head(h, subset=f"clean@{h}") for h in extra_heads]
    return ScoreSet(
        name="clean", suite="clean", items=_items(ds.samples), source_space=ds.label_space,
        heads=heads, mode="eval", skips=_skips(ds),
    )  # fmt: skip


# --- corrupted trees (corrupt stage) -------------------------------------------------------------


def tree_sets(root: Path) -> list[ScoreSet]:
    """One set per (set, severity) listed in ``root/manifest.jsonl``; images are 224 crops."""
    from robusteval.corrupt import MANIFEST
    from robusteval.data.manifest import read_records

    root = Path(root)
    manifest = root / MANIFEST
    if not manifest.is_file():
        from robusteval.score.released import released_tree_sets

        released = released_tree_sets(root) if root.is_dir() else []
        if released:
            return released
        raise UserError(
            f"--sets {root}: no {MANIFEST} there, nor released ImageNet-C folders (<corruption>/<1..5>/<wnid>/)",
            hint="point --sets at the --out folder of `robusteval corrupt`",
        )
    spaces: set[str] = set()
    outputs: dict[str, dict[str, Any]] = {}
    for rec in read_records(manifest):
        if rec.get("kind") == "run":
            spaces.add(rec.get("label_space") or "imagenet1k")
        elif rec.get("kind") == "output":
            outputs[rec["path"]] = rec  # a re-run's record of the same file wins
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


def _suite_of(set_name: str) -> str:
    from robusteval.corruptions.spec import load_specs

    spec = load_specs().get(set_name)
    return spec.suite if spec else "unknown"


# --- on-the-fly corruption ------------------------------------------------------------------------


def onthefly_sets(
    clean: ScoreSet, *, transforms: list[str], severities: list[int] | None, seed: int, impl: str
) -> list[ScoreSet]:
    """One set per (transformation, severity) corrupting the clean items while scoring."""
    from robusteval.corrupt import resolve_sets
    from robusteval.score.onthefly import resolve_impl

    out = []
    for spec, sevs in resolve_sets(transforms=transforms, suite=None, severities=severities):
        chosen = resolve_impl(spec.op, impl)
        for sev in sevs:
            out.append(ScoreSet(
                name=spec.name, suite=spec.suite, items=list(clean.items), source_space=clean.source_space,
                heads=[Head(clean.source_space)], mode="resize", severity=sev, params=spec.params(sev),
                spec_hash=spec.spec_hash(sev), onthefly=OnTheFly(spec.name, sev, seed, chosen),
            ))  # fmt: skip
    return out


# --- OOD sets -------------------------------------------------------------------------------------

OOD_SETS: Registry = Registry("OOD set")


def register_ood(name: str, *, suite: str, clean_heads: tuple[str, ...] = (), layout: str = ""):
    """Decorator: ``fn(root: Path) -> list[ScoreSet]`` reads the OOD set ``name`` at ``root``."""
    return OOD_SETS.register(name, suite=suite, clean_heads=clean_heads, layout=layout)


def _imagefolder(root: Path, name: str):
    from robusteval.data.layouts import read_imagefolder

    if not root.is_dir():
        raise UserError(f"--ood {name}={root}: no such folder")
    ds = read_imagefolder(root, None)
    if not ds.samples:
        raise UserError(
            f"--ood {name}={root}: no images in class folders", hint=OOD_SETS.get(name).meta["layout"]
        )
    return ds


def _subset_set(name: str, root: Path, space: str) -> list[ScoreSet]:
    ds = _imagefolder(root, name)
    return [ScoreSet(name=name, suite="ood", items=_items(ds.samples), source_space="imagenet1k",
                     heads=[Head(space)], skips=_skips(ds))]  # fmt: skip


@register_ood(
    "imagenet-a", suite="ood", clean_heads=("imagenet-a200",), layout="imagenet-a/<wnid>/*.jpg (200 wnids)"
)
def imagenet_a(root: Path) -> list[ScoreSet]:
    return _subset_set("imagenet-a", root, "imagenet-a200")


@register_ood(
    "imagenet-r", suite="ood", clean_heads=("imagenet-r200",), layout="imagenet-r/<wnid>/*.jpg (200 wnids)"
)
def imagenet_r(root: Path) -> list[ScoreSet]:
    return _subset_set("imagenet-r", root, "imagenet-r200")


@register_ood("imagenet-sketch", suite="ood", layout="sketch/<wnid>/*.JPEG (1,000 wnids)")
def imagenet_sketch(root: Path) -> list[ScoreSet]:
    if (root / "sketch").is_dir():
        root = root / "sketch"  # the released archive nests the wnid folders one level down
    ds = _imagefolder(root, "imagenet-sketch")
    return [ScoreSet(name="imagenet-sketch", suite="ood", items=_items(ds.samples), source_space="imagenet1k",
                     heads=[Head("imagenet1k")], skips=_skips(ds))]  # fmt: skip


@register_ood("imagenetv2", suite="ood", layout="imagenetv2-matched-frequency-format-val/<0..999>/*.jpeg")
def imagenetv2(root: Path) -> list[ScoreSet]:
    subs = [p for p in root.iterdir() if p.is_dir()] if root.is_dir() else []
    if len(subs) == 1 and not subs[0].name.isdigit():
        root = subs[0]  # the tarball's single top folder
    ds = _imagefolder(root, "imagenetv2")
    return [ScoreSet(name="imagenetv2", suite="ood", items=_items(ds.samples), source_space="imagenet1k",
                     heads=[Head("imagenet1k")], skips=_skips(ds))]  # fmt: skip


@register_ood(
    "mvh",
    suite="modelvshuman16",
    layout="<stimulus set>/<category>/*.png, or labels.csv (path,category,category_index)",
)
def modelvshuman(root: Path) -> list[ScoreSet]:
    """model-vs-human 16-class stimuli: one set ``mvh-<name>`` per stimulus folder."""
    from robusteval.data.layouts import read_dataset
    from robusteval.data.sixteen import CATEGORIES16

    if not root.is_dir():
        raise UserError(f"--ood mvh={root}: no such folder")
    groups: dict[str, list[Item]] = {}
    skips: list[dict[str, str]] = []
    if (root / "labels.csv").is_file():
        ds = read_dataset(root)
        if ds.label_space != "modelvshuman16":
            raise UserError(
                f"--ood mvh={root}: labels.csv is not a 16-class file (path,category,category_index)"
            )
        skips = _skips(ds)
        for s in ds.samples:
            parts = s.id.split("/")
            key = parts[0] if len(parts) >= 3 else root.name
            groups.setdefault(key, []).append(Item(str(s.path), s.id, int(s.label)))
    else:
        dirs = sorted(p for p in root.iterdir() if p.is_dir())
        stim = [root] if any(d.name in CATEGORIES16 for d in dirs) else dirs
        for sdir in stim:
            for cdir in sorted(p for p in sdir.iterdir() if p.is_dir()):
                if cdir.name not in CATEGORIES16:
                    skips.append(
                        {"path": str(cdir), "reason": f"{cdir.name!r} is not one of the 16 categories"}
                    )
                    continue
                for f in sorted(cdir.iterdir()):
                    if f.is_file() and not f.name.startswith("."):
                        rel = f.relative_to(root).with_suffix("").as_posix()
                        groups.setdefault(sdir.name, []).append(
                            Item(str(f), rel, CATEGORIES16.index(cdir.name))
                        )
    if not groups:
        raise UserError(f"--ood mvh={root}: no stimuli found", hint=OOD_SETS.get("mvh").meta["layout"])
    return [
        ScoreSet(name=f"mvh-{key}", suite="modelvshuman16", items=items, source_space="modelvshuman16",
                 heads=[Head("modelvshuman16")], skips=list(skips))
        for key, items in sorted(groups.items())
    ]  # fmt: skip


def ood_sets(name: str, root: Path) -> tuple[list[ScoreSet], tuple[str, ...]]:
    """Read OOD set ``name`` at ``root``; also returns the label spaces the clean val adds for it."""
    if name not in OOD_SETS:
        import difflib

        close = difflib.get_close_matches(name, OOD_SETS.names(), n=1)
        raise UserError(
            f"--ood {name}=...: unknown OOD set" + (f"; did you mean {close[0]}?" if close else ""),
            hint=f"NAME is one of {', '.join(OOD_SETS.names())}",
        )
    entry = OOD_SETS.get(name)
    return entry.fn(Path(root)), entry.meta["clean_heads"]


def parse_pairs(values: list[str] | None, *, option: str, example: str) -> list[tuple[str, str]]:
    """``NAME=VALUE`` strings → pairs, with a one-line error (showing ``example``) on anything else."""
    out = []
    for v in values or []:
        name, sep, rest = v.partition("=")
        if not sep or not name or not rest:
            raise UserError(f"{option} {v!r}: expected NAME=VALUE", hint=f"e.g. {option} {example}")
        out.append((name.strip(), rest.strip()))
    return out
