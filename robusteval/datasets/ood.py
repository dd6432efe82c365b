"""OOD sets in their released layouts, each one registered reader::

    @register_ood("imagenet-r", suite="ood", clean_heads=("imagenet-r200",))
    def imagenet_r(root: Path) -> list[ScoreSet]: ...

``clean_heads`` ask for the clean val to be scored beside them on the same label space (ImageNet-A
and -R are scored on their 200 classes; so is the clean val, as ``clean@imagenet-r200``).
"""

from __future__ import annotations

from pathlib import Path

from robusteval.datasets.items import Head, Item, ScoreSet, items_of, skips_of
from robusteval.errors import UserError
from robusteval.registry import Registry

OOD_SETS: Registry = Registry("OOD set")


def register_ood(name: str, *, suite: str, clean_heads: tuple[str, ...] = (), layout: str = ""):
    """Decorator: ``fn(root: Path) -> list[ScoreSet]`` reads the OOD set ``name`` at ``root``."""
    return OOD_SETS.register(name, suite=suite, clean_heads=clean_heads, layout=layout)


def _imagefolder(root: Path, name: str):
    from robusteval.datasets.layouts import read_imagefolder

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
    return [ScoreSet(name=name, suite="ood", items=items_of(ds.samples), source_space="imagenet1k",
                     heads=[Head(space)], skips=skips_of(ds))]  # fmt: skip


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
    return [ScoreSet(name="imagenet-sketch", suite="ood", items=items_of(ds.samples), source_space="imagenet1k",
                     heads=[Head("imagenet1k")], skips=skips_of(ds))]  # fmt: skip


@register_ood("imagenetv2", suite="ood", layout="imagenetv2-matched-frequency-format-val/<0..999>/*.jpeg")
def imagenetv2(root: Path) -> list[ScoreSet]:
    subs = [p for p in root.iterdir() if p.is_dir()] if root.is_dir() else []
    if len(subs) == 1 and not subs[0].name.isdigit():
        root = subs[0]  # the tarball's single top folder
    ds = _imagefolder(root, "imagenetv2")
    return [ScoreSet(name="imagenetv2", suite="ood", items=items_of(ds.samples), source_space="imagenet1k",
                     heads=[Head("imagenet1k")], skips=skips_of(ds))]  # fmt: skip


@register_ood(
    "mvh",
    suite="modelvshuman16",
    layout="<stimulus set>/<category>/*.png, or labels.csv (path,category,category_index)",
)
def modelvshuman(root: Path) -> list[ScoreSet]:
    """model-vs-human 16-class stimuli: one set ``mvh-<name>`` per stimulus folder, in the
    ``native`` view (model-vs-human's rule: each stimulus unresized when it is already the model's
    input size, else resized to it; never cropped)."""
    from robusteval.datasets.layouts import read_dataset
    from robusteval.datasets.sixteen import CATEGORIES16

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
        skips = skips_of(ds)
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
    # scored as model-vs-human scores them: no resize of 224 stimuli for a 224 model, no crop
    return [
        ScoreSet(name=f"mvh-{key}", suite="modelvshuman16", items=items, source_space="modelvshuman16",
                 heads=[Head("modelvshuman16")], skips=list(skips), mode="native")
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
