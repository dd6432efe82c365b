"""The report's provenance section: commands, weights, data configs, versions and spec hashes."""

from __future__ import annotations

from robusteval.report.markdown import DASH, ReportInputs, details, table
from robusteval.report.tables import Tables


def _lines(value: object, *, code: bool = False) -> str:
    """A table's multi-valued cell (one value per line) as markdown: ``<br>`` between values."""
    parts = [p for p in str(value or "").split("\n") if p]
    if not parts:
        return DASH
    return "<br>".join(f"`{p}`" if code else p for p in parts)


def provenance_section(t: Tables, inp: ReportInputs) -> list[str]:
    rows = list(t.provenance.itertuples(index=False))
    prov_rows = [
        [r.model, r.kind, _lines(r.weights_source), _lines(r.weights_sha256, code=True), r.cells]
        for r in rows
    ]
    cfg_rows = [
        [
            r.model,
            _lines(r.preprocess),
            _lines(r.data_config, code=True),
            _lines(r.device),
            _lines(r.amp),
            _lines(r.forward_batch),
        ]
        for r in rows
    ]
    span = [
        f"{r.model}: {r.created_first} … {r.created_last}"
        for r in t.provenance.itertuples(index=False)
        if r.created_first
    ]
    commands = sorted({c for r in t.provenance.itertuples(index=False) for c in r.commands.split("\n") if c})
    out = [
        "## Provenance",
        "",
        f"Report command: `{inp.command}`",
        "",
    ]
    if commands:
        out += ["Score commands recorded:", "", *(f"- `{c}`" for c in commands), ""]
    out += [
        "Weights:",
        "",
        *table(["model", "kind", "weights source", "sha256", "cells"], prov_rows, align="lllll"),
        "",
        "Data configs and scoring settings:",
        "",
        *table(
            ["model", "preprocess", "data config", "device", "amp", "forward batch"], cfg_rows, align="llllll"
        ),
        "",
    ]
    if span:
        out += ["Records created: " + "; ".join(span) + ".", ""]
    if not t.versions.empty:
        vrows = [[r.package, r.version, r.models] for r in t.versions.itertuples(index=False)]
        out += details("Versions", table(["package", "version", "models"], vrows, align="lll"))
    if not t.spec_hashes.empty:
        hrows = []
        for name, g in t.spec_hashes.groupby("set", sort=True):
            parts = [f"{int(s)}:`{h}`" for s, h in zip(g["severity"], g["spec_hash"], strict=True)]
            flag = " (differs between cells)" if g["severity"].duplicated().any() else ""
            hrows.append([name, " ".join(parts) + flag])
        out += details("Set spec hashes (severity:hash)", table(["set", "spec hashes"], hrows, align="ll"))
    return out
