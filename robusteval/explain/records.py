"""The explain record: one per (model, set, severity, image, method), ``runs/<NAME>/explain.jsonl``."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

SCHEMA = 1
EXPLAIN_RECORDS = "explain.jsonl"


@dataclass(frozen=True)
class ExplainRecord:
    """What one row of a grid showed, and how much its maps are worth.

    Probabilities are softmax probabilities (0..1) of the model on its own preprocessing of the
    clean image (``clean_*``) and of the regenerated shifted image (``shifted_*``). ``*_true``
    concern the true class, ``*_pred`` the class predicted on the shifted image. ``faithfulness_*``
    is the deletion-curve gap (random-order AUC minus map-order AUC over the intact probability,
    about -1..1, positive = faithful; :mod:`robusteval.explain.faithfulness`). ``pred_matches_score``: the regenerated image gets the
    top-1 the score run recorded (the regeneration is exact). ``grid``: the PNG, relative to the
    folder of the records file; ``row``: the image's row in it (0 = top). ``scan_backend``: the
    selective-scan path used (None for models without one).
    """

    schema: int
    run: str
    model: str
    set: str
    severity: int
    method: str
    select: str
    image_id: str
    label: int
    label_name: str
    clean_pred: int
    clean_prob_true: float
    shifted_pred: int
    shifted_pred_name: str
    shifted_prob_pred: float
    shifted_prob_true: float
    pred_matches_score: bool
    auc_map_true: float
    auc_random_true: float
    faithfulness_true: float
    auc_map_pred: float
    auc_random_pred: float
    faithfulness_pred: float
    map_rank_corr_true_pred: float
    source: str  # "tree", "onthefly/imgaug" or "onthefly/torch"
    transform_seed: int | None
    cam_layer: str | None
    scan_backend: str | None
    weights: str
    device: str
    grid: str
    row: int
    seconds: float  # wall time of this method's maps + deletion curves for the whole grid
    created: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ExplainRecord:
        """Parse one JSON line; unknown keys are ignored, a missing key raises ``TypeError``."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in names})
