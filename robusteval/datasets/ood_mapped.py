"""OOD sets whose classes come from a release's own mapping files (ObjectNet, ImageNet-D): each
is scored on a grouped label space (class k = a group of ImageNet-1k classes) built while reading.

Registered into :data:`robusteval.datasets.ood.OOD_SETS`, which imports this module at its end.
"""

from __future__ import annotations

from pathlib import Path

from robusteval.datasets.items import Head, Item, ScoreSet
from robusteval.datasets.ood import OOD_SETS, register_ood
from robusteval.errors import UserError

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
