"""``robusteval <stage> --gpus N``: run the same command under torchrun on this node.

The command becomes ``python -m torch.distributed.run --standalone --nproc-per-node N -m robusteval
<stage> ...`` (the same arguments minus ``--gpus``/``--procs``; ``--run`` is passed as its alias
``--run-name``: torchrun's own argument parser rejects ``--run`` anywhere on its command line as an
ambiguous abbreviation of its ``--run-path``). torchrun's own failure report (a
``ChildFailedError`` traceback) is replaced by one line naming the rank that failed; the ranks' own
one-line errors pass through.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Sequence

from robusteval.errors import UserError

#: Options that launch processes; they are removed from the command each rank runs.
LAUNCH_OPTIONS = ("--gpus", "--procs")
#: Options torchrun's parser would take as abbreviations of its own → the alias each rank gets.
TORCHRUN_SAFE = {"--run": "--run-name"}


def strip_launch_options(argv: Sequence[str]) -> list[str]:
    """``argv`` without ``--gpus N`` / ``--procs N`` (``--opt N`` or ``--opt=N``); ``--run`` → ``--run-name``."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg in LAUNCH_OPTIONS:
            skip = True
            continue
        if arg.startswith(tuple(o + "=" for o in LAUNCH_OPTIONS)):
            continue
        name, eq, value = arg.partition("=")
        out.append(TORCHRUN_SAFE.get(name, name) + eq + value)
    return out


def check_gpus(n: int) -> None:
    """A one-line error unless ``n`` CUDA devices are visible."""
    import torch

    have = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if n > have:
        raise UserError(
            f"--gpus {n}: only {have} CUDA device{'s' if have != 1 else ''} visible here",
            hint=f"use --gpus {have}" if have else "on a CPU machine use --procs N --device cpu (gloo)",
        )


def torchrun_argv(nproc: int, stage_argv: Sequence[str]) -> list[str]:
    return [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
        "-m", "robusteval", *stage_argv,
    ]  # fmt: skip


_TORCHRUN_LOG = re.compile(r"^[WIE]\d{4} \d\d:\d\d:\d\d")  # torchrun's glog-style log lines


def launch(nproc: int, stage_argv: Sequence[str], *, env: dict[str, str] | None = None) -> int:
    """Run ``robusteval <stage_argv>`` in ``nproc`` processes under torchrun; their exit status.

    Raises :class:`UserError` (one line) when a rank failed, naming the first failed rank.
    """
    if nproc < 1:
        raise UserError(f"--gpus/--procs {nproc}: must be at least 1")
    proc = subprocess.Popen(
        torchrun_argv(nproc, stage_argv), stderr=subprocess.PIPE, text=True, env=env or dict(os.environ)
    )
    assert proc.stderr is not None
    held: list[str] = []  # from a traceback on: held back until we know whose it is
    for line in proc.stderr:
        if _TORCHRUN_LOG.match(line):
            continue
        if held or line.startswith("Traceback (most recent call last)"):
            held.append(line)
            continue
        sys.stderr.write(line)
        sys.stderr.flush()
    rc = proc.wait()
    text = "".join(held)
    if "ChildFailedError" not in text:
        sys.stderr.write(text)
        return rc
    # torchrun's report comes last: keep what the ranks printed before it, replace the report
    cut = text.rfind("Traceback (most recent call last)")
    sys.stderr.write(text[:cut])
    report = text[cut:]
    root = report.find("Root Cause")
    found = _failures(report[root:] if root >= 0 else report) + _failures(report[:root] if root >= 0 else "")
    who = ", then ".join(dict.fromkeys(found)) or "a rank stopped"
    raise UserError(
        f"distributed run of {nproc} processes failed: {who}",
        hint="finished work is kept: re-run the same command (any number of processes) to resume",
    )


def _failures(report: str) -> list[str]:
    """``rank R stopped (...)`` for each failure block of torchrun's report, in its order."""
    out = []
    for block in re.split(r"\n\[\d+\]:", report)[1:]:
        rank = re.search(r"rank\s*:\s*(\d+)", block)
        code = re.search(r"exitcode\s*:\s*(-?\d+)", block)
        status = int(code.group(1)) if code else None
        how = (
            ""
            if status is None
            else f" (killed by signal {-status})"
            if status < 0
            else f" (exit code {status})"
        )
        out.append(f"rank {rank.group(1) if rank else '?'} stopped{how}")
    return out
