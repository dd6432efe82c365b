"""Several processes on one run, over :mod:`torch.distributed` (launched by ``torchrun``).

A stage calls :func:`session` once; inside it :func:`current` is the :class:`World` of this process
(``None`` when not launched by torchrun: the single-process path, untouched). The rules every stage
follows:

- **Sharding** (:func:`shard`): the items of a pass are split into ``world_size`` contiguous blocks
  in item order (rank ``r`` gets ``[r*n//W, (r+1)*n//W)``), so the split depends only on ``n`` and
  the world size, never on timing.
- **Gathering** (:func:`gather_to_root`): per-item results are pickled to rank 0
  (``torch.distributed.gather_object``); rank 0 merges them back into item order, so what it writes
  is byte-identical to a single-process run.
- **Writing**: rank 0 alone holds the run's lock and writes; the other ranks wait at a
  :func:`barrier` before leaving the session.

Backend: NCCL when the stage runs on CUDA (rank ``r`` on ``cuda:LOCAL_RANK``), gloo on the CPU.
Timeout: every collective fails after ``ROBUSTEVAL_DIST_TIMEOUT`` seconds (default
:data:`DEFAULT_TIMEOUT_S`) — a rank that died or hangs then fails the whole run with a one-line
:class:`~robusteval.errors.UserError` on the ranks still alive, and torchrun stops the rest. A rank
that dies outright is usually noticed at once (gloo/NCCL see the closed connection, torchrun sees
the exit); the timeout bounds the hang case (gloo raises on the waiting ranks; NCCL's watchdog
aborts them, which torchrun reports the same way). Finished cells are on disk, so re-running the command
(at any world size) resumes.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from robusteval.errors import UserError

#: Seconds a collective may wait for the slowest rank before the run fails (override with the
#: ``ROBUSTEVAL_DIST_TIMEOUT`` environment variable). Long enough for the slowest pass imbalance
#: between ranks plus model loading; short enough that a hung rank does not hold the GPUs for long.
DEFAULT_TIMEOUT_S = 300.0
TIMEOUT_ENV = "ROBUSTEVAL_DIST_TIMEOUT"

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "TIMEOUT_ENV",
    "World",
    "barrier",
    "broadcast_from_root",
    "current",
    "from_env",
    "gather_to_root",
    "is_root",
    "root_only",
    "session",
    "shard",
    "timeout_s",
]


@dataclass(frozen=True)
class World:
    """This process's place in the job: ``rank`` 0..``size``-1, ``local_rank`` its index on the node."""

    rank: int
    size: int
    local_rank: int

    @property
    def root(self) -> bool:
        return self.rank == 0


_CURRENT: World | None = None


def from_env(env: dict[str, str] | None = None) -> World | None:
    """The world torchrun describes (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``); ``None`` without it."""
    env = os.environ if env is None else env
    if "RANK" not in env or "WORLD_SIZE" not in env:
        return None
    try:
        rank, size = int(env["RANK"]), int(env["WORLD_SIZE"])
        local = int(env.get("LOCAL_RANK", rank))
    except ValueError:
        raise UserError(f"RANK/WORLD_SIZE are not integers: {env['RANK']!r}/{env['WORLD_SIZE']!r}") from None
    if not 0 <= rank < size:
        raise UserError(f"RANK {rank} is outside WORLD_SIZE {size}")
    return World(rank=rank, size=size, local_rank=local)


def timeout_s() -> float:
    """The collective timeout in seconds (``ROBUSTEVAL_DIST_TIMEOUT``, else :data:`DEFAULT_TIMEOUT_S`)."""
    raw = os.environ.get(TIMEOUT_ENV)
    if raw is None:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        raise UserError(f"{TIMEOUT_ENV}={raw!r}: expected seconds, e.g. {TIMEOUT_ENV}=300") from None
    if value <= 0:
        raise UserError(f"{TIMEOUT_ENV}={raw!r}: must be positive")
    return value


def current() -> World | None:
    """The world of the :func:`session` in progress; ``None`` in a single-process run."""
    return _CURRENT


def is_root() -> bool:
    """True on rank 0 and in single-process runs (who renders and writes)."""
    world = _CURRENT or from_env()
    return world is None or world.root


