"""docs/architecture.md cannot drift from the code: it names every layer unit, registry and Record field.

Registries are found by scanning the package's source text (no imports), the layer units come from
tests/test_layout.py, and the Record fields from the dataclass in robusteval/runs.py.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from robusteval.runs import Record
from tests.test_layout import LAYERS

REPO = Path(__file__).resolve().parents[1]
PKG = REPO / "robusteval"
DOC = REPO / "docs" / "architecture.md"


def _doc() -> str:
    return DOC.read_text(encoding="utf-8")


def _registry_kinds() -> set[str]:
    kinds: set[str] = set()
    for path in PKG.rglob("*.py"):
        kinds |= set(re.findall(r'Registry\("([^"]+)"', path.read_text(encoding="utf-8")))
    return kinds


def test_doc_lists_every_layer_unit_and_base_module():
    text = _doc()
    missing = [unit for unit in LAYERS if f"`{unit}`" not in text]
    assert not missing, f"docs/architecture.md does not list layer units {missing}"
    assert "| base |" in text, "docs/architecture.md has no base row in its layer table"
    base = sorted(
        f"robusteval/{p.name}" for p in PKG.glob("*.py") if p.stem not in LAYERS and p.stem != "__init__"
    )
    missing = [m for m in base if f"`{m}`" not in text]
    assert not missing, f"docs/architecture.md does not list base modules {missing}"


def test_doc_lists_every_registry():
    kinds = _registry_kinds()
    assert len(kinds) >= 10, kinds  # the scan found the registries at all
    text = _doc()
    missing = sorted(k for k in kinds if f'"{k}"' not in text)
    assert not missing, f"docs/architecture.md does not list registries {missing}"


def test_doc_lists_every_record_field():
    text = _doc()
    missing = [f.name for f in dataclasses.fields(Record) if f"`{f.name}`" not in text]
    assert not missing, f"docs/architecture.md does not list Record fields {missing}"


def test_every_package_path_in_the_doc_exists():
    paths = set(re.findall(r"robusteval/[\w./]*?\.py\b", _doc()))
    assert paths, "no robusteval/...py paths found in docs/architecture.md"
    missing = sorted(p for p in paths if not (REPO / p).is_file())
    assert not missing, f"docs/architecture.md names files that do not exist: {missing}"
