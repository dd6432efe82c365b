"""Dataset layouts read as users already have them.

Each layout is one registered reader with a ``detect`` predicate; :func:`read_dataset` tries them
in registration order. Supported:

- ``labels-csv``: a folder with ``labels.csv`` (``path,class_index[,wnid]``), as in ../shared/data;
- ``modelvshuman16``: ``labels.csv`` with ``path,category,category_index`` (16-class stimuli);
- ``ilsvrc-gt``: flat ``ILSVRC2012_val_*.JPEG`` + ``ILSVRC2012_validation_ground_truth.txt``
  (devkit IDs, mapped through the devkit's ``meta.mat``);
- ``loc-csv``: flat images + Kaggle's ``LOC_val_solution.csv``;
- ``imagefolder``: one sub-folder per wnid (ImageNet-A/R/Sketch style) or per class index
  (ImageNetV2's ``0``..``999``).
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from robusteval.datasets.imagenet import wnid_to_index, wnids
from robusteval.errors import UserError
from robusteval.registry import Registry

IMAGE_SUFFIXES = {".jpeg", ".jpg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".gif"}


@dataclass(frozen=True)
class Sample:
    """One labelled image. ``label`` indexes the dataset's ``label_space`` (-1: unknown)."""

    path: Path
    label: int
    wnid: str | None
    id: str  # stable id, unique within the dataset (relative path without suffix)
    folder: str  # output sub-folder in corrupted trees: the wnid, or the category name


@dataclass(frozen=True)
class Skip:
    """An input that was not used, with a one-line reason."""

    path: str
    reason: str

    def as_dict(self) -> dict[str, str]:
        return {"source": self.path, "reason": self.reason}


@dataclass
class Dataset:
    root: Path
    layout: str
    label_space: str  # "imagenet1k" or "modelvshuman16"
    samples: list[Sample] = field(default_factory=list)
    skips: list[Skip] = field(default_factory=list)
    class_names: list[str] | None = None  # for non-ImageNet label spaces


LAYOUTS: Registry = Registry("dataset layout")


def register_layout(name: str, *, detect: Callable[[Path, Path | None], bool]):
    return LAYOUTS.register(name, detect=detect)


def _rel_id(root: Path, path: Path) -> str:
    """Path relative to the data root without suffix; labels may also point outside the root."""
    rel = path.relative_to(root) if path.is_relative_to(root) else path
    return rel.with_suffix("").as_posix().lstrip("/")


def _utf8_name(path: Path) -> bool:
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:  # undecodable bytes arrive as lone surrogates (surrogateescape)
        return False
    return True


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def _labels_file(root: Path, labels: Path | None, name: str) -> Path | None:
    if labels is not None:
        return labels if labels.name == name else None
    cand = root / name
    return cand if cand.is_file() else None


def _csv_text(path: Path) -> str:
    """The CSV's text: UTF-8 with or without Excel's BOM, else Latin-1 (every byte decodes)."""
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _csv_rows(path: Path, *, need: tuple[str, ...]) -> list[dict[str, str]]:
    """Rows of ``path`` keyed by stripped header names; a missing ``need`` column is a UserError."""
    reader = csv.reader(io.StringIO(_csv_text(path), newline=""))
    header = [h.strip() for h in next(reader, [])]
    missing = [c for c in need if c not in header]
    if missing:
        raise UserError(
            f"{path}: no {', '.join(repr(c) for c in missing)} column (header: {', '.join(header) or 'empty'})",
            hint=f"the first line must name the columns: {','.join(need)}",
        )
    return [
        {h: (row[i].strip() if i < len(row) else "") for i, h in enumerate(header)}
        for row in reader
        if any(row)
    ]


def _csv_header(path: Path) -> list[str]:
    try:
        text = _csv_text(path)
    except OSError:
        return []
    return [h.strip() for h in next(csv.reader(io.StringIO(text, newline="")), [])]


def _dedupe(ds: Dataset) -> Dataset:
    """Rows naming one image twice: identical labels collapse to one (a recorded skip), conflicting
    labels are a :class:`UserError` (the image would be graded against the wrong class)."""
    first: dict[str, Sample] = {}
    keep: list[Sample] = []
    for s in ds.samples:
        prev = first.get(s.id)
        if prev is None:
            first[s.id] = s
            keep.append(s)
        elif prev.label != s.label:
            raise UserError(
                f"{ds.root}: {s.id} is listed twice with different labels ({prev.label} and {s.label})",
                hint="keep one row per image in the labels file",
            )
        else:
            ds.skips.append(Skip(str(s.path), "listed twice with the same label; counted once"))
    ds.samples = keep
    return ds


def _label_csv(root: Path, labels: Path | None) -> Path | None:
    path = labels if labels is not None and labels.suffix == ".csv" else root / "labels.csv"
    return path if path.is_file() else None


def _resolve(root: Path, rel: str) -> Path:
    path = Path(rel)
    return path if path.is_absolute() else root / path


