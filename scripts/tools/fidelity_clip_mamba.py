"""Fidelity of our CLIP-Mamba against the official code: same random weights, compare fp32 embeddings.

    python scripts/tools/fidelity_clip_mamba.py --upstream .upstream/mamba-clip \\
        --mamba-ssm .upstream/mamba_ssm_src [--site .upstream/site] [--models all] [--size 224] [--threads 1]

    # GPU machine, mamba-ssm + causal-conv1d installed: upstream runs its real CUDA kernels
    python scripts/tools/fidelity_clip_mamba.py --upstream .upstream/mamba-clip --site .upstream/site \\
        --device cuda --scan-backend auto

``--upstream``: the raytrun/mamba-clip sources (``models.py``, ``simba.py``, ``tokenizer.py``,
``vmamba/``; kept in the git-ignored ``.upstream/``, never committed). ``--mamba-ssm``: a folder
holding the ``mamba_ssm`` Python package (e.g. unpacked from the mamba-ssm wheel; its compiled
kernels are not needed). ``--site``: extra import path for packages upstream needs that robusteval
does not (``einops``, ``yacs``). Without ``--mamba-ssm`` the installed mamba-ssm is used; with
``--device cuda`` upstream then runs mamba-ssm's fused Mamba path (causal-conv1d + CUDA scan) and
its VMamba scans through mamba-ssm's CUDA ``selective_scan_fn``, and ours runs ``--scan-backend``.

For each model the script builds upstream's ``models.CLIP_*`` (online and EMA towers), replaces
every parameter and BatchNorm statistic with seeded random values (so the EMA copies differ from the
online ones and no branch is negligible), saves the released training-dict layout
``{'state_dict': {'module.*'}, 'args': Namespace(...), ...}``, loads that file through our real
path (``create_model``-equivalent: ``read_checkpoint`` + the ``clip_mamba`` converter + strict
``load_into``), and compares, in fp32 eval mode on ``--device`` (TF32 off):

- image embeddings: upstream ``encode_image(x, ema=True)`` vs ours;
- text embeddings: upstream ``encode_text(tokenizer(prompts), ema=True)`` vs ours, tokens from
  upstream's tokenizer and ours compared too;
- the zero-shot logits those give on a handful of classes;
- as a yardstick, how much upstream's own image embedding moves when its input is jittered by
  fp32 rounding (relative 1e-7): random unit-gain weights make deep towers amplify rounding.

On CPU, upstream's compiled pieces are replaced by upstream's own references: mamba-ssm's
``selective_scan_ref`` stands in for its CUDA ``selective_scan_fn`` (Simba's Mamba blocks; the
causal conv then runs upstream's ``nn.Conv1d`` slow path), and for VMamba's ``SelectiveScanOflex``/
``SelectiveScanCore`` kernels (both compute mamba's selective scan). Modules upstream imports
only for FLOP counting or training (``fvcore``, ``torchvision.transforms.functional_tensor``) are
empty stand-ins. Prints one JSON line per model.
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

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from a checkout without installing

UPSTREAM_BUILDERS = {
    "clip_mamba_vmamba_b": "CLIP_VMamba_B",
    "clip_mamba_vmamba_s": "CLIP_VMamba_S",
    "clip_mamba_vmamba_t220": "CLIP_VMamba_T220",
    "clip_mamba_simba_l": "CLIP_Simba_L",
}
PROMPT_CLASSES = ("tench", "goldfish", "great white shark", "tiger shark", "hammerhead shark")


def _stub(name: str, attrs: tuple[str, ...] = (), *, package: str | None = None) -> types.ModuleType:
    mod = types.ModuleType(name)
    for attr in attrs:
        setattr(mod, attr, None)
    if package is not None:
        mod.__path__ = [package]
    sys.modules[name] = mod
    return mod


def import_upstream(
    root: Path, mamba_ssm_dir: Path | None, site: Path | None, *, cuda: bool
) -> types.ModuleType:
    """Import mamba-clip's ``models``; CUDA kernels are used when ``cuda`` and installed, else references."""
    if not (root / "models.py").is_file():
        sys.exit(f"{root}/models.py not found: pass --upstream <folder with raytrun/mamba-clip sources>")
    for path in (site, mamba_ssm_dir, root):
        if path is not None:
            sys.path.insert(0, str(path))
    if mamba_ssm_dir is not None:
        pkg = mamba_ssm_dir / "mamba_ssm"
        if not (pkg / "modules" / "mamba_simple.py").is_file():
            sys.exit(f"{pkg}/modules/mamba_simple.py not found: pass --mamba-ssm <folder holding mamba_ssm/>")
        # The package __init__ pulls in Mamba2/3 and model code with more compiled deps; register the
        # package without running it so only the submodules below are imported.
        _stub("mamba_ssm", package=str(pkg))
        _stub("selective_scan_cuda")
    ms = importlib.import_module("mamba_ssm")
    ssi = importlib.import_module("mamba_ssm.ops.selective_scan_interface")
    simple = importlib.import_module("mamba_ssm.modules.mamba_simple")
    kernels = cuda and mamba_ssm_dir is None
    if not kernels:
        simple.selective_scan_fn = ssi.selective_scan_ref
        simple.causal_conv1d_fn = None  # upstream's slow path: nn.Conv1d + SiLU
    ms.Mamba = simple.Mamba
    scan = ssi.selective_scan_fn if kernels else ssi.selective_scan_ref
    for name, attrs in {
        "fvcore": (),
        "fvcore.nn": ("FlopCountAnalysis", "flop_count_str", "flop_count", "parameter_count"),
        "torchvision.transforms.functional_tensor": (),
    }.items():
        try:
            importlib.import_module(name)
        except ImportError:
            _stub(name, attrs)

    vm = importlib.import_module("vmamba.vmamba")

    class _Scan:
        """VMamba's kernel wrappers' ``apply`` signature, computed by mamba-ssm's scan."""

        @staticmethod
        def apply(u, delta, A, B, C, D=None, delta_bias=None, delta_softplus=False, *_):
            return scan(u, delta, A, B, C, D, None, delta_bias, delta_softplus).float()

    vm.SelectiveScanOflex = vm.SelectiveScanCore = vm.SelectiveScanMamba = _Scan
    return importlib.import_module("models")


