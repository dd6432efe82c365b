"""CLIP-Mamba, the CLIP text transformer, SiMBA towers, the zero-shot head and openclip: names.

Forward tests use tiny widths; full-size models are built only on the meta device (parameter
counts, key layout). Upstream fidelity at full size is scripts/tools/fidelity_clip_mamba.py.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from robusteval.errors import UserError
from robusteval.models import resolve
from robusteval.models.checkpoint import CheckpointMismatch, load_into, read_checkpoint
from robusteval.models.clip_mamba import (
    CLIP_MAMBA_MODELS,
    TOWERS,
    ClipMamba,
    convert_clip_mamba,
    select_released_weights,
)
from robusteval.models.clip_text import ClipTextEncoder, TextConfig
from robusteval.models.registry import IMAGENET_MEAN, IMAGENET_STD, OPENAI_CLIP_MEAN
from robusteval.models.simba import SIMBA_CONFIGS, MambaMixer, Simba, SimbaConfig
from robusteval.models.zero_shot import (
    TEMPLATE_SETS,
    ZeroShotClassifier,
    cached_zero_shot_weights,
    clip_to_classifier,
    imagenet_classnames,
    load_templates,
    simple_tokenizer,
    zero_shot_weights,
)

CLIP_MAMBA_NAMES = [spec.name for spec in CLIP_MAMBA_MODELS]
TINY_TEXT = TextConfig(width=16, heads=2, layers=1, embed_dim=8)
# mamba-clip's vssm1 settings at toy widths; "v2" keeps the z gate (as T220), "v3noz" drops it (B, S).
TINY_VMAMBA = dict(
    dims=8,
    depths=(1, 1, 1, 1),
    ssm_d_state=1,
    ssm_ratio=2.0,
    ssm_conv=3,
    ssm_conv_bias=False,
    mlp_ratio=2.0,
    downsample_version="v3",
    patchembed_version="v2",
    norm_layer="ln",
)
TINY_SIMBA = SimbaConfig(embed_dims=(8, 16, 16, 24), depths=(1, 1, 1, 1), stem_hidden_dim=8, d_state=4)
# Upstream's EMA twin of each online name (raytrun/mamba-clip models.py CLIP.__init__), written out
# here independently of the converter's table.
UPSTREAM_EMA = {
    "visual": "visual_e",
    "transformer": "transformer_e",
    "token_embedding": "token_embedding_e",
    "positional_embedding": "positional_embedding_e",
    "ln_final": "ln_final_e",
    "image_projection": "image_projection_e",
    "text_projection": "text_projection_e",
}


@pytest.fixture(autouse=True)
def _one_thread():
    # Many tiny ops: on a shared 2-core machine, intra-op thread hand-offs cost more than the math.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@torch.no_grad()
def randomize_(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Seeded non-trivial values everywhere (so a wrong mapping cannot hide behind an init)."""
    g = torch.Generator().manual_seed(seed)
    for name, p in module.named_parameters():
        if name.endswith(("A_logs", "A_log")):
            p.copy_(torch.rand(p.shape, generator=g) * 2 - 1)
        elif p.dim() <= 1:
            p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.2 * torch.randn(p.shape, generator=g))
        else:
            p.copy_(torch.randn(p.shape, generator=g) / max(p[0].numel(), 1) ** 0.5)
    for name, b in module.named_buffers():
        if name.endswith("running_var"):
            b.copy_(0.5 + torch.rand(b.shape, generator=g))
        elif name.endswith("running_mean"):
            b.copy_(0.1 * torch.randn(b.shape, generator=g))
    return module.eval()


def tiny_clip(tower: str = "vmamba", *, seed: int = 0, forward_type: str = "v2") -> ClipMamba:
    torch.manual_seed(seed)
    if tower == "vmamba":
        visual = TOWERS.get("vmamba")({**TINY_VMAMBA, "forward_type": forward_type}, scan_backend="torch")
        width = 64
    else:
        visual = Simba(TINY_SIMBA, scan_backend="torch")
        width = TINY_SIMBA.embed_dims[-1]
    return randomize_(ClipMamba(visual=visual, vision_width=width, text=TINY_TEXT), seed)


