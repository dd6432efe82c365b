"""Fidelity of our Vim (``vim_t``/``vim_s``/``vim_b``) against the official hustvl/Vim code: same weights, fp32 logits.

    python scripts/tools/fidelity_vim.py --upstream .upstream/Vim [--models vim_t,vim_s] [--size 224]

``--upstream`` is a checkout of hustvl/Vim (kept in the git-ignored ``.upstream/``; never committed).
Upstream's ``vim/models_mamba.py`` needs its forked mamba-ssm (``mamba-1p1p1``, compiled CUDA
extension) and Triton layer-norm kernels. On CPU this TOOL (never the library) imports the fork's
pure-Python modules and swaps the three compiled entry points for plain-PyTorch references:
``mamba_inner_fn_no_out_proj`` → causal depthwise conv + SiLU + the fork's own ``selective_scan_ref``
(sequential loop over L), ``rms_norm_fn`` / ``layer_norm_fn`` → the fork's ``rms_norm_ref`` /
``layer_norm_ref``. Everything else (block wiring, middle class token, flips, /2) is upstream's code.

For each model: build upstream's builder, perturb every parameter, save ``{'model': state_dict}``
as the HF release files are laid out, load it into ours via ``create_model(name, weights=PATH)``,
run both in fp32 eval on the same input. Prints one JSON line per model.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import sys
import tempfile
import time
import types
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

UPSTREAM_BUILDERS = {
    "vim_t": "vim_tiny_patch16_224_bimambav2_final_pool_mean_abs_pos_embed_with_midclstok_div2",
    "vim_s": "vim_small_patch16_224_bimambav2_final_pool_mean_abs_pos_embed_with_midclstok_div2",
    "vim_b": "vim_base_patch16_224_bimambav2_final_pool_mean_abs_pos_embed_with_middle_cls_token_div2",
}


def _stub(name: str, **attrs: object) -> types.ModuleType:
    mod = types.ModuleType(name)
    for k, v in attrs.items():
        setattr(mod, k, v)
    sys.modules[name] = mod
    return mod


def import_upstream(root: Path) -> types.ModuleType:
    """Import ``vim/models_mamba.py`` with the fork's compiled kernels replaced by torch references."""
    fork = root / "mamba-1p1p1" / "mamba_ssm"
    if not (root / "vim" / "models_mamba.py").is_file() or not fork.is_dir():
        sys.exit(f"{root} is not a hustvl/Vim checkout (vim/models_mamba.py, mamba-1p1p1/)")
    # Bind our own backends first (ours may use an installed mamba-ssm), then drop any installed
    # mamba_ssm from sys.modules so that upstream gets the fork's modules.
    from robusteval.models.kernels.scan import available_backends

    available_backends()
    for name in [m for m in sys.modules if m == "mamba_ssm" or m.startswith("mamba_ssm.")]:
        del sys.modules[name]
    # The package without its __init__ (which pulls in the LM head and transformers).
    pkg = _stub("mamba_ssm")
    pkg.__path__ = [str(fork)]
    if importlib.util.find_spec("selective_scan_cuda") is None:
        _stub("selective_scan_cuda")  # compiled extension; only its Python wrappers are used
    if importlib.util.find_spec("causal_conv1d") is None:
        # mamba_simple's except-branch would fail to unpack None, so provide the names.
        _stub("causal_conv1d", causal_conv1d_fn=None, causal_conv1d_update=None)
    _stub("mamba_ssm.utils.generation", GenerationMixin=object)
    _stub("mamba_ssm.utils.hf", load_config_hf=None, load_state_dict_hf=None)
    ssi = importlib.import_module("mamba_ssm.ops.selective_scan_interface")
    ln = importlib.import_module("mamba_ssm.ops.triton.layer_norm")
    simple = importlib.import_module("mamba_ssm.modules.mamba_simple")

    def inner_no_out_proj(xz, conv_w, conv_b, x_proj_w, dt_proj_w, A, B, C, D, delta_bias, delta_softplus):
        L = xz.shape[-1]
        rank, n = dt_proj_w.shape[1], A.shape[-1]
        x, z = xz.chunk(2, dim=1)
        x = F.silu(F.conv1d(x, conv_w, conv_b, padding=conv_w.shape[-1] - 1, groups=x.shape[1])[..., :L])
        x_dbl = F.linear(x.transpose(1, 2).reshape(-1, x.shape[1]), x_proj_w)  # (b l, c)
        delta = (dt_proj_w @ x_dbl[:, :rank].t()).view(-1, x.shape[0], L).transpose(0, 1)
        Bv = x_dbl[:, rank : rank + n].view(x.shape[0], L, n).transpose(1, 2)
        Cv = x_dbl[:, -n:].view(x.shape[0], L, n).transpose(1, 2)
        return ssi.selective_scan_ref(x, delta, A, Bv, Cv, D, z=z, delta_bias=delta_bias, delta_softplus=True)

    simple.mamba_inner_fn_no_out_proj = inner_no_out_proj
    sys.path.insert(0, str(root / "vim"))
    up = importlib.import_module("models_mamba")

    def rms_norm_fn(x, weight, bias, residual=None, prenorm=False, residual_in_fp32=False, eps=1e-6, **_):
        return ln.rms_norm_ref(x, weight, bias, residual=residual, eps=eps, prenorm=prenorm, upcast=True)

    def layer_norm_fn(x, weight, bias, residual=None, prenorm=False, residual_in_fp32=False, eps=1e-6, **_):
        return ln.layer_norm_ref(x, weight, bias, residual=residual, eps=eps, prenorm=prenorm, upcast=True)

    up.rms_norm_fn, up.layer_norm_fn = rms_norm_fn, layer_norm_fn
    return up