@register_layout(
    "labels-csv",
    detect=lambda root, labels: (
        (p := _label_csv(root, labels)) is not None and "class_index" in _csv_header(p)
    ),
)
def read_labels_csv(root: Path, labels: Path | None) -> Dataset:
    """``path,class_index[,wnid]`` rows; paths relative to the CSV's folder."""
    csv_path = _label_csv(root, labels)
    assert csv_path is not None
    base = csv_path.parent
    ds = Dataset(root=root, layout="labels-csv", label_space="imagenet1k")
    table = wnids()
    for row in _csv_rows(csv_path, need=("path", "class_index")):
        path = _resolve(base, row["path"])
        try:
            index = int(row["class_index"])
        except (TypeError, ValueError):
            ds.skips.append(Skip(row.get("path", "?"), f"bad class_index {row.get('class_index')!r}"))
            continue
        wnid = (row.get("wnid") or "").strip() or None
        if not 0 <= index < 1000:
            ds.skips.append(Skip(row["path"], f"class_index {index} outside 0..999"))
            continue
        if wnid is not None and wnid != table[index]:
            ds.skips.append(
                Skip(row["path"], f"wnid {wnid} does not match class_index {index} ({table[index]})")
            )
            continue
        if not path.exists():
            ds.skips.append(Skip(row["path"], "labels row points at a missing file"))
            continue
        ds.samples.append(Sample(path, index, table[index], _rel_id(base, path), table[index]))
    return _dedupe(ds)


@register_layout(
    "modelvshuman16",
    detect=lambda root, labels: (
        (p := _label_csv(root, labels)) is not None and "category_index" in _csv_header(p)
    ),
)
def read_modelvshuman(root: Path, labels: Path | None) -> Dataset:
    """model-vs-human 16-class stimuli: ``path,category,category_index``."""
    csv_path = _label_csv(root, labels)
    assert csv_path is not None
    base = csv_path.parent
    from robusteval.datasets.sixteen import CATEGORIES16

    ds = Dataset(
        root=root, layout="modelvshuman16", label_space="modelvshuman16", class_names=list(CATEGORIES16)
    )
    for row in _csv_rows(csv_path, need=("path", "category")):
        path = _resolve(base, row["path"])
        cat = row["category"]
        if cat not in CATEGORIES16:
            ds.skips.append(Skip(row["path"], f"unknown 16-class category {cat!r}"))
            continue
        if not path.exists():
            ds.skips.append(Skip(row["path"], "labels row points at a missing file"))
            continue
        ds.samples.append(Sample(path, CATEGORIES16.index(cat), None, _rel_id(base, path), cat))
    return _dedupe(ds)


GT_NAME = "ILSVRC2012_validation_ground_truth.txt"


def _find_meta(root: Path, gt: Path) -> Path | None:
    for cand in (gt.parent / "meta.mat", root / "meta.mat", gt.parent.parent / "data" / "meta.mat"):
        if cand.is_file():
            return cand
    return None


def devkit_id_to_wnid(meta_mat: Path) -> dict[int, str]:
    """ILSVRC2012_ID (1..1000) → wnid, from the devkit's ``meta.mat``."""
    from scipy.io import loadmat

    synsets = loadmat(str(meta_mat), squeeze_me=True)["synsets"]
    out: dict[int, str] = {}
    for row in synsets:
        ident, wnid, children = int(row["ILSVRC2012_ID"]), str(row["WNID"]), int(row["num_children"])
        if children == 0 and ident <= 1000:
            out[ident] = wnid
    return out


@register_layout("ilsvrc-gt", detect=lambda root, labels: _labels_file(root, labels, GT_NAME) is not None)
def read_ilsvrc_gt(root: Path, labels: Path | None) -> Dataset:
    """Official devkit ground truth: line i is the ILSVRC2012_ID of ``ILSVRC2012_val_{i:08d}``."""
    gt = _labels_file(root, labels, GT_NAME)
    assert gt is not None
    meta = _find_meta(root, gt)
    if meta is None:
        raise UserError(
            f"{gt.name} holds devkit class IDs, which need the devkit's meta.mat to map to wnids",
            hint=f"copy ILSVRC2012_devkit_t12/data/meta.mat next to {gt}",
        )
    id_to_wnid = devkit_id_to_wnid(meta)
    index = wnid_to_index()
    by_stem = {p.stem: p for p in root.iterdir() if _is_image(p)}
    ds = Dataset(root=root, layout="ilsvrc-gt", label_space="imagenet1k")
    for i, line in enumerate(gt.read_text().split(), start=1):
        stem = f"ILSVRC2012_val_{i:08d}"
        path = by_stem.get(stem)
        if path is None:
            continue  # users often keep a subset of the 50,000; absent files are not errors
        wnid = id_to_wnid.get(int(line))
        if wnid is None or wnid not in index:
            ds.skips.append(Skip(stem, f"devkit ID {line} has no wnid in meta.mat"))
            continue
        ds.samples.append(Sample(path, index[wnid], wnid, stem, wnid))
    return ds


LOC_NAME = "LOC_val_solution.csv"


