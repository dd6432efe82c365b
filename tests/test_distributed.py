"""torch.distributed runs (gloo on the CPU): sharding, gather to rank 0, rank-0 writes, resume, faults.

The multi-process tests launch ``python -m torch.distributed.run`` from the worktree root on a few
real val images with MobileNetV2's real weights and compare every byte that matters (records minus
timing / command / run, preds files, corrupt trees) with a single-process run.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import need_weights, val_rows, val_subset

from robusteval import distributed
from robusteval.distributed.launch import check_gpus, strip_launch_options, torchrun_argv
from robusteval.errors import UserError
from robusteval.runs import TIMING_FIELDS

ROOT = Path(__file__).resolve().parents[1]
COMMON = ["-m", "mobilenet_v2", "--device", "cpu", "--workers", "0", "--batch-size", "2"]
SCORE = [*COMMON, "-t", "c_gaussian_noise", "-s", "1", "2"]
IGNORED = (*TIMING_FIELDS, "command", "run")


# --- fast: the pieces ------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [0, 1, 2, 5, 7, 64, 1001])
@pytest.mark.parametrize("size", [1, 2, 3, 8])
def test_shards_cover_every_item_once_in_order(n, size):
    parts = [
        list(distributed.shard(n, distributed.World(rank=r, size=size, local_rank=r))) for r in range(size)
    ]
    assert [i for p in parts for i in p] == list(range(n))  # contiguous blocks in rank order
    assert max(map(len, parts)) - min(map(len, parts)) <= 1  # balanced
    assert list(distributed.shard(n, None)) == list(range(n))


def test_world_from_env_and_timeout(monkeypatch):
    assert distributed.from_env({}) is None
    w = distributed.from_env({"RANK": "2", "WORLD_SIZE": "3", "LOCAL_RANK": "0"})
    assert (w.rank, w.size, w.local_rank, w.root) == (2, 3, 0, False)
    with pytest.raises(UserError, match="outside"):
        distributed.from_env({"RANK": "3", "WORLD_SIZE": "3"})
    monkeypatch.delenv(distributed.TIMEOUT_ENV, raising=False)
    assert distributed.timeout_s() == distributed.DEFAULT_TIMEOUT_S
    monkeypatch.setenv(distributed.TIMEOUT_ENV, "7.5")
    assert distributed.timeout_s() == 7.5
    monkeypatch.setenv(distributed.TIMEOUT_ENV, "soon")
    with pytest.raises(UserError, match="expected seconds"):
        distributed.timeout_s()


def test_launcher_strips_its_options_and_renames_run():
    argv = ["score", "--gpus", "2", "-m", "m", "--run", "r", "--procs=3", "--runs-dir", "x", "--run=q"]
    assert strip_launch_options(argv) == [
        "score",
        "-m",
        "m",
        "--run-name",
        "r",
        "--runs-dir",
        "x",
        "--run-name=q",
    ]
    cmd = torchrun_argv(2, ["score"])
    assert cmd[1:5] == ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]


def test_launcher_names_the_root_cause_first():
    from robusteval.distributed.launch import _failures

    report = (
        "Failures:\n[1]:\n  time : t\n  rank      : 0 (local_rank: 0)\n  exitcode  : -15 (pid: 6)\n----\n"
        "Root Cause (first observed failure):\n[0]:\n  rank      : 1 (local_rank: 1)\n  exitcode  : 2 (pid: 7)\n"
    )
    cut = report.find("Root Cause")
    assert _failures(report[cut:]) + _failures(report[:cut]) == [
        "rank 1 stopped (exit code 2)", "rank 0 stopped (killed by signal 15)",
    ]  # fmt: skip


def test_more_gpus_than_present_is_one_line_error():
    import torch

    have = torch.cuda.device_count() if torch.cuda.is_available() else 0
    with pytest.raises(UserError) as err:
        check_gpus(have + 1)
    assert f"--gpus {have + 1}: only {have} CUDA" in str(err.value) and "\n" not in str(err.value)
    out = subprocess.run(
        [sys.executable, "-m", "robusteval", "score", "-m", "mobilenet_v2", "--run", "r", "--gpus", str(have + 1)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 2
    assert " ".join(out.stderr.split()).startswith(f"error: --gpus {have + 1}: only {have} CUDA")


# --- multi-process (gloo) --------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    env.update(extra)
    return env


def _torchrun(k: int, args: list[str], **kw) -> subprocess.Popen:
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nproc-per-node={k}",
        f"--master-port={_free_port()}",
    ]
    return subprocess.Popen(
        [*cmd, "-m", "robusteval", *args], cwd=ROOT, env=_env(**kw), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _finish(proc: subprocess.Popen, timeout: float = 300) -> tuple[int, str]:
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err


def _single(args: list[str]) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "robusteval", *args], cwd=ROOT, env=_env(), capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr


def _cells(run_dir: Path) -> dict[str, tuple[dict, bytes]]:
    """Cell id → (its last record minus the fields that differ between runs, its preds bytes)."""
    out = {}
    for line in (run_dir / "records.jsonl").read_text().splitlines():
        rec = json.loads(line)
        preds = (run_dir / rec["preds"]).read_bytes()
        out[rec["cell"]] = ({k: v for k, v in rec.items() if k not in IGNORED}, preds)
    return out


@pytest.fixture(scope="module")
def small_val(val1300, tmp_path_factory) -> Path:
    need_weights()
    return val_subset(val1300, tmp_path_factory.mktemp("val7"), val_rows(val1300)[:7])


@pytest.fixture(scope="module")
def reference(small_val, tmp_path_factory) -> dict:
    """The single-process run every distributed run must reproduce (3 cells)."""
    runs = tmp_path_factory.mktemp("ref")
    _single(["score", *SCORE, "--data", str(small_val), "--run", "ref", "--runs-dir", str(runs)])
    cells = _cells(runs / "ref")
    assert len(cells) == 3
    return cells


@pytest.mark.slow
@pytest.mark.parametrize("k", [2, 3])
def test_score_on_k_ranks_equals_single_process(small_val, reference, tmp_path, k):
    args = ["score", *SCORE, "--data", str(small_val), "--run-name", "d", "--runs-dir", str(tmp_path)]
    rc, err = _finish(_torchrun(k, args))
    assert rc == 0, err
    got = _cells(tmp_path / "d")
    assert got == reference
    lines = (tmp_path / "d" / "records.jsonl").read_text().splitlines()
    assert len(lines) == 3  # rank 0 alone wrote, once per cell


@pytest.mark.slow
def test_resume_across_world_sizes(small_val, reference, tmp_path):
    where = ["--data", str(small_val), "--runs-dir", str(tmp_path)]
    base = [*SCORE, *where]
    # 2 ranks score clean + severity 1, then 1 process finishes the run
    rc, err = _finish(
        _torchrun(2, ["score", *COMMON, *where, "-t", "c_gaussian_noise", "-s", "1", "--run-name", "a"])
    )
    assert rc == 0, err
    assert len(_cells(tmp_path / "a")) == 2
    _single(["score", *base, "--run", "a"])
    assert _cells(tmp_path / "a") == reference
    # the reverse: 1 process scores clean only, 3 ranks finish
    _single(["score", *COMMON, *where, "--run", "b"])
    assert len(_cells(tmp_path / "b")) == 1
    rc, err = _finish(_torchrun(3, ["score", *base, "--run-name", "b"]))
    assert rc == 0, err
    assert _cells(tmp_path / "b") == reference
    assert len((tmp_path / "b" / "records.jsonl").read_text().splitlines()) == 3  # clean was not redone


def _rank_pid(parent: int, rank: int) -> int | None:
    """The pid of the torchrun worker of ``rank`` (a child of ``parent``)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            env = (entry / "environ").read_bytes().split(b"\0")
        except (OSError, ValueError, IndexError):
            continue
        if ppid == parent and f"RANK={rank}".encode() in env:
            return int(entry.name)
    return None


