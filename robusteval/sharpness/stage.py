"""run_sharpness: models x sets x severities x parameter groups → runs/<NAME>/sharpness.jsonl.

Protocol (ours; the CLIP-Mamba paper's Hessian protocol is not published in code):

1. the sample: the ``images`` items of the set whose ``derive_seed(seed, "sharpness-sample", id)``
   rank lowest — the same images in every set that holds them (clean, trees, on the fly);
2. the pixels: each model's own preprocessing (its card's data config, ``score/preprocess.py``):
   clean val through the eval view (resize + center crop), shifted sets as the 224 crops the
   corrupt stage writes (trees), or makes on the fly (resize 256, crop 224, the set's reference op
   seeded by ``derive_seed(corrupt_seed, set, severity, id)``), resized to the model's input;
3. the loss: mean cross-entropy of the model's 1000-way logits in eval mode (CLIP models: of their
   zero-shot head, ``logit_scale · cos(image, class text)``; the head's text embeddings are fixed);
4. the Hessian w.r.t. every trainable parameter (or one diagonal block per group), exact products
   by double backward; scan models run the torch reference scan (exact to any order);
5. top-k eigenvalues by Lanczos (eigsh), trace by Hutchinson with its standard error, optional
   spectral density by stochastic Lanczos quadrature (:mod:`robusteval.sharpness.hessian`).

Each finished cell is one line appended to ``sharpness.jsonl`` (``robusteval.jsonl.append_records``:
one write + fsync, so a SIGKILL loses no finished cell); a rerun skips cells already there.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from robusteval.errors import UserError
from robusteval.sharpness.record import FILENAME, SharpnessRecord, read_sharpness, sharpness_cell


@dataclass(frozen=True)
class SharpnessRequest:
    """What to measure. ``images``: sample size per set; ``top_k`` ≥ 1 eigenvalues; ``trace_probes``
    Hutchinson probes (when ``trace``); ``density_ncv`` Lanczos steps (when ``density``)."""

    models: list[str]
    run: str
    data: Path
    runs_dir: Path = Path("runs")
    labels: Path | None = None
    sets_dir: Path | None = None
    transforms: list[str] = field(default_factory=list)
    severities: list[int] | None = None
    images: int = 1000
    batch_size: int = 64
    top_k: int = 5
    eig_tol: float = 1e-3
    eig_maxiter: int | None = None
    eig_ncv: int | None = None
    trace: bool = False
    trace_probes: int = 30
    density: bool = False
    density_ncv: int = 64
    per_block: bool = False
    blocks: list[str] = field(default_factory=list)
    seed: int = 0
    corrupt_seed: int = 0
    clean: bool = True
    device: str | None = None
    dtype: str = "float32"
    scan_backend: str = "torch"
    weights: dict[str, str] = field(default_factory=dict)
    trust_checkpoint: bool = False
    templates: str | None = None


@dataclass
class SharpnessSummary:
    written: list[SharpnessRecord]
    reused: int
    seconds: float
    run_dir: Path


def check_scan_backend(name: str) -> str:
    """``name`` when that scan path's second derivatives are exact (``ScanOps.differentiable == 2``
    in the scan registry: today the torch reference only); a one-line error otherwise. ``auto`` is
    refused too: it may pick a faster path whose double backward is not exact."""
    from robusteval.models.kernels.scan import SCAN_BACKENDS, BackendUnavailable, _load

    try:
        exact = name in SCAN_BACKENDS and _load(name).differentiable >= 2
    except BackendUnavailable:
        exact = False
    if not exact:
        raise UserError(
            f"--scan-backend {name}: its selective scan has no exact double backward, so the Hessian "
            "would drop the scan's second-order terms",
            hint="use --scan-backend torch (the out-of-place reference scan, exact on CPU and GPU)",
        )
    return name


def sample_items(items, *, n: int, seed: int):
    """The ``n`` items (label ≥ 0) of lowest ``derive_seed(seed, "sharpness-sample", id)``, in id order."""
    from robusteval.seeding import derive_seed

    ranked = sorted(
        (it for it in items if it.label >= 0),
        key=lambda it: (derive_seed(seed, "sharpness-sample", it.id), it.id),
    )
    return sorted(ranked[:n], key=lambda it: it.id)


def _sets(req: SharpnessRequest) -> list:
    from robusteval.corrupt.trees import tree_sets
    from robusteval.datasets.items import clean_set
    from robusteval.score.sets import onthefly_sets

    clean = clean_set(req.data, labels=req.labels)
    if clean.source_space != "imagenet1k":
        raise UserError(
            f"--data {req.data}: labels are in {clean.source_space}, the loss needs 1000-way ImageNet labels",
            hint="point --data at an ImageNet val folder",
        )
    out = [clean] if req.clean else []
    if req.sets_dir is not None:
        out += [s for s in tree_sets(req.sets_dir) if s.source_space == "imagenet1k"]
    if req.transforms:
        out += onthefly_sets(clean, transforms=req.transforms, severities=req.severities,
                             seed=req.corrupt_seed, impl="imgaug")  # fmt: skip
    return out


def load_pixels(score_set, items, *, card, device: str):
    """uint8 crops → the model's float32 NCHW input; returns (tensor, labels int64, kept ids, skips)."""
    import torch

    from robusteval.datasets.decode import BadImage, load_rgb
    from robusteval.score.onthefly import CropAndCorrupt
    from robusteval.score.preprocess import apply_view, make_view, normalize

    of = score_set.onthefly
    prepare = CropAndCorrupt(tuple(it.id for it in items), of.set_name, of.severity, of.seed) if of else None
    imgs, labels, ids, skips = [], [], [], []
    for pos, it in enumerate(items):
        try:
            arr = load_rgb(Path(it.path))
        except BadImage as err:
            skips.append({"path": it.path, "reason": str(err)})
            continue
        if prepare is not None:
            arr = prepare(arr, pos)
        imgs.append(torch.from_numpy(np.require(arr, requirements=["C", "W"])).permute(2, 0, 1).to(device))
        labels.append(it.label)
        ids.append(it.id)
    if not imgs:
        raise UserError(f"set {score_set.name}: none of the sampled images could be read")
    view = make_view(card.data, mode=score_set.mode)
    x = normalize(apply_view(imgs, view), mean=card.data.mean, std=card.data.std)
    return x, torch.as_tensor(labels, dtype=torch.int64, device=device), ids, skips, view.describe()