def released_dict(online: ClipMamba, ema: ClipMamba) -> dict:
    """mamba-clip main.py's checkpoint: DDP-wrapped online + EMA towers, one logit_scale."""
    sd = {f"module.{k}": v.clone() for k, v in online.state_dict().items()}
    for k, v in ema.state_dict().items():
        head, _, rest = k.partition(".")
        if head in UPSTREAM_EMA:
            sd[f"module.{UPSTREAM_EMA[head]}" + (f".{rest}" if rest else "")] = v.clone()
    return {"epoch": 25, "state_dict": sd, "best_acc": 38.0}


# --- text transformer -------------------------------------------------------------------------


def test_text_tower_matches_open_clip_vit_b32_quickgelu():
    open_clip = pytest.importorskip("open_clip")
    from open_clip.model import CLIPTextCfg, CLIPVisionCfg

    text_cfg = open_clip.get_model_config("ViT-B-32-quickgelu")["text_cfg"]
    ref = open_clip.model.CLIP(
        embed_dim=512,
        vision_cfg=CLIPVisionCfg(layers=1, width=64, head_width=32, patch_size=16, image_size=32),
        text_cfg=CLIPTextCfg(**text_cfg),
        quick_gelu=True,
    ).eval()
    ours = ClipTextEncoder(TextConfig()).eval()
    assert TextConfig() == TextConfig(
        context_length=text_cfg["context_length"],
        vocab_size=text_cfg["vocab_size"],
        width=text_cfg["width"],
        heads=text_cfg["heads"],
        layers=text_cfg["layers"],
    )
    randomize_(ours, seed=3)
    missing, _ = ref.load_state_dict(ours.state_dict(), strict=False)
    assert not [k for k in missing if not k.startswith("visual.") and k != "logit_scale"]
    tokens = simple_tokenizer()(["a photo of a tench.", "itap of a goldfish.", "x", "word " * 80])
    with torch.no_grad():
        got, want = ours.encode_text(tokens), ref.encode_text(tokens)
    assert got.shape == (4, 512)
    assert (got - want).abs().max().item() < 1e-4 * want.abs().max().item()


def test_text_tower_ignores_padding_after_end_of_text():
    model = randomize_(ClipTextEncoder(TINY_TEXT), seed=1)
    tokens = simple_tokenizer()(["a bad photo of the goldfish.", "art"])
    noisy = tokens.clone()
    eot = tokens.argmax(-1)
    noisy[1, eot[1] + 1 :] = 7  # the short row's padding changes; causality keeps its EOT feature
    with torch.no_grad():
        a, b = model.encode_text(tokens), model.encode_text(noisy)
    assert torch.allclose(a, b, atol=1e-6)


def test_tokenizer_layout():
    tokens = simple_tokenizer()(["itap of a tench.", "art of the goldfish."])
    assert tokens.shape == (2, 77) and tokens.dtype == torch.int64
    assert tokens[:, 0].tolist() == [49406, 49406]  # <|startoftext|>
    assert tokens.argmax(-1).tolist() == [(row == 49407).nonzero().item() for row in tokens]


# --- zero-shot data and head ------------------------------------------------------------------


def test_template_and_classname_data():
    names = imagenet_classnames()
    assert len(names) == 1000 and names[0] == "tench" and names[999] == "toilet paper"
    openai = load_templates("openai80").templates
    mamba = load_templates("clip-mamba7").templates
    assert len(openai) == 80 and all(t.count("{}") == 1 for t in openai)
    assert mamba == (
        "itap of a {}.",
        "a bad photo of the {}.",
        "a origami {}.",
        "a photo of the large {}.",
        "a {} in a video game.",
        "art of the {}.",
        "a photo of the small {}.",
    )
    assert set(mamba) <= set(openai)
    meta = pytest.importorskip("open_clip.zero_shot_metadata")
    assert names == tuple(meta.IMAGENET_CLASSNAMES)
    assert openai == tuple(t("{}") for t in meta.OPENAI_IMAGENET_TEMPLATES)


