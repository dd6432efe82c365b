"""Checkpoint files: formats, wrappers, pickle refusal, and the mismatch diff."""

from __future__ import annotations

import argparse
import hashlib
import re

import pytest
import torch
from safetensors.torch import save_file

from robusteval.errors import UserError
from robusteval.models import create_model
from robusteval.models.checkpoint import (
    SHOW_FIRST,
    CheckpointMismatch,
    load_into,
    read_checkpoint,
    unwrap,
)

# Tiny timm models of two families (conv and ViT) whose keys and layouts are timm's own.
TIMM_NAMES = ("timm:test_convnext", "timm:test_vit")


def _random_state(name: str, seed: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    module = create_model(name, weights=None).module
    # Random init leaves some tensors constant (zeros/ones); perturb all so a wrong mapping shows.
    return {
        k: (v + torch.rand_like(v) if v.is_floating_point() else v) for k, v in module.state_dict().items()
    }


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


WRAPS = {
    "plain.pth": lambda sd: sd,
    "model.pth": lambda sd: {"model": sd, "epoch": 3},
    "state_dict_module.pt": lambda sd: {"state_dict": {f"module.{k}": v for k, v in sd.items()}, "epoch": 1},
    "model_ema.bin": lambda sd: {"model_ema": sd},
    "compiled.pth": lambda sd: {f"_orig_mod.{k}": v for k, v in sd.items()},
}


@pytest.mark.parametrize("name", TIMM_NAMES)
@pytest.mark.parametrize("wrap", sorted(WRAPS))
def test_round_trip_torch_formats(tmp_path, name, wrap):
    sd = _random_state(name, seed=1)
    path = tmp_path / wrap
    torch.save(WRAPS[wrap](sd), path)
    loaded = create_model(name, weights=str(path))
    assert _same(loaded.module.state_dict(), sd)
    assert loaded.weights == {
        "source": str(path.resolve()),
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
    }


@pytest.mark.parametrize("name", TIMM_NAMES)
@pytest.mark.parametrize("filename", ["w.safetensors", "w.weights"])  # the second is sniffed by content
def test_round_trip_safetensors(tmp_path, name, filename):
    sd = _random_state(name, seed=2)
    path = tmp_path / filename
    save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    loaded = create_model(name, weights=str(path))
    assert _same(loaded.module.state_dict(), sd)
    x = torch.randn(1, 3, 64, 64) if name.endswith("convnext") else torch.randn(1, 3, 160, 160)
    ref = create_model(name, weights=None).module
    ref.load_state_dict(sd)
    with torch.no_grad():
        assert torch.equal(loaded.module(x), ref.eval()(x))


def test_ema_is_chosen_only_when_preferred():
    plain = {"w": torch.zeros(2)}
    ema = {"w": torch.ones(2)}
    both = {"state_dict": plain, "state_dict_ema": ema, "optimizer": {"lr": 0.1}}
    assert torch.equal(unwrap(both)["w"], plain["w"])
    assert torch.equal(unwrap(both, ema=True)["w"], ema["w"])


class TrainState:
    """Stands for the arbitrary objects training scripts pickle beside their weights."""

    def __init__(self, lr: float) -> None:
        self.lr = lr


def test_argparse_namespace_beside_weights_loads_without_trust(tmp_path):
    sd = _random_state("timm:test_convnext", seed=4)
    path = tmp_path / "release.pth"
    torch.save({"model": sd, "args": argparse.Namespace(lr=0.1, model="x")}, path)
    assert _same(create_model("timm:test_convnext", weights=str(path)).module.state_dict(), sd)


def test_pickle_is_refused_unless_trusted(tmp_path):
    sd = _random_state("timm:test_convnext", seed=3)
    path = tmp_path / "train.pth"
    torch.save({"model": sd, "state": TrainState(lr=0.1)}, path)
    with pytest.raises(UserError) as err:
        create_model("timm:test_convnext", weights=str(path))
    msg = str(err.value)
    assert "--trust-checkpoint" in msg and "TrainState" in msg and "\n" not in msg
    loaded = create_model("timm:test_convnext", weights=str(path), trust_checkpoint=True)
    assert _same(loaded.module.state_dict(), sd)


@pytest.mark.parametrize(
    ("content", "expect"), [(b"", "empty file"), (b"garbage bytes", "not a PyTorch checkpoint")]
)
def test_unreadable_files_are_one_line_errors_without_trust_advice(tmp_path, content, expect):
    path = tmp_path / "bad.pth"
    path.write_bytes(content)
    with pytest.raises(UserError, match=expect) as err:
        read_checkpoint(path)
    assert "--trust-checkpoint" not in str(err.value) and "\n" not in str(err.value)


def test_dict_without_tensors_names_its_keys(tmp_path):
    path = tmp_path / "meta.pth"
    torch.save({"epoch": 3, "best_acc": 0.5}, path)
    with pytest.raises(UserError, match="no tensors.*epoch, best_acc"):
        read_checkpoint(path)


def test_mismatch_diff_lists_missing_unexpected_and_shapes():
    module = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3), torch.nn.Linear(3, 2))
    sd = dict(module.state_dict())
    del sd["2.bias"]
    sd["extra.weight"] = torch.zeros(1)
    sd["0.weight"] = torch.zeros(5, 4)
    with pytest.raises(CheckpointMismatch) as err:
        load_into(module, sd, what="w.pth for probe")
    msg = str(err.value)
    first = msg.splitlines()[0]
    assert first.startswith(
        "w.pth for probe does not fit the model: 1 missing, 1 unexpected, 1 shape mismatches"
    )
    assert "missing in checkpoint (1): 2.bias" in msg
    assert "unexpected in checkpoint (1): extra.weight" in msg
    assert "shape mismatch (checkpoint vs model) (1): 0.weight: [5, 4] vs [3, 4]" in msg