def _wait_for_records(path: Path, n: int, proc: subprocess.Popen, limit: float = 240) -> None:
    t_end = time.monotonic() + limit
    while time.monotonic() < t_end and proc.poll() is None:
        if path.is_file() and path.read_text().count("\n") >= n:
            return
        time.sleep(0.02)
    raise AssertionError(f"no {n} records in {path} (rc {proc.poll()})")


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["kill", "hang"])
def test_a_failed_rank_fails_the_run_in_bounded_time_and_resume_completes(
    small_val, reference, tmp_path, fault
):
    """SIGKILL (a dead rank) or SIGSTOP (a hung one) on rank 1 after the first cell: the run fails
    with a one-line error within the timeout, finished cells stay, one process finishes the run."""
    timeout = 6
    args = ["score", *SCORE, "-s", "3", "4", "5", "--data", str(small_val), "--runs-dir", str(tmp_path)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "robusteval", *args, "--run", "f", "--procs", "2"], cwd=ROOT,
        env=_env(ROBUSTEVAL_DIST_TIMEOUT=str(timeout)), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    records = tmp_path / "f" / "records.jsonl"
    try:
        _wait_for_records(records, 1, proc)
        launcher_children = [
            int(p) for p in Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        ]
        pid = next(p for p in (_rank_pid(c, 1) for c in launcher_children) if p)
        t0 = time.monotonic()
        os.kill(pid, signal.SIGKILL if fault == "kill" else signal.SIGSTOP)
        _, err = proc.communicate(timeout=timeout + 90)
        elapsed = time.monotonic() - t0
        print(f"\n{fault}: the run failed {elapsed:.1f} s after the fault; last line: {err.splitlines()[-1]}")
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert "Traceback" not in err, err
    assert lines[-1].startswith("error: distributed run of 2 processes failed: rank"), err
    if fault == "kill":
        assert "failed: rank 1 stopped (killed by signal 9)" in lines[-1], err
    if fault == "hang":  # rank 0 gave up at its next collective, after the timeout
        assert any(f"did not answer within {timeout} s" in ln for ln in lines), err
        assert elapsed < timeout + 60
    else:
        assert elapsed < 60
    n_done = len(_cells(tmp_path / "f"))
    assert 1 <= n_done < 6
    _single(["score", *SCORE, "-s", "3", "4", "5", "--data", str(small_val), "--runs-dir", str(tmp_path),
             "--run", "f"])  # fmt: skip
    got = _cells(tmp_path / "f")
    assert len(got) == 6
    assert {c: v for c, v in got.items() if c in reference} == reference


@pytest.mark.slow
@pytest.mark.parametrize("k", [2, 3])
def test_corrupt_on_k_ranks_writes_the_single_process_tree(small_val, tmp_path, k):
    args = ["corrupt", "--data", str(small_val), "-t", "c_gaussian_noise", "c_contrast", "-s", "1", "3"]
    _single([*args, "--out", str(tmp_path / "one"), "--workers", "1"])
    rc, err = _finish(_torchrun(k, [*args, "--out", str(tmp_path / "many"), "--workers", "1"]))
    assert rc == 0, err

    def tree(root: Path) -> dict:
        files = {  # the tree and its manifest; the lock file `corrupt` holds is not output
            str(p.relative_to(root)): p.read_bytes()
            for p in root.rglob("*")
            if p.is_file() and p.name != ".lock"
        }
        manifest = [json.loads(x) for x in files.pop("manifest.jsonl").splitlines()]
        for rec in manifest:
            rec.pop("started", None)
        return {"files": files, "manifest": manifest}

    one, many = tree(tmp_path / "one"), tree(tmp_path / "many")
    assert len(one["files"]) == 7 * 2 * 2
    assert many == one
