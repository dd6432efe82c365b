"""Dataset layouts and decoding, on synthetic layouts and the real ../shared/data sets."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from robusteval.datasets.decode import BadImage, load_rgb, resize_center_crop
from robusteval.datasets.imagenet import class_names, wnid_to_index, wnids
from robusteval.datasets.layouts import LAYOUTS, read_dataset, sample_per_class
from robusteval.errors import UserError
from tests.badcorpus import CASES, build_bad_corpus


def _img(path: Path, seed: int = 0, size=(40, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)
    Image.fromarray(arr).save(path)
    return path


def test_synsets_standard_order():
    assert len(wnids()) == 1000 and wnids()[0] == "n01440764" and wnids()[-1] == "n15075141"
    assert class_names()[0] == "tench" and wnid_to_index()["n02951358"] == 472


def test_imagefolder_wnid_and_index_folders(tmp_path):
    _img(tmp_path / "a" / "n01440764" / "x.JPEG")
    _img(tmp_path / "a" / "n15075141" / "y.JPEG", 1)
    ds = read_dataset(tmp_path / "a")
    assert ds.layout == "imagefolder"
    assert sorted((s.label, s.wnid) for s in ds.samples) == [(0, "n01440764"), (999, "n15075141")]
    _img(tmp_path / "v2" / "0" / "a.jpeg")
    _img(tmp_path / "v2" / "472" / "b.jpeg", 2)
    ds = read_dataset(tmp_path / "v2")
    assert sorted(s.label for s in ds.samples) == [0, 472]
    assert {s.folder for s in ds.samples} == {"n01440764", "n02951358"}


def test_loc_solution_csv(tmp_path):
    _img(tmp_path / "ILSVRC2012_val_00000001.JPEG")
    _img(tmp_path / "ILSVRC2012_val_00000002.JPEG", 1)
    (tmp_path / "LOC_val_solution.csv").write_text(
        "ImageId,PredictionString\n"
        "ILSVRC2012_val_00000001,n01751748 1 2 3 4 n01751748 5 6 7 8\n"
        "ILSVRC2012_val_00000002,n09999999 1 2 3 4\n"
        "ILSVRC2012_val_00000003,n01440764 1 2 3 4\n"
    )
    ds = read_dataset(tmp_path)
    assert ds.layout == "loc-csv"
    assert [(s.id, s.wnid) for s in ds.samples] == [("ILSVRC2012_val_00000001", "n01751748")]
    assert sorted(s.reason for s in ds.skips) == [
        "labels row points at a missing file",
        "unknown wnid 'n09999999'",
    ]


def test_ilsvrc_ground_truth_with_meta_mat(tmp_path):
    from scipy.io import savemat

    # devkit IDs are not the standard order: ID 1 is kit fox (n02119789), ID 2 English setter.
    synsets = np.zeros(3, dtype=[("ILSVRC2012_ID", "O"), ("WNID", "O"), ("num_children", "O")])
    synsets[0] = (1, "n02119789", 0)
    synsets[1] = (2, "n02100735", 0)
    synsets[2] = (1001, "n00001740", 5)
    savemat(tmp_path / "meta.mat", {"synsets": synsets})
    _img(tmp_path / "ILSVRC2012_val_00000001.JPEG")
    _img(tmp_path / "ILSVRC2012_val_00000003.JPEG", 1)
    (tmp_path / "ILSVRC2012_validation_ground_truth.txt").write_text("2\n7\n1\n")
    ds = read_dataset(tmp_path)
    assert ds.layout == "ilsvrc-gt"
    got = [(s.id, s.wnid, s.label) for s in ds.samples]
    assert got == [
        ("ILSVRC2012_val_00000001", "n02100735", wnid_to_index()["n02100735"]),
        ("ILSVRC2012_val_00000003", "n02119789", wnid_to_index()["n02119789"]),
    ]


def test_ilsvrc_ground_truth_without_meta_says_what_to_do(tmp_path):
    _img(tmp_path / "ILSVRC2012_val_00000001.JPEG")
    (tmp_path / "ILSVRC2012_validation_ground_truth.txt").write_text("1\n")
    with pytest.raises(UserError, match="meta.mat"):
        read_dataset(tmp_path)


def test_unrecognised_folder_is_a_one_line_user_error(tmp_path):
    _img(tmp_path / "x.png")
    with pytest.raises(UserError) as err:
        read_dataset(tmp_path)
    assert "\n" not in str(err.value) and "labels.csv" in str(err.value)
    with pytest.raises(UserError, match="no such folder"):
        read_dataset(tmp_path / "nope")


def test_every_layout_is_detectable():
    assert set(LAYOUTS.names()) == {"labels-csv", "modelvshuman16", "ilsvrc-gt", "loc-csv", "imagefolder"}


def test_bad_corpus_decodes_or_gives_one_line_reason(tmp_path):
    root = build_bad_corpus(tmp_path / "bad")
    ds = read_dataset(root)
    reasons = {s.path: s.reason for s in ds.skips}
    assert any("missing file" in r for r in reasons.values())
    assert any("does not match" in r for r in reasons.values())
    by_name = {s.path.name: s for s in ds.samples}
    for name, expected in CASES.items():
        path = root / "images" / name
        if name == "unreadable.jpg" and os.access(path, os.R_OK):
            continue  # root can read mode-000 files; the reason is checked elsewhere
        if expected is None:
            img = load_rgb(by_name[name].path)
            assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
        else:
            with pytest.raises(BadImage) as err:
                load_rgb(path)
            assert expected in str(err.value) and "\n" not in str(err.value)


def test_16bit_png_keeps_contrast(tmp_path):
    # 8 rows: shorter sides under MIN_SIDE are skipped
    ramp = np.arange(256, dtype=np.uint16)[None, :].repeat(8, 0) * 257
    Image.fromarray(ramp).save(tmp_path / "r.png")
    img = load_rgb(tmp_path / "r.png")
    assert img[0, 0, 0] == 0 and img[0, 255, 0] == 255 and img[0, 128, 1] == 128


def test_resize_center_crop_shape_and_center():
    img = np.zeros((300, 600, 3), np.uint8)
    img[:, 300:] = 255
    out = resize_center_crop(img, resize=256, crop=224)
    assert out.shape == (224, 224, 3) and out.dtype == np.uint8
    assert out[:, :100].mean() < 5 and out[:, 124:].mean() > 250


def test_per_class_sampling_is_seeded_and_recorded(val1300):
    ds = read_dataset(val1300)
    a = sample_per_class(ds, per_class=1, seed=3)
    b = sample_per_class(ds, per_class=1, seed=3)
    c = sample_per_class(ds, per_class=1, seed=4)
    assert [s.id for s in a.samples] == [s.id for s in b.samples]
    assert len({s.label for s in a.samples}) == len(a.samples) == 725
    assert [s.id for s in a.samples] != [s.id for s in c.samples]


def test_real_shared_layouts(val1300, sample1000, mvh16):
    assert len(read_dataset(val1300).samples) == 1300
    assert len(read_dataset(sample1000).samples) == 1000
    ds = read_dataset(mvh16)
    assert ds.label_space == "modelvshuman16" and len(ds.samples) == 320
    with (mvh16 / "labels.csv").open() as fh:
        first = next(csv.DictReader(fh))
    assert ds.samples[0].folder == first["category"]


def test_sixteen_class_mapping_matches_the_published_lists():
    from robusteval.datasets.sixteen import CATEGORIES16, category_indices

    idx = category_indices()
    assert tuple(idx) == CATEGORIES16
    # model-vs-human's human_categories.py: 109 dog classes (203, Lhasa, included), 49 birds.
    assert len(idx["dog"]) == 109 and 203 in idx["dog"] and 192 not in idx["dog"]
    assert len(idx["bird"]) == 49 and idx["airplane"] == [404] and idx["oven"] == [766]
    assert sum(len(v) for v in idx.values()) == len({i for v in idx.values() for i in v})


def test_usable_cpus_follows_the_affinity_mask():
    import os

    from robusteval.cpus import usable_cpus

    if not hasattr(os, "sched_getaffinity"):
        pytest.skip("no affinity masks on this platform")
    before = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, {min(before)})
        assert usable_cpus() == 1
    finally:
        os.sched_setaffinity(0, before)
    assert usable_cpus() == len(before)
