"""The batched torch study21 ops on CUDA: same results as on CPU (and so as imgaug, per the CPU tests)."""

from __future__ import annotations

import pytest
import torch

from robusteval.corrupt.batched import BATCH_OPS, load_batch_ops

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]

load_batch_ops()


@pytest.mark.parametrize("op", sorted(BATCH_OPS.names()))
def test_cuda_matches_cpu(op):
    from robusteval.corrupt.spec import load_specs

    specs = load_specs()
    specs = specs.values() if isinstance(specs, dict) else specs
    spec = next(s for s in specs if s.op == op)
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 256, (8, 3, 224, 224), dtype=torch.uint8, generator=g)
    x = torch.nn.functional.avg_pool2d(x.float(), 5, 1, 2).to(torch.uint8)  # image-like smoothness
    seeds = torch.arange(8, dtype=torch.int64) * 1009
    fn = BATCH_OPS.get(op).fn
    for sev in spec.severities:
        cpu = fn(x, seeds=seeds, **spec.params(sev))
        gpu = fn(x.cuda(), seeds=seeds.cuda(), **spec.params(sev)).cpu()
        d = (cpu.int() - gpu.int()).abs().float()
        assert d.mean() <= 1.0 and (d <= 2).float().mean() >= 0.99, f"{op} s{sev}: MAD {d.mean():.3f}"


def _image_like(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, 3, 224, 224), dtype=torch.uint8, generator=g)
    return torch.nn.functional.avg_pool2d(x.float(), 5, 1, 2).to(torch.uint8)


def test_cuda_jpeg_is_the_host_libjpeg():
    """On CUDA the JPEG op is libjpeg's codec as tensor ops (not nvJPEG: torchvision's CUDA
    encoder hard-codes 4:4:4 chroma where PIL/libjpeg use 4:2:0, which put it ~7 grey levels
    off). Integer arithmetic plus float64 GEMMs on integers below 2**53 are exact on the GPU too,
    so the bytes must equal the host libjpeg path's (CPU op), at every severity."""
    from robusteval.corrupt.spec import get_spec

    spec = get_spec("jpeg_compression")
    fn = BATCH_OPS.get(spec.op).fn
    x = _image_like(16, 2)
    seeds = torch.arange(16, dtype=torch.int64)
    for sev in spec.severities:
        host = fn(x, seeds=seeds, **spec.params(sev))  # CPU tensor → host libjpeg
        gpu = fn(x.cuda(), seeds=seeds.cuda(), **spec.params(sev)).cpu()
        d = (host.int() - gpu.int()).abs().float()
        assert torch.equal(host, gpu), f"s{sev}: MAD {d.mean():.4f}, {(d > 0).float().mean():.2%} differ"


@pytest.mark.parametrize("op", sorted(BATCH_OPS.names()))
def test_ops_never_wait_on_the_host(op):
    """No op synchronises with the host once its per-device constants exist (second call)."""
    from robusteval.corrupt.spec import load_specs

    specs = load_specs()
    specs = specs.values() if isinstance(specs, dict) else specs
    spec = next(s for s in specs if s.op == op)
    fn = BATCH_OPS.get(op).fn
    x = _image_like(8, 3).cuda()
    seeds = torch.arange(8, dtype=torch.int64, device="cuda") * 1009
    for sev in spec.severities:
        fn(x, seeds=seeds, **spec.params(sev))  # builds cached constants (one-off host copies)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for sev in spec.severities:
            fn(x, seeds=seeds, **spec.params(sev))
    finally:
        torch.cuda.set_sync_debug_mode(0)
