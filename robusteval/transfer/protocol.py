"""Transfer methods: one :class:`ProtocolCard` (data) and one registered trainer per method.

Protocol values of the low-shot transferability study (landskape-ai/model-transferability, branch
``mamba``) live in the cards: batch size by shots {1: 8, 10: 32, 50: 64, 100: 128, full: 256}; Adam,
lr 0.01, 100 epochs, MultiStepLR at 50% and 72% of the epochs with gamma 0.1, AMP; seeds 1, 2, 3.

- ``lp``: ``Resize((224, 224))`` and the model's own mean/std (the study's ImageNet mean/std is what
  every ImageNet-trained model here uses; a CLIP-normalised model gets its own, which is what its
  features were trained on). Only a new linear head trains, on features extracted once.
- ``ilm-vp``: images resized to the dataset's ``vp_size`` (32 or 128 px), padded into a 224 frame
  whose border is the learnable prompt (``sigmoid(theta) * mask`` added to the zero-padded image,
  then the model's normalisation); the frozen model's 1000-way output is mapped one-to-one to the
  target classes by frequency (greedy on the source-by-target prediction count matrix of the
  training set), recomputed at the start of every epoch (Chen et al. 2023, OPTML-Group/ILM-VP).
- ``finetune``: all weights and a new linear head train; AdamW (lr 1e-4 backbone, 1e-3 head,
  weight decay 0.05), cosine decay per step to 0, 10 epochs by default, same batch sizes, AMP.
- ``freeze``: ``finetune``, but after a warm-up of ``warmup_epochs`` the per-tensor gradient norms
  (mean L2 norm over the warm-up steps) decide: tensors below the ``freeze_quantile`` of those norms
  stop training (``requires_grad=False``) for the remaining epochs. Records carry the wall time, so
  the report shows the time saved and the accuracy kept against ``finetune`` of the same cell.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from robusteval.registry import Registry

#: Study batch sizes by shots per class ("full" = every training image).
STUDY_BATCH = {"1": 8, "10": 32, "50": 64, "100": 128, "full": 256}


@dataclass(frozen=True)
class ProtocolCard:
    """Every constant of one transfer method (units: lr per step, epochs whole passes).

    ``input``: ``"resize"`` (square ``Resize((s, s))`` to the model's input size) or ``"prompt"``
    (resize to the dataset's ``vp_size`` and pad into the prompt frame). ``optimizer``: ``adam`` or
    ``adamw``. ``schedule``: ``multistep`` (``milestones`` as fractions of the epochs, ``gamma``) or
    ``cosine`` (per step, to 0). ``batch_by_shots``: shots per class (or ``"full"``) → batch size; an
    unlisted count uses the next listed one above it. ``amp``: bf16 autocast of the backbone on CUDA.
    """

    method: str
    input: str
    optimizer: str
    lr: float
    epochs: int
    schedule: str
    milestones: tuple[float, ...] = ()
    gamma: float = 0.1
    weight_decay: float = 0.0
    head_lr: float | None = None
    amp: bool = True
    batch_by_shots: dict[str, int] = field(default_factory=lambda: dict(STUDY_BATCH))
    trains: str = "head"  # "head", "prompt", "all"
    warmup_epochs: int = 0
    freeze_quantile: float = 0.0
    source: str = "landskape-ai/model-transferability@mamba"

    def batch_size(self, shots: int | None) -> int:
        """The batch size of a shots setting (``None`` = full data)."""
        if shots is None:
            return self.batch_by_shots["full"]
        listed = sorted((int(k), v) for k, v in self.batch_by_shots.items() if k != "full")
        for k, v in listed:
            if shots <= k:
                return v
        return self.batch_by_shots["full"]

    def lr_at(self, epoch: int, *, epochs: int) -> float:
        """Learning rate of a multistep card during ``epoch`` (0-based) of ``epochs``."""
        drops = sum(epoch >= int(m * epochs) for m in self.milestones)
        return self.lr * self.gamma**drops

    def digest(self) -> str:
        """sha256 (first 16 hex) of the card's JSON: records carry it to say which protocol ran."""
        blob = json.dumps(asdict(self), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


CARDS: dict[str, ProtocolCard] = {
    c.method: c
    for c in (
        ProtocolCard(
            "lp", input="resize", optimizer="adam", lr=0.01, epochs=100, schedule="multistep",
            milestones=(0.5, 0.72), gamma=0.1, trains="head",
        ),
        ProtocolCard(
            "ilm-vp", input="prompt", optimizer="adam", lr=0.01, epochs=100, schedule="multistep",
            milestones=(0.5, 0.72), gamma=0.1, trains="prompt",
        ),
        ProtocolCard(
            "finetune", input="resize", optimizer="adamw", lr=1e-4, head_lr=1e-3, epochs=10,
            schedule="cosine", weight_decay=0.05, trains="all", source="robusteval",
        ),
        ProtocolCard(
            "freeze", input="resize", optimizer="adamw", lr=1e-4, head_lr=1e-3, epochs=10,
            schedule="cosine", weight_decay=0.05, trains="all", warmup_epochs=1, freeze_quantile=0.5,
            source="robusteval (gradient freezing as in the VMamba robustness study)",
        ),
    )
}  # fmt: skip

#: Trainers: ``fn(job) -> list[TransferRecord]`` (see robusteval.transfer.stage.MethodJob).
METHODS: Registry[Callable[..., Any]] = Registry("transfer method")


def register_method(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: the trainer of method ``name``, whose constants are ``CARDS[name]``."""
    return METHODS.register(name, card=CARDS[name])


def get_card(method: str) -> ProtocolCard:
    if method not in CARDS:
        METHODS.get(method)  # raises the registry's "did you mean" error
    return CARDS[method]
