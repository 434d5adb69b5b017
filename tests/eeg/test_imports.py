"""The eeg package's modules import each other one way (the review found a cycle: readers <-> mne_preprocess)."""

import ast
from pathlib import Path

import eeg2img_deploy.eeg as eeg_pkg

PKG = Path(eeg_pkg.__file__).parent


def _imports(path: Path) -> set[str]:
    """eeg modules imported anywhere in ``path``, at module level or inside functions."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            mod = node.module
            if mod == "eeg2img_deploy.eeg" or (node.level == 1 and mod is None):
                out |= {a.name for a in node.names}
            elif mod.startswith("eeg2img_deploy.eeg."):
                out.add(mod.rsplit(".", 1)[1])
            elif node.level == 1:
                out.add(mod)
        elif isinstance(node, ast.Import):
            out |= {a.name.rsplit(".", 1)[1] for a in node.names if a.name.startswith("eeg2img_deploy.eeg.")}
    return out


def test_eeg_modules_have_no_import_cycle():
    graph = {p.stem: _imports(p) & {q.stem for q in PKG.glob("*.py")} for p in PKG.glob("*.py")}
    state: dict[str, int] = {}

    def visit(m, path):
        if state.get(m) == 1:
            raise AssertionError(f"import cycle: {' -> '.join([*path, m])}")
        if state.get(m) == 2:
            return
        state[m] = 1
        for n in sorted(graph.get(m, ())):
            visit(n, [*path, m])
        state[m] = 2

    for m in sorted(graph):
        visit(m, [])
    assert "mne_preprocess" in graph["readers"]  # the walk sees function-level imports too