@torch.no_grad()
def perturb_(model: torch.nn.Module, *, seed: int) -> None:
    """Every parameter to random values at unit-gain scale (so every branch moves the logits at O(1)).

    A logs uniform in [-1, 1] (A in [-e, -1/e]), D ~ N(0, 1), dt biases shifted by N(0, 0.25),
    1-D norm scales 1 + N(0, 0.04), other 1-D tensors N(0, 0.04), matrices N(0, 1/fan_in).
    """
    g = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        noise = torch.randn(p.shape, generator=g)
        leaf = name.rsplit(".", 1)[-1]
        if leaf in ("A_log", "A_b_log"):
            p.copy_(torch.rand(p.shape, generator=g) * 2.0 - 1.0)
        elif leaf in ("D", "D_b"):
            p.copy_(noise)
        elif name.endswith(("dt_proj.bias", "dt_proj_b.bias")):
            p.add_(0.5 * noise)
        elif p.dim() == 1:
            p.copy_((1.0 if leaf in ("weight", "gamma_1", "gamma_2", "gamma") else 0.0) + 0.2 * noise)
        elif leaf in ("pos_embed", "cls_token"):
            p.copy_(0.5 * noise)
        else:
            p.copy_(noise / p[0].numel() ** 0.5)


def load_ours(name: str, path: Path, *, scan_backend: str, **overrides: object) -> torch.nn.Module:
    """The loader path of ``create_model`` (read_checkpoint → the card's converter → strict load_into);
    at 224 px exactly ``create_model(name, weights=path)``, else the builder with ``overrides``."""
    from robusteval.models import create_model, resolve
    from robusteval.models.checkpoint import load_into, read_checkpoint
    from robusteval.models.registry import CONVERTERS

    if overrides.get("img_size", 224) == 224:
        return create_model(name, weights=str(path), scan_backend=scan_backend).module
    entry = resolve(name)
    card = entry.meta["card"]
    module = entry.fn(scan_backend=scan_backend, **overrides).eval()
    converter = CONVERTERS.get(card.converter).fn if card.converter else None
    load_into(module, read_checkpoint(path).state_dict, converter=converter, what=str(path))
    return module


def compare(up: types.ModuleType, name: str, args: argparse.Namespace) -> dict:
    torch.manual_seed(args.seed)
    upstream = getattr(up, UPSTREAM_BUILDERS[name])(img_size=args.size).eval()
    perturb_(upstream, seed=args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{name}.pth"
        sd = {k: v.detach().clone() for k, v in upstream.state_dict().items()}
        torch.save(
            {"model": sd, "epoch": 299, "args": argparse.Namespace(model=UPSTREAM_BUILDERS[name])}, path
        )
        ours = load_ours(name, path, scan_backend=args.scan_backend, img_size=args.size)
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
    ap.add_argument("--upstream", type=Path, required=True, help="checkout of hustvl/Vim")
    ap.add_argument("--models", default="vim_t,vim_s,vim_b")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--size", type=int, default=224, help="input px (both models built for it)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--scan-backend", default="torch", help="ours: auto|mamba|torch")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    up = import_upstream(args.upstream.resolve())
    results = []
    for name in args.models.split(","):
        res = compare(up, name.strip(), args)
        print(json.dumps(res), flush=True)
        results.append(res)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