def test_templates_from_a_file(tmp_path: Path):
    good = tmp_path / "mine.txt"
    good.write_text("a photo of a {}.\n\n  a drawing of a {}.  \n")
    tset = load_templates(str(good))
    assert tset.templates == ("a photo of a {}.", "a drawing of a {}.") and tset.source == str(good)
    bad = tmp_path / "bad.txt"
    bad.write_text("no placeholder here\n")
    with pytest.raises(UserError, match="exactly one"):
        load_templates(str(bad))
    with pytest.raises(UserError, match="openai80"):
        load_templates("no-such-set")
    assert set(TEMPLATE_SETS) == {"openai80", "clip-mamba7"}


def test_zero_shot_weights_is_normalised_mean_of_normalised_embeddings():
    vocab = {"a cat": 0, "the cat": 1, "a dog": 2, "the dog": 3}
    table = torch.tensor([[3.0, 0.0], [0.0, 0.5], [1.0, 1.0], [-2.0, 2.0]])

    def tokenize(texts):
        return torch.tensor([[vocab[t]] for t in texts])

    w = zero_shot_weights(
        encode_text=lambda tok: table[tok[:, 0]],
        tokenize=tokenize,
        classnames=["cat", "dog"],
        templates=["a {}", "the {}"],
    )
    # cat: mean of (1, 0) and (0, 1) → (.5, .5) → (1, 1)/√2; dog: mean of (1, 1)/√2 and (-1, 1)/√2 → (0, 1).
    s = 1 / math.sqrt(2)
    assert torch.allclose(w, torch.tensor([[s, s], [0.0, 1.0]]), atol=1e-6)


def test_zero_shot_weights_do_not_depend_on_batching():
    model = randomize_(ClipTextEncoder(TINY_TEXT), seed=8)
    kw = dict(
        encode_text=model.encode_text,
        tokenize=simple_tokenizer(),
        classnames=imagenet_classnames()[:5],
        templates=load_templates("clip-mamba7").templates,
    )
    with torch.no_grad():
        one = zero_shot_weights(batch_texts=1, **kw)  # one class per call
        many = zero_shot_weights(batch_texts=512, **kw)  # all five classes in one call
    assert torch.allclose(one, many, atol=1e-6)


def test_zero_shot_cache_keys_and_hits(tmp_path: Path):
    model = randomize_(ClipTextEncoder(TINY_TEXT), seed=2)
    calls = []

    def encode(tokens):
        calls.append(len(tokens))
        return model.encode_text(tokens)

    kw = dict(
        encode_text=encode, tokenize=simple_tokenizer(), classnames=["tench", "goldfish"], cache_dir=tmp_path
    )
    w1, info1 = cached_zero_shot_weights(templates=["a {}."], weights_sha256="ab" * 32, **kw)
    assert not info1["cache_hit"] and Path(info1["cache"]).is_file() and sum(calls) == 2
    w2, info2 = cached_zero_shot_weights(templates=["a {}."], weights_sha256="ab" * 32, **kw)
    assert info2["cache_hit"] and sum(calls) == 2 and torch.equal(w1, w2)
    _, info3 = cached_zero_shot_weights(templates=["art of the {}."], weights_sha256="ab" * 32, **kw)
    assert not info3["cache_hit"] and info3["cache"] != info1["cache"]
    _, info4 = cached_zero_shot_weights(templates=["a {}."], weights_sha256="cd" * 32, **kw)
    assert info4["cache"] != info1["cache"]
    _, info5 = cached_zero_shot_weights(templates=["a {}."], weights_sha256=None, **kw)
    assert info5["cache"] is None and len(list(tmp_path.iterdir())) == 3


def test_zero_shot_classifier_is_a_1000_way_classifier(tmp_path: Path):
    model = tiny_clip("vmamba", seed=4)
    card = resolve("clip_mamba_vmamba_t220").meta["card"]
    images = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        feats = F.normalize(model.encode_image(images), dim=-1)
    head = clip_to_classifier(
        model, card=card, device="cpu", weights={"source": "test", "sha256": "ef" * 32}, cache_dir=tmp_path
    )
    assert isinstance(head, ZeroShotClassifier)
    assert head.zero_shot_info["templates"] == "clip-mamba7" and head.zero_shot_info["n_templates"] == 7
    assert head.class_weights.shape == (1000, TINY_TEXT.embed_dim)
    assert torch.allclose(head.class_weights.norm(dim=-1), torch.ones(1000), atol=1e-5)
    # The head keeps the image side only.
    assert not any(k.startswith(("transformer.", "token_embedding")) for k in head.state_dict())
    with torch.no_grad():
        logits = head(images)
    scale = model.logit_scale.exp().item()
    assert logits.shape == (3, 1000) and torch.isfinite(logits).all()
    assert torch.allclose(logits, scale * feats @ head.class_weights.t(), atol=1e-4)
    # Same weights identity → the second head reads the cached class embeddings.
    again = clip_to_classifier(
        model, card=card, device="cpu", weights={"source": "test", "sha256": "ef" * 32}, cache_dir=tmp_path
    )
    assert again.zero_shot_info["cache_hit"] and torch.equal(again.class_weights, head.class_weights)


