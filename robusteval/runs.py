"""The run store: ``runs/<NAME>/records.jsonl`` (append-only, one JSON line per cell) + ``preds/*.npz``.

Crash safety (a SIGKILL at any instant loses no finished cell and leaves nothing half-read):

1. the cell's predictions go to a temp file, fsync, rename to ``preds/<cell>.npz``;
2. only then the record line is appended with a single ``os.write`` on an ``O_APPEND`` fd + fsync.

A cell is finished when its record line is complete and its preds file exists. A kill between 1 and
2 leaves an orphan npz that the resumed run overwrites; a torn last line (no newline) is ignored and
the next append starts on a fresh line. One process scores a run at a time (``flock`` on ``.lock``).
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import re
from collections.abc import Iterator
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, get_type_hints

import numpy as np

from robusteval.errors import UserError
from robusteval.jsonl import atomic_write_bytes, disk_error, ends_torn, read_records

SCHEMA = 1
RECORDS = "records.jsonl"
PREDS = "preds"

#: Fields that legitimately differ between two runs of the same cell.
TIMING_FIELDS = ("seconds", "img_per_s", "created")
#: ...and those that name the invocation: two runs of the same cells differ in these too.
PER_RUN_FIELDS = (*TIMING_FIELDS, "run", "command")


@dataclass(frozen=True)
class Record:
    """One scored cell (model × set × severity × label space): a line of ``records.jsonl``.

    The score engine builds it, :func:`Record.from_json` parses it for the report, and the test
    fixtures construct it, so all three agree on every field. Units: accuracies and ECE are
    fractions in 0..1 (``top5`` is ``None`` for label spaces of 5 classes or fewer); ``seconds`` is
    the wall-clock time of the cell's decode pass (every model of the pass scored together);
    ``img_per_s`` that pass's images over it; ``decode_batch`` images per decode job and
    ``forward_batch`` images per forward call (smaller after a CUDA OOM step-down); ``created`` is
    ISO 8601 UTC. ``preds`` is the path of the per-image predictions, relative to the run folder.
    """

    run: str
    cell: str
    model: str
    set: str
    suite: str
    severity: int | None
    label_space: str
    n: int
    top1: float | None  # None: no image of the cell has a known label (or none was readable)
    top5: float | None
    ece: float | None
    preds: str
    model_kind: str = "classifier"  # "classifier" or "clip" (zero-shot head)
    params: dict[str, Any] | None = None
    subset: str | None = None
    seconds: float | None = None
    img_per_s: float | None = None
    skips: list[dict[str, str]] = field(default_factory=list)
    preprocess: str = ""
    data_config: dict[str, Any] = field(default_factory=dict)
    weights: dict[str, Any] = field(default_factory=dict)
    spec_hash: str | None = None
    data_sha256: str | None = None  # what the cell measured: sorted ids + labels, spec hash, seed
    zero_shot: dict[str, Any] | None = None  # CLIP models: the prompt set and class names used
    command: str | None = None  # the command that scored the cell, as typed
    versions: dict[str, str] = field(default_factory=dict)
    device: str = ""
    amp: str = ""
    decode_batch: int | None = None
    forward_batch: int | None = None
    created: str = ""
    schema: int = SCHEMA

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, obj: dict[str, Any], *, where: str) -> Record:
        """Parse one JSON object; a :class:`UserError` naming ``where`` for anything malformed.

        Records written before ``decode_batch``/``forward_batch`` existed carry ``batch_size``
        (the forward chunk); it is read as ``forward_batch``.
        """
        obj = dict(obj)
        if "batch_size" in obj:
            obj.setdefault("forward_batch", obj.pop("batch_size"))
        if obj.get("schema", SCHEMA) != SCHEMA:
            raise UserError(
                f"{where} has record schema {obj.get('schema')!r}; this robusteval reads schema {SCHEMA}",
                hint="upgrade robusteval or re-score the run",
            )
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(obj) - known)
        if unknown:
            raise UserError(f"{where}: unknown record field {unknown[0]!r}", hint="re-score the run")
        missing = sorted(f.name for f in fields(cls) if f.name not in obj and _required(f))
        if missing:
            raise UserError(f"{where} is not a score record (missing {', '.join(missing)})")
        for name, kinds in _field_types().items():
            if name in obj and not isinstance(obj[name], kinds):
                raise UserError(
                    f"{where}: field {name!r} is {type(obj[name]).__name__}, not {kinds[0].__name__}"
                )
        return cls(**obj)


def _required(f: Any) -> bool:
    return f.default is MISSING and f.default_factory is MISSING


_TYPES = {str: (str,), int: (int,), float: (int, float), dict: (dict,), list: (list,)}


def _field_types() -> dict[str, tuple[type, ...]]:
    """Field → accepted JSON types (``None`` allowed where the annotation is optional)."""
    out = {}
    for name, hint in get_type_hints(Record).items():
        args = getattr(hint, "__args__", None)
        origin = getattr(hint, "__origin__", hint)
        base = [a for a in args if a is not type(None)] if args and type(None) in args else [origin]
        kinds: tuple[type, ...] = ()
        for b in base:
            b = getattr(b, "__origin__", b)
            kinds += _TYPES.get(b, (object,))
        if args and type(None) in args:
            kinds += (type(None),)
        out[name] = kinds
    return out


def cell_id(*, model: str, set_name: str, severity: int | None, label_space: str) -> str:
    """Stable, file-name-safe id of a (model, set, severity, label space) cell."""
    sev = "-" if severity is None else str(severity)
    raw = f"{model}__{set_name}__s{sev}__{label_space}"
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", raw)
    if safe != raw:  # keep ids unique when sanitising merged two names
        import hashlib

        safe += "_" + hashlib.sha256(raw.encode()).hexdigest()[:8]
    return safe


@dataclass
class Preds:
    """Per-image predictions of one cell, in the cell's label space.

    ``ids`` str [n]; ``labels`` int64 [n] (-1 unknown); ``top5`` int16 [n, 5] class indices, best
    first; ``top5_prob`` float16 [n, 5] their probabilities (softmax of the label space).
    """

    ids: np.ndarray
    labels: np.ndarray
    top5: np.ndarray
    top5_prob: np.ndarray

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        np.savez(
            buf,
            ids=np.asarray(self.ids, dtype=str),
            labels=np.asarray(self.labels, dtype=np.int64),
            top5=np.asarray(self.top5, dtype=np.int16),
            top5_prob=np.asarray(self.top5_prob, dtype=np.float16),
        )
        return buf.getvalue()

    @classmethod
    def load(cls, path: Path) -> Preds:
        """The arrays as stored (int16 / float16)."""
        with np.load(path, allow_pickle=False) as z:
            return cls(ids=z["ids"], labels=z["labels"], top5=z["top5"], top5_prob=z["top5_prob"])

    @classmethod
    def read(cls, path: Path) -> Preds | None:
        """For analysis: ``top5`` as int64 and ``top5_prob`` as float64; ``None`` when the file is
        missing or unreadable (the report then leaves the cell's per-image statistics out)."""
        try:
            with np.load(path, allow_pickle=False) as z:
                return cls(
                    ids=np.asarray(z["ids"]).astype(str),
                    labels=np.asarray(z["labels"], dtype=np.int64),
                    top5=np.asarray(z["top5"], dtype=np.int64),
                    top5_prob=np.asarray(z["top5_prob"], dtype=np.float64),
                )
        except (OSError, KeyError, ValueError):
            return None


class RunStore:
    """One run folder. ``finished()`` → cell id → record; ``append(record, preds)`` adds a cell."""

    def __init__(self, runs_dir: Path, name: str) -> None:
        if not name or "/" in name or name.startswith("."):
            raise UserError(f"bad run name {name!r}", hint="use a plain folder name such as --run study1")
        if len(name.encode("utf-8", "surrogateescape")) > 255:
            raise UserError(
                f"run name is {len(name)} characters; folder names hold at most 255 bytes",
                hint="pass a shorter --run NAME",
            )
        self.name = name
        self.dir = Path(runs_dir) / name
        self.records_path = self.dir / RECORDS
        self.preds_dir = self.dir / PREDS

    def records(self) -> list[dict[str, Any]]:
        """All complete records in file order (a cell scored twice appears twice)."""
        return list(read_records(self.records_path))

    def finished(self) -> dict[str, dict[str, Any]]:
        """Cells whose record and preds file both exist (last record of a cell wins)."""
        out: dict[str, dict[str, Any]] = {}
        for rec in read_records(self.records_path):
            cell, preds = rec.get("cell"), rec.get("preds")
            if isinstance(cell, str) and isinstance(preds, str) and (self.dir / preds).is_file():
                out[cell] = rec
        return out

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the run for this process; a second scorer on the same run gets a one-line error."""
        import fcntl

        self.dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.dir / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise UserError(
                    f"run {self.name!r} is being scored by another process",
                    hint="wait for it, or pass a different --run NAME",
                ) from None
            yield
        finally:
            os.close(fd)

    def append(self, record: Record, preds: Preds) -> None:
        """Write ``preds`` (temp + fsync + rename), then the record line (one write + fsync)."""
        target = self.dir / record.preds
        atomic_write_bytes(target, preds.to_bytes())  # a full disk removes the temp file
        _fsync_dir(target.parent)
        line = json.dumps(record.to_json(), separators=(",", ":"), allow_nan=True) + "\n"
        fd = os.open(self.records_path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            if ends_torn(fd):
                line = "\n" + line
            n = os.write(fd, line.encode())
            if n != len(line.encode()):
                raise OSError(errno.ENOSPC, "short write")
            os.fsync(fd)
        except OSError as err:
            raise disk_error(err, self.records_path) from None
        finally:
            os.close(fd)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
