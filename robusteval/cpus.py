"""How many CPUs this process may use (what worker-count defaults are based on)."""

from __future__ import annotations

import os


def usable_cpus() -> int:
    """CPUs in this process's affinity mask (``taskset``, container cpusets), at least 1.

    ``os.cpu_count()`` reports the whole machine, which oversubscribes a job pinned to a few cores.
    """
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # platforms without affinity masks (macOS, Windows)
        return max(1, os.cpu_count() or 1)
