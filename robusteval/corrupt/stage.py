"""The corrupt stage: images → ``OUT/<set>/<severity>/<folder>/<stem>.png`` + ``OUT/manifest.jsonl``.

Per image: decode → RGB → resize 256 → center crop 224 → transformation → lossless PNG. Each output's
random state derives from (seed, set, severity, image id), so bytes never depend on worker count or
order. Outputs are written atomically and recorded in an append-only manifest; a re-run skips what
the manifest and the files agree is finished, so a killed run resumes to identical bytes.
"""

from __future__ import annotations

import collections
import contextlib
import io
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from robusteval.corrupt.spec import Corruption, SetSpec, base_crop, corruption, resolve_sets
from robusteval.corrupt.trees import MANIFEST
from robusteval.cpus import die_with_parent, usable_cpus
from robusteval.datasets.decode import BadImage, load_rgb
from robusteval.datasets.layouts import Dataset, Sample, read_dataset, sample_per_class
from robusteval.errors import UserError
from robusteval.jsonl import append_records, atomic_write_bytes, dir_lock, read_records, writable_dir
from robusteval.provenance import sha256_bytes, sha256_file, versions


@dataclass(frozen=True)
class Target:
    """One output to produce: ``spec`` at ``severity`` for one image, written to ``rel`` under OUT."""

    set_name: str
    severity: int
    rel: str