@torch.no_grad()
def randomize_(model: torch.nn.Module, *, seed: int) -> None:
    """Seeded values at unit gain for every parameter and BatchNorm statistic (upstream's init
    leaves residual branches tiny and makes the EMA towers copies of the online ones)."""
    g = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        noise = torch.randn(p.shape, generator=g)
        leaf = name.rsplit(".", 1)[-1]
        if leaf in ("A_logs", "A_log"):
            p.copy_(torch.rand(p.shape, generator=g) * 2.0 - 1.0)
        elif leaf in ("Ds", "D"):
            p.copy_(noise)
        elif leaf == "dt_projs_bias" or name.endswith("dt_proj.bias"):
            p.add_(0.5 * noise)
        elif leaf in ("x_proj_weight", "dt_projs_weight"):
            p.copy_(noise / p.shape[-1] ** 0.5)
        elif leaf == "logit_scale":
            p.fill_(4.0 + float(noise))
        elif leaf in ("positional_embedding", "positional_embedding_e") or "token_embedding" in name:
            p.copy_(0.1 * noise)
        elif p.dim() == 1:
            p.copy_((1.0 if leaf == "weight" else 0.0) + 0.2 * noise)
        elif leaf in ("image_projection", "text_projection", "image_projection_e", "text_projection_e"):
            p.copy_(noise / p.shape[0] ** 0.5)
        else:
            p.copy_(noise / p[0].numel() ** 0.5)
    for name, b in model.named_buffers():
        if name.endswith("running_mean"):
            b.copy_(0.1 * torch.randn(b.shape, generator=g))
        elif name.endswith("running_var"):
            b.copy_(0.5 + torch.rand(b.shape, generator=g))


def released_file(model: torch.nn.Module, builder: str, path: Path) -> None:
    """Save ``model`` the way mamba-clip's main.py saves checkpoints (DDP-wrapped state dict)."""
    sd = {f"module.{k}": v.detach().clone() for k, v in model.state_dict().items()}
    args = argparse.Namespace(model=builder, lr=5e-4, wd=0.5, betas=(0.9, 0.98), epochs=25)
    torch.save({"epoch": 25, "state_dict": sd, "best_acc": 0.0, "args": args}, path)


def _maxdiff(a: torch.Tensor, b: torch.Tensor) -> dict[str, float]:
    d = (a - b).abs().max().item()
    return {"max_abs": d, "max_ref": a.abs().max().item(), "rel": d / max(a.abs().max().item(), 1e-30)}


