"""Zero-shot head: class names × templates → text embeddings → a 1000-way classifier.

Data (in ``robusteval/assets/``, one item a line, class order = sorted ImageNet wnids):
- ``clip_imagenet_classnames.txt``: OpenAI's curated ImageNet class names for CLIP (the list
  CLIP-Mamba's ``labels.json`` and open_clip also use; it names two classes twice, as published).
- ``clip_templates_openai80.txt``: OpenAI's 80 ImageNet prompt templates.
- ``clip_templates_clip_mamba7.txt``: the 7-template subset CLIP-Mamba evaluates ImageNet with.

:func:`zero_shot_weights` is the whole method (normalised mean of normalised template embeddings,
renormalised, as in OpenAI's notebook and CLIP-Mamba's ``eval_zeroshot.py``);
:func:`cached_zero_shot_weights` keeps the result on disk keyed by (weights sha256, templates
hash, class-names hash); :class:`ZeroShotClassifier` turns an image encoder plus those weights into
an ordinary classifier so scoring treats CLIP models like any other.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robusteval.errors import UserError
from robusteval.models.registry import ModelCard, register_after_load
from robusteval.registry import Registry

__all__ = [
    "TEMPLATE_SETS",
    "TemplateSet",
    "ZeroShotClassifier",
    "ZERO_SHOT_PARTS",
    "ZeroShotParts",
    "build_zero_shot_classifier",
    "cached_zero_shot_weights",
    "imagenet_classnames",
    "load_templates",
    "simple_tokenizer",
    "text_hash",
    "zero_shot_weights",
]

# name → asset file; a path to a text file of your own works wherever a name does.
TEMPLATE_SETS: dict[str, str] = {
    "openai80": "clip_templates_openai80.txt",
    "clip-mamba7": "clip_templates_clip_mamba7.txt",
}
CLASSNAMES_ASSET = "clip_imagenet_classnames.txt"
CACHE_ENV = "ROBUSTEVAL_CACHE"


def _asset_lines(name: str) -> tuple[str, ...]:
    text = resources.files("robusteval").joinpath("assets", name).read_text(encoding="utf-8")
    return tuple(line for line in text.splitlines() if line.strip())


def imagenet_classnames() -> tuple[str, ...]:
    """OpenAI's 1000 curated ImageNet class names, in class-index (sorted wnid) order."""
    return _asset_lines(CLASSNAMES_ASSET)


@dataclass(frozen=True)
class TemplateSet:
    """Prompt templates with one ``{}`` each; ``source`` is the set's name or the file it came from."""

    source: str
    templates: tuple[str, ...]

    @property
    def sha256(self) -> str:
        return text_hash(self.templates)


