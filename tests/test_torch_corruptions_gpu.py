"""The batched torch study21 ops on CUDA: same results as on CPU (and so as imgaug, per the CPU tests)."""

from __future__ import annotations

import pytest
import torch

from robusteval.score.onthefly import BATCH_OPS, load_batch_ops

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]

load_batch_ops()


@pytest.mark.parametrize("op", sorted(BATCH_OPS.names()))
def test_cuda_matches_cpu(op):
    from robusteval.corruptions.spec import load_specs

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
