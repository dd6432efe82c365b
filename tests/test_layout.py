"""The package's shape as a machine checks it: imports only run downwards, no cycles, small modules.

Layers (a module may import its own layer's modules and any lower layer, never a higher one):

    cli  >  demo  >  report  >  explain, transfer, sharpness, export  >  score  >  corrupt
         >  models, datasets, distributed  >  base (errors, registry, seeding, provenance, cpus, devices,
                                       jsonl, runs, metrics, stats, references)

Both module-level and function-level imports count: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "robusteval"

LAYERS: dict[str, int] = {
    "cli": 8,
    "__main__": 8,
    "demo": 7,
    "report": 6,
    "explain": 5,
    "transfer": 5,
    "sharpness": 5,
    "export": 5,
    "score": 4,
    "corrupt": 3,
    "models": 2,
    "datasets": 2,
    "distributed": 2,  # torchrun plumbing shared by the stages; imports only base modules
}
BASE = 1  # every other top-level module of the package
MAX_LINES = 450
# Model definitions and kernels may be longer (one architecture or one kernel per file).
LONG_OK = ("models/", "kernels/")


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def _layer(module: str) -> int:
    return LAYERS.get(_unit(module), BASE)


def _modules() -> dict[str, Path]:
    out = {}
    for path in PKG.rglob("*.py"):
        rel = path.relative_to(PKG.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(path: Path, module: str) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    is_pkg = path.name == "__init__.py"
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("robusteval")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_pkg else 0)]
                name = ".".join([*base, node.module] if node.module else base)
            else:
                name = node.module or ""
            if name.startswith("robusteval"):
                found.add(name)
                found |= {f"{name}.{a.name}" for a in node.names}
    return found


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    graph = {}
    for mod, path in mods.items():
        deps = set()
        for name in _imports(path, mod):
            while name and name not in mods:
                name = name.rpartition(".")[0]
            if name and name != mod and name != "robusteval":
                deps.add(name)
        graph[mod] = deps
    return graph


def test_imports_only_run_downwards():
    upward = [
        f"{mod} (layer {_layer(mod)}) imports {dep} (layer {_layer(dep)})"
        for mod, deps in sorted(_graph().items())
        for dep in sorted(deps)
        if _layer(dep) > _layer(mod)
    ]
    assert not upward, "\n".join(upward)


def test_no_import_cycles_between_units():
    """Units are top-level subpackages (score, report, ...) and base modules; none import in a circle."""
    units: dict[str, set[str]] = {}
    for mod, deps in _graph().items():
        units.setdefault(_unit(mod), set()).update(_unit(d) for d in deps if _unit(d) != _unit(mod))
    seen: dict[str, int] = {}
    cycles: list[str] = []

    def visit(node: str, stack: list[str]) -> None:
        seen[node] = 1
        for nxt in sorted(units.get(node, ())):
            if seen.get(nxt) == 1:
                cycles.append(" -> ".join([*stack[stack.index(nxt) :], nxt]))
            elif nxt not in seen:
                visit(nxt, [*stack, nxt])
        seen[node] = 2

    for unit in sorted(units):
        if unit not in seen:
            visit(unit, [unit])
    assert not cycles, "\n".join(cycles)


def test_modules_stay_small():
    long = [
        f"{p.relative_to(PKG)}: {n} lines"
        for p in sorted(PKG.rglob("*.py"))
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES
        and not any(part in p.relative_to(PKG).as_posix() for part in LONG_OK)
    ]
    assert not long, "\n".join(long)


def test_library_never_imports_the_terminal_ui():
    offenders = []
    for mod, path in _modules().items():
        if _unit(mod) == "cli":
            continue
        text = path.read_text(encoding="utf-8")
        tree = ast.parse(text)
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""]
            offenders += [f"{mod}: {n}" for n in names if n.split(".")[0] in {"typer", "rich"}]
    assert not offenders, "\n".join(offenders)
