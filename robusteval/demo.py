"""The demo: the whole loop (corrupt → score → report) on a small sample, with real weights.

Default data: the CC BY 4.0 model-vs-human 16-class stimuli embedded in the package; any data set
``read_dataset`` understands can be given instead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from robusteval.corrupt.stage import CorruptSummary, run_corrupt
from robusteval.datasets.layouts import read_dataset, sample_per_class, write_labels_csv

RUN = "demo"


def embedded_data() -> Path:
    """Folder of the embedded 16-class stimuli (labels.csv + edges/ + filled-silhouettes/)."""
    return Path(str(resources.files("robusteval").joinpath("assets/modelvshuman16")))


@dataclass
class DemoResult:
    data: Path
    n_images: int
    corrupt: CorruptSummary
    score: object  # robusteval.score.engine.ScoreSummary
    report: object  # robusteval.report.ReportResult
    report_md: Path


@dataclass(frozen=True)
class DemoHooks:
    """Callbacks for the CLI: ``stage(name, total)`` starts a bar, ``advance(n)`` moves it."""

    stage: Callable[[str, int], None] = lambda name, total: None
    advance: Callable[[int], None] = lambda n: None
    message: Callable[[str], None] = lambda line: None


def run_demo(
    *,
    out: Path,
    data: Path | None = None,
    model: str = "mobilenet_v2",
    suite: str = "study21",
    severity: int = 3,
    per_class: int = 4,
    seed: int = 0,
    workers: int | None = None,
    hooks: DemoHooks = DemoHooks(),
) -> DemoResult:
    """Corrupt ``per_class`` images per class with every set of ``suite`` at ``severity``, score
    ``model`` on the clean and corrupted images, and write ``out/report/report.md``.

    Re-running resumes: finished outputs and cells are reused.
    """
    from robusteval.report import make_report
    from robusteval.score.engine import ScoreRequest, run_score

    source = data or embedded_data()
    ds = sample_per_class(read_dataset(source), per_class=per_class, seed=seed)
    sample_dir = out / "data"
    write_labels_csv(ds, sample_dir / "labels.csv")

    corrupt = run_corrupt(
        data=sample_dir, out=out / "sets", suite=suite, severities=[severity], seed=seed, workers=workers,
        on_total=lambda n: hooks.stage("corrupt", n), progress=hooks.advance,
        on_skip=lambda s: hooks.message(f"skip {s['source']}: {s['reason']}"),
    )  # fmt: skip
    req = ScoreRequest(
        models=[model], run=RUN, runs_dir=out / "runs", sets_dir=out / "sets", data=sample_dir,
        workers=workers, device="cpu" if not _cuda() else None,
    )  # fmt: skip
    score = run_score(req, on_total=lambda n: hooks.stage("score", n), progress=hooks.advance,
                      on_message=hooks.message)  # fmt: skip
    report = make_report(run_dir=out / "runs" / RUN, out_dir=out / "report", baseline=None, fail_under=[])
    return DemoResult(source, len(ds.samples), corrupt, score, report, out / "report" / "report.md")


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()
