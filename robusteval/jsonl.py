"""Append-only JSONL files that survive SIGKILL: one ``os.write`` per record, then fsync.

Readers skip what a crash or a bad disk can leave: a torn last line (no newline), and any line in
the middle that is not a JSON object (NUL padding after a power cut, binary garbage); each skipped
middle line is reported once as a :class:`~robusteval.errors.DataWarning`. Writers start on a fresh
line when the file ends torn, so one torn line never swallows the next record.

Also here: :func:`atomic_write_bytes` (temp + fsync + rename; the temp never outlives a failure),
:func:`writable_dir` (an output folder or a one-line error) and :func:`dir_lock` (one writer per
folder, ``flock``).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from robusteval.errors import DataWarning, UserError


def append_records(path: Path, records: Iterable[dict[str, Any]]) -> None:
    """Append records as JSON lines in one write, so a kill never leaves half a batch."""
    blob = "".join(json.dumps(r, sort_keys=True, separators=(",", ":")) + "\n" for r in records)
    if not blob:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        if ends_torn(fd):
            blob = "\n" + blob
        _write_all(fd, blob.encode(), path=path)
        os.fsync(fd)
    finally:
        os.close(fd)


def ends_torn(fd: int) -> bool:
    """True when the open file is non-empty and does not end with a newline (a torn last line)."""
    size = os.fstat(fd).st_size
    return size > 0 and os.pread(fd, 1, size - 1) != b"\n"


def _write_all(fd: int, data: bytes, *, path: Path) -> None:
    try:
        n = os.write(fd, data)
    except OSError as err:
        raise disk_error(err, path) from None
    if n != len(data):  # a short write: the disk filled mid-line; the reader drops the torn tail
        raise disk_error(OSError(errno.ENOSPC, "short write"), path)


def disk_error(err: OSError, path: Path) -> UserError:
    """A one-line :class:`UserError` for a failed write (full disk, read-only, permission)."""
    if err.errno == errno.ENOSPC:
        return UserError(f"disk full writing {path}", hint="free space (finished work is kept) and re-run")
    if err.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return UserError(f"cannot write {path}: {os.strerror(err.errno)}", hint="choose a writable folder")
    return UserError(f"cannot write {path}: {err.strerror or err}")


def read_records(path: Path) -> Iterator[dict[str, Any]]:
    """Yield every complete JSON-object line; a torn last line is dropped, a garbage line skipped
    (with one :class:`DataWarning` per file read)."""
    if not path.is_file():
        return
    bad: list[int] = []
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            if not raw.endswith(b"\n"):
                break
            line = raw.strip(b"\x00 \t\r\n")  # NUL padding around a record is not part of it
            if not line:
                if raw.strip(b"\r\n"):
                    bad.append(lineno)
                continue
            try:
                rec = json.loads(line.decode("utf-8"))
            except ValueError:  # JSONDecodeError and UnicodeDecodeError alike
                bad.append(lineno)
                continue
            if isinstance(rec, dict):
                yield rec
            else:
                bad.append(lineno)
    if bad:
        shown = ", ".join(map(str, bad[:5])) + (" ..." if len(bad) > 5 else "")
        warnings.warn(
            f"{path}: skipped {len(bad)} line(s) that are not JSON records (line {shown})",
            DataWarning,
            stacklevel=2,
        )


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file in the same folder and a rename.

    On any failure (a full disk included) the temp file is removed and the error is a one-line
    :class:`UserError`; ``path`` keeps its old content.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            _write_all(fd, data, path=path)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException as err:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(err, OSError):
            raise disk_error(err, path) from None
        raise


def writable_dir(path: Path, *, option: str) -> Path:
    """Create ``path`` (and parents) if needed; a file there or a read-only place is a UserError."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{option} {path} is a file, not a folder", hint=f"pass a folder to {option}")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(
            f"{option} {path}: cannot create the folder ({err.strerror or err})",
            hint=f"pass a writable folder to {option}",
        ) from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise UserError(f"{option} {path} is not writable", hint=f"pass a writable folder to {option}")
    return path


@contextlib.contextmanager
def dir_lock(folder: Path, *, busy: str, hint: str) -> Iterator[None]:
    """Hold ``folder/.lock`` (``flock``, released by the kernel when the process dies).

    A second holder gets a one-line ``UserError(busy, hint=hint)`` at once.
    """
    import fcntl

    fd = os.open(Path(folder) / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(busy, hint=hint) from None
        yield
    finally:
        os.close(fd)
