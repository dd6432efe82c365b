"""Official VMamba checkpoint layout → :class:`robusteval.models.vmamba.VMamba` keys (converter ``"vmamba"``).

Release files (MzeroMiko/VMamba ``#v2cls``) are ``torch.save`` dicts with the weights under
``'model'`` (training dumps also hold ``'model_ema'``, ``'optimizer'``, ``'config'``, ...).
:func:`robusteval.models.checkpoint.read_checkpoint` unwraps that and strips ``module.``; our
module names equal upstream's, so what is left for this converter is:

- legacy v0 names upstream's ``VSSM._load_from_state_dict`` still renames (``patch_embed.proj`` →
  ``patch_embed.0``, ``patch_embed.norm`` → ``patch_embed.2``, ``ln_1`` → ``norm``,
  ``self_attention`` → ``op``, top-level ``norm``/``head`` → ``classifier.norm``/``classifier.head``);
- 1x1 projections stored 4-D ``(out, in, 1, 1)``: upstream's ``Linear2d`` accepts both, our
  ``nn.Linear`` holds 2-D ``(out, in)`` (and the reverse, should a file store 2-D for a 4-D slot).

Anything else passes through untouched, so the strict load reports it in its diff.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from robusteval.models.checkpoint import load_into, read_checkpoint
from robusteval.models.registry import register_converter

# (pattern on the checkpoint key, replacement); used only for keys the module does not have.
_LEGACY_RENAMES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^patch_embed\.proj\."), "patch_embed.0."),
    (re.compile(r"^patch_embed\.norm\."), "patch_embed.2."),
    (re.compile(r"^(layers\.\d+\.blocks\.\d+)\.ln_1\."), r"\1.norm."),
    (re.compile(r"^(layers\.\d+\.blocks\.\d+)\.self_attention\."), r"\1.op."),
    (re.compile(r"^norm\."), "classifier.norm."),
    (re.compile(r"^head\."), "classifier.head."),
)


def _is_1x1_variant(have: tuple[int, ...], want: tuple[int, ...]) -> bool:
    """(out, in) vs (out, in, 1, 1), either way round."""
    a, b = (have, want) if len(have) >= len(want) else (want, have)
    return len(a) == 4 and len(b) == 2 and a[2:] == (1, 1) and a[:2] == b


def convert_official(
    state_dict: Mapping[str, torch.Tensor], *, expected: Mapping[str, tuple[int, ...]]
) -> dict[str, torch.Tensor]:
    """Rename legacy keys and reshape 1x1 projections to the names/shapes in ``expected``."""
    out: dict[str, torch.Tensor] = {}
    for name, tensor in state_dict.items():
        if name not in expected:
            for pattern, repl in _LEGACY_RENAMES:
                renamed = pattern.sub(repl, name)
                if renamed != name and renamed in expected:
                    name = renamed
                    break
        want = expected.get(name)
        if want is not None and tuple(tensor.shape) != want and _is_1x1_variant(tuple(tensor.shape), want):
            tensor = tensor.reshape(want)
        out[name] = tensor
    return out


@register_converter("vmamba")
def convert_vmamba(state_dict: dict[str, torch.Tensor], *, module: nn.Module) -> dict[str, torch.Tensor]:
    """Converter for cards with ``converter="vmamba"`` (see :mod:`robusteval.models.checkpoint`)."""
    expected = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    return convert_official(state_dict, expected=expected)


def load_official_file(
    module: nn.Module, path: str | Path, *, trust_checkpoint: bool = False, ema: bool = False
) -> nn.Module:
    """Read a release ``.pth`` (``weights_only`` unless trusted) and load it into ``module`` strictly.

    Raises ``UserError`` (one line, or a key/shape diff) when the file is unreadable or does not fit.
    """
    ckpt = read_checkpoint(path, trust=trust_checkpoint, ema=ema)
    load_into(module, ckpt.state_dict, converter=convert_vmamba, what=str(path))
    return module