# --- released checkpoints ---------------------------------------------------------------------


@pytest.mark.parametrize(("tower", "forward_type"), [("vmamba", "v2"), ("vmamba", "v3noz"), ("simba", None)])
def test_released_format_loads_the_ema_towers(tmp_path: Path, tower: str, forward_type: str | None):
    kw = {"forward_type": forward_type} if forward_type else {}
    online, ema, ours = (tiny_clip(tower, seed=s, **kw) for s in (10, 11, 12))
    path = tmp_path / "released.pt"
    torch.save(released_dict(online, ema), path)
    ckpt = read_checkpoint(path, ema=True)
    assert (
        "visual_e.patch_embed1.conv.0.weight" in ckpt.state_dict
        or "visual_e.patch_embed.0.weight" in ckpt.state_dict
    )
    load_into(ours, ckpt.state_dict, converter=convert_clip_mamba, what=str(path))
    images = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    tokens = simple_tokenizer()(["itap of a tench.", "art of the goldfish."])
    with torch.no_grad():
        assert torch.equal(ours.encode_image(images), ema.encode_image(images))
        assert torch.equal(ours.encode_text(tokens), ema.encode_text(tokens))
        assert not torch.allclose(ours.encode_image(images), online.encode_image(images))
    assert torch.equal(ours.logit_scale, online.logit_scale)  # the one logit_scale upstream keeps


def test_released_keys_are_upstreams():
    sd = released_dict(tiny_clip(seed=0), tiny_clip(seed=1))["state_dict"]
    for key in (
        "module.visual.layers.0.blocks.0.op.x_proj_weight",
        "module.visual_e.layers.0.blocks.0.op.dt_projs_bias",
        "module.visual_e.classifier.norm.weight",
        "module.transformer_e.resblocks.0.attn.in_proj_weight",
        "module.token_embedding_e.weight",
        "module.positional_embedding_e",
        "module.ln_final_e.bias",
        "module.image_projection_e",
        "module.text_projection_e",
        "module.logit_scale",
    ):
        assert key in sd, key
    online = select_released_weights(sd, prefer_ema=False)
    assert set(online) == set(tiny_clip(seed=0).state_dict())
    assert torch.equal(online["image_projection"], sd["module.image_projection"])


def test_released_file_with_args_needs_namespace_or_trust(tmp_path: Path):
    online, ema, ours = (tiny_clip(seed=s) for s in (20, 21, 22))
    blob = released_dict(online, ema)
    blob["args"] = argparse.Namespace(model="CLIP_VMamba_T220", lr=5e-4, betas=(0.9, 0.98))
    path = tmp_path / "VMamba_T220_clip.pt"
    torch.save(blob, path)
    ckpt = read_checkpoint(path, ema=True, trust=False)  # Namespace is allowed without pickle trust
    load_into(ours, ckpt.state_dict, converter=convert_clip_mamba, what=str(path))
    assert torch.equal(ours.image_projection, ema.image_projection)


def test_missing_keys_give_a_readable_diff(tmp_path: Path):
    blob = released_dict(tiny_clip(seed=0), tiny_clip(seed=1))
    del blob["state_dict"]["module.visual_e.classifier.norm.weight"]
    del blob["state_dict"]["module.text_projection_e"]
    path = tmp_path / "broken.pt"
    torch.save(blob, path)
    ckpt = read_checkpoint(path, ema=True)
    with pytest.raises(CheckpointMismatch) as err:
        load_into(tiny_clip(seed=2), ckpt.state_dict, converter=convert_clip_mamba, what=str(path))
    msg = str(err.value)
    assert "2 missing" in msg and "visual.classifier.norm.weight" in msg and "text_projection" in msg


