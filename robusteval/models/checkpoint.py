"""Reading checkpoint files safely and loading them into modules with a readable diff on mismatch.

Formats: ``.pth``/``.pt``/``.bin``/``.ckpt`` (``torch.save``; read with ``weights_only=True`` unless
the user trusts the file) and ``.safetensors``. Training dicts are unwrapped by the rules in
:data:`WRAPPER_KEYS` / :data:`EMA_KEYS` / :data:`STRIP_PREFIXES`.
"""

from __future__ import annotations

import argparse
import pickle
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from robusteval.errors import UserError
from robusteval.provenance import sha256_file as file_sha256

# Keys under which training scripts nest the weights (timm, Swin/ConvNeXt/VMamba releases,
# Lightning, open_clip/CLIP-Mamba), tried in this order; EMA keys first when EMA is preferred.
WRAPPER_KEYS: tuple[str, ...] = ("state_dict", "model", "module", "net")
EMA_KEYS: tuple[str, ...] = ("model_ema", "state_dict_ema", "ema")
# Prefixes that wrap every key: DataParallel/DDP, torch.compile.
STRIP_PREFIXES: tuple[str, ...] = ("module.", "_orig_mod.")
# Buffers a checkpoint may lack without changing the function (filled from the fresh module).
FILLABLE_SUFFIXES: tuple[str, ...] = ("num_batches_tracked",)
SHOW_FIRST = 8  # names listed per category in a mismatch diff

Converter = Callable[..., dict[str, torch.Tensor]]
StateDict = dict[str, torch.Tensor]


class CheckpointMismatch(UserError):
    """Keys or shapes of a checkpoint do not fit the module; ``str(err)`` is the diff."""


@dataclass(frozen=True)
class Checkpoint:
    """A state dict read from ``path`` (unwrapped, prefixes stripped) and the file's sha256 (hex)."""

    state_dict: StateDict
    path: Path
    sha256: str


def _read_safetensors(path: Path, *, trust: bool) -> Any:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as err:
        raise UserError(f"{path} is not a readable safetensors file ({_first_line(err)})") from None


# Plain containers that release files store beside the weights (CLIP-Mamba keeps its training
# ``args``); the weights-only unpickler still vets everything inside them.
SAFE_GLOBALS: tuple[type, ...] = (argparse.Namespace,)


def _read_torch(path: Path, *, trust: bool) -> Any:
    with open(path, "rb") as f:
        magic = f.read(4)
    # torch.save writes a zip (new format) or a raw pickle starting with the protocol opcode.
    if not (magic.startswith(b"PK") or magic[:1] == b"\x80"):
        what = "an empty file" if not magic else "not a PyTorch checkpoint (torch.save zip or pickle)"
        raise UserError(
            f"{path} is {what}", hint="pass --weights MODEL=PATH to a .pth/.pt/.bin/.safetensors file"
        )
    try:
        with torch.serialization.safe_globals(list(SAFE_GLOBALS)):
            return torch.load(path, map_location="cpu", weights_only=not trust)
    except pickle.UnpicklingError as err:
        if trust:
            raise UserError(f"{path} could not be unpickled ({_first_line(err)})") from None
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(err))
        needs = f"it stores {found.group(1)}" if found else "it holds more than tensors"
        raise UserError(
            f"{path} needs pickle to load ({needs}), which can run code from the file",
            hint="if you trust where it came from, pass --trust-checkpoint",
        ) from None
    except (ImportError, AttributeError) as err:  # a trusted pickle naming a class that is not here
        raise UserError(
            f"{path} stores an object whose class cannot be imported ({_first_line(err)})",
            hint="install the package that defines it, or save a plain state_dict",
        ) from None
    except (RuntimeError, EOFError, OSError) as err:
        raise UserError(f"{path} is not a readable PyTorch checkpoint ({_first_line(err)})") from None


# Suffix → reader. Anything else is sniffed by content.
READERS: dict[str, Callable[..., Any]] = {
    ".safetensors": _read_safetensors,
    ".pth": _read_torch,
    ".pt": _read_torch,
    ".bin": _read_torch,
    ".ckpt": _read_torch,
    ".tar": _read_torch,
}


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else err.__class__.__name__


def _sniff_reader(path: Path) -> Callable[..., Any]:
    with open(path, "rb") as f:
        head = f.read(9)
    # safetensors: 8-byte little-endian header length, then a JSON object.
    if len(head) == 9 and head[8:9] == b"{":
        return _read_safetensors
    return _read_torch


