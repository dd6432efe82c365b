"""Deterministic fixtures for the report's golden test: a small scored run with every kind of cell.

    python tests/golden/make_fixtures.py              # rewrite tests/golden/runs/golden/
    python tests/golden/make_fixtures.py --expected   # ... and re-render tests/golden/expected/report.md

Three synthetic models (two classifiers, one zero-shot CLIP), 16 images per cell, per-image
correctness drawn from seeded generators with a shared per-image difficulty (so error consistency
is above chance). Records follow docs/architecture.md (schema 1); the report must read them as the
score engine writes them. Re-running writes the same records and the same arrays.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import shutil
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
RUN_DIR = HERE / "runs" / "golden"
EXPECTED = HERE / "expected"
N = 16
IDS = [f"v{i:02d}" for i in range(1, N + 1)]

# model -> (kind, clean top-1 probability, weights source)
MODELS = {
    "alpha_net": ("classifier", 0.85, "hf-hub:example/alpha_net"),
    "beta_net": ("classifier", 0.70, "https://example.org/beta_net.pth"),
    "clip_tiny": ("clip", 0.45, "local:clip_tiny.safetensors"),
}

# set -> (suite, label_space, level values or None, relative accuracy per level, models that scored it)
ALL = tuple(MODELS)
SUPERVISED = ("alpha_net", "beta_net")
SETS: dict[str, tuple[str, str, list | None, list[float], tuple[str, ...]]] = {
    "crop": ("study21", "imagenet1k", None, [0.99, 0.98, 0.97, 0.95, 0.92], ALL),
    "perspective": ("study21", "imagenet1k", None, [0.95, 0.85, 0.75, 0.6, 0.45], ALL),
    "fliplr": ("study21", "imagenet1k", None, [0.99], ALL),
    "jpeg_compression": ("study21", "imagenet1k", None, [0.95, 0.85, 0.7], SUPERVISED),
    "c_gaussian_noise": ("imagenet-c", "imagenet1k", None, [0.85, 0.7, 0.55, 0.4, 0.25], ALL),
    "fog": ("imagenet-c", "imagenet1k", None, [0.9, 0.85, 0.75, 0.65, 0.5], SUPERVISED),
    "c_speckle_noise": ("imagenet-c", "imagenet1k", None, [0.8, 0.6], SUPERVISED),
    "lowpass": ("frequency", "imagenet1k", [0, 1, 3, 7], [1.0, 0.9, 0.5, 0.15], ALL),
    "highpass": ("frequency", "imagenet1k", [math.inf, 3, 1.5, 0.7], [1.0, 0.75, 0.4, 0.1], ALL),
    "rotation": ("ood-parametric", "imagenet1k", [0, 90, 180, 270], [1.0, 0.55, 0.45, 0.55], SUPERVISED),
    "imagenet-r": ("ood", "imagenet-r200", None, [0.5], ALL),
    "imagenet-sketch": ("ood", "imagenet1k", None, [0.35], ALL),
    "mvh-edges": ("modelvshuman16", "modelvshuman16", None, [0.35], ALL),
    "mvh-silhouettes": ("modelvshuman16", "modelvshuman16", None, [0.55], ALL),
}
# facts the report would read from the set specs (kept fixed here so the golden file is stable)
SET_FACTS = {
    "crop": {"suite": "study21", "study_level": 3},
    "perspective": {"suite": "study21", "study_level": 3},
    "lowpass": {"suite": "frequency", "level_label": "σ"},
    "highpass": {"suite": "frequency", "level_label": "σ"},
    "rotation": {"suite": "ood-parametric", "level_label": "degrees"},
}
MISSING_PREDS = ("clip_tiny", "mvh-silhouettes", None)  # a cell whose npz was never written
VERSIONS = {"python": "3.11.9", "robusteval": "0.1.0", "timm": "1.0.31", "torch": "2.5.1"}
ZERO_SHOT = {"n_templates": 7, "templates": "clip-mamba7"}
DATA_CONFIG = {"crop_pct": 0.875, "input_size": 224, "interpolation": "bicubic"}


def _rng(*parts: object) -> np.random.Generator:
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def _labels(space: str) -> np.ndarray:
    high = {"imagenet1k": 1000, "imagenet-r200": 200, "modelvshuman16": 16}[space]
    return _rng("labels", space).integers(0, high, size=N).astype(np.int64)


def _preds(model: str, name: str, sev: int | None, p: float, space: str) -> dict[str, np.ndarray]:
    labels = _labels(space)
    if space == "imagenet1k" and name == "clean":
        labels[3] = -1  # one image of unknown label: excluded from accuracy and ECE
    shared = _rng("difficulty", name, sev).random(N)
    own = _rng("own", model, name, sev).random(N)
    # the round(p * N) easiest images (shared difficulty plus the model's own noise) are right
    rank = np.argsort(np.argsort(0.7 * shared + 0.3 * own, kind="stable"), kind="stable")
    correct = rank < round(p * N)
    r = _rng("preds", model, name, sev)
    classes = {"imagenet1k": 1000, "imagenet-r200": 200, "modelvshuman16": 16}[space]
    top5 = np.zeros((N, 5), dtype=np.int16)
    prob = np.zeros((N, 5), dtype=np.float64)
    for i in range(N):
        others = [c for c in r.permutation(classes)[:6].tolist() if c != labels[i]][:5]
        row = others[:]
        if correct[i] and labels[i] >= 0:
            row = [int(labels[i]), *others[:4]]
        elif labels[i] >= 0 and r.random() < 0.5:
            row = [others[0], int(labels[i]), *others[1:4]]
        top5[i] = row
        conf = 0.55 + 0.4 * r.random() if correct[i] else 0.2 + 0.5 * r.random()
        rest = (1.0 - conf) * np.array([0.4, 0.25, 0.15, 0.1])
        prob[i] = [conf, *rest]
    return {
        "ids": np.array(IDS),
        "labels": labels,
        "top5": top5,
        "top5_prob": prob.astype(np.float16),
    }


def _ece(conf: np.ndarray, hit: np.ndarray) -> float:
    """ECE with 15 bins written as a plain loop (independent of robusteval's implementation)."""
    total = 0.0
    for b in range(15):
        lo, hi = b / 15, (b + 1) / 15
        inside = [(c, h) for c, h in zip(conf, hit, strict=True) if (lo < c <= hi) or (b == 0 and c == 0)]
        if inside:
            acc = sum(h for _, h in inside) / len(inside)
            mean_conf = sum(c for c, _ in inside) / len(inside)
            total += len(inside) / len(conf) * abs(acc - mean_conf)
    return total


def _record(
    model: str, name: str, suite: str, sev: int | None, space: str, params, arrays, tick: int
) -> dict:
    kind, _, source = MODELS[model]
    known = arrays["labels"] >= 0
    hit1 = (arrays["top5"][:, 0] == arrays["labels"])[known]
    hit5 = (arrays["top5"] == arrays["labels"][:, None]).any(axis=1)[known]
    subset = f"clean@{space}" if name == "clean" and space != "imagenet1k" else None
    cell = "__".join([model, name if subset is None else subset, "clean" if sev is None else f"s{sev}"])
    spec_hash = None
    if sev is not None and suite not in ("ood", "modelvshuman16"):
        blob = json.dumps({"op": name, "params": params}, sort_keys=True)
        spec_hash = hashlib.sha256(blob.encode()).hexdigest()[:16]
    from robusteval.runs import Record

    return Record(
        run="golden",
        cell=cell,
        model=model,
        model_kind=kind,
        set=name,
        suite=suite,
        severity=sev,
        params=params,
        label_space=space,
        subset=subset,
        n=int(known.sum()),
        top1=float(hit1.mean()),
        top5=None if space == "modelvshuman16" else float(hit5.mean()),
        ece=_ece(arrays["top5_prob"][known, 0].astype(np.float64), hit1.astype(np.float64)),
        seconds=0.25,
        img_per_s=64.0,
        skips=[],
        preprocess="resize 256 + center crop 224 (clean); resize 224 (stored crops)",
        data_config=DATA_CONFIG,
        weights={"source": source, "sha256": hashlib.sha256(source.encode()).hexdigest()},
        spec_hash=spec_hash,
        versions=VERSIONS,
        device="cpu",
        amp="off",
        decode_batch=16,
        forward_batch=16,
        created=f"2025-01-02T03:{tick // 60:02d}:{tick % 60:02d}+00:00",
        preds=f"preds/{cell}.npz",
        command="robusteval score --models alpha_net beta_net clip_tiny --sets sets --run golden",
        zero_shot=ZERO_SHOT if kind == "clip" else None,
    ).to_json()


def build(run_dir: Path) -> None:
    """Write ``run_dir/records.jsonl``, ``run_dir/preds/*.npz`` and ``run_dir/sets.json``."""
    if run_dir.exists():
        shutil.rmtree(run_dir)
    (run_dir / "preds").mkdir(parents=True)
    lines: list[str] = []
    cells: list[tuple[str, str, str, int | None, str, dict | None, float]] = []
    for model, (_, acc, _) in MODELS.items():
        cells.append((model, "clean", "clean", None, "imagenet1k", None, acc))
        cells.append((model, "clean", "clean", None, "imagenet-r200", None, min(acc + 0.05, 0.95)))
        for name, (suite, space, values, rel, who) in SETS.items():
            if model not in who:
                continue
            for i, factor in enumerate(rel):
                sev = i + 1 if len(rel) > 1 or suite in ("study21", "imagenet-c") else None
                params = {"value": values[i]} if values is not None else ({"level": sev} if sev else None)
                cells.append((model, name, suite, sev, space, params, acc * factor))
    for tick, (model, name, suite, sev, space, params, p) in enumerate(cells):
        arrays = _preds(model, name, sev, p, space)
        rec = _record(model, name, suite, sev, space, params, arrays, tick)
        if (model, name, sev) != MISSING_PREDS:
            np.savez_compressed(run_dir / rec["preds"], **arrays)
        if (model, name, sev) == ("alpha_net", "crop", 1):
            # a resumed cell: the first attempt's line stays in the append-only file, the last wins
            lines.append(
                json.dumps({**rec, "top1": 0.0, "created": "2025-01-02T02:59:59+00:00"}, sort_keys=True)
            )
        lines.append(json.dumps(rec, sort_keys=True))
    (run_dir / "records.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (run_dir / "sets.json").write_text(
        json.dumps(SET_FACTS, indent=1, sort_keys=True) + "\n", encoding="utf-8"
    )


def set_facts(run_dir: Path = RUN_DIR) -> dict:
    """The fixture's set facts as :class:`robusteval.report.records.SetInfo` objects."""
    from robusteval.report.records import SetInfo

    raw = json.loads((run_dir / "sets.json").read_text(encoding="utf-8"))
    return {name: SetInfo(**facts) for name, facts in raw.items()}


def render_expected(run_dir: Path = RUN_DIR, out: Path = EXPECTED) -> Path:
    """Render the fixture run to ``out/report.md`` (what the golden test compares against)."""
    from robusteval.report import make_report

    tmp = out / "_render"
    result = make_report(
        run_dir=run_dir, out_dir=tmp, baseline="beta_net", fail_under=["top1=0.5"], sets=set_facts(run_dir)
    )
    target = out / "report.md"
    target.write_bytes(result.report.read_bytes())
    shutil.rmtree(tmp)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--expected", action="store_true", help="also re-render expected/report.md")
    parser.add_argument("--out", type=Path, default=RUN_DIR, help="run folder to write")
    args = parser.parse_args(argv)
    build(args.out)
    if args.expected:
        print(render_expected(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