@contextlib.contextmanager
def session(device: str) -> Iterator[tuple[World | None, str]]:
    """Join the torchrun job (if any) for one stage run; yields ``(world, device)``.

    ``device`` is the resolved stage device: with ``cuda`` each rank moves to ``cuda:LOCAL_RANK``
    and the backend is NCCL; otherwise gloo. Without torchrun's environment this yields
    ``(None, device)`` and does nothing. The process group is torn down on exit (one this function
    did not create is left alone).
    """
    global _CURRENT
    world = from_env()
    if world is None:
        yield None, device
        return
    import datetime

    import torch
    import torch.distributed as dist

    if device.startswith("cuda"):
        if device == "cuda":
            device = f"cuda:{world.local_rank}"
        torch.cuda.set_device(torch.device(device))
        backend = "nccl"
    else:
        backend = "gloo"
    created = not dist.is_initialized()
    if created:
        kwargs: dict[str, Any] = {}
        if backend == "nccl":
            kwargs["device_id"] = torch.device(device)
        dist.init_process_group(
            backend, timeout=datetime.timedelta(seconds=timeout_s()), rank=world.rank,
            world_size=world.size, **kwargs,
        )  # fmt: skip
    _CURRENT = world
    try:
        yield world, device
        barrier("the end of the run")
    finally:
        _CURRENT = None
        if created:
            with contextlib.suppress(Exception):
                dist.destroy_process_group()


@contextlib.contextmanager
def root_only(
    enter: Callable[[], contextlib.AbstractContextManager], *, world: World | None, what: str
) -> Iterator[None]:
    """Rank 0 enters ``enter()`` (e.g. the run's lock) for the block; the others do not.

    A :class:`UserError` raised while rank 0 enters (the run is held by another process) is sent to
    every rank and raised there too, so no rank waits for a run that never starts.
    """
    if world is None:
        with enter():
            yield
        return
    with contextlib.ExitStack() as stack:
        error = None
        if world.root:
            try:
                stack.enter_context(enter())
            except UserError as err:
                error = str(err)  # message — hint
        error = broadcast_from_root(error, what)
        if error is not None:
            raise UserError(error)
        yield


def shard(n_items: int, world: World | None) -> range:
    """The positions ``0..n_items-1`` this rank handles: its contiguous block in item order."""
    if world is None or world.size == 1:
        return range(n_items)
    return range(world.rank * n_items // world.size, (world.rank + 1) * n_items // world.size)


def _failed(world: World, what: str, err: BaseException) -> UserError:
    import re

    # first line, without the C++ source locations gloo/NCCL put in brackets
    text = re.sub(r"\[[^\]]*\]\s*", "", str(err)).strip()
    detail = text.splitlines()[0][:160] if text else type(err).__name__
    return UserError(
        f"distributed run failed at {what} on rank {world.rank} of {world.size}: another rank died or "
        f"did not answer within {timeout_s():g} s ({detail})",
        hint="finished cells are kept: re-run the same command (any number of processes) to resume",
    )


def gather_to_root(obj: Any, what: str) -> list[Any] | None:
    """Every rank's ``obj`` (picklable) on rank 0 in rank order; ``None`` on the other ranks."""
    world = _CURRENT
    if world is None:
        return [obj]
    import torch.distributed as dist

    out: list[Any] | None = [None] * world.size if world.root else None
    try:
        dist.gather_object(obj, out, dst=0)
    except Exception as err:  # gloo/NCCL raise RuntimeError / DistError subclasses
        raise _failed(world, what, err) from None
    return out


def broadcast_from_root(obj: Any, what: str) -> Any:
    """Rank 0's ``obj`` on every rank (the others pass anything, e.g. ``None``)."""
    world = _CURRENT
    if world is None:
        return obj
    import torch.distributed as dist

    box = [obj if world.root else None]
    try:
        dist.broadcast_object_list(box, src=0)
    except Exception as err:
        raise _failed(world, what, err) from None
    return box[0]


def barrier(what: str) -> None:
    """Wait for every rank (bounded by the timeout); a no-op in single-process runs."""
    world = _CURRENT
    if world is None:
        return
    import torch.distributed as dist

    try:
        if dist.get_backend() == "nccl":
            dist.barrier(device_ids=[torch_device_index()])
        else:
            dist.barrier()
    except Exception as err:
        raise _failed(world, what, err) from None


def torch_device_index() -> int:
    import torch

    return torch.cuda.current_device()
