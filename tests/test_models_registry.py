"""Every registered model builds with random weights and maps a small batch to finite [B, 1000] logits."""

from __future__ import annotations

import ast
import subprocess
import sys

import pytest
import torch

import robusteval.models as models
from robusteval.errors import UnknownName, UserError
from robusteval.models import create_model, list_models
from robusteval.models.registry import MODELS, ModelCard, register_after_load, register_model
from robusteval.models.timm_models import ALIASES

CARDS = list_models()
NAMES = [card.name for card in CARDS]
# Vim runs its full 14x14-token sequence even on tiny inputs: the two large ones build in the slow tier.
SLOW_BUILDS = {"vim_s", "vim_b"}
PARAMS = [pytest.param(c.name, marks=pytest.mark.slow) if c.name in SLOW_BUILDS else c.name for c in CARDS]


def test_registry_has_the_names_users_type():
    for name in ("swin_b", "convnext_b", "mobilenet_v2", "efficientnet_lite0"):
        assert name in NAMES
    # every static name in the lazy table is registered by the module the table names
    for name, module in models.NAME_TO_MODULE.items():
        if module in sys.modules:
            assert name in MODELS, f"{module} does not register {name}"


@pytest.mark.parametrize("name", PARAMS)
def test_builds_with_random_weights_and_gives_finite_logits(name, tmp_path):
    torch.manual_seed(0)
    # CLIP cards build their zero-shot head through the full-size text tower (1000 classes x
    # templates); one template keeps that to 1000 prompts, the path is the same.
    one = tmp_path / "one_template.txt"
    one.write_text("a photo of a {}.\n")
    loaded = create_model(name, weights="none", templates=str(one))
    card = loaded.card
    assert card.name == name
    assert loaded.weights == {"source": "random", "sha256": None}
    assert not loaded.module.training
    size = card.min_input_size or card.data.input_size
    with torch.no_grad():
        logits = loaded.module(torch.randn(2, 3, size, size))
    assert logits.shape == (2, card.num_classes) == (2, 1000)
    assert torch.isfinite(logits).all()
    if card.params_m is not None and card.kind == "classifier":
        count = sum(p.numel() for p in loaded.module.parameters()) / 1e6
        assert count == pytest.approx(card.params_m, abs=0.01), f"{name}: {count:.4f}M params"


@pytest.mark.parametrize("alias", sorted(ALIASES))
def test_timm_alias_cards_match_timm_pretrained_cfg_exactly(alias):
    import timm.models

    timm_name = ALIASES[alias][0]
    cfg = timm.models.get_pretrained_cfg(timm_name).to_dict()
    card = models.resolve(alias).meta["card"]
    data = card.data
    assert (3, data.input_size, data.input_size) == tuple(cfg["input_size"])
    assert data.interpolation == cfg["interpolation"]
    assert data.crop_pct == cfg["crop_pct"]
    assert data.mean == tuple(cfg["mean"]) and data.std == tuple(cfg["std"])
    assert data.crop_mode == cfg["crop_mode"]
    assert card.hf_hub_id == cfg["hf_hub_id"] and card.weights_url == cfg["url"]
    assert card.upstream == f"timm {timm_name}"


def test_pinned_timm_configs():
    swin = models.resolve("swin_b").meta["card"]
    convnext = models.resolve("convnext_b").meta["card"]
    assert ALIASES["swin_b"][0] == "swin_base_patch4_window7_224.ms_in1k"
    assert ALIASES["convnext_b"][0] == "convnext_base.fb_in1k"
    assert (swin.data.crop_pct, swin.data.resize_size) == (0.9, 248)
    assert (convnext.data.crop_pct, convnext.data.resize_size) == (0.875, 256)


def test_dynamic_timm_name_registers_on_first_use():
    loaded = create_model("timm:test_convnext", weights=None)
    assert "timm:test_convnext" in MODELS
    assert loaded.card.data.input_size == 160 and loaded.card.data.mean == (0.5, 0.5, 0.5)
    assert loaded.card.upstream == "timm test_convnext.r160_in1k"
    with torch.no_grad():
        assert loaded.module(torch.randn(1, 3, 64, 64)).shape == (1, 1000)


@pytest.mark.parametrize(
    ("name", "expect"),
    [
        ("convnext-b", "did you mean convnext_b"),
        ("timm:convnxt_base", "did you mean timm:convnext_base"),
        ("timm:convnext_base.nope", "timm:convnext_base.fb_in1k"),
    ],
)
def test_unknown_names_suggest_close_ones(name, expect):
    with pytest.raises(UnknownName, match=expect) as err:
        create_model(name, weights=None)
    assert "\n" not in str(err.value)


def test_timm_name_with_more_than_1000_classes_is_refused():
    with pytest.raises(UserError, match="21841 classes"):
        create_model("timm:convnext_base.fb_in22k", weights=None)


def test_default_weights_offline_say_how_to_pass_a_file(monkeypatch):
    monkeypatch.setenv("ROBUSTEVAL_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError, match="--weights timm:test_vit=PATH") as err:
        create_model("timm:test_vit", weights="default")
    assert "\n" not in str(err.value)
    assert "hf-hub:timm/test_vit.r160_in1k" in str(err.value)


def test_missing_weights_file_is_a_one_line_error(tmp_path):
    with pytest.raises(UserError, match="no such file") as err:
        create_model("timm:test_vit", weights=str(tmp_path / "nope.pth"))
    assert "\n" not in str(err.value)


@pytest.fixture
def scratch_registry(monkeypatch):
    """Probe models registered by a test vanish after it."""
    monkeypatch.setattr(MODELS, "_entries", dict(MODELS._entries))
    from robusteval.models.registry import AFTER_LOAD

    monkeypatch.setattr(AFTER_LOAD, "_entries", dict(AFTER_LOAD._entries))


def test_scan_backend_reaches_builders_that_take_it_and_after_load_hook_runs(scratch_registry):
    seen = {}

    @register_model(ModelCard(name="probe_scan", family="probe", kind="probe"))
    def probe_scan(*, scan_backend: str = "auto"):
        seen["scan_backend"] = scan_backend
        return torch.nn.Linear(3, 1000)

    @register_model(ModelCard(name="probe_plain", family="probe"))
    def probe_plain():
        return torch.nn.Linear(3, 1000)

    @register_after_load("probe")
    def wrap(module, *, card, weights, device):
        seen["hook"] = (card.name, weights["source"], str(device))
        return torch.nn.Sequential(module, torch.nn.Identity())

    loaded = create_model("probe_scan", weights=None, scan_backend="torch")
    assert seen == {"scan_backend": "torch", "hook": ("probe_scan", "random", "cpu")}
    assert isinstance(loaded.module, torch.nn.Sequential) and not loaded.module.training
    # a builder without the keyword simply does not get it, and no hook runs for its kind
    assert isinstance(
        create_model("probe_plain", weights=None, scan_backend="triton").module, torch.nn.Linear
    )


def test_create_model_imports_only_the_module_it_needs():
    code = (
        "import sys; from robusteval.models import create_model; "
        "create_model('mobilenet_v2', weights=None); "
        "print(sorted(m for m in sys.modules if m.startswith('robusteval.models.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = ast.literal_eval(out)
    assert "robusteval.models.real_weights" in loaded
    assert "robusteval.models.vmamba" not in loaded
    assert "robusteval.models.timm_models" not in loaded
