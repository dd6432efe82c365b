"""Where tensors run: picking the device, naming it in records, moving small host arrays to it."""

from __future__ import annotations

from typing import Any

from robusteval.errors import UserError


def resolve_device(device: str | None) -> str:
    """``None`` → ``cuda`` when a GPU is visible, else ``cpu``; ``cuda``, ``cuda:N`` or ``cpu`` checked."""
    import torch

    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {device}: no CUDA device is visible here", hint="use --device cpu")
    if not device.startswith(("cuda", "cpu")):
        raise UserError(f"--device {device!r}: expected cuda, cuda:N or cpu")
    return device


def device_label(device: str) -> str:
    """``cuda:0 NVIDIA H200`` or ``cpu``, as records name the device."""
    import torch

    if device.startswith("cuda"):
        dev = torch.device(device)
        index = dev.index if dev.index is not None else torch.cuda.current_device()
        return f"cuda:{index} {torch.cuda.get_device_name(index)}"
    return "cpu"


def device_versions(device: str) -> dict[str, str]:
    """Package versions (:func:`robusteval.provenance.versions`), plus the CUDA runtime on a GPU."""
    import torch

    from robusteval.provenance import versions

    out = versions()
    if device.startswith("cuda"):
        out["cuda"] = str(torch.version.cuda)
    return out


def host_to_device(array: Any, device: Any) -> Any:
    """A small host array/tensor on ``device`` without a blocking copy.

    A plain ``torch.as_tensor(x, device='cuda')`` copies from pageable memory and waits for every
    kernel queued before it, which would stall the pipeline once per batch; pinning first makes
    the copy asynchronous (the caching host allocator makes the pinning cheap).
    """
    import torch

    t = torch.as_tensor(array)
    if str(device).startswith("cuda"):
        return t.pin_memory().to(device, non_blocking=True)
    return t
