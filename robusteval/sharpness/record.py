"""The record of one sharpness cell: (model, set, severity, parameter group) → one JSON line.

Written by :mod:`robusteval.sharpness.stage` to ``runs/<NAME>/sharpness.jsonl``, read back by
:func:`read_sharpness` (the report section, resume) and built directly by the test fixtures.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SCHEMA = 1
FILENAME = "sharpness.jsonl"


@dataclass(frozen=True)
class SharpnessRecord:
    """Hessian spectrum of one model's loss on one image sample, w.r.t. one parameter group.

    Units: eigenvalues, trace and the density grid are second derivatives of the mean
    cross-entropy (nats) w.r.t. the parameters in their own units; ``loss`` in nats; ``seconds``
    wall time of the cell. Lists run best first (eigenvalues descending). ``None``: not asked for.

    - ``loss_kind``: what was differentiated (classifier logits or a CLIP zero-shot head);
    - ``group``: ``"all"`` or a module prefix (a diagonal block of the Hessian); ``n_params`` its size;
    - ``sample_seed`` picks the images (``sample_sha256`` hashes their ids, so equal samples compare);
    - ``eig_residuals``: ``‖Hv − λv‖ / |λ|``; ``eig_matvecs``: Hessian-vector products used;
    - ``trace`` ± ``trace_stderr`` from ``trace_probes`` Hutchinson probes;
    - ``density_grid`` / ``density``: stochastic Lanczos quadrature, integrates to 1.
    """

    run: str
    cell: str
    model: str
    set: str
    suite: str
    severity: int | None
    params: dict[str, Any] | None
    group: str
    n_params: int
    n_images: int
    sample_seed: int
    sample_sha256: str
    corrupt_seed: int | None
    loss: float
    top1: float
    loss_kind: str
    hessian: str
    eigenvalues: tuple[float, ...]
    eig_residuals: tuple[float, ...]
    eig_matvecs: int
    eig_converged: bool
    eig_tol: float
    trace: float | None
    trace_stderr: float | None
    trace_probes: int | None
    density_grid: tuple[float, ...] | None
    density: tuple[float, ...] | None
    density_ncv: int | None
    density_matvecs: int | None
    scan_backend: str | None
    preprocess: str
    data_config: dict[str, Any]
    weights: dict[str, Any]
    dtype: str
    device: str
    batch_size: int
    seconds: float
    created: str
    versions: dict[str, str] = field(default_factory=dict)
    skips: tuple[dict[str, str], ...] = ()
    schema: int = SCHEMA

    @property
    def lam_max(self) -> float:
        return self.eigenvalues[0] if self.eigenvalues else float("nan")

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, rec: dict[str, Any]) -> SharpnessRecord:
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in rec.items() if k in names}
        for key in ("eigenvalues", "eig_residuals", "density_grid", "density", "skips"):
            if kw.get(key) is not None:
                kw[key] = tuple(kw[key])
        return cls(**kw)


def sharpness_cell(*, model: str, set_name: str, severity: int | None, group: str, config: dict) -> str:
    """Stable, file-name-safe id; ``config`` (sample size, seeds, estimators) is hashed into it."""
    sev = "-" if severity is None else str(severity)
    blob = json.dumps(config, sort_keys=True).encode()
    raw = f"{model}__{set_name}__s{sev}__{group}__{hashlib.sha256(blob).hexdigest()[:10]}"
    return re.sub(r"[^A-Za-z0-9._-]+", "_", raw)


def read_sharpness(run_dir: Path) -> list[SharpnessRecord]:
    """Every complete record of ``run_dir/sharpness.jsonl``; the last record of a cell wins."""
    from robusteval.jsonl import read_records

    by_cell: dict[str, SharpnessRecord] = {}
    for rec in read_records(Path(run_dir) / FILENAME):
        if rec.get("schema") == SCHEMA and isinstance(rec.get("cell"), str):
            by_cell[rec["cell"]] = SharpnessRecord.from_json(rec)
    return list(by_cell.values())
