"""The Sharpness section of report.md: Hessian spectra of the run's ``sharpness.jsonl`` records.

A table (λ_max, λ_2..k, trace ± standard error, loss, convergence per cell), λ_max against corruption
severity (one panel per shift, one line per model, clean as severity 0), and the spectral densities
of the cells that measured one. Works on a run that holds only sharpness records.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from robusteval.report.extensions import Section, SectionContext, register_section

_METADATA = {"Software": None}


def sharpness_table(records) -> pd.DataFrame:
    """One row per record: model, set, severity, group, n, lam_max, eigenvalues, trace, trace_se, ..."""
    rows = []
    for r in records:
        rows.append({
            "model": r.model, "set": r.set, "suite": r.suite, "severity": r.severity, "group": r.group,
            "n_images": r.n_images, "n_params": r.n_params, "sample_seed": r.sample_seed, "loss": r.loss,
            "top1": r.top1, "lam_max": r.lam_max, "eigenvalues": " ".join(f"{v:.4g}" for v in r.eigenvalues),
            "trace": r.trace, "trace_se": r.trace_stderr, "eig_matvecs": r.eig_matvecs,
            "max_residual": max(r.eig_residuals) if r.eig_residuals else None, "converged": r.eig_converged,
            "loss_kind": r.loss_kind,
        })  # fmt: skip
    df = pd.DataFrame(rows)
    return df.sort_values(
        ["model", "group", "set", "severity"], na_position="first", kind="stable"
    ).reset_index(drop=True)


def _fmt(v: Any, spec: str = ".4g") -> str:
    return "--" if v is None or (isinstance(v, float) and v != v) else format(v, spec)


def _severity_figure(df: pd.DataFrame, path: Path) -> Path | None:
    from matplotlib.figure import Figure

    whole = df[df["group"] == "all"]
    shifts = sorted(s for s in whole["set"].unique() if s != "clean")
    if not shifts:
        return None
    clean = whole[whole["set"] == "clean"].groupby("model")["lam_max"].mean()
    cols = min(3, len(shifts))
    rows = -(-len(shifts) // cols)
    fig = Figure(figsize=(3.4 * cols, 2.7 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, shift in zip(axes, shifts, strict=False):
        sub = whole[whole["set"] == shift]
        for model, g in sub.groupby("model"):
            g = g.groupby("severity")["lam_max"].mean().sort_index()
            xs, ys = list(g.index), list(g.values)
            if model in clean.index:
                xs, ys = [0, *xs], [float(clean[model]), *ys]
            ax.plot(xs, ys, marker="o", label=model)
        ax.set_title(shift, fontsize=9)
        ax.set_xlabel("severity (0 = clean)", fontsize=8)
        ax.set_ylabel("λ_max", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in axes[len(shifts) :]:
        ax.set_visible(False)
    axes[0].legend(fontsize=7)
    fig.savefig(path, metadata=_METADATA)
    return path


def _density_figure(records, path: Path) -> Path | None:
    from matplotlib.figure import Figure

    with_density = [r for r in records if r.density is not None and r.group == "all"]
    if not with_density:
        return None
    fig = Figure(figsize=(6.5, 3.2), layout="constrained")
    ax = fig.subplots()
    for r in with_density:
        sev = "" if r.severity is None else f" s{r.severity}"
        ax.semilogy(r.density_grid, [max(d, 1e-12) for d in r.density], label=f"{r.model} {r.set}{sev}", lw=1)
    ax.set_xlabel("eigenvalue λ")
    ax.set_ylabel("density p(λ)")
    ax.set_ylim(bottom=1e-6)
    ax.legend(fontsize=7)
    fig.savefig(path, metadata=_METADATA)
    return path


@register_section("sharpness", order=60)
def sharpness_section(ctx: SectionContext) -> Section | None:
    """None when the run has no sharpness records."""
    from robusteval.sharpness.record import read_sharpness

    records = read_sharpness(ctx.run_dir)
    if not records:
        return None
    df = sharpness_table(records)
    lines = [
        "## Sharpness (Hessian spectrum of the loss)",
        "",
        f"Loss: {records[0].loss_kind}, mean over a fixed seeded sample; Hessian w.r.t. the parameters "
        "(group `all`, or one diagonal block per module prefix); top eigenvalues by Lanczos, trace by "
        "Hutchinson ± its standard error. Protocol: ours (see README).",
        "",
        "| model | set | sev | group | n | loss | λ_max | top eigenvalues | trace ± se | matvecs | max resid |",
        "|---|---|--:|---|--:|--:|--:|---|--:|--:|--:|",
    ]
    for row in df.itertuples():
        sev = "" if pd.isna(row.severity) else str(int(row.severity))
        trace = "--" if pd.isna(row.trace) else f"{row.trace:.4g} ± {row.trace_se:.2g}"
        flag = "" if row.converged else " (not converged)"
        lines.append(
            f"| {row.model} | {row.set} | {sev} | {row.group} | {row.n_images} | {row.loss:.3f} | "
            f"{_fmt(row.lam_max)} | {row.eigenvalues} | {trace} | {row.eig_matvecs}{flag} | "
            f"{_fmt(row.max_residual, '.1e')} |"
        )
    figures = []
    for name, draw in (
        ("sharpness_severity.png", lambda p: _severity_figure(df, p)),
        ("sharpness_density.png", lambda p: _density_figure(records, p)),
    ):
        got = draw(ctx.figures_dir / name)
        if got is not None:
            figures.append(got)
            rel = got.relative_to(ctx.out_dir).as_posix()
            lines += ["", f"![{name.removesuffix('.png').replace('_', ' ')}]({rel})"]
    lines.append("")
    return Section(lines=lines, tables={"sharpness": df}, figures=figures)
