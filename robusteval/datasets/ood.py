"""OOD sets in their released layouts, each one registered reader::

    @register_ood("imagenet-r", suite="ood", clean_heads=("imagenet-r200",))
    def imagenet_r(root: Path) -> list[ScoreSet]: ...

``clean_heads`` ask for the clean val to be scored beside them on the same label space (ImageNet-A
and -R are scored on their 200 classes; so is the clean val, as ``clean@imagenet-r200``).
"""

from __future__ import annotations

import tomllib
from functools import cache
from importlib import resources
from pathlib import Path

from robusteval.datasets.items import Head, Item, ScoreSet, items_of, skips_of
from robusteval.errors import UserError
from robusteval.registry import Registry

OOD_SETS: Registry = Registry("OOD set")


def register_ood(
    name: str, *, suite: str, clean_heads: tuple[str, ...] = (), layout: str = "", metric: str = "top-1"
):
    """Decorator: ``fn(root: Path) -> list[ScoreSet]`` reads the OOD set ``name`` at ``root``.

    ``metric``: what the report computes for it (``top-1``; ``AUROC/AUPR`` for OOD detection sets).
    """
    return OOD_SETS.register(name, suite=suite, clean_heads=clean_heads, layout=layout, metric=metric)


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


# --- released corruption trees named as data (ImageNet-C-bar, ImageNet-3DCC) -------------------


@cache
def corruption_trees() -> dict[str, dict]:
    """Benchmark name → ``{"corruptions": [...], "severities": 5, "source": ...}`` from
    ``robusteval/assets/ood/corruption_trees.toml``."""
    text = resources.files("robusteval").joinpath("assets/ood/corruption_trees.toml").read_text()
    return tomllib.loads(text)


def _corruption_tree(name: str, root: Path) -> list[ScoreSet]:
    """``ROOT/<corruption>/<severity>/<wnid>/<image>`` (the ImageNet-C tree; images are 224 crops,
    scored with resize + normalise). One set per (corruption, severity); ids ``<wnid>/<stem>``."""
    from robusteval.datasets.imagenet import wnid_to_index
    from robusteval.datasets.layouts import IMAGE_SUFFIXES

    facts = corruption_trees()[name]
    if not root.is_dir():
        raise UserError(f"--ood {name}={root}: no such folder")
    index = wnid_to_index()
    out: list[ScoreSet] = []
    for corruption in facts["corruptions"]:
        folder = root / corruption
        if not folder.is_dir():
            continue
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
                        items.append(Item(str(f), f"{class_dir.name}/{f.stem}", index[class_dir.name]))
            if items:
                out.append(ScoreSet(name=corruption, suite=name, items=items, source_space="imagenet1k",
                                    heads=[Head("imagenet1k")], mode="resize", severity=int(sev_dir.name),
                                    skips=skips))  # fmt: skip
    if not out:
        raise UserError(
            f"--ood {name}={root}: none of its corruption folders found",
            hint=f"expected ROOT/<corruption>/<1..5>/<wnid>/*.JPEG with corruption one of {', '.join(facts['corruptions'])}",
        )
    return out


@register_ood(
    "imagenet-c-bar",
    suite="imagenet-c-bar",
    layout="<corruption>/<1..5>/<wnid>/*.JPEG (10 corruptions, ImageNet-C tree)",
)
def imagenet_c_bar(root: Path) -> list[ScoreSet]:
    return _corruption_tree("imagenet-c-bar", root)


@register_ood(
    "imagenet-3dcc",
    suite="imagenet-3dcc",
    layout="<corruption>/<1..5>/<wnid>/*.jpg (12 corruptions, ImageNet-C tree)",
)
def imagenet_3dcc(root: Path) -> list[ScoreSet]:
    return _corruption_tree("imagenet-3dcc", root)


# --- Stylized ImageNet, ImageNet-O ------------------------------------------------------------