def test_mismatch_diff_shows_first_n_and_counts_the_rest():
    module = torch.nn.Sequential(*[torch.nn.Linear(2, 2) for _ in range(10)])
    with pytest.raises(CheckpointMismatch) as err:
        load_into(module, {"other.weight": torch.zeros(1)})
    msg = str(err.value)
    assert "20 missing" in msg
    assert f"… and {20 - SHOW_FIRST} more" in msg
    assert "0.weight, 0.bias" in msg and "9.bias" not in msg


def test_missing_batchnorm_counters_are_tolerated():
    module = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.BatchNorm2d(4))
    sd = {k: torch.rand_like(v.float()) for k, v in module.state_dict().items() if "num_batches" not in k}
    load_into(module, sd)
    assert torch.equal(module[1].running_mean, sd["1.running_mean"])


def test_converter_runs_only_when_the_dict_does_not_fit():
    module = torch.nn.Linear(2, 2)
    calls = []

    def rename(state_dict, *, module):
        calls.append(sorted(state_dict))
        return {k.removeprefix("backbone."): v for k, v in state_dict.items()}

    fitting = {k: torch.rand_like(v) for k, v in module.state_dict().items()}
    load_into(module, fitting, converter=rename)
    assert calls == []
    official = {f"backbone.{k}": v + 1 for k, v in fitting.items()}
    load_into(module, official, converter=rename)
    assert calls == [["backbone.bias", "backbone.weight"]]
    assert torch.equal(module.weight, fitting["weight"] + 1)


def _to_facebook_convnext_layout(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """timm ConvNeXt keys → the layout of facebookresearch/ConvNeXt release files (convnext_b's URL)."""
    rules = [
        (r"^stem\.", "downsample_layers.0."),
        (r"^stages\.(\d+)\.downsample\.", r"downsample_layers.\1."),
        (r"^stages\.(\d+)\.blocks\.", r"stages.\1."),
        (r"conv_dw", "dwconv"),
        (r"mlp\.fc", "pwconv"),
        (r"^head\.norm\.", "norm."),
        (r"^head\.fc\.", "head."),
    ]
    out = {}
    for key, value in sd.items():
        for pattern, repl in rules:
            key = re.sub(pattern, repl, key)
        out[key] = value
    return out


def test_official_release_layout_is_converted_by_timms_filter(tmp_path):
    sd = _random_state("timm:test_convnext", seed=4)
    official = _to_facebook_convnext_layout(sd)
    assert "downsample_layers.0.0.weight" in official and "stem.0.weight" not in official
    path = tmp_path / "convnext_release.pth"
    torch.save({"model": official}, path)
    loaded = create_model("timm:test_convnext", weights=str(path))
    assert _same(loaded.module.state_dict(), sd)


def test_a_file_for_another_model_gets_the_diff(tmp_path):
    path = tmp_path / "vit.pth"
    torch.save(_random_state("timm:test_vit", seed=5), path)
    with pytest.raises(CheckpointMismatch) as err:
        create_model("timm:test_convnext", weights=str(path))
    first = str(err.value).splitlines()[0]
    assert "for timm:test_convnext does not fit the model" in first and "missing" in first
