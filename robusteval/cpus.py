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


def die_with_parent(parent_pid: int) -> None:
    """Make this (worker) process exit when ``parent_pid`` dies, even by SIGKILL.

    Linux: the kernel's parent-death signal (``prctl(PR_SET_PDEATHSIG, SIGKILL)``). Elsewhere: a
    daemon thread that polls the parent pid once a second. Either way a worker never outlives a
    killed main process by more than a moment.
    """
    import signal
    import sys
    import threading

    if sys.platform.startswith("linux"):
        import ctypes

        try:
            libc = ctypes.CDLL(None, use_errno=True)
            pr_set_pdeathsig = 1
            if libc.prctl(pr_set_pdeathsig, int(signal.SIGKILL), 0, 0, 0) == 0:
                if os.getppid() != parent_pid:  # the parent died before the signal was armed
                    os._exit(1)
                return
        except (OSError, AttributeError):
            pass

    def watch() -> None:
        import time

        while os.getppid() == parent_pid:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="robusteval-parent-watch", daemon=True).start()


#: AF_UNIX socket paths hold at most 107 bytes; multiprocessing adds ~40 to the temp dir for the
#: socket it passes shared-memory file descriptors through (torch's worker → main tensor transfer).
_SOCKET_DIR_MAX = 60


def short_socket_dir() -> None:
    """In a worker process: keep multiprocessing's socket folder short when ``TMPDIR`` is long.

    A long ``TMPDIR`` makes the socket path overflow (``OSError: AF_UNIX path too long``) the first
    time a worker sends a tensor; the system's ``/tmp`` is used for that folder instead.
    """
    import tempfile

    if len(tempfile.gettempdir()) > _SOCKET_DIR_MAX and os.path.isdir("/tmp") and os.access("/tmp", os.W_OK):
        tempfile.tempdir = "/tmp"