def unwrap(obj: Any, *, ema: bool = False, where: str = "checkpoint") -> StateDict:
    """The tensor dict inside a training dict: descend wrapper keys, then strip common prefixes."""
    keys = (*EMA_KEYS, *WRAPPER_KEYS) if ema else (*WRAPPER_KEYS, *EMA_KEYS)
    while True:
        if not isinstance(obj, Mapping):
            raise UserError(f"{where} holds a {type(obj).__name__}, not a dict of tensors")
        inner = next((obj[k] for k in keys if isinstance(obj.get(k), Mapping)), None)
        if inner is not None:
            obj = inner
            continue
        tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
        if not tensors:
            shown = ", ".join(map(str, list(obj)[:SHOW_FIRST]))
            raise UserError(f"{where} has no tensors (top-level keys: {shown or 'none'})")
        break
    stripped = True
    while stripped:
        stripped = False
        for prefix in STRIP_PREFIXES:
            if all(k.startswith(prefix) for k in tensors):
                tensors = {k[len(prefix) :]: v for k, v in tensors.items()}
                stripped = True
    return tensors


def read_checkpoint(path: str | Path, *, trust: bool = False, ema: bool = False) -> Checkpoint:
    """Read a local checkpoint file into a flat ``{name: tensor}`` dict on CPU.

    ``trust=False`` refuses files that need pickle (a one-line ``UserError`` naming
    ``--trust-checkpoint``). ``ema`` prefers EMA weights when a training dict holds both.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(
            f"no checkpoint file at {path}",
            hint="pass --weights MODEL=PATH to a .pth/.pt/.bin/.safetensors file, MODEL=default, or MODEL=none",
        )
    reader = READERS.get(path.suffix.lower()) or _sniff_reader(path)
    obj = reader(path, trust=trust)
    return Checkpoint(unwrap(obj, ema=ema, where=str(path)), path, file_sha256(path))


@dataclass(frozen=True)
class Diff:
    """How a state dict differs from a module's: names, and (name, ckpt shape, model shape)."""

    missing: list[str]
    unexpected: list[str]
    shapes: list[tuple[str, tuple[int, ...], tuple[int, ...]]]

    def __bool__(self) -> bool:
        return bool(self.missing or self.unexpected or self.shapes)

    def message(self, what: str = "checkpoint") -> str:
        """First line: counts and what to do; then up to SHOW_FIRST names per category."""
        head = (
            f"{what} does not fit the model: {len(self.missing)} missing, {len(self.unexpected)} unexpected, "
            f"{len(self.shapes)} shape mismatches — check that --weights is a checkpoint for this model"
        )
        lines = [head]
        for label, items in (
            ("missing in checkpoint", self.missing),
            ("unexpected in checkpoint", self.unexpected),
            (
                "shape mismatch (checkpoint vs model)",
                [f"{k}: {list(a)} vs {list(b)}" for k, a, b in self.shapes],
            ),
        ):
            if items:
                more = f" … and {len(items) - SHOW_FIRST} more" if len(items) > SHOW_FIRST else ""
                lines.append(f"  {label} ({len(items)}): {', '.join(items[:SHOW_FIRST])}{more}")
        return "\n".join(lines)


def diff_state_dict(state_dict: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor]) -> Diff:
    """Compare names and shapes of ``state_dict`` against ``target`` (a module's state dict)."""
    missing = [k for k in target if k not in state_dict and not k.endswith(FILLABLE_SUFFIXES)]
    unexpected = [k for k in state_dict if k not in target]
    shapes = [
        (k, tuple(v.shape), tuple(target[k].shape))
        for k, v in state_dict.items()
        if k in target and tuple(v.shape) != tuple(target[k].shape)
    ]
    return Diff(missing, unexpected, shapes)


def load_into(
    module: nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    *,
    converter: Converter | None = None,
    what: str = "checkpoint",
) -> None:
    """Copy ``state_dict`` into ``module`` exactly (every key, every shape) or raise a readable diff.

    ``converter(state_dict, *, module) -> state_dict`` maps an official release layout to the
    module's keys; it runs only when the dict does not already fit, so files saved from our own
    modules load unchanged. Raises :class:`CheckpointMismatch` (a ``UserError``).
    """
    target = module.state_dict()
    if converter is not None and diff_state_dict(state_dict, target):
        state_dict = converter(dict(state_dict), module=module)
    diff = diff_state_dict(state_dict, target)
    if diff:
        raise CheckpointMismatch(diff.message(what))
    full = dict(state_dict)
    for k in target:
        full.setdefault(k, target[k])  # FILLABLE_SUFFIXES buffers the file lacked
    module.load_state_dict(full, strict=True)
