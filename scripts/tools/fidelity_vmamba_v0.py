"""Fidelity of our VMamba v0 (vanilla VSSM) against the official code: same random weights, fp32 logits.

    python scripts/tools/fidelity_vmamba_v0.py --upstream .upstream/VMamba [--models vmamba_v0_t] [--legacy-names]

Same procedure as ``fidelity_vmamba.py`` (whose helpers this reuses): upstream's
``vanilla_vmamba_tiny/_small/_base`` builders (forward type ``v0``, its pure-PyTorch
``selective_scan_torch`` on CPU), every parameter perturbed, saved as ``{'model': state_dict}``,
loaded into ours through ``create_model(name, weights=PATH)``. ``--legacy-names`` writes the file in
the original v0 key names (``patch_embed.proj``, ``ln_1``, ``self_attention``, top-level ``norm``/``head``)
that upstream's ``VSSM._load_from_state_dict`` still renames.

Prints one JSON line per model: parameter counts of both, max |Δlogits| (absolute and relative to
max |logits|), top-1 agreement.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import torch

sys.path[:0] = [str(Path(__file__).resolve().parents[2]), str(Path(__file__).resolve().parent)]
import fidelity_vmamba as fv  # noqa: E402

V0_BUILDERS = {
    "vmamba_v0_t": "vanilla_vmamba_tiny",
    "vmamba_v0_s": "vanilla_vmamba_small",
    "vmamba_v0_b": "vanilla_vmamba_base",
}
_TO_LEGACY = (
    (re.compile(r"^patch_embed\.0\."), "patch_embed.proj."),
    (re.compile(r"^patch_embed\.2\."), "patch_embed.norm."),
    (re.compile(r"^(layers\.\d+\.blocks\.\d+)\.norm\."), r"\1.ln_1."),
    (re.compile(r"^(layers\.\d+\.blocks\.\d+)\.op\."), r"\1.self_attention."),
    (re.compile(r"^classifier\.norm\."), "norm."),
    (re.compile(r"^classifier\.head\."), "head."),
)


def legacy_names(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Current upstream names → the original v0 release names."""
    out = {}
    for k, v in state_dict.items():
        for pattern, repl in _TO_LEGACY:
            k = pattern.sub(repl, k)
        out[k] = v
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--upstream", type=Path, required=True, help="checkout of MzeroMiko/VMamba")
    ap.add_argument("--models", default=",".join(V0_BUILDERS))
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--scan-backend", default="torch", help="ours: auto|mamba|triton|torch")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--legacy-names", action="store_true", help="write the file in the original v0 key names")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    args.four_d = False

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    up_mod = fv.import_upstream(args.upstream.resolve())
    fv.UPSTREAM_BUILDERS.update(V0_BUILDERS)
    if args.legacy_names:
        plain = fv.official_checkpoint

        def legacy(model: torch.nn.Module, *, four_d: bool) -> dict:
            ckpt = plain(model, four_d=four_d)
            return {**ckpt, "model": legacy_names(ckpt["model"])}

        fv.official_checkpoint = legacy
    results = []
    for name in args.models.split(","):
        res = {**fv.compare(up_mod, name.strip(), args), "legacy_names": args.legacy_names}
        print(json.dumps(res), flush=True)
        results.append(res)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
