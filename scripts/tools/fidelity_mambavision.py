"""Fidelity of our MambaVision (``mambavision_t/_s/_b/_l``) against NVlabs/MambaVision: same weights, fp32 logits.

    python scripts/tools/fidelity_mambavision.py --upstream .upstream/MambaVision [--models mambavision_t] [--hf]

``--upstream`` is a checkout of NVlabs/MambaVision (git-ignored ``.upstream/``; never committed).
Upstream imports mamba-ssm's CUDA ``selective_scan_fn``; this TOOL (never the library) registers a
stand-in ``mamba_ssm`` whose ``selective_scan_fn`` is a plain sequential-loop PyTorch reference of
the same semantics, so upstream's own ``mamba_vision.py`` runs on CPU unchanged otherwise.

For each model: upstream's builder (``mamba_vision_T/S/B/L``), every parameter perturbed (BN running
statistics too), saved in a release layout — ``{'state_dict': ..., 'arch', 'epoch', 'args'}`` as
``.pth.tar`` (default) or, with ``--hf``, ``model.safetensors`` with keys prefixed ``model.`` as the
HF repos hold them — loaded into ours through ``create_model(name, weights=PATH)``; fp32 eval on
the same input. Prints one JSON line per model.
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
import torch.nn.functional as F

sys.path[:0] = [str(Path(__file__).resolve().parents[2]), str(Path(__file__).resolve().parent)]
from fidelity_vim import perturb_  # noqa: E402

UPSTREAM_BUILDERS = {
    "mambavision_t": "mamba_vision_T",
    "mambavision_s": "mamba_vision_S",
    "mambavision_b": "mamba_vision_B",
    "mambavision_l": "mamba_vision_L",
}


def selective_scan_loop(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False, **_):
    """Sequential reference: h_t = exp(dt_t A) h_{t-1} + dt_t B_t u_t; y_t = <C_t, h_t> + D u_t (fp32)."""
    u, delta = u.float(), delta.float()
    if delta_bias is not None:
        delta = delta + delta_bias.float()[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    Bf, Cf = B.float(), C.float()  # (b, n, l)
    h = u.new_zeros(u.shape[0], u.shape[1], A.shape[1])
    ys = []
    for t in range(u.shape[2]):
        dt = delta[:, :, t, None]
        h = torch.exp(dt * A) * h + dt * Bf[:, None, :, t] * u[:, :, t, None]
        ys.append((h * Cf[:, None, :, t]).sum(-1))
    y = torch.stack(ys, dim=2)
    if D is not None:
        y = y + u * D.float()[:, None]
    if z is not None:
        y = y * F.silu(z.float())
    return y


def import_upstream(root: Path, *, own_kernels: bool = False) -> types.ModuleType:
    """Import upstream's ``mamba_vision.py``; with ``own_kernels`` it keeps the installed mamba-ssm
    kernel (CUDA runs), else its ``selective_scan_fn`` is :func:`selective_scan_loop`."""
    if not (root / "mambavision" / "models" / "mamba_vision.py").is_file():
        sys.exit(f"{root} is not an NVlabs/MambaVision checkout")
    sys.path.insert(0, str(root))
    if own_kernels:
        return importlib.import_module("mambavision.models.mamba_vision")
    from robusteval.models.kernels.scan import available_backends

    available_backends()  # our backends bind any installed mamba-ssm before the stand-in replaces it
    for name in ("mamba_ssm", "mamba_ssm.ops"):
        sys.modules[name] = types.ModuleType(name)
    ssi = types.ModuleType("mamba_ssm.ops.selective_scan_interface")
    ssi.selective_scan_fn = selective_scan_loop
    sys.modules[ssi.__name__] = ssi
    return importlib.import_module("mambavision.models.mamba_vision")


@torch.no_grad()
def perturb_all_(model: torch.nn.Module, *, seed: int) -> None:
    """Parameters as in fidelity_vim.perturb_; BN running mean ~ N(0, 0.04), running var in [0.5, 1.5]."""
    perturb_(model, seed=seed)
    g = torch.Generator().manual_seed(seed + 7)
    for name, b in model.named_buffers():
        if name.endswith("running_mean"):
            b.copy_(0.2 * torch.randn(b.shape, generator=g))
        elif name.endswith("running_var"):
            b.copy_(0.5 + torch.rand(b.shape, generator=g))


def save_release(model: torch.nn.Module, path: Path, *, arch: str, hf: bool) -> Path:
    sd = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    if hf:
        from safetensors.torch import save_file

        path = path.with_name("model.safetensors")
        save_file({f"model.{k}": v for k, v in sd.items()}, str(path))
    else:
        path = path.with_suffix(".pth.tar")
        torch.save(
            {"epoch": 309, "arch": arch, "state_dict": sd, "args": argparse.Namespace(model=arch)}, path
        )
    return path


def compare(up: types.ModuleType, name: str, args: argparse.Namespace) -> dict:
    from robusteval.models import create_model

    torch.manual_seed(args.seed)
    upstream = getattr(up, UPSTREAM_BUILDERS[name])().eval()
    perturb_all_(upstream, seed=args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        path = save_release(upstream, Path(tmp) / name, arch=UPSTREAM_BUILDERS[name], hf=args.hf)
        ours = create_model(name, weights=str(path), scan_backend=args.scan_backend).module
    upstream, ours = upstream.to(args.device), ours.to(args.device)
    x = torch.randn(
        args.batch, 3, args.size, args.size, generator=torch.Generator().manual_seed(args.seed + 1)
    )
    x = x.to(args.device)
    with torch.no_grad():
        t0 = time.perf_counter()
        ref = upstream(x)
        t1 = time.perf_counter()
        got = ours(x)
        t2 = time.perf_counter()
    diff = (ref - got).abs()
    return {
        "model": name,
        "upstream_builder": UPSTREAM_BUILDERS[name],
        "format": "hf safetensors" if args.hf else ".pth.tar",
        "params_upstream": sum(p.numel() for p in upstream.parameters()),
        "params_ours": sum(p.numel() for p in ours.parameters()),
        "input": [args.batch, 3, args.size, args.size],
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
    ap.add_argument("--upstream", type=Path, required=True, help="checkout of NVlabs/MambaVision")
    ap.add_argument("--models", default=",".join(UPSTREAM_BUILDERS))
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--scan-backend", default="torch", help="ours: auto|mamba|torch")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--hf", action="store_true", help="save as HF model.safetensors (keys 'model.'-prefixed)")
    ap.add_argument(
        "--official-kernels", action="store_true", help="upstream uses the installed mamba-ssm (CUDA only)"
    )
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    up = import_upstream(args.upstream.resolve(), own_kernels=args.official_kernels)
    results = []
    for name in args.models.split(","):
        res = compare(up, name.strip(), args)
        print(json.dumps(res), flush=True)
        results.append(res)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
