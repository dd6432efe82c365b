"""Attribution throughput: maps/s per model and method (``robusteval explain``'s inner loop).

Each row times :func:`robusteval.explain.methods.compute_maps` on a batch of ``--n`` images at the
model's input size (``--tiny``: 64 px, 2 images, CPU-sized models) after one warm-up call, and the
deletion curves (:func:`robusteval.explain.faithfulness.deletion`) of those maps. Random weights
(throughput does not depend on them); VMamba and CLIP-Mamba run the torch scan explain requests.

    python scripts/benchmarks/bench_explain.py --out bench_explain.json [--device cuda] [--n 32]
        [--models mobilenet_v2,vmamba_t,...] [--methods gradcam,ig,...] [--tiny]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # this checkout's robusteval

FULL_MODELS = "mobilenet_v2,efficientnet_lite0,convnext_b,swin_b,vmamba_t,vmamba_b,clip_mamba_vmamba_t220"
TINY_MODELS = "mobilenet_v2,timm:resnet18,vmamba_t"
METHODS = "gradcam,hirescam,gradcam++,layercam,eigencam,ig,occlusion"


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def bench_one(name: str, method: str, *, device: str, n: int, size: int | None) -> dict:
    from robusteval.explain.faithfulness import deletion
    from robusteval.explain.layers import cam_target
    from robusteval.explain.methods import METHODS as REG
    from robusteval.explain.methods import compute_maps
    from robusteval.explain.stage import load_explain_model

    loaded, scan = load_explain_model(name, weights="none", device=device)
    side = size or loaded.card.data.input_size
    if loaded.card.min_input_size:
        side = max(side, loaded.card.min_input_size)
    x = torch.randn(n, 3, side, side, device=device)
    targets = list(range(n))
    layer = cam_target(loaded.module, loaded.card, probe=x) if REG.get(method).meta["needs_layer"] else None
    compute_maps(method, loaded.module, x[:1], targets=targets[:1], layer=layer, batch_size=n)  # warm-up
    _sync(device)
    t = time.perf_counter()
    maps = compute_maps(method, loaded.module, x, targets=targets, layer=layer, batch_size=n)
    _sync(device)
    secs = time.perf_counter() - t
    t = time.perf_counter()
    deletion(loaded.module, x, maps, targets=targets, batch_size=4 * n)
    _sync(device)
    del_secs = time.perf_counter() - t
    return {
        "model": name, "method": method, "device": device, "n": n, "size": side, "scan_backend": scan,
        "seconds": round(secs, 4), "maps_per_s": round(n / secs, 3), "deletion_per_s": round(n / del_secs, 3),
    }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--models", default=None)
    ap.add_argument("--methods", default=METHODS)
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--tiny", action="store_true", help="CPU proof: 64 px, 2 images, small models")
    args = ap.parse_args()
    models = (args.models or (TINY_MODELS if args.tiny else FULL_MODELS)).split(",")
    n, size = (2, 64) if args.tiny else (args.n, None)
    rows = []
    for name in models:
        for method in args.methods.split(","):
            try:
                rows.append(bench_one(name, method, device=args.device, n=n, size=size))
            except Exception as err:  # one failing row must not lose the others
                rows.append(
                    {"model": name, "method": method, "device": args.device, "error": repr(err)[:200]}
                )
            print(json.dumps(rows[-1]), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"rows": rows, "torch": torch.__version__}, indent=1))
    print("\n| model | method | size | n | maps/s | deletion curves/s | scan |")
    print("|---|---|---:|---:|---:|---:|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['model']} | {r['method']} | | | error: {r['error']} | | |")
        else:
            print(f"| {r['model']} | {r['method']} | {r['size']} | {r['n']} | {r['maps_per_s']:.2f} "
                  f"| {r['deletion_per_s']:.2f} | {r['scan_backend'] or '-'} |")  # fmt: skip


if __name__ == "__main__":
    main()
