"""Fidelity of our VMamba against the official code: same random weights, compare fp32 logits.

    python scripts/tools/fidelity_vmamba.py --upstream .upstream/VMamba [--models vmamba_t,vmamba_s,vmamba_b]

``--upstream`` is a checkout of MzeroMiko/VMamba (kept in the git-ignored ``.upstream/``; never
committed). For each model the script builds upstream's released config
(``classification/models/vmamba.py``: ``vmamba_tiny_s1l8``, ``vmamba_small_s2l15``,
``vmamba_base_s2l15``), perturbs every parameter away from its init so no tensor is trivially
1 or 0, saves ``{'model': state_dict}`` exactly as the release files are laid out (optionally with
the 1x1 projections stored 4-D), loads that file into ours through the real loader
(``robusteval.models.create_model(name, weights=PATH)``), and runs both in fp32 eval mode on the
same input. Upstream runs its pure-PyTorch paths (``selective_scan_torch`` and the torch cross
scan/merge, chosen automatically without CUDA kernels or on CPU tensors); ours runs
``--scan-backend`` (default ``torch``).

Prints one JSON line per model: parameter counts of both, max |Δlogits|, max |logits|, top-1 agreement.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import tempfile
import time
import types
from pathlib import Path

import torch

UPSTREAM_BUILDERS = {
    "vmamba_t": "vmamba_tiny_s1l8",
    "vmamba_s": "vmamba_small_s2l15",
    "vmamba_b": "vmamba_base_s2l15",
}
# 1x1 projections upstream holds in Linear2d (accepts 2-D or 4-D weights).
_PROJ_SUFFIXES = ("op.in_proj.weight", "op.out_proj.weight", "mlp.fc1.weight", "mlp.fc2.weight")


def import_upstream(root: Path) -> types.ModuleType:
    """Import ``classification/models/vmamba.py`` from a checkout.

    fvcore and einops are imported there only for FLOP counting and the mamba2 variants; when they
    are not installed, empty stand-ins let the import succeed (nothing here calls them).
    """
    models_dir = root / "classification" / "models"
    if not (models_dir / "vmamba.py").is_file():
        sys.exit(f"{models_dir}/vmamba.py not found: pass --upstream <checkout of MzeroMiko/VMamba>")
    for name, attrs in {
        "fvcore": (),
        "fvcore.nn": ("FlopCountAnalysis", "flop_count_str", "flop_count", "parameter_count"),
        "einops": ("rearrange", "repeat"),
    }.items():
        try:
            importlib.import_module(name)
        except ImportError:
            stub = types.ModuleType(name)
            for attr in attrs:
                setattr(stub, attr, None)
            sys.modules[name] = stub
    sys.path.insert(0, str(models_dir))
    up = importlib.import_module("vmamba")
    _cpu_cross_scan_patch(up, importlib.import_module("csm_triton"))
    return up


def _cpu_cross_scan_patch(up: types.ModuleType, csm: types.ModuleType) -> None:
    """Upstream's cross_scan_fn / cross_merge_fn enter ``torch.cuda.device(x.device)``, which
    recent torch rejects for CPU tensors; on CPU call upstream's own torch autograd functions
    (``CrossScanF`` / ``CrossMergeF``, what those wrappers pick for CPU tensors) directly."""
    scan_fn, merge_fn = up.cross_scan_fn, up.cross_merge_fn

    def cross_scan(
        x, in_channel_first=True, out_channel_first=True, one_by_one=False, scans=0, force_torch=False
    ):
        if x.is_cuda:
            return scan_fn(x, in_channel_first, out_channel_first, one_by_one, scans, force_torch)
        return csm.CrossScanF.apply(x, in_channel_first, out_channel_first, one_by_one, scans)

    def cross_merge(
        y, in_channel_first=True, out_channel_first=True, one_by_one=False, scans=0, force_torch=False
    ):
        if y.is_cuda:
            return merge_fn(y, in_channel_first, out_channel_first, one_by_one, scans, force_torch)
        return csm.CrossMergeF.apply(y, in_channel_first, out_channel_first, one_by_one, scans)

    up.cross_scan_fn, up.cross_merge_fn = cross_scan, cross_merge


@torch.no_grad()
def perturb_(model: torch.nn.Module, *, seed: int) -> None:
    """Replace every parameter with random values at unit-gain scale, deterministically.

    Upstream's init (0.02-std projections, D = 1, A = -1) leaves each residual branch tiny, so a
    wrong scan direction would move logits by only ~1e-5; with weights ~ N(0, 1/fan_in) every
    branch contributes O(1) and any mismatch in the architecture shows up at O(1).
    """
    g = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        noise = torch.randn(p.shape, generator=g)
        if p.numel() == 0:
            continue
        if name.endswith("A_logs"):
            p.copy_(torch.rand(p.shape, generator=g) * 2.0 - 1.0)  # A in [-e, -1/e]
        elif name.endswith("Ds"):
            p.copy_(noise)
        elif name.endswith("dt_projs_bias"):
            p.add_(0.5 * noise)  # keeps softplus(dt) mostly in (0.001, 0.3): long memory
        elif name.endswith(("x_proj_weight", "dt_projs_weight")):
            p.copy_(noise / p.shape[-1] ** 0.5)  # per-direction (out, in) stacks
        elif p.dim() == 1:  # 1-D weights are LayerNorm scales; 1-D biases are norm/linear/conv biases
            p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.2 * noise)
        else:
            fan_in = p[0].numel()
            p.copy_(noise / fan_in**0.5)


def official_checkpoint(model: torch.nn.Module, *, four_d: bool) -> dict:
    sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
    if four_d:
        sd = {k: (v[:, :, None, None] if k.endswith(_PROJ_SUFFIXES) else v) for k, v in sd.items()}
    return {"model": sd, "epoch": 0, "max_accuracy": 0.0}


def compare(up_mod: types.ModuleType, name: str, args: argparse.Namespace) -> dict:
    from robusteval.models import create_model

    torch.manual_seed(args.seed)
    upstream = getattr(up_mod, UPSTREAM_BUILDERS[name])().eval()
    perturb_(upstream, seed=args.seed)

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{name}.pth"
        torch.save(official_checkpoint(upstream, four_d=args.four_d), path)
        # The path users take: registry → builder → read_checkpoint (weights_only) → "vmamba" converter.
        ours = create_model(name, weights=str(path), scan_backend=args.scan_backend).module

    upstream, ours = upstream.to(args.device), ours.to(args.device)
    gen = torch.Generator().manual_seed(args.seed + 1)
    x = torch.randn(args.batch, 3, args.size, args.size, generator=gen).to(args.device)
    with torch.no_grad():
        t0 = time.perf_counter()
        ref = upstream(x)
        if x.is_cuda:
            torch.cuda.synchronize()
        t1 = time.perf_counter()
        got = ours(x)
        if x.is_cuda:
            torch.cuda.synchronize()
        t2 = time.perf_counter()
    diff = (ref - got).abs()
    return {
        "model": name,
        "upstream_builder": UPSTREAM_BUILDERS[name],
        "params_upstream": sum(p.numel() for p in upstream.parameters()),
        "params_ours": sum(p.numel() for p in ours.parameters()),
        "input": [args.batch, 3, args.size, args.size],
        "proj_stored_4d": args.four_d,
        "scan_backend": args.scan_backend,
        "device": args.device,
        "max_abs_diff": float(diff.max()),
        "max_rel_diff": float(diff.max() / ref.abs().max()),
        "max_abs_logit": float(ref.abs().max()),
        "top1_agree": float((ref.argmax(1) == got.argmax(1)).float().mean()),
        "seconds_upstream": round(t1 - t0, 2),
        "seconds_ours": round(t2 - t1, 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--upstream", type=Path, required=True, help="checkout of MzeroMiko/VMamba")
    ap.add_argument("--models", default="vmamba_t,vmamba_s,vmamba_b")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--scan-backend", default="torch", help="ours: auto|mamba|triton|torch")
    ap.add_argument(
        "--device", default="cpu", help="cuda: upstream then uses its CUDA kernels (mamba-ssm) if importable"
    )
    ap.add_argument("--four-d", action="store_true", help="store 1x1 projection weights 4-D in the file")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()

    torch.set_default_dtype(torch.float32)
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32 on the GPU too
    torch.backends.cudnn.allow_tf32 = False
    up_mod = import_upstream(args.upstream.resolve())
    results = []
    for name in args.models.split(","):
        res = compare(up_mod, name.strip(), args)
        print(json.dumps(res), flush=True)
        results.append(res)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