@dataclass
class CorruptSummary:
    out: Path
    n_images: int = 0
    written: int = 0
    reused: int = 0
    replaced: int = 0  # outputs on disk from another seed/spec/source, rewritten by this run
    skips: list[dict[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    sets: list[tuple[str, list[int]]] = field(default_factory=list)

    @property
    def images_per_s(self) -> float:
        done = self.written + self.reused
        return done / self.seconds if self.seconds > 0 else 0.0


def set_folder(spec: SetSpec) -> str:
    """Directory name of a set in the tree (ImageNet-C sets keep their released folder names)."""
    return str(spec.extra.get("folder", spec.name))


def output_names(samples: list[Sample]) -> dict[str, str]:
    """Sample id → ``<folder>/<stem>.png``; stems that collide within a folder use their full id."""
    seen: dict[tuple[str, str], int] = {}
    for s in samples:
        key = (s.folder, Path(s.id).name)
        seen[key] = seen.get(key, 0) + 1
    names = {}
    for s in samples:
        stem = Path(s.id).name
        if seen[(s.folder, stem)] > 1:
            stem = s.id.replace("/", "__")
        names[s.id] = f"{s.folder}/{stem}.png"
    return names


def encode_png(img: np.ndarray) -> bytes:
    """Lossless PNG with fixed settings and no metadata, so equal pixels give equal bytes."""
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG", compress_level=6, optimize=False)
    return buf.getvalue()


def _process_image(
    sample: Sample, targets: list[Target], out: str, seed: int
) -> tuple[list[dict[str, Any]], dict[str, str] | None]:
    """Worker: decode and crop once, then produce every pending target of this image."""
    try:
        crop = base_crop(load_rgb(sample.path))
    except BadImage as err:
        return [], {"source": str(sample.path), "id": sample.id, "reason": str(err)}
    records = []
    for t in targets:
        c = corruption(t.set_name, severity=t.severity, seed=seed)
        data = encode_png(c.apply(crop, image_id=sample.id))
        atomic_write_bytes(Path(out) / t.rel, data)
        records.append({
            "kind": "output", "set": t.set_name, "folder": t.rel.split("/", 1)[0], "suite": c.spec.suite,
            "severity": t.severity, "op": c.spec.op, "params": c.params,
            "spec_hash": c.spec_hash, "source": str(sample.path), "id": sample.id,
            "label": sample.label, "wnid": sample.wnid, "class_folder": sample.folder, "path": t.rel,
            "sha256": sha256_bytes(data), "seed": c.image_seed(sample.id),
        })  # fmt: skip
    return records, None


def _finished(out: Path, *, verify: bool) -> dict[str, dict[str, Any]]:
    """Relative path → its last manifest record, for files that exist (and match their sha256 if
    ``verify``)."""
    recs: dict[str, dict[str, Any]] = {}
    for rec in read_records(out / MANIFEST):
        if rec.get("kind") == "output" and isinstance(rec.get("path"), str):
            recs[rec["path"]] = rec  # a later record of the same file wins
    done = {}
    for rel, rec in recs.items():
        path = out / rel
        if path.is_file() and (not verify or sha256_file(path) == rec.get("sha256")):
            done[rel] = rec
    return done


def _matches(rec: dict[str, Any] | None, *, seed: int, spec_hash: str, source: str) -> bool:
    """Whether an output on disk is what this run would write: same seed, spec hash and source."""
    return (
        rec is not None
        and rec.get("seed") == seed
        and rec.get("spec_hash") == spec_hash
        and rec.get("source") == source
    )


def _plan(
    ds: Dataset, sets: list[tuple[SetSpec, list[int]]], done: dict[str, dict[str, Any]], *, seed: int
) -> Iterator[tuple[Sample, list[Target], int]]:
    """(sample, pending targets, how many of them replace a mismatching output on disk)."""
    names = output_names(ds.samples)
    resolved = [(spec, Corruption(spec, sev, seed)) for spec, sevs in sets for sev in sevs]
    for sample in ds.samples:
        pending, replaced = [], 0
        for spec, c in resolved:
            t = Target(spec.name, c.severity, f"{set_folder(spec)}/{c.severity}/{names[sample.id]}")
            rec = done.get(t.rel)
            if not _matches(
                rec, seed=c.image_seed(sample.id), spec_hash=c.spec_hash, source=str(sample.path)
            ):
                pending.append(t)
                replaced += rec is not None
        if pending:
            yield sample, pending, replaced


def _check_sample(out: Path, ds: Dataset, *, per_class: int | None) -> None:
    """Refuse a second, different sample of images in one OUT (it would be scored as one set)."""
    mine = _sample_sha(ds)
    for rec in read_records(out / MANIFEST):
        theirs = rec.get("sample_sha256") if rec.get("kind") == "run" else None
        if theirs and theirs != mine:
            raise UserError(
                f"--out {out} holds outputs of a different sample of images "
                f"({rec.get('n_images')} images, per_class={rec.get('per_class')}, seed={rec.get('seed')}; "
                f"now {len(ds.samples)} images, per_class={per_class})",
                hint="write each sample to its own --out",
            )


def _sample_sha(ds: Dataset) -> str:
    return sha256_bytes("\n".join(s.id for s in ds.samples).encode())


def run_corrupt(
    *,
    data: Path,
    out: Path,
    transforms: list[str] | None = None,
    suite: str | list[str] | None = None,
    severities: list[int] | None = None,
    labels: Path | None = None,
    per_class: int | None = None,
    seed: int = 0,
    workers: int | None = None,
    verify: bool = True,
    progress: Callable[[int], None] | None = None,
    on_total: Callable[[int], None] | None = None,
    on_skip: Callable[[dict[str, str]], None] | None = None,
) -> CorruptSummary:
    """Write corrupted copies of the images at ``data`` under ``out``; returns what happened.

    ``severities``: 1-based levels (default: all of each set). ``per_class``: sample N images per
    class with ``seed``. ``workers``: processes (default: all cores). ``progress(n)`` is called with
    the number of outputs just finished; ``on_total(n)`` once with the number planned.
    Raises :class:`UserError` when no usable image was found.

    Launched by torchrun, the pending images are sharded over the ranks in chunks of
    :data:`CHUNK_PER_RANK` per rank (:func:`robusteval.distributed.shard`); each rank writes its own
    PNGs, and rank 0 appends every rank's manifest records in plan order, so the tree and the
    manifest (bar its start time) equal a single-process run's. The callbacks run on rank 0.
    """
    from robusteval.distributed import from_env, session

    kwargs = dict(
        data=data, out=out, transforms=transforms, suite=suite, severities=severities, labels=labels,
        per_class=per_class, seed=seed, workers=workers, verify=verify,
    )  # fmt: skip
    if from_env() is None:
        return _run_corrupt(**kwargs, progress=progress, on_total=on_total, on_skip=on_skip, world=None)
    with session("cpu") as (world, _):  # numpy work: gloo, whatever the node has
        if not world.root:
            progress = on_total = on_skip = None
        return _run_corrupt(**kwargs, progress=progress, on_total=on_total, on_skip=on_skip, world=world)


#: Images per rank between two gathers of a distributed run (the resume granularity).
CHUNK_PER_RANK = 32


def _run_corrupt(
    *, data, out, transforms, suite, severities, labels, per_class, seed, workers, verify, progress,
    on_total, on_skip, world,
) -> CorruptSummary:  # fmt: skip
    root = world is None or world.root
    t0 = time.perf_counter()
    sets = resolve_sets(transforms=transforms, suite=suite, severities=severities)
    ds = read_dataset(Path(data), labels=labels)
    if per_class:
        ds = sample_per_class(ds, per_class=per_class, seed=seed)
    out = writable_dir(Path(out), option="--out")
    lock = (
        dir_lock(out, busy=f"--out {out} is being written by another `robusteval corrupt`",
                 hint="wait for it, or pass a different --out")
        if root else contextlib.nullcontext()
    )  # fmt: skip
    with lock:
        if root:
            _check_sample(out, ds, per_class=per_class)
        return _run_locked(
            ds, sets, data=data, out=out, per_class=per_class, seed=seed, workers=workers, verify=verify,
            progress=progress, on_total=on_total, on_skip=on_skip, t0=t0, world=world,
        )  # fmt: skip


def _run_locked(ds: Dataset, sets, *, data, out: Path, per_class, seed, workers, verify, progress, on_total,
                on_skip, t0: float, world) -> CorruptSummary:  # fmt: skip
    from robusteval.distributed import barrier, broadcast_from_root

    root = world is None or world.root
    if root:  # before any rank writes: another rank's temp files are not stale
        _remove_stale_temps(out)
    barrier("clearing temp files")
    summary = CorruptSummary(out=out, n_images=len(ds.samples), sets=[(s.name, v) for s, v in sets])
    manifest = Manifest(out / MANIFEST, header=lambda: _run_header(
        ds, data=data, per_class=per_class, seed=seed, sets=sets))  # fmt: skip
    for skip in (s.as_dict() for s in ds.skips) if root else ():
        manifest.skip(skip, on_skip)
    per_image = sum(len(v) for _, v in sets)
    done = broadcast_from_root(_finished(out, verify=verify) if root else None, "reading the manifest")
    planned = list(_plan(ds, sets, done, seed=seed))
    plan = [(sample, targets) for sample, targets, _ in planned]
    summary.replaced = sum(r for _, _, r in planned)
    summary.reused = len(ds.samples) * per_image - sum(len(t) for _, t in plan)
    if on_total:
        on_total(len(ds.samples) * per_image)
    if progress and summary.reused:
        progress(summary.reused)
    bad = 0
    failures: list[str] = []
    results = (
        _map(plan, out=out, seed=seed, workers=workers, failures=failures) if world is None
        else _sharded(plan, out=out, seed=seed, workers=workers, world=world, failures=failures)
    )  # fmt: skip
    for records, skip in results:
        if skip is not None:
            bad += 1
            manifest.skip(skip, on_skip)
            if progress:
                progress(per_image)
            continue
        manifest.append(records)
        summary.written += len(records)
        if progress:
            progress(len(records))
    summary.skips = manifest.skips
    summary.seconds = time.perf_counter() - t0
    if failures:
        raise UserError(
            f"{len(failures)} image(s) failed in the workers (first: {failures[0]}); "
            f"the {summary.written + summary.reused} finished outputs are recorded",
            hint="fix the cause and re-run the same command to resume",
        )
    if not root:
        return summary
    if not ds.samples or (plan and bad == len(plan) and summary.reused == 0):
        raise UserError(
            f"no usable image under {data} ({len(summary.skips)} skipped)",
            hint="check --data (and --labels); skips are listed in the manifest",
        )
    return summary


class Manifest:
    """The append-only manifest of one OUT folder.

    The run header is written lazily before the first new record, and a skip already recorded is
    not recorded again, so a re-run with nothing to do leaves the folder byte-identical.
    """

    def __init__(self, path: Path, *, header: Callable[[], dict[str, Any]]) -> None:
        self.path = path
        self._header = header
        self._header_written = False
        self._known_skips = {
            (r.get("source"), r.get("reason")) for r in read_records(path) if r.get("kind") == "skip"
        }
        self.skips: list[dict[str, str]] = []

    def append(self, records: list[dict[str, Any]]) -> None:
        if not records:
            return
        if not self._header_written:
            records = [self._header(), *records]
            self._header_written = True
        append_records(self.path, records)

    def skip(self, skip: dict[str, str], on_skip: Callable[[dict[str, str]], None] | None) -> None:
        self.skips.append(skip)
        if on_skip:
            on_skip(skip)
        key = (skip.get("source"), skip.get("reason"))
        if key not in self._known_skips:
            self._known_skips.add(key)
            self.append([{"kind": "skip", **skip}])


def _remove_stale_temps(out: Path) -> None:
    """Temp files of a killed run (``.<name>.<pid>.tmp``) are never outputs; clear them."""
    for tmp in out.rglob(".*.tmp"):
        tmp.unlink(missing_ok=True)


def _map(plan, *, out: Path, seed: int, workers: int | None, failures: list[str]):
    """Results of ``plan`` in order. In the pool, a failed image is noted in ``failures`` (pending
    work is cancelled) and every image that did finish is still yielded, so it gets recorded."""
    n = workers or usable_cpus()
    if n <= 1 or len(plan) <= 1:
        for sample, targets in plan:
            try:
                result = _process_image(sample, targets, str(out), seed)
            except Exception as err:  # noqa: BLE001 - reported as one line after recording the rest
                failures.append(_one_line(err))
                return
            yield result
        return
    pool = ProcessPoolExecutor(max_workers=n, initializer=die_with_parent, initargs=(os.getpid(),))
    todo = iter(plan)
    window: collections.deque = collections.deque()
    stop = False  # after the first failure nothing new is submitted

    def fill() -> None:
        nonlocal stop
        while not stop and len(window) < IN_FLIGHT_PER_WORKER * n:
            item = next(todo, None)
            if item is None:
                return
            try:
                window.append(pool.submit(_process_image, item[0], item[1], str(out), seed))
            except Exception as err:  # noqa: BLE001 - a worker died: the pool takes no more work
                failures.append(_one_line(err))
                stop = True

    try:
        fill()
        while window:
            fut = window.popleft()
            if fut.cancelled():
                continue
            try:
                result = fut.result()
            except Exception as err:  # noqa: BLE001 - reported as one line after recording the rest
                failures.append(_one_line(err))
                stop = True
                for other in window:
                    other.cancel()
                continue
            yield result
            fill()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


#: Images submitted ahead per worker: keeps the workers busy without queueing the whole plan.
IN_FLIGHT_PER_WORKER = 4


def _one_line(err: BaseException) -> str:
    text = str(err).splitlines()[0] if str(err) else ""
    return text if isinstance(err, UserError) else f"{err.__class__.__name__}: {text}".rstrip(": ")


def _sharded(plan, *, out: Path, seed: int, workers: int | None, world, failures: list[str]):
    """Distributed :func:`_map`: this rank's share of each chunk; on rank 0, every rank's results of
    the chunk in plan order (the other ranks yield nothing)."""
    from robusteval.distributed import gather_to_root, shard

    step = CHUNK_PER_RANK * world.size
    chunks = [plan[lo : lo + step] for lo in range(0, len(plan), step)]
    mine = [[chunk[i] for i in shard(len(chunk), world)] for chunk in chunks]
    results = _map(
        [item for part in mine for item in part], out=out, seed=seed, workers=workers, failures=failures
    )
    for part in mine:
        got = [next(results) for _ in part]
        parts = gather_to_root(got, "a corrupt chunk")
        if parts is not None:  # the shards are contiguous blocks in rank order: concatenation is plan order
            yield from (r for p in parts for r in p)
    results.close()  # shuts the worker pool down


def _run_header(ds: Dataset, *, data: Path, per_class: int | None, seed: int, sets) -> dict[str, Any]:
    return {
        "kind": "run", "data": str(Path(data).resolve()), "layout": ds.layout,
        "label_space": ds.label_space, "class_names": ds.class_names, "n_images": len(ds.samples),
        "per_class": per_class, "seed": seed, "sample_sha256": _sample_sha(ds),
        "sample": [[s.id, s.label, s.wnid] for s in ds.samples],
        "sets": {spec.name: sevs for spec, sevs in sets}, "versions": versions(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }  # fmt: skip
