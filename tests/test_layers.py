"""camlab's packages form layers: each imports only from layers below it (no upward import, no
loop). Read from the source with ``ast``, so a lazy import inside a function counts too."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "camlab"
# Lowest first. A module may import its own package and anything in a lower layer.
LAYERS = [
    {"errors", "imagenet"},
    {"evalmode", "protocol", "checkpoint_io"},
    {"metrics", "cam", "models", "data"},
    {"methods"},
    {"classifier"},
    {"callbacks", "evaluation", "instantiate", "launch", "rundir"},
    {"train", "evaluate", "summarize"},
    {"search"},
    {"cli"},
]
RANK = {name: rank for rank, layer in enumerate(LAYERS) for name in layer}


def camlab_imports(path: Path) -> set[str]:
    """Top-level camlab modules that ``path`` imports (``camlab.x.y`` -> ``x``)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "camlab" and len(parts) > 1:
                found.add(parts[1])
    return found


def owner(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def test_every_module_has_a_layer():
    modules = {owner(p) for p in PACKAGE.rglob("*.py")} - {"__init__"}
    assert modules == set(RANK), f"unplaced: {modules - set(RANK)}, gone: {set(RANK) - modules}"


def test_no_module_imports_upward_or_sideways():
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        me = owner(path)
        if me == "__init__":
            continue
        for dep in camlab_imports(path) - {me}:
            if RANK[dep] >= RANK[me]:
                wrong.append(f"{path.relative_to(PACKAGE)} ({me}, layer {RANK[me]}) imports "
                             f"camlab.{dep} (layer {RANK[dep]})")  # fmt: skip
    assert not wrong, "\n".join(wrong)


def test_the_check_sees_an_upward_import(tmp_path):
    # The parser finds imports inside functions as well (a lazy import is still a dependency).
    source = tmp_path / "x.py"
    source.write_text("def f():\n    from camlab.callbacks.cam_panel import CAMPanel\n")
    assert camlab_imports(source) == {"callbacks"}
