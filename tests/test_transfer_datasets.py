"""Every transfer dataset read through torchvision's own class from small files in its real layout."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from robusteval.errors import UserError
from robusteval.transfer.datasets import DATASETS, open_dataset, sample_shots

RNG = np.random.default_rng(0)


def _img(path: Path, size: int = 40, fmt: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(RNG.integers(0, 255, (size, size + 3, 3), dtype=np.uint8)).save(path, format=fmt)


def _cifar10(root: Path) -> tuple[int, int, list[int]]:
    base = root / "cifar-10-batches-py"
    base.mkdir(parents=True)
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    with (base / "batches.meta").open("wb") as fh:
        pickle.dump({"label_names": names, "num_cases_per_batch": 4, "num_vis": 3072}, fh, protocol=2)
    labels_all = []
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        labels = RNG.integers(0, 10, 4).tolist()
        data = RNG.integers(0, 255, (4, 3072), dtype=np.uint8)
        with (base / name).open("wb") as fh:
            pickle.dump(
                {"batch_label": name, "labels": labels, "data": data, "filenames": ["x.png"] * 4},
                fh,
                protocol=2,
            )
        if name != "test_batch":
            labels_all += labels
    return 20, 4, labels_all


def _svhn(root: Path) -> tuple[int, int, list[int]]:
    from scipy.io import savemat

    root.mkdir(parents=True, exist_ok=True)
    y_train = np.array([[1], [10], [3], [10], [5]], dtype=np.uint8)  # 10 is the digit 0
    for name, y in (("train_32x32.mat", y_train), ("test_32x32.mat", np.array([[2], [10]], dtype=np.uint8))):
        X = RNG.integers(0, 255, (32, 32, 3, len(y)), dtype=np.uint8)
        savemat(root / name, {"X": X, "y": y})
    return 5, 2, [1, 0, 3, 0, 5]


def _gtsrb(root: Path) -> tuple[int, int, list[int]]:
    base = root / "gtsrb"
    labels = []
    for c in (0, 1, 2):
        folder = base / "GTSRB" / "Training" / f"{c:05d}"
        for i in range(2):
            _img(folder / f"00000_{i:05d}.ppm", fmt="PPM")
            labels.append(c)
        (folder / f"GT-{c:05d}.csv").write_text("Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId\n")
    test = base / "GTSRB" / "Final_Test" / "Images"
    rows = ["Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId"]
    for i, c in enumerate((2, 0, 1)):
        _img(test / f"{i:05d}.ppm", fmt="PPM")
        rows.append(f"{i:05d}.ppm;40;43;5;5;35;38;{c}")
    (base / "GT-final_test.csv").write_text("\n".join(rows) + "\n")
    return 6, 3, labels


def _dtd(root: Path) -> tuple[int, int, list[int]]:
    data = root / "dtd" / "dtd"
    train, test = [], []
    for c in ("banded", "blotchy", "braided"):
        for i in range(3):
            _img(data / "images" / c / f"{c}_{i:04d}.jpg")
            (test if i == 2 else train).append(f"{c}/{c}_{i:04d}.jpg")
    (data / "labels").mkdir(parents=True)
    (data / "labels" / "train1.txt").write_text("\n".join(train) + "\n")
    (data / "labels" / "test1.txt").write_text("\n".join(test) + "\n")
    return 6, 3, [0, 0, 1, 1, 2, 2]


def _flowers102(root: Path) -> tuple[int, int, list[int]]:
    from scipy.io import savemat

    base = root / "flowers-102"
    labels = [1, 1, 2, 2, 3, 3, 1, 2]  # 1-based, as in imagelabels.mat
    for i in range(1, len(labels) + 1):
        _img(base / "jpg" / f"image_{i:05d}.jpg")
    savemat(base / "imagelabels.mat", {"labels": np.array([labels], dtype=np.uint8)})
    savemat(
        base / "setid.mat",
        {"trnid": np.array([[1, 3, 5, 2]]), "valid": np.array([[4, 6]]), "tstid": np.array([[7, 8]])},
    )
    return 4, 2, [0, 1, 2, 0]


def _oxford_pets(root: Path) -> tuple[int, int, list[int]]:
    base = root / "oxford-iiit-pet"
    (base / "annotations" / "trimaps").mkdir(parents=True)
    train = [
        ("Abyssinian_1", 1, 1),
        ("Abyssinian_2", 1, 1),
        ("american_bulldog_1", 2, 2),
        ("american_bulldog_3", 2, 2),
    ]
    test = [("Abyssinian_5", 1, 1), ("american_bulldog_7", 2, 2)]
    for name, _, _ in train + test:
        _img(base / "images" / f"{name}.jpg")
    for fname, rows in (("trainval.txt", train), ("test.txt", test)):
        (base / "annotations" / fname).write_text("".join(f"{n} {c} {b} 1\n" for n, c, b in rows))
    return 4, 2, [0, 0, 1, 1]


def _eurosat(root: Path) -> tuple[int, int, list[int]]:
    for c in ("AnnualCrop", "Forest"):
        for i in range(1, 11):
            _img(root / "eurosat" / "2750" / c / f"{c}_{i}.jpg", size=64)
    return 16, 4, [0] * 8 + [1] * 8


WRITERS = {
    "cifar10": _cifar10, "svhn": _svhn, "gtsrb": _gtsrb, "dtd": _dtd, "flowers102": _flowers102,
    "oxford_pets": _oxford_pets, "eurosat": _eurosat,
}  # fmt: skip


def test_every_dataset_has_a_writer():
    assert set(WRITERS) == set(DATASETS)


@pytest.mark.parametrize("name", list(DATASETS))
def test_reads_real_layout(tmp_path, name):
    n_train, n_test, train_labels = WRITERS[name](tmp_path)
    splits = open_dataset(name, root=tmp_path, verify=False)
    assert len(splits.train) == n_train and len(splits.test) == n_test
    assert splits.train_labels.tolist() == train_labels
    assert splits.test_labels.size == n_test and splits.test_labels.dtype == np.int64
    img, label = splits.train[0]
    assert img.mode == "RGB" and label == train_labels[0]
    assert all(0 <= int(v) < max(len(splits.classes), 1) for v in splits.train_labels)
    assert len(splits.classes) == DATASETS[name].n_classes or name in ("flowers102",) or splits.classes


def test_cifar_md5_checked_by_default(tmp_path):
    _cifar10(tmp_path)
    with pytest.raises(UserError, match="cifar10"):
        open_dataset("cifar10", root=tmp_path)


def test_missing_dataset_is_one_line(tmp_path):
    with pytest.raises(UserError, match="--download"):
        open_dataset("dtd", root=tmp_path)


def test_unknown_dataset_suggests():
    with pytest.raises(UserError, match="did you mean cifar10"):
        open_dataset("cifar11", root=None)


def test_shots_per_class_seeded():
    labels = np.repeat(np.arange(5), 20)
    a = sample_shots(labels, shots=3, seed=1)
    assert a.size == 15 and np.bincount(labels[a]).tolist() == [3] * 5
    assert np.array_equal(a, sample_shots(labels, shots=3, seed=1))
    assert not np.array_equal(a, sample_shots(labels, shots=3, seed=2))
    assert sample_shots(labels, shots=50, seed=1).size == 100
    assert sample_shots(labels, shots=None, seed=1).size == 100