# --- registered names (full size on the meta device only) -------------------------------------


@pytest.mark.parametrize("name", CLIP_MAMBA_NAMES)
def test_clip_mamba_cards_and_full_size_layout(name: str):
    entry = resolve(name)
    card = entry.meta["card"]
    spec = next(s for s in CLIP_MAMBA_MODELS if s.name == name)
    assert card.kind == "clip" and card.converter == "clip_mamba" and card.prefer_ema
    assert (card.data.input_size, card.data.interpolation, card.data.crop_pct) == (224, "bilinear", 1.0)
    assert (card.data.mean, card.data.std) == (IMAGENET_MEAN, IMAGENET_STD)
    assert card.weights_url.endswith(spec.hf_filename) and len(card.weights_sha256) == 64
    with torch.device("meta"):
        model = entry.fn(scan_backend="torch")
    tower = sum(p.numel() for p in model.visual.parameters())
    assert tower == round(card.params_m * 1e6)
    assert tuple(model.image_projection.shape) == (spec.vision_width, 512)
    assert tuple(model.text_projection.shape) == (512, 512)
    text = sum(p.numel() for n, p in model.named_parameters() if not n.startswith(("visual.", "image_proj")))
    assert text == 63_428_097  # token/pos embeddings, 12 blocks, ln_final, text_projection, logit_scale


def test_vmamba_towers_follow_mamba_clips_forward_types():
    with torch.device("meta"):
        b = resolve("clip_mamba_vmamba_b").fn()
        t = resolve("clip_mamba_vmamba_t220").fn()
    # v3noz (B, S): in_proj produces d_inner only; T220's default v2 also produces the z gate.
    assert tuple(b.visual.layers[0].blocks[0].op.in_proj.weight.shape) == (256, 128)
    assert tuple(t.visual.layers[0].blocks[0].op.in_proj.weight.shape) == (384, 96)
    assert b.visual.num_features == 1024 and t.visual.num_features == 768


@pytest.mark.parametrize("tower", ["vmamba", "simba"])
def test_tiny_towers_give_finite_embeddings(tower: str):
    model = tiny_clip(tower, seed=5)
    with torch.no_grad():
        out = model.encode_image(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, TINY_TEXT.embed_dim) and torch.isfinite(out).all()


# --- SiMBA ------------------------------------------------------------------------------------


def _mamba_by_loop(m: MambaMixer, h: torch.Tensor) -> torch.Tensor:
    """Mamba-1 written out step by step (causal conv, softplus dt, ZOH A, Euler B, D skip, z gate)."""
    bsz, length, _ = h.shape
    x, z = (h @ m.in_proj.weight.t()).chunk(2, dim=-1)
    k = m.conv1d.weight.shape[-1]
    xp = F.pad(x.transpose(1, 2), (k - 1, 0))
    conv = sum(xp[..., i : i + length] * m.conv1d.weight[:, 0, i, None] for i in range(k))
    x = F.silu(conv + m.conv1d.bias[:, None]).transpose(1, 2)
    dt, b, c = (x @ m.x_proj.weight.t()).split([m.dt_rank, m.d_state, m.d_state], dim=-1)
    dt = F.softplus(dt @ m.dt_proj.weight.t() + m.dt_proj.bias)
    a = -torch.exp(m.A_log)
    state = torch.zeros(bsz, m.d_inner, m.d_state)
    ys = []
    for t in range(length):
        state = (
            torch.exp(dt[:, t, :, None] * a) * state + dt[:, t, :, None] * b[:, t, None, :] * x[:, t, :, None]
        )
        ys.append((state * c[:, t, None, :]).sum(-1) + m.D * x[:, t])
    y = torch.stack(ys, dim=1) * F.silu(z)
    return y @ m.out_proj.weight.t()