def load_templates(name_or_path: str) -> TemplateSet:
    """A registered set (``openai80``, ``clip-mamba7``) or a UTF-8 file, one template a line."""
    if name_or_path in TEMPLATE_SETS:
        return TemplateSet(name_or_path, _asset_lines(TEMPLATE_SETS[name_or_path]))
    path = Path(name_or_path)
    if not path.is_file():
        known = ", ".join(TEMPLATE_SETS)
        raise UserError(
            f"unknown template set {name_or_path!r}",
            hint=f"use one of {known}, or a text file with one template containing {{}} per line",
        )
    lines = tuple(line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    bad = [t for t in lines if t.count("{}") != 1]
    if not lines or bad:
        what = f"line {bad[0]!r} has {bad[0].count('{}')} '{{}}'" if bad else "it is empty"
        raise UserError(
            f"template file {path}: {what}", hint="write one template per line with exactly one {}"
        )
    return TemplateSet(str(path), lines)


def text_hash(items: Sequence[str]) -> str:
    """sha256 of the exact strings in order (what the text embeddings depend on)."""
    return hashlib.sha256(json.dumps(list(items), ensure_ascii=False).encode("utf-8")).hexdigest()


@lru_cache(maxsize=4)
def simple_tokenizer(*, context_length: int = 77) -> Callable[[Sequence[str]], Tensor]:
    """CLIP's BPE tokenizer (open_clip's ``SimpleTokenizer``): texts → int64 ``[N, context_length]``.

    Built once per context length (reading the BPE merges takes a moment).
    """
    try:
        from open_clip.tokenizer import SimpleTokenizer
    except ImportError:
        raise UserError(
            "zero-shot CLIP models need CLIP's tokenizer from open_clip", hint="pip install robusteval[clip]"
        ) from None
    tokenizer = SimpleTokenizer(context_length=context_length)
    return lambda texts: tokenizer(list(texts))


@torch.no_grad()
def zero_shot_weights(
    *,
    encode_text: Callable[[Tensor], Tensor],
    tokenize: Callable[[Sequence[str]], Tensor],
    classnames: Sequence[str],
    templates: Sequence[str],
    device: torch.device | str | None = None,
    batch_texts: int = 512,
) -> Tensor:
    """Class embeddings ``float32 [n_classes, D]``, unit norm.

    For each class: embed every template filled with the name, L2-normalise each, average,
    L2-normalise again. ``encode_text``: int64 tokens ``[N, L]`` → ``[N, D]``; it is called on
    whole classes at a time, about ``batch_texts`` prompts per call.
    """
    if not classnames or not templates:
        raise ValueError("zero_shot_weights needs at least one class name and one template")
    n_t = len(templates)
    per_call = max(1, batch_texts // n_t)
    rows = []
    for start in range(0, len(classnames), per_call):
        chunk = classnames[start : start + per_call]
        tokens = tokenize([t.format(name) for name in chunk for t in templates])
        if device is not None:
            tokens = tokens.to(device)
        emb = F.normalize(encode_text(tokens).float(), dim=-1).view(len(chunk), n_t, -1)
        rows.append(F.normalize(emb.mean(dim=1), dim=-1))
    return torch.cat(rows)


def default_cache_dir() -> Path:
    """``$ROBUSTEVAL_CACHE/zero_shot`` (default ``~/.cache/robusteval/zero_shot``)."""
    root = os.environ.get(CACHE_ENV)
    return (Path(root) if root else Path.home() / ".cache" / "robusteval") / "zero_shot"


def cache_key(*, weights_sha256: str, templates: Sequence[str], classnames: Sequence[str]) -> str:
    """Identity of a set of class embeddings: the weights, the exact templates and names."""
    parts = [weights_sha256, text_hash(templates), text_hash(classnames)]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]


def cached_zero_shot_weights(
    *,
    encode_text: Callable[[Tensor], Tensor],
    tokenize: Callable[[Sequence[str]], Tensor],
    classnames: Sequence[str],
    templates: Sequence[str],
    weights_sha256: str | None,
    cache_dir: Path | None = None,
    device: torch.device | str | None = None,
) -> tuple[Tensor, dict[str, Any]]:
    """:func:`zero_shot_weights`, read from / written to ``cache_dir`` when the weights are known.

    Returns ``(weights float32 [n_classes, D] on CPU, info)``; ``info`` says whether the cache
    was hit and where. Without ``weights_sha256`` (random weights) nothing is cached.
    """
    info: dict[str, Any] = {"cache": None, "cache_hit": False}
    path = None
    if weights_sha256:
        key = cache_key(weights_sha256=weights_sha256, templates=templates, classnames=classnames)
        path = (cache_dir or default_cache_dir()) / f"{key}.pt"
        info["cache"] = str(path)
        if path.is_file():
            blob = torch.load(path, map_location="cpu", weights_only=True)
            weights = blob["weights"]
            if weights.shape[0] == len(classnames) and blob.get("weights_sha256") == weights_sha256:
                info["cache_hit"] = True
                return weights, info
    weights = zero_shot_weights(
        encode_text=encode_text, tokenize=tokenize, classnames=classnames, templates=templates, device=device
    ).cpu()
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        blob = {
            "weights": weights,
            "weights_sha256": weights_sha256,
            "templates_sha256": text_hash(templates),
            "classnames_sha256": text_hash(classnames),
        }
        torch.save(blob, tmp)
        os.replace(tmp, path)  # atomic: a concurrent reader never sees half a file
    return weights, info


class ZeroShotClassifier(nn.Module):
    """``images → logit_scale · normalise(image_encoder(images)) @ class_weights.T``.

    ``image_encoder``: float32 NCHW (the CLIP model's own preprocessing) → ``[B, D]``;
    ``class_weights``: ``[n_classes, D]`` unit rows; ``logit_scale``: the model's learned
    temperature (``exp`` of its ``logit_scale`` parameter), so softmax probabilities are the
    model's own. Logits are float32 ``[B, n_classes]``.
    """

    def __init__(
        self,
        *,
        image_encoder: nn.Module,
        class_weights: Tensor,
        logit_scale: float,
        info: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.image_encoder = image_encoder
        self.register_buffer("class_weights", class_weights.detach().float().clone())
        self.logit_scale = float(logit_scale)
        self.zero_shot_info = dict(info or {})

    def forward(self, images: Tensor) -> Tensor:
        feats = self.image_encoder(images)
        # Cosine logits in float32 even under bf16 autocast: near-ties decide top-5 and calibration.
        with torch.autocast(device_type=feats.device.type, enabled=False):
            feats = F.normalize(feats.float(), dim=-1)
            return self.logit_scale * feats @ self.class_weights.t()


def build_zero_shot_classifier(
    *,
    image_encoder: nn.Module,
    encode_text: Callable[[Tensor], Tensor],
    logit_scale: float,
    tokenize: Callable[[Sequence[str]], Tensor] | None = None,
    templates: str = "openai80",
    classnames: Sequence[str] | None = None,
    weights_sha256: str | None = None,
    cache_dir: Path | None = None,
    device: torch.device | str | None = None,
) -> ZeroShotClassifier:
    """One call from a CLIP model's parts to a classifier; ``templates`` is a set name or a file."""
    tset = load_templates(templates)
    names = tuple(classnames) if classnames is not None else imagenet_classnames()
    weights, cache_info = cached_zero_shot_weights(
        encode_text=encode_text,
        tokenize=tokenize or simple_tokenizer(),
        classnames=names,
        templates=tset.templates,
        weights_sha256=weights_sha256,
        cache_dir=cache_dir,
        device=device,
    )
    info = {
        "templates": tset.source,
        "n_templates": len(tset.templates),
        "templates_sha256": tset.sha256,
        "classnames_sha256": text_hash(names),
        "n_classes": len(names),
        "logit_scale": float(logit_scale),
        **cache_info,
    }
    return ZeroShotClassifier(
        image_encoder=image_encoder, class_weights=weights, logit_scale=logit_scale, info=info
    )


@dataclass(frozen=True)
class ZeroShotParts:
    """What the zero-shot head needs from a CLIP model.

    ``image_encoder``: NCHW → ``[B, D]``; ``encode_text``: tokens → ``[N, D]``; ``logit_scale``:
    the learned temperature (already exponentiated); ``tokenize``: texts → int64 tokens;
    ``default_templates``: the template set the model's authors evaluate ImageNet with.
    """

    image_encoder: nn.Module
    encode_text: Callable[[Tensor], Tensor]
    logit_scale: float
    tokenize: Callable[[Sequence[str]], Tensor]
    default_templates: str


# card.family → fn(module, *, card) -> ZeroShotParts; each CLIP family registers how to take it apart.
ZERO_SHOT_PARTS: Registry[Callable[..., ZeroShotParts]] = Registry("zero-shot CLIP family")


@register_after_load("clip")
def clip_to_classifier(
    module: nn.Module,
    *,
    card: ModelCard,
    device: torch.device | str,
    weights: dict[str, Any] | None = None,
    templates: str | None = None,
    cache_dir: Path | None = None,
    **_: Any,
) -> ZeroShotClassifier:
    """After-load hook for CLIP cards (``kind="clip"``): the loaded model → a 1000-way classifier.

    ``weights``: the factory's record ``{"source", "sha256"}``; its sha256 keys the on-disk cache
    of class embeddings (nothing is cached for random weights). ``templates``: a set name or a
    file (default: the family's own, e.g. ``clip-mamba7``). The returned module keeps only the
    image side of CLIP-Mamba models; ``.zero_shot_info`` says which templates and names it used.
    """
    parts = ZERO_SHOT_PARTS.get(card.family)(module, card=card)
    head = build_zero_shot_classifier(
        image_encoder=parts.image_encoder,
        encode_text=parts.encode_text,
        logit_scale=parts.logit_scale,
        tokenize=parts.tokenize,
        templates=templates or parts.default_templates,
        weights_sha256=(weights or {}).get("sha256"),
        cache_dir=cache_dir,
        device=device,
    )
    return head.to(device).eval()