@register_layout("loc-csv", detect=lambda root, labels: _labels_file(root, labels, LOC_NAME) is not None)
def read_loc_csv(root: Path, labels: Path | None) -> Dataset:
    """Kaggle's ``ImageId,PredictionString`` (first token of the string is the wnid)."""
    csv_path = _labels_file(root, labels, LOC_NAME)
    assert csv_path is not None
    index = wnid_to_index()
    by_stem = {p.stem: p for p in root.rglob("*") if _is_image(p)}
    ds = Dataset(root=root, layout="loc-csv", label_space="imagenet1k")
    for row in _csv_rows(csv_path, need=("ImageId", "PredictionString")):
        stem = row["ImageId"]
        wnid = (row.get("PredictionString") or "").split()[:1]
        path = by_stem.get(stem)
        if path is None:
            ds.skips.append(Skip(stem, "labels row points at a missing file"))
            continue
        if not wnid or wnid[0] not in index:
            ds.skips.append(Skip(stem, f"unknown wnid {(wnid or ['?'])[0]!r}"))
            continue
        ds.samples.append(Sample(path, index[wnid[0]], wnid[0], stem, wnid[0]))
    return _dedupe(ds)


def _class_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _looks_like_imagefolder(root: Path) -> bool:
    dirs = _class_dirs(root)
    if not dirs:
        return False
    index = wnid_to_index()
    return all(d.name in index or d.name.isdigit() for d in dirs[:50])


@register_layout("imagefolder", detect=lambda root, labels: labels is None and _looks_like_imagefolder(root))
def read_imagefolder(root: Path, labels: Path | None) -> Dataset:
    """``root/<wnid>/*`` or ``root/<class index>/*`` (ImageNetV2)."""
    index = wnid_to_index()
    table = wnids()
    ds = Dataset(root=root, layout="imagefolder", label_space="imagenet1k")
    for d in _class_dirs(root):
        if d.name in index:
            label = index[d.name]
        elif d.name.isdigit() and int(d.name) < 1000:
            label = int(d.name)
        else:
            ds.skips.append(
                Skip(d.name + "/", f"folder {d.name!r} is neither a known wnid nor a class index")
            )
            continue
        for path in sorted(d.rglob("*")):
            if not path.is_file() or path.name.startswith("."):
                continue
            if not _utf8_name(path):
                shown = os.fsencode(path.relative_to(root)).decode("utf-8", "backslashreplace")
                ds.skips.append(Skip(shown, "file name is not valid UTF-8; rename it to use it"))
                continue
            ds.samples.append(Sample(path, label, table[label], _rel_id(root, path), table[label]))
    return ds


def read_dataset(root: Path, *, labels: Path | None = None) -> Dataset:
    """Read any supported layout at ``root`` (optionally with an explicit ``labels`` file).

    Raises :class:`UserError` when nothing recognisable is there.
    """
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"--data {root}: no such folder", hint="point --data at a folder of images")
    if labels is not None and not labels.is_file():
        raise UserError(f"--labels {labels}: no such file")
    for entry in LAYOUTS:
        if entry.meta["detect"](root, labels):
            return entry.fn(root, labels)
    csv_path = _label_csv(root, labels)
    if csv_path is not None:
        header = _csv_header(csv_path)
        raise UserError(
            f"{csv_path}: no 'class_index' (ImageNet) or 'category_index' (16-class) column"
            f" (header: {', '.join(header) or 'empty'})",
            hint="the first line must be path,class_index[,wnid] or path,category,category_index",
        )
    raise UserError(
        f"--data {root}: no labels found",
        hint="use a folder of <wnid>/ sub-folders, or add labels.csv (path,class_index), "
        "ILSVRC2012_validation_ground_truth.txt + meta.mat, or LOC_val_solution.csv (or pass --labels FILE)",
    )


def sample_per_class(ds: Dataset, *, per_class: int, seed: int) -> Dataset:
    """Keep ``per_class`` samples per label, chosen by a seeded shuffle; order is stable."""
    import random

    by_label: dict[int, list[Sample]] = {}
    for s in sorted(ds.samples, key=lambda s: s.id):
        by_label.setdefault(s.label, []).append(s)
    keep: list[Sample] = []
    for label in sorted(by_label):
        group = by_label[label]
        rng = random.Random(f"{seed}:{label}")
        keep.extend(sorted(rng.sample(group, min(per_class, len(group))), key=lambda s: s.id))
    return Dataset(ds.root, ds.layout, ds.label_space, keep, list(ds.skips), ds.class_names)


def write_labels_csv(ds: Dataset, path: Path) -> Path:
    """Write ``ds`` as a labels file that :func:`read_dataset` reads back to the same samples.

    ImageNet label spaces use ``path,class_index,wnid``; 16-class sets ``path,category,category_index``.
    Paths are absolute, so the file can live anywhere.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        if ds.label_space == "modelvshuman16":
            names = ds.class_names or []
            w.writerow(["path", "category", "category_index"])
            w.writerows([str(s.path.resolve()), names[s.label], s.label] for s in ds.samples)
        else:
            w.writerow(["path", "class_index", "wnid"])
            w.writerows([str(s.path.resolve()), s.label, s.wnid] for s in ds.samples)
    return path
