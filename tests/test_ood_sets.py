"""The new OOD sets read from small trees written in each released layout; ImageNet-O detection in
the report; the RobustBench 5k subset; `robusteval list sets`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from robusteval.datasets.imagenet import wnid_to_index, wnids
from robusteval.datasets.items import Item
from robusteval.datasets.ood import OOD_SETS, SUBSETS, corruption_trees, ood_sets, set_catalogue, subset_items
from robusteval.errors import UserError
from robusteval.runs import Preds, RunStore
from tests.helpers import make_record

WNIDS = wnids()


def _img(path: Path, suffix: str = ".JPEG") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8, 3), 127, np.uint8)).save(path.with_suffix(suffix))


@pytest.mark.parametrize("name", ["imagenet-c-bar", "imagenet-3dcc"])
def test_corruption_trees_read_the_released_tree(tmp_path, name):
    names = corruption_trees()[name]["corruptions"]
    assert len(names) == {"imagenet-c-bar": 10, "imagenet-3dcc": 12}[name]
    for corruption in names[:2]:
        for sev in (1, 5):
            _img(tmp_path / corruption / str(sev) / WNIDS[3] / "ILSVRC2012_val_00000001")
            _img(tmp_path / corruption / str(sev) / WNIDS[7] / "ILSVRC2012_val_00000002")
    (tmp_path / "not_a_corruption" / "1" / WNIDS[3]).mkdir(parents=True)
    (tmp_path / names[0] / "1" / "junk").mkdir()
    sets, heads = ood_sets(name, tmp_path)
    assert heads == ()
    assert [(s.name, s.severity) for s in sets] == [
        (names[0], 1),
        (names[0], 5),
        (names[1], 1),
        (names[1], 5),
    ]
    s = sets[0]
    assert s.suite == name and s.mode == "resize" and [it.label for it in s.items] == [3, 7]
    assert [it.id for it in s.items] == [
        f"{WNIDS[3]}/ILSVRC2012_val_00000001",
        f"{WNIDS[7]}/ILSVRC2012_val_00000002",
    ]
    assert s.skips and "junk" in s.skips[0]["path"]
    with pytest.raises(UserError):
        ood_sets(name, tmp_path / "not_a_corruption")


def test_stylized_imagenet_and_imagenet_o(tmp_path):
    _img(tmp_path / "sin" / "val" / WNIDS[5] / "a", ".png")
    (sin,), _ = ood_sets("stylized-imagenet", tmp_path / "sin")
    assert sin.name == "stylized-imagenet" and [it.label for it in sin.items] == [5]
    a200 = Path(__file__).resolve().parents[1] / "robusteval" / "assets" / "imagenet_a200_wnids.txt"
    wnid = a200.read_text().split()[0]
    _img(tmp_path / "o" / "imagenet-o" / wnid / "x", ".jpg")
    (o,), heads = ood_sets("imagenet-o", tmp_path / "o")
    assert heads == ("imagenet-a200",) and o.suite == "ood-detection"
    assert [h.label_space for h in o.heads] == ["imagenet-a200"] and o.items[0].label == wnid_to_index()[wnid]
    assert OOD_SETS.get("imagenet-o").meta["metric"].startswith("AUROC/AUPR")


def test_robustbench5k_subset():
    ids = SUBSETS.get("robustbench5k").fn()
    assert len(ids) == 5000 == len(set(ids))
    assert ids[0] == "n09468604/ILSVRC2012_val_00015253.JPEG"
    assert all(line.split("/")[0] in wnid_to_index() for line in ids)
    items = [
        Item(f"/v/{Path(s).stem}.JPEG", Path(s).stem, wnid_to_index()[s.split("/")[0]]) for s in ids[10:20]
    ]
    items.append(Item("/v/ILSVRC2012_val_99999999.JPEG", "x", 0))
    got = subset_items(items, "robustbench5k")
    assert [it.id for it in got] == [Path(s).stem for s in ids[10:20]]
    with pytest.raises(UserError):
        subset_items(items[-1:], "robustbench5k")


def test_list_sets_lists_every_set_with_layout_and_metric():
    rows = {r["name"]: r for r in set_catalogue()}
    assert set(OOD_SETS.names()) | {"robustbench5k", "imagenet-real"} == set(rows)
    assert all(r["layout"] and r["metric"] for r in rows.values())
    assert (
        "perlin_noise" in rows["imagenet-c-bar"]["layout"] and rows["imagenet-o"]["suite"] == "ood-detection"
    )
    from robusteval.cli import app

    res = CliRunner().invoke(app, ["list", "sets"])
    assert res.exit_code == 0 and "imagenet-3dcc" in res.output


def _cell(
    store: RunStore, model: str, name: str, suite: str, space: str, conf: np.ndarray, subset=None
) -> None:
    n = conf.size
    cell = f"{model}__{name}__{space}"
    labels = np.zeros(n, dtype=np.int64)
    top5 = np.tile(np.arange(5, dtype=np.int16), (n, 1))
    prob = np.c_[conf, np.full((n, 4), 0.01)]
    rec = make_record(model=model, set=name, suite=suite, label_space=space, subset=subset, n=n, top1=1.0,
                      top5=1.0, ece=None, cell=cell)  # fmt: skip
    store.append(
        rec, Preds(ids=np.array([f"i{k}" for k in range(n)]), labels=labels, top5=top5, top5_prob=prob)
    )


def test_imagenet_o_detection_in_the_report_tables(tmp_path):
    from robusteval import stats
    from robusteval.report.records import load_run
    from robusteval.report.tables import build_tables

    store = RunStore(tmp_path, "det")
    clean_conf = np.array([0.9, 0.8, 0.85, 0.6, 0.95, 0.7])
    ood_conf = np.array([0.3, 0.65, 0.5, 0.9])
    _cell(store, "m", "clean", "clean", "imagenet1k", np.full(6, 0.9))
    _cell(store, "m", "clean@imagenet-a200", "clean", "imagenet-a200", clean_conf, subset="imagenet-a200")
    _cell(store, "m", "imagenet-o", "ood-detection", "imagenet-a200", ood_conf)
    t = build_tables(load_run(run_dir=store.dir, sets={}), baseline=None)
    (row,) = t.ood_detection.itertuples(index=False)
    # f16-stored probabilities: compare with the metrics of the stored values
    pos = -ood_conf.astype(np.float16).astype(float)
    neg = -clean_conf.astype(np.float16).astype(float)
    assert (row.n_ood, row.n_clean) == (4, 6)
    # ood scores -0.3, -0.65, -0.5, -0.9 vs clean -0.9..-0.6: 6 + 5 + 6 + 1.5 (a tie) of 24 pairs
    assert row.auroc == pytest.approx(stats.auroc(positive=pos, negative=neg)) == pytest.approx(18.5 / 24)
    assert row.aupr == pytest.approx(stats.average_precision(positive=pos, negative=neg))
    assert "imagenet-o" not in set(t.paired["set"])  # not an accuracy comparison
    json.dumps(t.ood_detection.to_dict(orient="records"))


def test_real_accuracy_from_a_real_json(tmp_path):
    from robusteval.report.real import read_real_labels
    from robusteval.report.records import load_run
    from robusteval.report.tables import build_tables

    store = RunStore(tmp_path, "real")
    ids = np.array([f"val/ILSVRC2012_val_{k:08d}" for k in (1, 2, 3, 4)])
    top5 = np.array([[5, 0, 0, 0, 0], [7, 0, 0, 0, 0], [9, 0, 0, 0, 0], [1, 0, 0, 0, 0]], dtype=np.int16)
    rec = make_record(model="m", n=4, top1=0.25, top5=0.25, ece=None, cell="m__clean")
    labels = np.array([5, 6, 9, 2], dtype=np.int64)
    store.append(rec, Preds(ids=ids, labels=labels, top5=top5, top5_prob=np.full((4, 5), 0.2)))
    real = tmp_path / "real.json"
    real.write_text(json.dumps([[5], [6, 7], [], [3]]))  # image 3 dropped by ReaL
    t = build_tables(load_run(run_dir=store.dir, sets={}), baseline=None, real_labels=real)
    (row,) = t.real.itertuples(index=False)
    assert (row.n_real, row.real_top1) == (3, pytest.approx(2 / 3))  # 5 in [5], 7 in [6, 7], 1 not in [3]
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    with pytest.raises(UserError):
        read_real_labels(bad)


def _objectnet_release(root: Path) -> None:
    maps = root / "objectnet-1.0" / "mappings"
    maps.mkdir(parents=True)
    (maps / "folder_to_objectnet_label.json").write_text(
        json.dumps({"alarm_clock": "Alarm clock", "banana": "Banana", "chair": "Chair", "sock": "Sock"})
    )
    (maps / "objectnet_to_imagenet_1k.json").write_text(
        json.dumps(
            {
                "Alarm clock": "analog clock; digital clock",
                "Banana": "banana",
                "Chair": "rocking chair; crane",
            }
        )
    )
    for folder in ("alarm_clock", "banana", "chair", "sock"):
        _img(root / "objectnet-1.0" / "images" / folder / f"{folder}_1", ".png")


def test_objectnet_reads_its_mapping_files(tmp_path):
    import torch

    from robusteval.datasets.labelspace import get_label_space

    _objectnet_release(tmp_path)
    (s,), _ = ood_sets("objectnet", tmp_path)
    # Sock has no ImageNet counterpart: its folder is left out; "crane" names two classes: skipped
    assert [(it.id, it.label) for it in s.items] == [
        ("alarm_clock/alarm_clock_1", 0),
        ("banana/banana_1", 1),
        ("chair/chair_1", 2),
    ]
    assert any("crane" in k["reason"] for k in s.skips)
    space = get_label_space("objectnet113")
    idx = wnid_to_index()
    assert space.imagenet_index == (
        (idx["n02708093"], idx["n03196217"]),
        (idx["n07753592"],),
        (idx["n04099969"],),
    )
    logits = torch.full((1, 1000), -10.0)
    logits[0, idx["n03196217"]] = 5.0  # digital clock
    probs = space.probs(logits)
    assert probs.shape == (1, 3) and int(probs.argmax()) == 0 and float(probs.sum()) == pytest.approx(1.0)
    with pytest.raises(UserError):
        ood_sets("objectnet", tmp_path / "objectnet-1.0" / "images")


def test_imagenet_d_domains_on_a_multi_label_mapping(tmp_path):
    import torch

    from robusteval.datasets.labelspace import get_label_space

    idx = wnid_to_index()
    (tmp_path / "mapping.json").write_text(json.dumps({"clock": ["n02708093", "n03196217"], "banana": [954]}))
    for domain in ("clipart", "sketch"):
        _img(tmp_path / domain / "clock" / "c1", ".jpg")
        _img(tmp_path / domain / "banana" / "b1", ".jpg")
    _img(tmp_path / "sketch" / "zebra" / "z1", ".jpg")
    sets, _ = ood_sets("imagenet-d", tmp_path)
    assert [s.name for s in sets] == ["imagenet-d-clipart", "imagenet-d-sketch"]
    assert [(it.id, it.label) for it in sets[0].items] == [("clipart/banana/b1", 0), ("clipart/clock/c1", 1)]
    assert sets[1].skips and "zebra" in sets[1].skips[0]["reason"]
    space = get_label_space("imagenet-d")
    assert space.imagenet_index == ((954,), tuple(sorted((idx["n02708093"], idx["n03196217"]))))
    logits = torch.zeros((1, 1000))
    logits[0, idx["n02708093"]] = 9.0
    assert int(space.probs(logits).argmax()) == 1
    (tmp_path / "mapping.json").unlink()
    with pytest.raises(UserError):
        ood_sets("imagenet-d", tmp_path)


def test_score_subset_robustbench5k_on_real_val(val1300):
    from robusteval.score.engine import ScoreRequest, build_sets

    req = ScoreRequest(models=["mobilenet_v2"], run="x", data=val1300, subset="robustbench5k")
    notes: list[str] = []
    (clean,) = build_sets(req, notify=notes.append)
    wanted = {Path(s).stem for s in SUBSETS.get("robustbench5k").fn()}
    stems = [Path(it.path).stem for it in clean.items]
    assert clean.name == "clean@robustbench5k" and stems and set(stems) <= wanted
    full = build_sets(ScoreRequest(models=["mobilenet_v2"], run="x", data=val1300), notify=notes.append)[0]
    assert len(stems) == len({Path(it.path).stem for it in full.items} & wanted) < len(full.items)
    assert notes[0].startswith("--subset robustbench5k:")
