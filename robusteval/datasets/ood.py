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


# --- ObjectNet: 113 classes overlapping ImageNet, through the release's own mapping files ---------

OBJECTNET_MAPPINGS = ("folder_to_objectnet_label.json", "objectnet_to_imagenet_1k.json")


def _imagenet_name_index() -> tuple[dict[str, list[int]], dict[str, list[int]]]:
    """(full synset description → indices, single lemma → indices), lower-cased (two ImageNet
    classes are both just "crane": such a name is ambiguous)."""
    from robusteval.datasets.imagenet import _synsets

    full: dict[str, list[int]] = {}
    lemma: dict[str, list[int]] = {}
    for i, (_, names) in enumerate(_synsets()):
        full.setdefault(names.strip().lower(), []).append(i)
        for part in names.split(","):
            lemma.setdefault(part.strip().lower(), []).append(i)
    return full, lemma


def objectnet_mapping(mappings: Path) -> tuple[dict[str, int], list[str], list[list[int]], list[str]]:
    """From the release's ``mappings/`` folder: (image folder → class index among the overlapping
    classes, their ObjectNet names, each class's ImageNet-1k indices, ImageNet names not matched).

    ``objectnet_to_imagenet_1k.json`` maps an ObjectNet class to ImageNet class names separated by
    ``; ``; a name matches a synset's full description, else a synonym naming exactly one class.
    """
    import json

    missing = [f for f in OBJECTNET_MAPPINGS if not (mappings / f).is_file()]
    if missing:
        raise UserError(
            f"--ood objectnet: {mappings} lacks {', '.join(missing)}",
            hint="point --ood objectnet= at the extracted objectnet-1.0 folder (images/ and mappings/)",
        )
    folder_to_label = json.loads((mappings / OBJECTNET_MAPPINGS[0]).read_text(encoding="utf-8"))
    to_imagenet = json.loads((mappings / OBJECTNET_MAPPINGS[1]).read_text(encoding="utf-8"))
    full, lemma = _imagenet_name_index()
    names, groups, unmatched = [], [], []
    for label in sorted(to_imagenet):
        members: list[int] = []
        for name in (n.strip() for n in str(to_imagenet[label]).split(";") if n.strip()):
            key = name.lower()
            hit = full.get(key) or lemma.get(key, [])
            if len(hit) == 1:
                members.append(hit[0])
            else:
                unmatched.append(name)
        if members:
            names.append(label)
            groups.append(sorted(set(members)))
    index = {label: k for k, label in enumerate(names)}
    folders = {folder: index[label] for folder, label in folder_to_label.items() if label in index}
    return folders, names, groups, unmatched


#: Grouped label spaces whose classes come from a release's mapping files, filled by the readers.
_GROUPS: dict[str, list[list[int]]] = {}


def _grouped_index(space: str):
    def index() -> list[list[int]]:
        if space not in _GROUPS:
            raise UserError(
                f"the {space} label space is defined by the release's mapping files", hint="score with --ood"
            )
        return _GROUPS[space]

    return index


def _register_grouped_space(space: str, groups: list[list[int]]) -> None:
    """(Re)define label space ``space``: class k = ImageNet-1k classes ``groups[k]``; a class scores its
    best member's softmax probability (the predicted ImageNet class decides), rows rescaled to 1."""
    from robusteval.datasets.labelspace import LABEL_SPACES, get_label_space, register_label_space

    _GROUPS[space] = groups
    get_label_space.cache_clear()  # the classes come from this release's mappings
    if space in LABEL_SPACES:
        return

    @register_label_space(space, imagenet_index=_grouped_index(space))
    def grouped(logits):
        import torch

        p = logits.float().softmax(dim=1)
        members = _GROUPS[space]
        pad = torch.full((len(members), max(len(g) for g in members)), 1000, dtype=torch.long)
        for k, g in enumerate(members):
            pad[k, : len(g)] = torch.as_tensor(g)
        padded = torch.cat([p, torch.zeros(p.shape[0], 1, device=p.device)], dim=1)
        best = padded[:, pad.to(p.device)].amax(dim=2)
        return best / best.sum(dim=1, keepdim=True).clamp_min(1e-12)


