"""Model names → the module that registers them, imported only when a name is asked for.

``create_model("vmamba_b")`` imports ``robusteval.models.vmamba`` and nothing else;
:func:`list_models` imports every model module that can be imported. A name missing from
:data:`NAME_TO_MODULE` is still found: lookup falls back to importing every model module.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import TYPE_CHECKING, Any

from robusteval.errors import UserError
from robusteval.models.registry import MODELS, PREFIXES, ModelCard, card_of
from robusteval.registry import Entry

if TYPE_CHECKING:
    from robusteval.models.factory import LoadedModel, create_model

__all__ = ["LoadedModel", "create_model", "list_models", "model_modules", "resolve"]

# Static names and the module whose import registers them.
NAME_TO_MODULE: dict[str, str] = {
    "vmamba_t": "robusteval.models.vmamba",
    "vmamba_s": "robusteval.models.vmamba",
    "vmamba_b": "robusteval.models.vmamba",
    "swin_b": "robusteval.models.timm_models",
    "convnext_b": "robusteval.models.timm_models",
    "mobilenet_v2": "robusteval.models.real_weights",
    "efficientnet_lite0": "robusteval.models.real_weights",
    "clip_mamba_vmamba_b": "robusteval.models.clip_mamba",
    "clip_mamba_vmamba_s": "robusteval.models.clip_mamba",
    "clip_mamba_vmamba_t220": "robusteval.models.clip_mamba",
    "clip_mamba_simba_l": "robusteval.models.clip_mamba",
    "vmamba_v0_t": "robusteval.models.vmamba_v0",
    "vmamba_v0_s": "robusteval.models.vmamba_v0",
    "vmamba_v0_b": "robusteval.models.vmamba_v0",
    "vim_t": "robusteval.models.vim",
    "vim_s": "robusteval.models.vim",
    "vim_b": "robusteval.models.vim",
    "mambavision_t": "robusteval.models.mambavision",
    "mambavision_s": "robusteval.models.mambavision",
    "mambavision_b": "robusteval.models.mambavision",
    "mambavision_l": "robusteval.models.mambavision",
    "deit_s": "robusteval.models.timm_models",
    "deit_b": "robusteval.models.timm_models",
    "deit3_s": "robusteval.models.timm_models",
    "deit3_b": "robusteval.models.timm_models",
    "vit_b": "robusteval.models.timm_models",
}

# Dynamic names (``timm:<any timm name>``): prefix → the module that registers its resolver.
PREFIX_TO_MODULE: dict[str, str] = {
    "timm:": "robusteval.models.timm_models",
    "openclip:": "robusteval.models.openclip_models",
}

# Modules of this package that hold machinery, not models; never scanned for registrations.
_NOT_MODEL_MODULES = frozenset({"registry", "factory", "checkpoint"})


def model_modules() -> list[str]:
    """Every model module: those in the tables first, then any other module of this package."""
    mods = dict.fromkeys([*NAME_TO_MODULE.values(), *PREFIX_TO_MODULE.values()])
    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("_") and info.name not in _NOT_MODEL_MODULES:
            mods.setdefault(f"{__name__}.{info.name}")
    return list(mods)


def _import(module: str, *, for_name: str | None = None) -> bool:
    """Import ``module``; False when it (or something it needs) is not installed / not written yet."""
    try:
        importlib.import_module(module)
    except ImportError as err:
        if for_name is None:
            return False
        if err.name == module:
            raise UserError(
                f"model {for_name!r} lives in {module}, which is not present in this install",
                hint="type `robusteval list models` to see the names available",
            ) from None
        missing = err.name or str(err)
        raise UserError(
            f"model {for_name!r} needs the package {missing!r}, which is not installed",
            hint=f"install it (pip install {missing.split('.')[0]}) or pick another model",
        ) from None
    return True


def resolve(name: str) -> Entry:
    """The registry entry (builder + ``meta['card']``) for ``name``, importing only what it needs.

    Raises ``UnknownName`` (a ``UserError``) with close matches when no module registers ``name``.
    """
    if name in MODELS:
        return MODELS.get(name)
    module = NAME_TO_MODULE.get(name) or next(
        (mod for prefix, mod in PREFIX_TO_MODULE.items() if name.startswith(prefix)), None
    )
    if module is not None:
        _import(module, for_name=name)
    if name not in MODELS and not _register_by_prefix(name):
        list_models()  # a name or prefix registered by a module missing from the tables
        _register_by_prefix(name)
    return MODELS.get(name)


def _register_by_prefix(name: str) -> bool:
    """Let the resolver of a dynamic prefix (``timm:``) register ``name``; False if none matches."""
    for entry in PREFIXES:
        if name.startswith(entry.name):
            entry(name)
            return True
    return False


def list_models() -> list[ModelCard]:
    """Cards of every registered name, after importing every importable model module."""
    for module in model_modules():
        _import(module)
    return [card_of(n) for n in MODELS.names()]


def __getattr__(attr: str) -> Any:
    # create_model pulls in torch; keep `import robusteval.models` cheap for listing and the CLI.
    if attr in ("create_model", "LoadedModel"):
        from robusteval.models import factory

        return getattr(factory, attr)
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")