@register_ood("stylized-imagenet", suite="ood", layout="<val>/<wnid>/*.png (1,000 wnids, ImageNet tree)")
def stylized_imagenet(root: Path) -> list[ScoreSet]:
    if (root / "val").is_dir():
        root = root / "val"  # the generated tree keeps train/ and val/ side by side
    ds = _imagefolder(root, "stylized-imagenet")
    return [ScoreSet(name="stylized-imagenet", suite="ood", items=items_of(ds.samples), source_space="imagenet1k",
                     heads=[Head("imagenet1k")], skips=skips_of(ds))]  # fmt: skip


@register_ood(
    "imagenet-o",
    suite="ood-detection",
    clean_heads=("imagenet-a200",),
    layout="imagenet-o/<wnid>/*.jpg (200 wnid folders; the images belong to none of the 1k classes)",
    metric="AUROC/AUPR (max softmax, ImageNet-O positive, clean val of the 200 classes negative)",
)
def imagenet_o(root: Path) -> list[ScoreSet]:
    """ImageNet-O (Hendrycks et al. 2021): out-of-distribution images scored on the 200-class head
    beside the clean val on the same head; the report separates the two by max-softmax confidence."""
    if (root / "imagenet-o").is_dir():
        root = root / "imagenet-o"
    ds = _imagefolder(root, "imagenet-o")
    return [ScoreSet(name="imagenet-o", suite="ood-detection", items=items_of(ds.samples), source_space="imagenet1k",
                     heads=[Head("imagenet-a200")], skips=skips_of(ds))]  # fmt: skip


# --- fixed subsets of the clean val -------------------------------------------------------------

SUBSETS: Registry = Registry("val subset")


@SUBSETS.register("robustbench5k", source="robustbench 1.1.1 helper_files/imagenet_test_image_ids.txt")
def robustbench5k() -> list[str]:
    """RobustBench's fixed 5,000 ImageNet val images, as ``<wnid>/<file>`` lines in its order."""
    text = resources.files("robusteval").joinpath("assets/ood/robustbench5k.txt").read_text()
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]


def subset_items(items: list[Item], subset: str) -> list[Item]:
    """The items of a clean val whose file stem (``ILSVRC2012_val_00015253``) is in ``subset``, in
    the subset's order; an item list missing some of them is fine (a smaller val), none is an error."""
    wanted = [Path(line).stem for line in SUBSETS.get(subset).fn()]
    by_stem = {Path(it.path).stem: it for it in items}
    out = [by_stem[s] for s in wanted if s in by_stem]
    if not out:
        raise UserError(
            f"--subset {subset}: none of its {len(wanted)} images is in this val",
            hint="point --data at the full ImageNet val (file names ILSVRC2012_val_*.JPEG)",
        )
    return out


#: Label files that re-score the clean val (read by the report, not scored).
LABEL_FILES = {
    "imagenet-real": {
        "kind": "--real-labels (report)",
        "suite": "clean",
        "layout": "real.json: 50,000 lists of class indices, entry i for ILSVRC2012_val_{i+1:08d}",
        "metric": "ReaL top-1 (top-1 in the image's label list; empty lists left out)",
    },
}


def set_catalogue() -> list[dict[str, str]]:
    """Every OOD set and val subset robusteval reads: name, kind, suite, layout, metric (for
    ``robusteval list sets``)."""
    rows = [
        {
            "name": e.name,
            "kind": "--ood",
            "suite": e.meta["suite"],
            "layout": e.meta["layout"],
            "metric": e.meta["metric"],
        }
        for e in (OOD_SETS.get(n) for n in OOD_SETS.names())
    ]
    trees = corruption_trees()
    for row in rows:
        if row["name"] in trees:
            row["layout"] += ": " + ", ".join(trees[row["name"]]["corruptions"])
    rows += [
        {
            "name": e.name,
            "kind": "--subset",
            "suite": "clean",
            "layout": f"{len(e.fn()):,} val images ({e.meta['source']})",
            "metric": "top-1",
        }
        for e in (SUBSETS.get(n) for n in SUBSETS.names())
    ]
    rows += [{"name": name, **facts} for name, facts in LABEL_FILES.items()]
    return rows


# The readers of mapping-file sets register themselves on import; imported last so that OOD_SETS
# keeps its order (and register_ood exists when they run).
from robusteval.datasets import ood_mapped  # noqa: E402, F401