@torch.no_grad()
def compare(models_mod: types.ModuleType, upstream_tok: object, name: str, args: argparse.Namespace) -> dict:
    from robusteval.models import resolve
    from robusteval.models.checkpoint import load_into, read_checkpoint
    from robusteval.models.clip_mamba import convert_clip_mamba
    from robusteval.models.zero_shot import simple_tokenizer, zero_shot_weights

    builder = UPSTREAM_BUILDERS[name]
    t0 = time.time()
    torch.manual_seed(0)
    up = getattr(models_mod, builder)().eval()
    randomize_(up, seed=args.seed)
    device = torch.device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{builder}.pt"
        released_file(up, builder, path)
        ours = resolve(name).fn(scan_backend=args.scan_backend).eval()
        # trust=True: this file was written just now by this script (it stores argparse.Namespace).
        ckpt = read_checkpoint(path, trust=True, ema=True)
        load_into(ours, ckpt.state_dict, converter=convert_clip_mamba, what=str(path))
    up, ours = up.to(device), ours.to(device)

    g = torch.Generator().manual_seed(args.seed + 1)
    images = torch.randn(args.batch, 3, args.size, args.size, generator=g).to(device)
    prompts = [t.format(c) for c in PROMPT_CLASSES for t in ("itap of a {}.", "a photo of the large {}.")]
    up_tokens = torch.stack([upstream_tok(p) for p in prompts]).to(device)
    our_tokens = simple_tokenizer()(prompts).to(device)

    img_up = up.encode_image(images, ema=True)
    img_ours = ours.encode_image(images)
    img_online = up.encode_image(images, ema=False)
    # How far upstream itself moves when its input moves by fp32 rounding (relative 1e-7): the
    # floor below which a difference says nothing about the architecture.
    jitter = 1 + 1e-7 * torch.randn(images.shape, generator=g).to(device)
    img_up_jitter = up.encode_image(images * jitter, ema=True)
    txt_up = up.encode_text(up_tokens, ema=True)
    txt_ours = ours.encode_text(our_tokens)

    def head(encode_text):
        return zero_shot_weights(
            encode_text=encode_text,
            tokenize=simple_tokenizer(),
            classnames=PROMPT_CLASSES,
            templates=("itap of a {}.", "a photo of the large {}."),
            device=device,
        )

    w_up = head(lambda t: up.encode_text(t, ema=True))
    w_ours = head(ours.encode_text)
    logits_up = torch.nn.functional.normalize(img_up, dim=-1).cpu() @ w_up.t()
    logits_ours = torch.nn.functional.normalize(img_ours, dim=-1).cpu() @ w_ours.t()
    return {
        "model": name,
        "upstream": builder,
        "params_tower_upstream": sum(p.numel() for p in up.visual.parameters()),
        "params_tower_ours": sum(p.numel() for p in ours.visual.parameters()),
        "params_text_upstream": sum(p.numel() for p in up.transformer.parameters()),
        "params_text_ours": sum(p.numel() for p in ours.transformer.parameters()),
        "input": [args.batch, 3, args.size, args.size],
        "image_embed": _maxdiff(img_up, img_ours),
        "image_embed_upstream_self_sensitivity": _maxdiff(img_up, img_up_jitter)["max_abs"],
        "image_embed_vs_online_tower": _maxdiff(img_online, img_ours)["max_abs"],
        "tokens_equal": bool(torch.equal(up_tokens, our_tokens)),
        "text_embed": _maxdiff(txt_up, txt_ours),
        "zero_shot_logits": _maxdiff(logits_up, logits_ours),
        "top1_agree": float((logits_up.argmax(1) == logits_ours.argmax(1)).float().mean()),
        "scan_backend": args.scan_backend,
        "device": str(device),
        "seconds": round(time.time() - t0, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--upstream", type=Path, required=True)
    ap.add_argument(
        "--mamba-ssm",
        type=Path,
        default=None,
        help="folder holding mamba_ssm/ sources (default: the installed one)",
    )
    ap.add_argument(
        "--device", default="cpu", help="cpu, or cuda (upstream then uses mamba-ssm's CUDA kernels)"
    )
    ap.add_argument("--site", type=Path, default=None)
    ap.add_argument("--models", default="all", help="comma-separated names, or all")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--scan-backend", default="torch")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (1 on a busy machine)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    names = list(UPSTREAM_BUILDERS) if args.models == "all" else args.models.split(",")
    mamba_dir = args.mamba_ssm.resolve() if args.mamba_ssm else None
    models_mod = import_upstream(
        args.upstream.resolve(), mamba_dir, args.site, cuda=args.device.startswith("cuda")
    )
    tokenizer_mod = importlib.import_module("tokenizer")
    upstream_tok = tokenizer_mod.SimpleTokenizer(
        str(args.upstream.resolve() / "bpe_simple_vocab_16e6.txt.gz")
    )
    for name in names:
        print(json.dumps(compare(models_mod, upstream_tok, name, args)), flush=True)


if __name__ == "__main__":
    main()
