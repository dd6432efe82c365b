"""Transfer datasets as data: one :class:`TransferDataset` entry per name, read through torchvision.

Every entry names the torchvision class, the keyword arguments of its train and test splits, where
the class names and per-image labels live on the dataset object, the published split sizes and the
ILM-VP input size (32 px for the 32x32 sets CIFAR-10, SVHN, GTSRB; 128 px for the others). Nothing
downloads unless ``download=True``; files are read from ``root`` in each dataset's own layout:

====================  =============================================================================
cifar10               ``ROOT/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}``
svhn                  ``ROOT/{train_32x32.mat, test_32x32.mat}``
gtsrb                 ``ROOT/gtsrb/GTSRB/Training/<00000..00042>/*.ppm``,
                      ``ROOT/gtsrb/GTSRB/Final_Test/Images/*.ppm`` + ``ROOT/gtsrb/GT-final_test.csv``
dtd                   ``ROOT/dtd/dtd/images/<class>/*.jpg`` + ``ROOT/dtd/dtd/labels/{train,test}1.txt``
flowers102            ``ROOT/flowers-102/jpg/image_NNNNN.jpg`` + ``imagelabels.mat`` + ``setid.mat``
oxford_pets           ``ROOT/oxford-iiit-pet/images/*.jpg`` + ``annotations/{trainval,test}.txt``
eurosat               ``ROOT/eurosat/2750/<class>/*.jpg`` (one folder; split 80/20 per class here)
imagefolder:TR,TE     two ``torchvision.datasets.ImageFolder`` trees (class = sub-folder name)
====================  =============================================================================

``verify=True`` keeps torchvision's md5 checks of CIFAR-10, SVHN and Flowers102 files; ``verify=False``
only checks that the files exist (small test files, re-packed copies).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from robusteval.errors import UserError

IMAGEFOLDER = "imagefolder:"


@dataclass(frozen=True)
class TransferDataset:
    """One downstream dataset as data.

    ``tv_class``: torchvision.datasets class name. ``train``/``test``: keyword arguments of the two
    splits (``{}`` when the class has no split argument; see ``holdout``). ``labels_attr``: the
    attribute holding per-image labels (ints, or ``(path, label)`` pairs). ``class_names``: names
    when the dataset object carries none (else read from ``.classes``). ``n_train``/``n_test``:
    published split sizes, images. ``vp_size``: ILM-VP input side in px before padding to 224.
    ``holdout``: for classes without splits, every ``holdout``-th image of each class (sorted by
    path) is a test image; 0 when the class has splits.
    """

    name: str
    tv_class: str
    n_classes: int
    n_train: int
    n_test: int
    vp_size: int
    train: dict[str, Any] = field(default_factory=dict)
    test: dict[str, Any] = field(default_factory=dict)
    labels_attr: str = "targets"
    class_names: tuple[str, ...] = ()
    holdout: int = 0
    layout: str = ""  # the files torchvision reads under ROOT, for error messages


DATASETS: dict[str, TransferDataset] = {
    d.name: d
    for d in (
        TransferDataset(
            "cifar10", "CIFAR10", 10, 50_000, 10_000, 32, train={"train": True}, test={"train": False},
            layout="ROOT/cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}",
        ),
        TransferDataset(
            "svhn", "SVHN", 10, 73_257, 26_032, 32,
            train={"split": "train"}, test={"split": "test"}, labels_attr="labels",
            class_names=tuple(str(i) for i in range(10)),
            layout="ROOT/{train_32x32.mat,test_32x32.mat}",
        ),
        TransferDataset(
            "gtsrb", "GTSRB", 43, 26_640, 12_630, 32,
            train={"split": "train"}, test={"split": "test"}, labels_attr="_samples",
            class_names=tuple(f"{i:05d}" for i in range(43)),
            layout="ROOT/gtsrb/GTSRB/{Training/<class>/*.ppm,Final_Test/Images/*.ppm} + ROOT/gtsrb/GT-final_test.csv",
        ),
        TransferDataset(
            "dtd", "DTD", 47, 1_880, 1_880, 128,
            train={"split": "train", "partition": 1}, test={"split": "test", "partition": 1},
            labels_attr="_labels",
            layout="ROOT/dtd/dtd/{images/<class>/*.jpg,labels/train1.txt,labels/test1.txt}",
        ),
        TransferDataset(
            "flowers102", "Flowers102", 102, 1_020, 6_149, 128,
            train={"split": "train"}, test={"split": "test"}, labels_attr="_labels",
            layout="ROOT/flowers-102/{jpg/image_NNNNN.jpg,imagelabels.mat,setid.mat}",
        ),
        TransferDataset(
            "oxford_pets", "OxfordIIITPet", 37, 3_680, 3_669, 128,
            train={"split": "trainval"}, test={"split": "test"}, labels_attr="_labels",
            layout="ROOT/oxford-iiit-pet/{images/*.jpg,annotations/trainval.txt,annotations/test.txt}",
        ),
        TransferDataset(
            "eurosat", "EuroSAT", 10, 21_600, 5_400, 128, holdout=5,
            layout="ROOT/eurosat/2750/<class>/*.jpg",
        ),
    )
}  # fmt: skip


@dataclass(frozen=True)
class Splits:
    """A dataset opened for transfer: ``train``/``test`` are torchvision datasets yielding
    ``(PIL RGB image, int label)``; ``train_labels``/``test_labels`` int64 [n]; ``classes`` names."""

    spec: TransferDataset
    train: Any
    test: Any
    train_labels: np.ndarray
    test_labels: np.ndarray
    classes: tuple[str, ...]

    @property
    def name(self) -> str:
        return self.spec.name


def dataset_names() -> list[str]:
    return [*DATASETS, f"{IMAGEFOLDER}TRAIN_DIR,TEST_DIR"]


def get_dataset(name: str) -> TransferDataset:
    """The entry for ``name``; ``imagefolder:TRAIN,TEST`` builds one from two ImageFolder trees."""
    if name.startswith(IMAGEFOLDER):
        train, _, test = name.removeprefix(IMAGEFOLDER).partition(",")
        if not train or not test:
            raise UserError(
                f"--dataset {name!r}: expected imagefolder:TRAIN_DIR,TEST_DIR",
                hint="e.g. --dataset imagefolder:/data/pets/train,/data/pets/val",
            )
        return TransferDataset(name, "ImageFolder", 0, 0, 0, 128, train={"root": train}, test={"root": test})
    if name not in DATASETS:
        import difflib

        close = difflib.get_close_matches(name, list(DATASETS), n=2)
        raise UserError(
            f"unknown transfer dataset {name!r}" + (f"; did you mean {', '.join(close)}?" if close else ""),
            hint="choose from " + ", ".join(dataset_names()),
        )
    return DATASETS[name]


@contextlib.contextmanager
def _existence_only(cls: type) -> Iterator[None]:
    """Make ``cls``'s module-level ``check_integrity`` ignore md5 (it then only checks the file exists)."""
    mod = sys.modules[cls.__module__]
    orig = getattr(mod, "check_integrity", None)
    if orig is None:
        yield
        return
    mod.check_integrity = lambda fpath, md5=None: orig(fpath, None)
    try:
        yield
    finally:
        mod.check_integrity = orig


