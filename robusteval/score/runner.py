"""Models kept resident on the scoring device, each run on its own view of a shared decoded batch.

One :class:`ResidentModel` wraps a loaded model with its preprocessing (views per set kind, mean/std),
autocast (bf16/fp16), channels_last, optional ``torch.compile`` and ``inference_mode``. On CUDA out
of memory it halves its chunk size and carries on with the same batch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from robusteval.errors import UserError
from robusteval.score.preprocess import MODES, View, make_view, normalize

AMP_MODES = ("bf16", "fp16", "off")


def amp_dtype(amp: str):
    import torch

    return {"bf16": torch.bfloat16, "fp16": torch.float16, "off": None}[amp]


def default_amp(device: str) -> str:
    """bf16 on CUDA (exact enough for top-1, much faster); float32 on CPU."""
    return "bf16" if str(device).startswith("cuda") else "off"


class ResidentModel:
    """One model on the device. ``logits(images_uint8)`` → float32 ``[n, num_classes]``."""

    def __init__(
        self,
        loaded: Any,
        *,
        device: str,
        amp: str,
        channels_last: bool,
        compile: bool,
        batch_size: int,
        notify: Callable[[str], None] | None = None,
    ) -> None:
        import torch

        self.loaded = loaded
        self.card = loaded.card
        self.name = loaded.card.name
        self.device = device
        self.amp = amp
        self.channels_last = channels_last
        self.notify = notify or (lambda msg: None)
        self.chunk = batch_size
        self.min_chunk = batch_size
        module = loaded.module.eval()
        if channels_last:
            module = module.to(memory_format=torch.channels_last)
        self.module = module
        data = self.card.data
        self.mean = torch.tensor(data.mean, dtype=torch.float32, device=device)  # once: no per-batch copy
        self.std = torch.tensor(data.std, dtype=torch.float32, device=device)
        self.compiled = compile
        self.forward = torch.compile(module, dynamic=False) if compile else module
        try:
            self.views: dict[str, View] = {m: make_view(self.card.data, mode=m) for m in MODES}
        except ValueError as err:
            raise UserError(
                f"model {self.name}: {err}", hint="its data config cannot be applied on tensors"
            ) from None

    def reset_batch_stats(self) -> None:
        self.min_chunk = self.chunk

    def _autocast(self):
        import torch

        dtype = amp_dtype(self.amp)
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=torch.device(self.device).type, dtype=dtype)

    def logits(self, images):
        """``images``: uint8 NCHW in this model's view. Returns float32 logits on the device."""
        import torch

        x = normalize(images, mean=self.mean, std=self.std, channels_last=self.channels_last)
        out = []
        i, n = 0, x.shape[0]
        while i < n:
            part = x[i : i + self.chunk]
            try:
                out.append(self._run(part))
            except torch.OutOfMemoryError:
                if self.chunk <= 1:
                    raise UserError(
                        f"{self.name}: CUDA out of memory even for one image",
                        hint="score it alone, or on a GPU with more memory",
                    ) from None
                out_of = self.chunk
                self.chunk = max(1, self.chunk // 2)
                self.min_chunk = min(self.min_chunk, self.chunk)
                torch.cuda.empty_cache()
                self.notify(
                    f"{self.name}: CUDA out of memory at batch {out_of}; continuing with {self.chunk}"
                )
                continue
            i += part.shape[0]
        return torch.cat(out) if len(out) > 1 else out[0]

    def _run(self, part):
        import torch

        n = part.shape[0]
        if self.compiled and n < self.chunk:
            # compiled graphs are specialised to one shape; pad the ragged last chunk
            pad = torch.zeros((self.chunk - n, *part.shape[1:]), dtype=part.dtype, device=part.device)
            part = torch.cat([part, pad]).contiguous(
                memory_format=torch.channels_last if self.channels_last else torch.contiguous_format
            )
        with self._autocast():
            y = self.forward(part)
        if isinstance(y, (tuple, list)):
            y = y[0]
        return y[:n].float()
