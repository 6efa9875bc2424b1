"""The floor plan of the package: one folder per stage, no import circles, nothing runs back up, errors at the bottom."""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "saeseeds"

LAYERS = ["errors", "common", "activations", "sae", "matching", "stats", "synthetic", "autointerp", "functional",
          "figures", "browser", "config", "plan", "cli"]
"""Stages from the bottom up: a module may import from its own stage and the ones below, never above."""


def modules() -> dict[str, Path]:
    out = {}
    for path in SRC.rglob("*.py"):
        name = ".".join(("saeseeds",) + path.relative_to(SRC).with_suffix("").parts)
        out[name.removesuffix(".__init__")] = path
    return out


def project_imports(path: Path, known: dict[str, Path], top_level_only: bool) -> set[str]:
    """Returns the saeseeds modules `path` imports (function-level imports too unless `top_level_only`)."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else ast.walk(tree)
    found = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("saeseeds"):
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                found.add(full if full in known else node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("saeseeds")}
    return {m for m in found if m in known}


def stage(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_every_module_lives_in_a_stage_and_imports_only_downward():
    known = modules()
    upward = []
    for name, path in known.items():
        if name == "saeseeds":  # the public API imports from every stage, lazily
            continue
        assert stage(name) in LAYERS, f"{name}: not in a stage package ({LAYERS})"
        for dep in project_imports(path, known, top_level_only=False):
            if dep != "saeseeds" and LAYERS.index(stage(dep)) > LAYERS.index(stage(name)):
                upward.append(f"{name} -> {dep}")
    assert not upward, f"imports that run back up: {upward}"


def test_no_import_circles_even_through_function_level_imports():
    known = modules()
    graph = {m: project_imports(p, known, top_level_only=False) - {m, "saeseeds"} for m, p in known.items()}
    state: dict[str, int] = {}

    def visit(node, trail):
        state[node] = 1
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                pytest.fail(f"import circle: {' -> '.join(trail[trail.index(nxt):] + [nxt])}")
            if nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = 2

    for node in graph:
        if node not in state:
            visit(node, [node])


def test_errors_import_nothing_of_the_project_and_no_private_name_crosses_a_module():
    known = modules()
    assert project_imports(SRC / "errors.py", known, top_level_only=False) == set()
    crossing = []
    for name, path in known.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("saeseeds"):
                crossing += [f"{name} imports {node.module}.{a.name}" for a in node.names
                             if a.name.startswith("_") and not a.name.startswith("__")]
    assert not crossing, crossing