def test_mamba_mixer_matches_the_recurrence():
    m = randomize_(MambaMixer(12, d_state=5, d_conv=4, expand=2, scan_backend="torch"), seed=6)
    with torch.no_grad():
        m.dt_proj.bias.copy_(torch.linspace(-3, 0, m.d_inner))
        h = torch.randn(2, 9, 12, generator=torch.Generator().manual_seed(2))
        got, want = m(h), _mamba_by_loop(m, h)
        one = m(h[:, :1])  # the post network runs on a single token
    assert (got - want).abs().max().item() < 1e-5 * max(1.0, want.abs().max().item())
    assert torch.allclose(one, got[:, :1], atol=1e-5)  # causal: the first step ignores the rest


def test_simba_layout_and_sizes():
    keys = set(Simba(TINY_SIMBA).state_dict())
    for key in (
        "patch_embed1.conv.0.weight",
        "patch_embed1.conv.1.running_var",
        "patch_embed1.conv.7.weight",
        "patch_embed1.proj.bias",
        "patch_embed2.norm.weight",
        "block1.0.norm2.weight",
        "block1.0.attn.norm.weight",
        "block1.0.attn.mamba.in_proj.weight",
        "block1.0.attn.mamba.conv1d.bias",
        "block1.0.attn.mamba.dt_proj.bias",
        "block1.0.attn.mamba.A_log",
        "block1.0.attn.mamba.D",
        "block1.0.mlp.dwconv.dwconv.weight",
        "norm4.bias",
        "post_network.0.attn.mamba.out_proj.weight",
        "post_network.0.mlp.fc2.weight",
    ):
        assert key in keys, key
    assert not any(k.startswith(("head", "aux_head")) for k in keys)
    cfg = SIMBA_CONFIGS["simba_l"]
    assert (cfg.embed_dims, cfg.depths, cfg.d_state, cfg.d_conv) == (
        (96, 192, 384, 512),
        (3, 6, 18, 3),
        64,
        4,
    )


# --- openclip: ----------------------------------------------------------------------------------


def _openclip(name: str):
    """``resolve(name)`` once robusteval.models maps the ``openclip:`` prefix; direct until then."""
    from robusteval.models import PREFIX_TO_MODULE
    from robusteval.models.registry import MODELS, PREFIXES

    if "openclip:" in PREFIX_TO_MODULE:
        return resolve(name)
    import robusteval.models.openclip_models  # noqa: F401  (registers the prefix)

    PREFIXES.get("openclip:")(name)
    return MODELS.get(name)


def test_openclip_names_carry_open_clips_preprocessing():
    pytest.importorskip("open_clip")
    card = _openclip("openclip:ViT-B-32-quickgelu").meta["card"]
    assert card.kind == "clip" and card.family == "openclip"
    assert (card.data.input_size, card.data.interpolation, card.data.crop_pct) == (224, "bicubic", 1.0)
    assert card.data.mean == OPENAI_CLIP_MEAN
    with pytest.raises(UserError, match="no architecture"):
        _openclip("openclip:NoSuchArch-99")


def test_openclip_local_weights_to_zero_shot(tmp_path: Path):
    open_clip = pytest.importorskip("open_clip")
    cfg = {
        "embed_dim": 8,
        "quick_gelu": True,
        "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 16, "heads": 2, "layers": 1},
    }
    (tmp_path / "robusteval-tiny-clip.json").write_text(json.dumps(cfg))
    open_clip.add_model_config(tmp_path / "robusteval-tiny-clip.json")
    entry = _openclip("openclip:robusteval-tiny-clip")
    src = randomize_(entry.fn(), seed=7)
    path = tmp_path / "tiny.pt"
    torch.save({"epoch": 1, "state_dict": {f"module.{k}": v for k, v in src.state_dict().items()}}, path)
    model = entry.fn()
    ckpt = read_checkpoint(path)
    load_into(model, ckpt.state_dict, what=str(path))
    templates = tmp_path / "one.txt"
    templates.write_text("a photo of a {}.\n")
    head = clip_to_classifier(
        model,
        card=entry.meta["card"],
        device="cpu",
        weights={"source": str(path), "sha256": ckpt.sha256},
        templates=str(templates),
        cache_dir=tmp_path / "cache",
    )
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        logits = head(images)
        want = src.logit_scale.exp() * F.normalize(src.encode_image(images), dim=-1) @ head.class_weights.t()
    assert logits.shape == (2, 1000) and torch.allclose(logits, want, atol=1e-4)
    assert head.zero_shot_info["templates"] == str(templates)
