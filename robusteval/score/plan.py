"""Planning a score run: the sets a request names, the cells still to score, and the decode streams."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from robusteval.datasets.items import Head, ScoreSet
from robusteval.errors import UserError
from robusteval.score.request import ScoreRequest


def build_sets(req: ScoreRequest, *, notify: Callable[[str], None]) -> list[ScoreSet]:
    """Every set the request names, in scoring order: clean, trees, OOD, on the fly."""
    from robusteval.corrupt.trees import tree_sets
    from robusteval.datasets.items import clean_set
    from robusteval.datasets.ood import ood_sets as read_ood
    from robusteval.score.sets import onthefly_sets

    ood_sets: list[ScoreSet] = []
    clean_heads: list[str] = []
    for name, root in req.ood:
        found, heads = read_ood(name, Path(root))
        ood_sets += found
        clean_heads += [h for h in heads if h not in clean_heads]
    out: list[ScoreSet] = []
    clean = None
    if req.data is not None:
        clean = clean_set(req.data, labels=req.labels, extra_heads=clean_heads)
        if req.subset is not None:
            from robusteval.datasets.ood import subset_items

            items = subset_items(clean.items, req.subset)
            notify(f"--subset {req.subset}: {len(items)} of {len(clean.items)} val images")
            clean.name, clean.items = f"clean@{req.subset}", items
        out.append(clean)
    elif clean_heads:
        notify(f"pass --data VAL_DIR to also score the clean val on {', '.join(clean_heads)}")
    if req.sets_dir is not None:
        out += tree_sets(req.sets_dir)
    out += ood_sets
    if req.transforms:
        if clean is None:
            raise UserError(
                "--transforms corrupts clean images on the fly and needs them", hint="add --data VAL_DIR"
            )
        out += onthefly_sets(
            clean,
            transforms=req.transforms,
            severities=req.severities,
            seed=req.seed,
            impl=req.transform_impl,
        )
    if not out:
        raise UserError("nothing to score", hint="pass --sets SETS_DIR, --data VAL_DIR and/or --ood NAME=DIR")
    return out


@dataclass
class Cell:
    model: str
    head: Head
    id: str


@dataclass
class Pass:
    """One decode pass over a set: ``cells`` are the pending (model, head) pairs."""

    set: ScoreSet
    cells: list[Cell]
    stream: int | None = None  # index into the streams when the pass is decoded
    jobs: range = range(0)
    fill_cache: bool = False  # on-the-fly: keep the clean crops this pass decodes
    from_cache: bool = False


def default_workers() -> int:
    from robusteval.cpus import usable_cpus

    return max(1, min(16, usable_cpus() - 1))


def cache_budget(req: ScoreRequest, device: str) -> int:
    import torch

    if req.cache_gib is not None:
        return int(req.cache_gib * 2**30)
    if device.startswith("cuda"):
        free, _ = torch.cuda.mem_get_info(torch.device(device))
        return int(min(8 * 2**30, 0.3 * free))
    return 2 * 2**30


#: ``gpu_decode=None`` picks nvJPEG only below this many decode workers. torchvision's CUDA decode
#: returns only once the GPU has drained all queued work (measured on an H100: a 128-image decode
#: call waited 429 ms behind queued matmuls, whichever stream either ran on), so it serialises with
#: the models; PIL in enough worker processes overlaps decoding with the forward passes (H100,
#: 4 models, 15 workers: 96% of the forward ceiling with PIL workers vs 58% with nvJPEG).
NVJPEG_BELOW_WORKERS = 4


def use_nvjpeg(req: ScoreRequest, *, device: str, workers: int) -> bool:
    if not device.startswith("cuda"):
        return False
    if req.gpu_decode is None:
        return workers < NVJPEG_BELOW_WORKERS
    return req.gpu_decode


def plan_streams(
    passes: list[Pass], *, req: ScoreRequest, device: str, workers: int, shard: Callable[[int], range] = range
) -> tuple[list, list]:
    """Give each decoded pass its stream and jobs; on-the-fly torch passes share one clean cache.

    ``shard(n)``: the positions of a set of ``n`` items this process decodes (all of them unless
    the run is distributed: :func:`robusteval.distributed.shard`).
    """
    from robusteval.score.loader import Stream, plan_jobs
    from robusteval.score.onthefly import CropAndCorrupt

    streams: list[Stream] = []
    jobs: list = []
    gpu_jpeg = use_nvjpeg(req, device=device, workers=workers)
    cache_ok = False
    for p in passes:
        s = p.set
        paths = tuple(it.path for it in s.items)
        ids = tuple(it.id for it in s.items)
        fly = s.onthefly
        if fly is not None and fly.impl == "torch":
            if cache_ok:
                p.from_cache = True
                continue
            nbytes = len(s.items) * 3 * 224 * 224
            p.fill_cache = cache_ok = nbytes <= cache_budget(req, device)
            stream = Stream(paths, prepare=CropAndCorrupt(ids))
        elif fly is not None:
            stream = Stream(paths, prepare=CropAndCorrupt(ids, fly.set_name, fly.severity, fly.seed))
        else:
            stream = Stream(paths, gpu_jpeg=gpu_jpeg and s.mode == "eval")
        p.stream = len(streams)
        streams.append(stream)
        start = len(jobs)
        jobs += plan_jobs(
            len(s.items), stream=p.stream, batch_size=req.batch_size, positions=shard(len(s.items))
        )
        p.jobs = range(start, len(jobs))
    return streams, jobs
