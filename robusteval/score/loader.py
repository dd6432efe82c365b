"""The decode pipeline: image files → uint8 batches on the scoring device, each image decoded once.

All sets of a score run form one flat list of :class:`Job` (a batch of item positions in one
:class:`Stream`), served by a single ``torch.utils.data.DataLoader`` so worker processes keep
decoding across set boundaries and the device never waits at the start of a set.

- Worker processes (``workers`` > 0; 0 decodes in-process) read and decode with PIL
  (:func:`robusteval.datasets.decode.load_rgb`: any mode, decompression-bomb guard, one-line
  :class:`BadImage` reasons). Same-sized batches are stacked to one uint8 NCHW tensor; with a CUDA
  device the DataLoader pins it so the host→device copy is asynchronous.
- With ``gpu_jpeg`` (CUDA only), workers only read the bytes of baseline RGB/grey JPEGs, packed into
  one buffer per batch (one shared-memory segment instead of one per image), and the main process
  decodes the whole batch at once with nvJPEG (``torchvision.io.decode_jpeg(device='cuda')``).
  Anything nvJPEG cannot take (CMYK, PNG, corrupt data) falls back to PIL.
- On CUDA, batches are moved to the device (and nvJPEG-decoded) in one background thread, up to
  ``DEVICE_PREFETCH`` batches ahead, so the scoring thread keeps queueing model work while the next
  batch is assembled and copied. (It cannot hide nvJPEG: torchvision's CUDA decode waits until the
  GPU has drained all queued work, from any thread or stream, which is why the engine prefers worker
  decoding; see ``robusteval.score.plan.NVJPEG_BELOW_WORKERS``.)
- A stream may carry a picklable ``prepare(image, position) -> image`` run in the worker on uint8 HWC
  pixels (the on-the-fly path: 224 crop, and the CPU imgaug corruption).

An image that fails becomes a skip ``(position, one-line reason)``; the batch goes on without it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from robusteval.datasets.decode import BadImage, check_geometry, load_rgb

Prepare = Callable[[np.ndarray, int], np.ndarray]


@dataclass(frozen=True)
class Stream:
    """Files of one pass over a set. ``prepare`` runs in the worker on each decoded image."""

    paths: tuple[str, ...]
    prepare: Prepare | None = None
    gpu_jpeg: bool = False


@dataclass(frozen=True)
class Job:
    stream: int
    positions: tuple[int, ...]


@dataclass
class DeviceBatch:
    """Decoded images of one job: ``positions[i]`` is the item of ``images[i]``.

    ``images``: uint8 NCHW tensor when all share a size, else a list of uint8 CHW tensors; on the
    scoring device. ``skips``: ``(position, reason)`` of the items that failed.
    """

    job: int
    positions: np.ndarray
    images: object
    skips: list[tuple[int, str]] = field(default_factory=list)
    decoder: str = "pil"

    def __len__(self) -> int:
        return len(self.positions)


def plan_jobs(
    n_items: int, *, stream: int, batch_size: int, positions: Sequence[int] | None = None
) -> list[Job]:
    """Consecutive batches of ``batch_size`` positions over ``n_items`` items of ``stream``
    (or over ``positions`` only, in their order: a distributed rank's shard)."""
    pos = tuple(range(n_items) if positions is None else positions)
    return [Job(stream, pos[lo : lo + batch_size]) for lo in range(0, len(pos), batch_size)]


def _jpeg_bytes(path: str) -> bytes | None:
    """The file's bytes if nvJPEG can decode it to RGB (baseline/progressive RGB or grey JPEG)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            check_geometry(*im.size)  # odd sizes go the PIL path, which records the skip
            ok = (
                im.format == "JPEG"
                and im.mode in ("RGB", "L")
                and im.width * im.height <= Image.MAX_IMAGE_PIXELS
            )
    except Exception:  # anything odd goes the PIL path, which gives the proper skip reason
        return None
    return Path(path).read_bytes() if ok else None


class _JobSet:
    """Map-style dataset over jobs; item ``j`` is the decoded batch of job ``j`` (runs in workers)."""

    def __init__(self, streams: Sequence[Stream], jobs: Sequence[Job]) -> None:
        self.streams = list(streams)
        self.jobs = list(jobs)

    def __len__(self) -> int:
        return len(self.jobs)

    def __getitem__(self, j: int) -> dict:
        import torch

        job = self.jobs[j]
        stream = self.streams[job.stream]
        kept: list[int] = []
        pixels: list = []  # torch CHW uint8, or None where the jpeg bytes carry the image
        jpegs: list = []  # (slot, the file's bytes)
        skips: list[tuple[int, str]] = []
        for pos in job.positions:
            path = stream.paths[pos]
            if stream.gpu_jpeg and stream.prepare is None:
                data = _jpeg_bytes(path)
                if data is not None:
                    jpegs.append((len(kept), data))
                    kept.append(pos)
                    pixels.append(None)
                    continue
            try:
                img = load_rgb(Path(path))
                if stream.prepare is not None:
                    img = stream.prepare(img, pos)
            except BadImage as err:
                skips.append((pos, str(err)))
                continue
            kept.append(pos)
            pixels.append(_chw(img))
        out: dict = {"job": j, "positions": torch.as_tensor(kept, dtype=torch.int64), "skips": skips}
        shapes = {tuple(p.shape) for p in pixels if p is not None}
        if not jpegs and len(shapes) == 1:
            out["stacked"] = stack_images(pixels)
        else:
            out["pixels"] = pixels
            out["jpeg_slots"] = [slot for slot, _ in jpegs]
            sizes = [len(data) for _, data in jpegs]
            out["jpeg_sizes"] = sizes
            blob = bytearray(b"".join(data for _, data in jpegs))
            out["jpeg_blob"] = (
                torch.frombuffer(blob, dtype=torch.uint8) if blob else torch.empty(0, dtype=torch.uint8)
            )
        return out


def _chw(img: np.ndarray):
    """uint8 HWC numpy → uint8 CHW torch view in HWC memory (PIL arrays are read-only: copy those).

    Keeping the pixels interleaved makes batches channels_last, the layout the CPU's uint8
    antialiased resize is fastest on (about 3x over planar).
    """
    import torch

    if not img.flags.writeable:
        img = img.copy()
    return torch.from_numpy(img).permute(2, 0, 1)


def stack_images(images):
    """Same-sized uint8 CHW tensors → NCHW, channels_last when the inputs are HWC in memory."""
    import torch

    if all(im.stride(0) == 1 for im in images):
        return torch.stack([im.permute(1, 2, 0) for im in images]).permute(0, 3, 1, 2)
    return torch.stack(images)


def _identity(x):
    return x


def _worker_init(_: int) -> None:
    import torch

    from robusteval.cpus import die_with_parent, short_socket_dir

    torch.set_num_threads(1)  # workers decode; the main process owns the compute threads
    die_with_parent(os.getppid())  # a SIGKILLed scorer leaves no decode worker behind
    short_socket_dir()  # tensors reach the main process through a socket in the temp folder


def _no_batches() -> Generator[DeviceBatch, None, None]:
    yield from ()


def iter_batches(
    streams: Sequence[Stream],
    jobs: Sequence[Job],
    *,
    device: str,
    workers: int,
    prefetch: int = 2,
) -> Iterator[DeviceBatch]:
    """Decode ``jobs`` in order and yield them as :class:`DeviceBatch` on ``device``.

    The worker processes start (and begin decoding) when this is called, not at the first
    ``next``: callers start the pipeline, then load models while the first batches decode.
    ``close()`` the returned generator to stop the workers.
    """
    import torch

    if not jobs:  # e.g. a tree whose files are all missing: nothing to decode, still closable
        return _no_batches()
    cuda = str(device).startswith("cuda")
    kwargs = {}
    if workers > 0:
        kwargs = {"num_workers": workers, "prefetch_factor": prefetch, "worker_init_fn": _worker_init}
    loader = torch.utils.data.DataLoader(
        _JobSet(streams, jobs),
        batch_size=None,
        shuffle=False,
        pin_memory=cuda,
        collate_fn=_identity,
        **kwargs,
    )
    running = [iter(loader)]

    def batches() -> Iterator[DeviceBatch]:
        try:
            for item in running[0]:
                yield _to_device(item, streams[jobs[item["job"]].stream], device=device)
        finally:
            running.clear()  # the last reference: the DataLoader iterator shuts its workers down

    return _prefetched(batches()) if cuda else batches()


#: Batches moved to a CUDA device ahead of the one being scored (see the module docstring).
DEVICE_PREFETCH = 2


def _prefetched(raw: Iterator, *, depth: int = DEVICE_PREFETCH) -> Iterator:
    """``raw``'s items in order, produced in one background thread up to ``depth`` ahead.

    Closing the returned generator stops the thread and closes ``raw`` (if it is a generator).
    """
    import contextlib
    import queue
    import threading

    items: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def produce() -> None:
        try:
            for batch in raw:
                while not stop.is_set():
                    try:
                        items.put(batch, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    break
            items.put(done)
        except BaseException as err:  # handed to the consumer, raised there with its traceback
            items.put(err)
        finally:
            close = getattr(raw, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=produce, name="robusteval-device-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            got = items.get()
            if got is done:
                return
            if isinstance(got, BaseException):
                raise got
            yield got
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue
            with contextlib.suppress(queue.Empty):
                items.get(timeout=0.1)
        thread.join()


def _to_device(item: dict, stream: Stream, *, device: str) -> DeviceBatch:
    positions = item["positions"].numpy()
    if "stacked" in item:
        images = item["stacked"].to(device, non_blocking=True)
        return DeviceBatch(item["job"], positions, images, item["skips"])
    pixels = [p.to(device, non_blocking=True) if p is not None else None for p in item["pixels"]]
    skips = list(item["skips"])
    decoder = "pil"
    if item["jpeg_slots"]:
        decoder = "nvjpeg"
        slots = item["jpeg_slots"]
        decoded = _decode_jpegs(list(item["jpeg_blob"].split(item["jpeg_sizes"])), device=device)
        for slot, img in zip(slots, decoded, strict=True):
            if isinstance(img, str):
                pixels[slot] = _pil_fallback(stream.paths[int(positions[slot])], device=device)
            else:
                pixels[slot] = img
        bad = [i for i, p in enumerate(pixels) if isinstance(p, str)]
        for i in bad:
            skips.append((int(positions[i]), pixels[i]))
        if bad:
            keep = [i for i in range(len(pixels)) if i not in set(bad)]
            positions = positions[keep]
            pixels = [pixels[i] for i in keep]
    shapes = {tuple(p.shape) for p in pixels}
    images = stack_images(pixels) if len(shapes) == 1 and pixels else pixels
    return DeviceBatch(item["job"], positions, images, sorted(skips), decoder)


def _decode_jpegs(data: list, *, device: str) -> list:
    """nvJPEG batch decode to RGB; per-image retry when the batch fails; a str marks a failure."""
    from torchvision.io import ImageReadMode, decode_jpeg

    try:
        return list(decode_jpeg(data, mode=ImageReadMode.RGB, device=device))
    except RuntimeError:
        out: list = []
        for d in data:
            try:
                out.append(decode_jpeg(d, mode=ImageReadMode.RGB, device=device))
            except RuntimeError as err:
                out.append(str(err).splitlines()[0] if str(err) else "nvJPEG decode failed")
        return out


def _pil_fallback(path: str, *, device: str):
    """Decode one file with PIL on the host; a str is the one-line reason it failed."""

    try:
        img = load_rgb(Path(path))
    except BadImage as err:
        return str(err)
    return _chw(img).to(device)
