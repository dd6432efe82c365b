"""Published numbers the report shows beside ours, always labelled as the paper's (data, not logic).

Every figure here is a fraction in [0, 1] (errors and accuracies alike) and carries the source it
was read from, so the report can cite it.
"""

from __future__ import annotations

from dataclasses import dataclass

#: AlexNet top-1 error per ImageNet-C corruption, averaged over severities 1..5
#: (Hendrycks & Dietterich 2019, "Benchmarking Neural Network Robustness to Common Corruptions").
ALEXNET_ERRORS: dict[str, float] = {
    "gaussian_noise": 0.886428,
    "shot_noise": 0.894468,
    "impulse_noise": 0.922640,
    "defocus_blur": 0.819880,
    "glass_blur": 0.826268,
    "motion_blur": 0.785948,
    "zoom_blur": 0.798360,
    "snow": 0.866816,
    "frost": 0.826572,
    "fog": 0.819324,
    "brightness": 0.564592,
    "contrast": 0.853204,
    "elastic_transform": 0.646056,
    "pixelate": 0.717840,
    "jpeg_compression": 0.606500,
}
#: AlexNet clean top-1 error on ImageNet val, the reference for relative mCE.
ALEXNET_CLEAN_ERROR: float = 0.4348
ALEXNET_SOURCE = "Hendrycks & Dietterich 2019, ImageNet-C"


@dataclass(frozen=True)
class PaperFigure:
    """One published accuracy: ``model`` on ``set`` was ``top1`` (fraction) in ``source``;
    ``ours`` is the registered robusteval name of the same model."""

    model: str
    set: str
    top1: float
    source: str
    ours: str


SEED_STUDY = "Exploring SSMs for Vision Tasks (seed study), §3.1.2"
#: The seed study's VMamba-B accuracies on ImageNet val under its transformations (the paper's).
SEED_STUDY_FIGURES: tuple[PaperFigure, ...] = (
    PaperFigure("VMamba-B", "clean", 0.8390, SEED_STUDY, "vmamba_b"),
    PaperFigure("VMamba-B", "crop", 0.8358, SEED_STUDY, "vmamba_b"),
    PaperFigure("VMamba-B", "perspective", 0.6295, SEED_STUDY, "vmamba_b"),
)

CLIP_MAMBA = "CLIP-Mamba (Huang et al. 2024)"
#: CLIP-Mamba's reported zero-shot ImageNet-1k top-1 (the paper's).
CLIP_MAMBA_ZERO_SHOT: tuple[PaperFigure, ...] = (
    PaperFigure("VMamba-B", "clean", 0.383, CLIP_MAMBA, "clip_mamba_vmamba_b"),
    PaperFigure("VMamba-S", "clean", 0.400, CLIP_MAMBA, "clip_mamba_vmamba_s"),
    PaperFigure("VMamba-T220", "clean", 0.387, CLIP_MAMBA, "clip_mamba_vmamba_t220"),
    PaperFigure("Simba-L", "clean", 0.416, CLIP_MAMBA, "clip_mamba_simba_l"),
)