class _HeadInputs:
    """Forward hooks on the groups' modules, to find a block that makes the logits itself.

    For a group whose module's output *is* the model's output (the classifier), nothing below it
    depends on its parameters, so its Hessian block is exactly the Hessian of the loss of that module
    on its recorded inputs — the products then skip the backbone. Checked per batch by equality.
    """

    def __init__(self, model, groups: list[str]) -> None:
        self.seen: dict[str, list] = {}
        self.handles = []
        for g in groups:
            if g == "all":
                continue
            try:
                sub = model.get_submodule(g)
            except AttributeError:
                continue
            if not any(p.requires_grad for p in sub.parameters()):
                continue
            self.seen[g] = []

            def hook(module, args, out, _g=g):
                if len(args) == 1 and not isinstance(args[0], tuple):
                    self.seen[_g].append((args[0].detach(), out.detach()))

            self.handles.append(sub.register_forward_hook(hook))

    def close(self) -> None:
        for h in self.handles:
            h.remove()

    def inputs(self, group: str, outs: list):
        got = self.seen.get(group)
        if not got or len(got) != len(outs):
            return None
        if not all(
            o.shape == out.shape and bool((o == out).all()) for (_, o), out in zip(got, outs, strict=True)
        ):
            return None
        return [i for i, _ in got]


def _loss_kind(loaded) -> str:
    info = getattr(loaded.module, "zero_shot_info", None)
    if loaded.card.kind == "clip" or info is not None:
        info = info or {}
        return (
            "cross-entropy of the CLIP zero-shot head's 1000-way logits "
            f"(logit_scale·cosine to fixed class text embeddings, templates {info.get('templates', '?')})"
        )
    return f"cross-entropy of the classifier's {loaded.card.num_classes}-way logits"


def _has_scan(module) -> bool:
    return any(hasattr(m, "scan_backend") for m in module.modules())


