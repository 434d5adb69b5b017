"""The import rules of the package, as one table: which part may import which, lazy imports included.

Every module's imports are read from its source (``ast``: module level and inside functions, relative and
absolute, ``from . import module``), so a lazy import is held to the same rules as a top-level one and no
export has to run. The rules:

- each import between two parts is allowed by :data:`LAYERS` (a part: a subpackage such as ``runtime``, or
  a top-level module such as ``manifest``); a part not in the table fails until it gets a row;
- the table has no circle, and no module imports itself back through others (within a part too);
- only the parts in :data:`TORCH_STACK_PARTS` import torch, diffusers, transformers, onnx and the like;
  the runtime reaches none of them, nor export or the reference; export never reaches the reference, and
  the builder (engines) never the runtime: what both need sits below them (``core``, ``gpu``, ``onnxrt``).

ARCHITECTURE.md shows the same table (checked below). ``scripts/lint.sh`` runs this file, so every landing does.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

import eeg2img_deploy

PKG = "eeg2img_deploy"
ROOT = Path(eeg2img_deploy.__file__).parent
REPO = ROOT.parent

# part -> the parts it may import (directly; what they import in turn is their own row). Bottom first.
LAYERS: dict[str, set[str]] = {
    "errors": set(),
    "names": set(),
    "fileio": set(),
    "quiet": set(),
    "terminal": set(),
    "checks": {"errors"},
    "weights": {"errors"},
    "gpu": {"errors"},
    "eeg": {"errors"},
    "manifest": {"eeg", "errors", "fileio", "names"},
    "integrity": {"errors", "fileio", "manifest"},
    "cards": {"fileio", "integrity", "manifest"},
    "core": {"checks", "errors", "manifest", "names"},
    "onnxrt": {"errors", "manifest"},
    "models": {"checks", "eeg", "errors", "fileio", "names", "quiet", "weights"},
    "tiny_semantic": {"models"},
    "tiny_brainflora": {"models"},
    "reference": {"checks", "core", "eeg", "errors", "manifest", "models", "weights"},
    "export": {"cards", "core", "eeg", "errors", "fileio", "integrity", "manifest", "models", "quiet", "weights"},
    "runtime": {"checks", "core", "eeg", "errors", "fileio", "gpu", "integrity", "manifest", "names", "onnxrt"},
    "engines": {"cards", "core", "errors", "fileio", "gpu", "integrity", "manifest", "onnxrt"},
    "cli_options": {"core", "eeg", "errors", "fileio", "manifest", "names", "runtime", "terminal", "weights"},
    "cli_semantic": {"cli_options", "fileio"},
    "bench": {"core", "errors", "fileio", "manifest", "models", "reference", "runtime", "terminal", "weights"},
    "stream": {"cli_options", "core", "eeg", "errors", "fileio"},
    "serve": {"cli_options", "core", "eeg", "errors", "fileio", "integrity", "manifest", "runtime"},
    "eval": {"bench", "cli_options", "core", "errors", "fileio", "quiet", "weights"},
    "tiny_eval": {"eval", "quiet"},
    "tiny": {"eeg", "errors", "models", "quiet", "tiny_brainflora", "tiny_eval", "tiny_semantic", "weights"},
    "cli": {"bench", "cli_options", "cli_semantic", "eeg", "engines", "errors", "eval", "export", "fileio", "manifest",
            "models", "names", "reference", "runtime", "serve", "stream", "terminal", "tiny"},
}
# The parts that may import the torch stack and the ONNX writers (lazily or not); bench only for its baseline.
TORCH_STACK = {"torch", "torchvision", "diffusers", "transformers", "accelerate", "onnx", "onnxscript"}
# The parts that may also read ONNX graphs with the onnx package (lazily; no torch): engines, for TensorRT's parser
# rules (engines/trt_rules.py: build-engines --check and the check before a TensorRT build).
ONNX_READERS = {"engines"}
TORCH_STACK_PARTS = {"quiet", "models", "tiny_semantic", "tiny_brainflora", "tiny", "reference", "export", "bench", "eval",
                     "tiny_eval"}


def module_files() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its ``__init__.py``)."""
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


MODULES = module_files()


def imports_of(name: str, source: str) -> tuple[set[str], set[str]]:
    """(the package's modules, the top-level names of other distributions) that ``source``, the text of
    module ``name``, imports anywhere in its body."""
    package = name if MODULES.get(name, Path()).name == "__init__.py" else name.rpartition(".")[0]
    own, other = set(), set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            targets = [module, *(f"{module}.{a.name}" for a in node.names)]  # `from . import x`: x may be a module
        else:
            continue
        for target in targets:
            if target == PKG or target.startswith(PKG + "."):
                own |= {target} if target in MODULES else set()
            elif not (isinstance(node, ast.ImportFrom) and node.level):
                other.add(target.split(".")[0])
    own = {m for t in own for m in _with_parents(t, name)} - {PKG, name}
    return own, other


def _with_parents(module: str, importer: str) -> list[str]:
    """``a.b.c`` -> ``a.b``, ``a.b.c``: importing a module runs the ``__init__`` of its packages, those that
    ``importer`` is not inside (its own package is already being imported)."""
    bits = module.split(".")
    parents = [".".join(bits[:i]) for i in range(2, len(bits))]
    return [p for p in parents if not importer.startswith(p + ".")] + [module]


def part_of(module: str) -> str:
    return module.split(".")[1]


@functools.cache
def _read_graph() -> dict[str, tuple[set[str], set[str]]]:
    return {name: imports_of(name, path.read_text(encoding="utf-8")) for name, path in MODULES.items()}