def _labels_of(ds: Any, attr: str) -> np.ndarray:
    raw = getattr(ds, attr)
    vals = [r[1] if isinstance(r, tuple | list) else r for r in raw]
    return np.asarray(vals, dtype=np.int64).reshape(-1)


def open_dataset(name: str, *, root: Path | None, download: bool = False, verify: bool = True) -> Splits:
    """Open both splits of ``name`` under ``root`` through torchvision's class (see module docstring).

    A missing or corrupt dataset is a one-line ``UserError`` naming the expected layout.
    """
    spec = get_dataset(name)
    tvd = importlib.import_module("torchvision.datasets")
    cls = getattr(tvd, spec.tv_class)
    if spec.tv_class == "ImageFolder":
        for key in ("train", "test"):
            if not Path(getattr(spec, key)["root"]).is_dir():
                raise UserError(f"{name}: no folder {getattr(spec, key)['root']}")
        train, test = cls(**spec.train), cls(**spec.test)
        if train.classes != test.classes:
            raise UserError(f"{name}: train and test folders hold different classes")
        return Splits(
            spec=TransferDataset(
                name, "ImageFolder", len(train.classes), len(train), len(test), 128,
                train=spec.train, test=spec.test,
            ),
            train=train, test=test, train_labels=_labels_of(train, "targets"),
            test_labels=_labels_of(test, "targets"), classes=tuple(train.classes),
        )  # fmt: skip
    if root is None:
        raise UserError(f"{name} needs --root DIR (the folder holding its files)")
    guard = contextlib.nullcontext() if verify else _existence_only(cls)
    try:
        with guard:
            if spec.holdout:
                full = cls(root=os.fspath(root), download=download)
                train, test = _holdout(full, spec)
            else:
                train = cls(root=os.fspath(root), download=download, **spec.train)
                test = cls(root=os.fspath(root), download=download, **spec.test)
    except (RuntimeError, FileNotFoundError, OSError) as err:
        first = str(err).splitlines()[0] if str(err) else err.__class__.__name__
        raise UserError(
            f"{name} under {root}: {first}",
            hint=f"expected {spec.layout}; pass --download to fetch it (online), "
            "or --no-verify for re-packed files",
        ) from None
    base = getattr(train, "dataset", train)
    classes = spec.class_names or tuple(getattr(base, "classes", ()))
    return Splits(
        spec=spec, train=train, test=test,
        train_labels=_split_labels(train, spec.labels_attr), test_labels=_split_labels(test, spec.labels_attr),
        classes=classes,
    )  # fmt: skip


def _split_labels(ds: Any, attr: str) -> np.ndarray:
    import torch.utils.data as tud

    if isinstance(ds, tud.Subset):
        return _labels_of(ds.dataset, attr)[np.asarray(ds.indices, dtype=np.int64)]
    return _labels_of(ds, attr)


def _holdout(full: Any, spec: TransferDataset) -> tuple[Any, Any]:
    """Every ``spec.holdout``-th image of each class (in the dataset's sorted order) goes to test."""
    import torch.utils.data as tud

    labels = _labels_of(full, spec.labels_attr)
    train_idx, test_idx = [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        test_mask = (np.arange(idx.size) % spec.holdout) == spec.holdout - 1
        test_idx += idx[test_mask].tolist()
        train_idx += idx[~test_mask].tolist()
    return tud.Subset(full, sorted(train_idx)), tud.Subset(full, sorted(test_idx))


def sample_shots(labels: np.ndarray, *, shots: int | None, seed: int) -> np.ndarray:
    """Indices of ``shots`` images per class drawn with ``seed`` (all of a smaller class; ``None``: all).

    Sorted int64; the same (labels, shots, seed) always gives the same indices.
    """
    labels = np.asarray(labels)
    if shots is None:
        return np.arange(labels.size, dtype=np.int64)
    rng = np.random.default_rng(seed)
    picked = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        picked.append(idx if idx.size <= shots else rng.choice(idx, size=shots, replace=False))
    return np.sort(np.concatenate(picked)).astype(np.int64)