def run_sharpness(
    req: SharpnessRequest,
    *,
    progress: Callable[[int], None] | None = None,
    on_total: Callable[[int], None] | None = None,
) -> SharpnessSummary:
    """Measure every pending (model, set, severity, group) cell; ``progress(1)`` per finished cell."""
    import torch

    from robusteval.devices import device_label, device_versions, resolve_device
    from robusteval.jsonl import append_records
    from robusteval.models import create_model, resolve
    from robusteval.runs import RunStore
    from robusteval.sharpness import hessian as H

    H._require_curvlinops()
    t0 = time.perf_counter()
    scan_backend = check_scan_backend(req.scan_backend)
    if req.images < 2 or req.batch_size < 1 or req.top_k < 1:
        raise UserError("--images must be >= 2, --batch and --top-k >= 1")
    dtypes = {"float32": torch.float32, "float64": torch.float64}
    if req.dtype not in dtypes:
        raise UserError(f"--dtype {req.dtype}: use float32 or float64")
    for name in req.models:
        resolve(name)  # unknown names fail before any image is read
    device = resolve_device(req.device)
    store = RunStore(req.runs_dir, req.run)
    sets = _sets(req)
    config = {
        "images": req.images, "seed": req.seed, "corrupt_seed": req.corrupt_seed, "top_k": req.top_k,
        "eig_tol": req.eig_tol, "eig_maxiter": req.eig_maxiter, "eig_ncv": req.eig_ncv, "trace": req.trace and req.trace_probes,
        "density": req.density and req.density_ncv, "dtype": req.dtype,
        "weights": {m: req.weights.get(m, "default") for m in req.models},
    }  # fmt: skip
    written: list[SharpnessRecord] = []
    reused = 0
    with store.lock():
        done = {r.cell for r in read_sharpness(store.dir)}
        if on_total is not None:
            on_total(len(req.models) * len(sets))
        versions = device_versions(device)
        for name in req.models:
            cfg = {**config, "weights": config["weights"][name]}
            loaded = None
            for score_set in sets:
                items = sample_items(score_set.items, n=req.images, seed=req.seed)
                if not items:
                    continue
                if loaded is None:
                    loaded = create_model(
                        name, weights=req.weights.get(name, "default"), scan_backend=scan_backend,
                        trust_checkpoint=req.trust_checkpoint, device=device, templates=req.templates,
                    )  # fmt: skip
                    loaded.module.to(dtypes[req.dtype])
                    if loaded.card.num_classes != 1000:
                        raise UserError(f"{name} has {loaded.card.num_classes} classes; the loss needs 1000")
                    groups = H.param_groups(loaded.module, per_block=req.per_block, prefixes=req.blocks)
                cells = [
                    (g, ps, sharpness_cell(model=name, set_name=score_set.name, severity=score_set.severity,
                                           group=g, config=cfg))
                    for g, ps in groups
                ]  # fmt: skip
                pending = [c for c in cells if c[2] not in done]
                reused += len(cells) - len(pending)
                if not pending:
                    if progress:
                        progress(1)
                    continue
                x, y, ids, skips, preprocess = load_pixels(score_set, items, card=loaded.card, device=device)
                x = x.to(dtypes[req.dtype])
                data = list(zip(x.split(req.batch_size), y.split(req.batch_size), strict=True))
                heads = _HeadInputs(loaded.module, [g for g, _, _ in pending])
                with torch.no_grad():
                    outs = [loaded.module(xb) for xb, _ in data]
                    logits = torch.cat(outs)
                heads.close()
                with torch.no_grad():
                    loss = float(torch.nn.functional.cross_entropy(logits.double(), y))
                    top1 = float((logits.argmax(1) == y).double().mean())
                sample_sha = hashlib.sha256("\n".join(ids).encode()).hexdigest()[:16]
                for group, params, cell in pending:
                    c0 = time.perf_counter()
                    model_func, batches = loaded.module, data
                    inputs = heads.inputs(group, outs)
                    if inputs is not None:  # a last-layer block: its inputs do not depend on its parameters
                        model_func = loaded.module.get_submodule(group)
                        batches = list(zip(inputs, (b for _, b in data), strict=True))
                    op = H.hessian_operator(model_func, params, batches)
                    eig = H.top_eigenvalues(
                        op,
                        k=req.top_k,
                        tol=req.eig_tol,
                        maxiter=req.eig_maxiter,
                        ncv=req.eig_ncv,
                        seed=req.seed,
                    )
                    tr = H.hutchinson(op, probes=req.trace_probes, seed=req.seed) if req.trace else None
                    dens = (
                        H.spectral_density(op, ncv=req.density_ncv, lam_max=eig.values[0] if eig.values else None,
                                           seed=req.seed)
                        if req.density else None
                    )  # fmt: skip
                    rec = SharpnessRecord(
                        run=req.run, cell=cell, model=name, set=score_set.name, suite=score_set.suite,
                        severity=score_set.severity, params=score_set.params, group=group,
                        n_params=int(sum(p.numel() for p in params)), n_images=len(ids),
                        sample_seed=req.seed, sample_sha256=sample_sha,
                        corrupt_seed=score_set.onthefly.seed if score_set.onthefly else None,
                        loss=loss, top1=top1, loss_kind=_loss_kind(loaded),
                        hessian="exact products by double backward (curvlinops HessianLinearOperator)",
                        eigenvalues=eig.values, eig_residuals=eig.residuals, eig_matvecs=eig.matvecs,
                        eig_converged=eig.converged, eig_tol=req.eig_tol,
                        trace=tr.value if tr else None, trace_stderr=tr.stderr if tr else None,
                        trace_probes=tr.probes if tr else None,
                        density_grid=dens.grid if dens else None, density=dens.density if dens else None,
                        density_ncv=dens.ncv if dens else None, density_matvecs=dens.matvecs if dens else None,
                        scan_backend=scan_backend if _has_scan(loaded.module) else None,
                        preprocess=preprocess, data_config=loaded.card.data.as_dict(),
                        weights=dict(loaded.weights), dtype=req.dtype, device=device_label(device),
                        batch_size=req.batch_size, seconds=time.perf_counter() - c0,
                        created=datetime.now(UTC).isoformat(timespec="seconds"), versions=versions,
                        skips=tuple(skips),
                    )  # fmt: skip
                    append_records(store.dir / FILENAME, [rec.to_json()])
                    done.add(cell)
                    written.append(rec)
                if progress:
                    progress(1)
            del loaded
    return SharpnessSummary(
        written=written, reused=reused, seconds=time.perf_counter() - t0, run_dir=store.dir
    )
