"""What ``robusteval score`` is asked to do (:class:`ScoreRequest`) and what it did (:class:`ScoreSummary`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from robusteval.runs import Record


@dataclass
class ScoreRequest:
    """Everything ``robusteval score`` was asked to do (units: images, seconds, GiB)."""

    models: list[str]
    run: str
    runs_dir: Path = Path("runs")
    sets_dir: Path | None = None
    data: Path | None = None
    labels: Path | None = None
    ood: list[tuple[str, str]] = field(default_factory=list)
    transforms: list[str] = field(default_factory=list)
    severities: list[int] | None = None
    transform_impl: str = "auto"
    seed: int = 0
    batch_size: int = 64
    amp: str | None = None  # None: bf16 on CUDA, off on CPU
    channels_last: bool = False
    compile: bool = False
    device: str | None = None  # None: cuda when available
    scan_backend: str = "auto"
    weights: dict[str, str] = field(default_factory=dict)
    trust_checkpoint: bool = False
    templates: str | None = None  # CLIP zero-shot prompts: openai80, clip-mamba7 or a file
    workers: int | None = None  # None: all cores but one (at most 16)
    # JPEGs on CUDA: True nvJPEG, False PIL in the workers, None (auto) nvJPEG only with fewer than
    # NVJPEG_BELOW_WORKERS decode workers (see use_nvjpeg)
    gpu_decode: bool | None = None
    cache_gib: float | None = None  # on-the-fly: keep clean crops on the device up to this size
    subset: str | None = None  # a fixed val subset (robusteval.datasets.ood.SUBSETS) of --data
    command: str | None = None  # recorded with every cell; None: the equivalent command line


_OPTION_NAMES = {"sets_dir": "sets", "severities": "severity", "gpu_decode": "gpu-decode"}


def request_command(req: ScoreRequest) -> str:
    """``robusteval score ...`` with every option that differs from its default, as a user types it."""
    import dataclasses
    import shlex

    argv = ["robusteval", "score"]
    for f in dataclasses.fields(req):
        value = getattr(req, f.name)
        has_default = f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if f.name == "command" or (has_default and value == default):
            continue
        option = "--" + _OPTION_NAMES.get(f.name, f.name).replace("_", "-")
        if isinstance(value, bool):
            argv.append(
                option if value else "--cpu-decode" if f.name == "gpu_decode" else f"--no-{option[2:]}"
            )
        elif isinstance(value, dict):
            argv += [option, *(f"{k}={v}" for k, v in value.items())]
        elif isinstance(value, list):
            argv += [option, *("=".join(map(str, v)) if isinstance(v, tuple) else str(v) for v in value)]
        elif value is not None:
            argv += [option, str(value)]
    return shlex.join(argv)


@dataclass
class ScoreSummary:
    run_dir: Path
    written: list[Record] = field(default_factory=list)
    reused: int = 0  # cells already finished by an earlier run
    images: int = 0  # images decoded in this call
    skipped_images: int = 0
    seconds: float = 0.0
