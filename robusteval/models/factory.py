"""create_model: name → built module with its weights loaded, in eval mode, plus its card.

Weight sources (``weights=``):

- ``"default"``: the card's default file — a file inside an installed package, a cached hub or URL
  download, else a download when online (Hugging Face hub, then the release URL). Offline with
  nothing local: a one-line ``UserError`` saying how to pass ``--weights MODEL=PATH``.
- ``"none"`` or ``None``: random init (``weights.source == "random"``).
- a local path (``.pth``/``.pt``/``.bin``/``.safetensors``), an ``http(s)://`` URL, or
  ``hf-hub:<repo id>[:<file>]``.
"""

from __future__ import annotations

import importlib.util
import inspect
import os
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import nn

from robusteval.errors import UserError
from robusteval.models import resolve
from robusteval.models.checkpoint import load_into, read_checkpoint
from robusteval.models.registry import AFTER_LOAD, CONVERTERS, ModelCard

RANDOM = "random"
_NO_WEIGHTS = (None, "none", "random")
_OFFLINE_ENV = ("ROBUSTEVAL_OFFLINE", "HF_HUB_OFFLINE")


@dataclass(frozen=True)
class LoadedModel:
    """A built model ready for inference.

    ``module``: eval mode, on the requested device; maps float32 NCHW (normalised per
    ``card.data``) to logits ``[B, card.num_classes]``. ``weights``: ``{"source": str, "sha256":
    str | None}`` — ``source`` is ``"random"``, a local path, a URL or ``hf-hub:<repo>:<file>``,
    or ``package:<pkg>/<path>``; ``sha256`` is the hex digest of the file read (None for random).
    """

    module: nn.Module
    card: ModelCard
    weights: dict[str, str | None]

    @property
    def name(self) -> str:
        return self.card.name


def create_model(
    name: str,
    *,
    weights: str | os.PathLike[str] | None = "default",
    scan_backend: str = "auto",
    trust_checkpoint: bool = False,
    device: str | torch.device = "cpu",
    templates: str | None = None,
) -> LoadedModel:
    """Build ``name`` (a registered name or ``timm:<timm name>``), load ``weights``, eval mode.

    ``templates``: for CLIP models, the zero-shot prompt set (``openai80``, ``clip-mamba7`` or a
    file of one template per line; default: the model family's own). Ignored by classifiers.

    ``scan_backend`` (``auto|mamba|triton|torch``) goes to builders that take it (VMamba
    families) and is ignored by the rest. ``trust_checkpoint`` allows files that need pickle.
    Every bad input raises a ``UserError`` with a one-line message (a mismatch adds a diff).
    """
    entry = resolve(name)
    card: ModelCard = entry.meta["card"]
    ckpt = None
    record: dict[str, str | None] = {"source": RANDOM, "sha256": None}
    if weights not in _NO_WEIGHTS:  # read the file first: a bad path fails before a slow build
        path, source = _locate(card, str(weights))
        ckpt = read_checkpoint(path, trust=trust_checkpoint, ema=card.prefer_ema)
        if weights == "default" and card.weights_sha256 and ckpt.sha256 != card.weights_sha256:
            raise UserError(
                f"{path} has sha256 {ckpt.sha256[:12]}…, not the {card.name} release file "
                f"({card.weights_sha256[:12]}…)",
                hint=f"delete the corrupt copy, or pass --weights {card.name}=PATH to a good one",
            )
        record = {"source": source, "sha256": ckpt.sha256}

    accepted = inspect.signature(entry.fn).parameters
    kwargs = {"scan_backend": scan_backend} if "scan_backend" in accepted else {}
    module: nn.Module = entry.fn(**kwargs)
    if ckpt is not None:
        converter = CONVERTERS.get(card.converter).fn if card.converter else None
        load_into(module, ckpt.state_dict, converter=converter, what=f"{ckpt.path} for {card.name}")
        del ckpt  # the module holds its own copy; free the file's tensors before moving to device

    module = module.eval().to(device)
    if card.kind in AFTER_LOAD:
        extra = {"templates": templates} if templates is not None else {}
        module = AFTER_LOAD.get(card.kind)(
            module, card=card, weights=dict(record), device=device, **extra
        ).eval()
    return LoadedModel(module=module, card=card, weights=record)


# --- where weight files come from -------------------------------------------------------------


def _locate(card: ModelCard, weights: str) -> tuple[Path, str]:
    """A local file for ``weights`` and the source string recorded for it."""
    if weights == "default":
        return _default_weights(card)
    if weights.startswith(("http://", "https://")):
        return _fetch(_URL, weights, card=card), weights
    if weights.startswith("hf-hub:"):
        return _fetch(_HF, weights.removeprefix("hf-hub:"), card=card), weights
    path = check_weights(weights)
    return path.resolve(), str(path.resolve())


def check_weights(weights: str | None) -> Path | None:
    """The local file a ``--weights`` value names (None for default, none, URLs and hub names).

    Cheap enough to run on every value before any image is read: a mistyped path fails at once.
    """
    if (
        weights in _NO_WEIGHTS
        or weights == "default"
        or weights.startswith(("http://", "https://", "hf-hub:"))
    ):
        return None
    path = Path(weights).expanduser()
    if not path.is_file():
        raise UserError(
            f"--weights {weights}: no such file",
            hint="pass a .pth/.pt/.bin/.safetensors path, `default`, or `none` for random init",
        )
    return path