@register_ood(
    "objectnet",
    suite="ood",
    layout="objectnet-1.0/images/<folder>/*.png + mappings/{folder_to_objectnet_label,objectnet_to_imagenet_1k}.json",
    metric="top-1 on the ImageNet-overlapping classes (113 in the release; best member class per ObjectNet class)",
)
def objectnet(root: Path) -> list[ScoreSet]:
    """ObjectNet (Barbu et al. 2019): only images of classes that overlap ImageNet, scored on the
    ``objectnet113`` label space built from the release's mapping files (nothing shipped here)."""
    if (root / "objectnet-1.0").is_dir():
        root = root / "objectnet-1.0"
    folders, names, groups, unmatched = objectnet_mapping(root / "mappings")
    if not groups:
        raise UserError(f"--ood objectnet={root}: no ObjectNet class maps to an ImageNet class")
    _register_grouped_space("objectnet113", groups)
    skips = [
        {"path": str(root / "mappings"), "reason": f"ImageNet name {n!r} matches no single class"}
        for n in unmatched
    ]
    items = []
    images = root / "images"
    for folder in sorted(p for p in images.iterdir() if p.is_dir()) if images.is_dir() else []:
        if folder.name not in folders:
            continue  # an ObjectNet class with no ImageNet counterpart
        for f in sorted(folder.iterdir()):
            if f.is_file() and not f.name.startswith("."):
                items.append(Item(str(f), f"{folder.name}/{f.stem}", folders[folder.name]))
    if not items:
        raise UserError(f"--ood objectnet={root}: no images of overlapping classes under images/<folder>/")
    return [ScoreSet(name="objectnet", suite="ood", items=items, source_space="objectnet113",
                     heads=[Head("objectnet113")], skips=skips)]  # fmt: skip


# --- ImageNet-D: domains of a multi-label class mapping ------------------------------------------


@register_ood(
    "imagenet-d",
    suite="ood",
    layout="<domain>/<class>/*.{jpg,png} + mapping.json ({class: [ImageNet wnids or indices]}) at the root",
    metric="top-1 per domain; right when the predicted ImageNet class is one the image's class maps to",
)
def imagenet_d(root: Path) -> list[ScoreSet]:
    """ImageNet-D-style domain sets whose classes map to several ImageNet classes each: one set
    ``imagenet-d-<domain>`` per domain folder, scored on the ``imagenet-d`` grouped label space built
    from the user's ``mapping.json`` (the release's class → ImageNet classes table)."""
    import json

    from robusteval.datasets.imagenet import wnid_to_index

    mapping_file = root / "mapping.json"
    if not mapping_file.is_file():
        raise UserError(
            f"--ood imagenet-d={root}: no mapping.json", hint=OOD_SETS.get("imagenet-d").meta["layout"]
        )
    try:
        raw = json.loads(mapping_file.read_text(encoding="utf-8"))
    except ValueError as err:
        raise UserError(f"--ood imagenet-d: {mapping_file} is not JSON ({err})") from None
    index = wnid_to_index()
    classes, groups = [], []
    for name in sorted(raw):
        members = sorted({index[m] if isinstance(m, str) and m in index else int(m) for m in raw[name]
                          if (isinstance(m, str) and m in index) or (isinstance(m, int) and 0 <= m < 1000)})  # fmt: skip
        if members:
            classes.append(name)
            groups.append(members)
    if not groups:
        raise UserError(f"--ood imagenet-d: {mapping_file} maps no class to an ImageNet wnid or index")
    _register_grouped_space("imagenet-d", groups)
    label = {c: k for k, c in enumerate(classes)}
    out = []
    for domain in sorted(p for p in root.iterdir() if p.is_dir()):
        items, skips = [], []
        for cdir in sorted(p for p in domain.iterdir() if p.is_dir()):
            if cdir.name not in label:
                skips.append({"path": str(cdir), "reason": f"class {cdir.name!r} is not in mapping.json"})
                continue
            for f in sorted(cdir.iterdir()):
                if f.is_file() and not f.name.startswith("."):
                    items.append(Item(str(f), f"{domain.name}/{cdir.name}/{f.stem}", label[cdir.name]))
        if items:
            out.append(ScoreSet(name=f"imagenet-d-{domain.name}", suite="ood", items=items, source_space="imagenet-d",
                                heads=[Head("imagenet-d")], skips=skips))  # fmt: skip
    if not out:
        raise UserError(f"--ood imagenet-d={root}: no images under <domain>/<class>/")
    return out
