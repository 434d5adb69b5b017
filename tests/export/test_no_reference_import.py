"""Export loads its weights through ``models.load``, not the reference pipeline (the review's reach-around).

The walk follows every import of the package's own modules, function-level ones included, from each
module of ``eeg2img_deploy.export`` transitively, so a lazy ``from ..reference... import`` anywhere on
the way is found without running an export.
"""

from __future__ import annotations

import ast
from pathlib import Path

import eeg2img_deploy

ROOT = Path(eeg2img_deploy.__file__).parent
PKG = "eeg2img_deploy"


def _module_file(name: str) -> Path | None:
    parts = name.split(".")[1:]
    if not parts:
        return ROOT / "__init__.py"
    rel = Path(*parts)
    for p in (ROOT / rel.with_suffix(".py"), ROOT / rel / "__init__.py"):
        if p.is_file():
            return p
    return None


def _package_of(name: str) -> str:
    return name if _module_file(name).name == "__init__.py" else name.rsplit(".", 1)[0]


def imported_modules(name: str) -> set[str]:
    """The package's modules that module ``name`` imports anywhere in its body."""
    out = set()
    for node in ast.walk(ast.parse(_module_file(name).read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith(PKG)}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = _package_of(name).split(".")
                base = base[: len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if not mod.startswith(PKG):
                continue
            out.add(mod)
            out |= {f"{mod}.{a.name}" for a in node.names if _module_file(f"{mod}.{a.name}")}
    parents = {".".join(m.split(".")[:i]) for m in out for i in range(1, m.count(".") + 1)}  # packages' __init__
    return {m for m in out | parents if _module_file(m)}


def reachable(start: str) -> dict[str, str]:
    """Every module reachable from ``start`` -> the module that first imported it."""
    seen, todo = {start: ""}, [start]
    while todo:
        m = todo.pop()
        for n in sorted(imported_modules(m)):
            if n not in seen:
                seen[n] = m
                todo.append(n)
    return seen


def _chain(seen: dict[str, str], m: str) -> str:
    path = [m]
    while seen[path[-1]]:
        path.append(seen[path[-1]])
    return " <- ".join(path)


def test_export_never_imports_the_reference():
    export_modules = [f"{PKG}.export.{p.stem}" for p in sorted((ROOT / "export").glob("*.py")) if p.stem != "__init__"]
    assert f"{PKG}.export.bundle" in export_modules
    for start in export_modules:
        seen = reachable(start)
        bad = sorted(m for m in seen if m == f"{PKG}.reference" or m.startswith(f"{PKG}.reference."))
        assert not bad, f"{start} reaches the reference: {_chain(seen, bad[-1])}"


def test_the_walk_sees_function_level_and_relative_imports():
    seen = reachable(f"{PKG}.export.bundle")
    assert f"{PKG}.models.load" in seen  # imported inside export_bundle()
    assert f"{PKG}.models.sdxl" in seen  # inside constants(), and from models.load's function
    assert f"{PKG}.models.checkpoints" in seen  # transitively, inside load_models()
    # and it does find the reference where it is imported: bench's baseline loads the reference pipeline
    assert f"{PKG}.reference.pipeline" in reachable(f"{PKG}.bench.harness")