@dataclass(frozen=True)
class _Source:
    """One kind of default-weights location: how to find a local copy, and how to download."""

    kind: str
    value: Callable[[ModelCard], str | None]  # the card's spec for this kind, or None
    local: Callable[[str], Path | None]
    download: Callable[[str], Path] | None
    host: Callable[[str], str]


def _package_file(spec: str) -> Path | None:
    # find_spec locates the installed package without running its __init__.
    package, _, rel = spec.partition("/")
    try:
        found = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if found is None or not found.submodule_search_locations:
        return None
    for root in found.submodule_search_locations:
        path = Path(root) / rel
        if path.is_file():
            return path
    return None


def _hf_split(spec: str, card: ModelCard | None = None) -> tuple[str, str]:
    repo, _, filename = spec.partition(":")
    return repo, filename or (card.hf_filename if card else "model.safetensors")


def _hf_local(spec: str) -> Path | None:
    from huggingface_hub import hf_hub_download

    repo, filename = _hf_split(spec)
    try:
        return Path(hf_hub_download(repo, filename, local_files_only=True))
    except Exception:  # any miss in the cache (not found, partial, bad repo id) means "not local"
        return None


def _hf_download(spec: str) -> Path:
    from huggingface_hub import hf_hub_download

    repo, filename = _hf_split(spec)
    return Path(hf_hub_download(repo, filename))


def _url_cache_path(url: str) -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(url).path).name


def _url_local(url: str) -> Path | None:
    path = _url_cache_path(url)
    return path if path.is_file() else None


def _url_download(url: str) -> Path:
    # The same cache and hash-prefix check as torch.hub.load_state_dict_from_url, but we keep the
    # file path so that loading goes through read_checkpoint (weights_only, sha256, diff).
    dst = _url_cache_path(url)
    dst.parent.mkdir(parents=True, exist_ok=True)
    found = re.search(torch.hub.HASH_REGEX, dst.name)
    torch.hub.download_url_to_file(url, str(dst), hash_prefix=found.group(1) if found else None)
    return dst


_PACKAGE = _Source("package", lambda c: c.weights_package, _package_file, None, lambda s: "")
_HF = _Source(
    "hf-hub",
    lambda c: f"{c.hf_hub_id}:{c.hf_filename}" if c.hf_hub_id else None,
    _hf_local,
    _hf_download,
    lambda s: urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co",
)
_URL = _Source(
    "url", lambda c: c.weights_url, _url_local, _url_download, lambda s: urlparse(s).hostname or ""
)
# Default-weights search order: shipped files, then hub, then the release URL.
DEFAULT_SOURCES: tuple[_Source, ...] = (_PACKAGE, _HF, _URL)


def _source_string(src: _Source, spec: str) -> str:
    return spec if src is _URL else f"{src.kind}:{spec}"


def _online(host: str, *, timeout: float = 3.0) -> bool:
    """Whether ``host`` answers on 443 now (fast fail instead of a hub client's minute of retries)."""
    if any(os.environ.get(v, "").lower() in ("1", "true", "yes", "on") for v in _OFFLINE_ENV):
        return False
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def _fetch(src: _Source, spec: str, *, card: ModelCard) -> Path:
    local = src.local(spec)
    if local is not None:
        return local
    if src.download is None or not _online(src.host(spec)):
        raise UserError(
            f"{card.name}: cannot download {_source_string(src, spec)} (offline)",
            hint=f"download it elsewhere and pass --weights {card.name}=PATH",
        )
    try:
        return src.download(spec)
    except Exception as err:  # network and hub errors come in many classes; all mean the same here
        raise UserError(
            f"{card.name}: download of {_source_string(src, spec)} failed ({err.__class__.__name__})",
            hint=f"download it elsewhere and pass --weights {card.name}=PATH",
        ) from None


def _default_weights(card: ModelCard) -> tuple[Path, str]:
    """The card's default weights as a local file: local copies first, then downloads."""
    specs = [(src, spec) for src in DEFAULT_SOURCES if (spec := src.value(card))]
    if not specs:
        raise UserError(
            f"{card.name} has no released weights we know of",
            hint=f"pass --weights {card.name}=PATH to a checkpoint, or --weights {card.name}=none for random init",
        )
    for src, spec in specs:
        if (path := src.local(spec)) is not None:
            return path, _source_string(src, spec)
    for src, spec in specs:
        if src.download is not None and _online(src.host(spec)):
            try:
                return src.download(spec), _source_string(src, spec)
            except Exception:  # try the next source; the error below names them all
                continue
    tried = ", ".join(_source_string(s, v) for s, v in specs)
    raise UserError(
        f"{card.name}: default weights are not on this machine and cannot be downloaded (offline?): {tried}",
        hint=(
            f"download the file elsewhere and pass --weights {card.name}=PATH "
            f"(or --weights {card.name}=none for random init)"
        ),
    )