def import_graph() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """module -> the package's modules it imports, module -> the other distributions it imports (fresh copies)."""
    graph = _read_graph()
    return {m: set(o) for m, (o, _) in graph.items()}, {m: set(x) for m, (_, x) in graph.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One circle of ``graph`` (node -> nodes), as a path that ends where it starts, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt):], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def reach(part: str) -> set[str]:
    """The parts ``part`` may reach through the table."""
    seen, todo = set(), [part]
    while todo:
        for nxt in LAYERS[todo.pop()] - seen:
            seen.add(nxt)
            todo.append(nxt)
    return seen


def violations(own: dict[str, set[str]], other: dict[str, set[str]]) -> list[str]:
    """Every way the import graph (module -> package modules, module -> other distributions) breaks the rules."""
    out = []
    parts = {part_of(m) for m in own if m != PKG}
    out += [f"{PKG}/{p} is in no row of the layer table (tests/test_layers.py LAYERS, ARCHITECTURE.md)"
            for p in sorted(parts - set(LAYERS))]
    for module, targets in sorted(own.items()):
        if module == PKG:
            out += [f"{PKG}/__init__.py imports {t}: it holds the version only" for t in sorted(targets)]
            continue
        part = part_of(module)
        for target in sorted(targets):
            if part_of(target) != part and part_of(target) not in LAYERS.get(part, set()):
                out.append(f"{module} imports {target}: {part} may not import {part_of(target)}")
        heavy = sorted(other[module] & TORCH_STACK - ({"onnx"} if part in ONNX_READERS else set()))
        if heavy and part not in TORCH_STACK_PARTS:
            out.append(f"{module} imports {', '.join(heavy)}: {part} must work without the torch stack")
    if circle := _cycle(own):
        out.append(f"import circle: {' -> '.join(circle)}")
    return out


def test_the_package_keeps_the_layer_rules():
    own, other = import_graph()
    assert violations(own, other) == []


def test_the_table_itself():
    assert _cycle(LAYERS) is None, "the table has a circle"
    assert all(p in LAYERS for row in LAYERS.values() for p in row), "a row names a part that has no row"
    for part in ("runtime", "engines", "serve", "stream", "cli_options", "core", "manifest"):
        assert not reach(part) & (TORCH_STACK_PARTS | {"export", "reference"}) and part not in TORCH_STACK_PARTS, part
    assert "reference" not in reach("export") and "runtime" not in reach("engines")


def test_the_walk_sees_every_kind_of_import():
    own, other = import_graph()
    assert f"{PKG}.eeg.mne_preprocess" in own[f"{PKG}.eeg.readers"]  # absolute, `from pkg.eeg import module`
    assert f"{PKG}.models.load" in own[f"{PKG}.export.bundle"]  # relative, inside a function
    assert f"{PKG}.engines.ort_optimize" in own[f"{PKG}.engines.build"]  # `from . import module`
    assert f"{PKG}.reference.pipeline" in own[f"{PKG}.bench.harness"]  # the baseline, inside a function
    assert f"{PKG}.bench" in own[f"{PKG}.cli"] and f"{PKG}.bench" not in own[f"{PKG}.bench.harness"]  # __init__
    assert "torch" in other[f"{PKG}.bench.harness"] and "torch" not in other[f"{PKG}.runtime.pipeline"]


@pytest.mark.parametrize("module, source, expected", [
    (f"{PKG}.runtime.pipeline", "def f():\n    from ..export.bundle import export_bundle\n",
     "runtime may not import export"),
    (f"{PKG}.runtime.sessions", "def f():\n    import torch\n", "runtime must work without the torch stack"),
    (f"{PKG}.export.vae", "from eeg2img_deploy.reference.pipeline import ReferencePipeline\n",
     "export may not import reference"),
    (f"{PKG}.eeg.trials", "from . import readers\n", "import circle: "),
    (f"{PKG}.core.noise", "from .options import RunOptions\nfrom . import artifacts\n", None),
])
def test_a_broken_rule_is_reported(module, source, expected):
    """Each rule fails when one import breaks it (the module's own imports kept, one more added)."""
    own, other = import_graph()
    extra_own, extra_other = imports_of(module, source)
    own[module] = own[module] | extra_own
    other[module] = other[module] | extra_other
    found = violations(own, other)
    if expected is None:
        assert found == []
    else:
        assert found and all(expected in f for f in found), found


def test_architecture_shows_the_same_table():
    text = (REPO / "ARCHITECTURE.md").read_text(encoding="utf-8")
    section = text.split("## Import rules", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| `") and len(cells) == 3:
            part = cells[0].strip("`").rstrip("/").removesuffix(".py")
            rows[part] = ({p.strip("` ") for p in cells[1].split(",") if p.strip("` -")}, cells[2] == "yes")
    assert rows == {p: (LAYERS[p], p in TORCH_STACK_PARTS) for p in LAYERS}, (
        "ARCHITECTURE.md's import-rules table differs from tests/test_layers.py:\n" + render_table())


def render_table() -> str:
    parts = {p for p in LAYERS if (ROOT / p).is_dir()}
    name = lambda p: f"`{p}/`" if p in parts else f"`{p}.py`"  # noqa: E731
    lines = ["| part | may import | torch stack |", "|---|---|---|"]
    for p, row in LAYERS.items():
        lines.append(f"| {name(p)} | {', '.join(f'`{q}`' for q in sorted(row)) or '-'} | "
                     f"{'yes' if p in TORCH_STACK_PARTS else 'no'} |")
    return "\n".join(lines)


if __name__ == "__main__":  # print the table for ARCHITECTURE.md
    print(render_table())
