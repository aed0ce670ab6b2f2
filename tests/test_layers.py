"""The package's import graph: layers that point down, no cycle, nothing imports ``scripts``; and only
``bundle/workflows/configs.py``, in the top layer, names the ``configs/`` folder.

Read from the source with ``ast`` (imports inside functions included), so a lazy import cannot hide a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
BUNDLE = REPO_ROOT / "bundle"
#: What each part of the bundle may import of the others (besides itself and the leaf modules below).
ALLOWED = {
    "networks": set(),
    "training": {"networks"},
    "inference": {"networks", "data"},
    "data": set(),
    "transforms": {"data"},
    "benchmarks": {"training", "inference", "evaluation", "workflows", "data", "networks"},
}
#: Modules with no bundle import of their own, which every layer may use (bundle.cli: the scripts' fire runner).
LEAVES = {"bundle.cli", "bundle.data.constants", "bundle.data.errors", "bundle.losses"}


def module_name(path: Path) -> str:
    name = ".".join(path.relative_to(REPO_ROOT).with_suffix("").parts)
    return name.removesuffix(".__init__")


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The bundle modules ``path`` imports (``from package import submodule`` counts as the submodule)."""
    found: set[str] = set()
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(parent + ([node.module] if node.module else []))
            subs = [f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in modules]
            found.update(subs or [base])
    return found


def import_graph(root: Path = BUNDLE) -> dict[str, set[str]]:
    files = {module_name(p): p for p in root.rglob("*.py")}
    modules = set(files)
    graph = {}
    for name, path in files.items():
        targets = {
            t
            for t in imports_of(path, modules | {"scripts", "tests"})
            if t.split(".")[0] in ("bundle", "scripts", "tests")
        }
        graph[name] = {t for t in targets if t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), ignoring a package's edge to its own
    ``__init__`` re-exports."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if v.startswith(w + "."):  # a submodule importing its package's __init__: Python runs that first
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def part(module: str) -> str:
    return module.split(".")[1] if module.count(".") else "bundle"


def test_the_bundle_has_no_import_cycle() -> None:
    assert cycles(import_graph()) == []


def test_the_cycle_check_finds_a_cycle(tmp_path: Path) -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"bundle.x": {"bundle.x.y"}, "bundle.x.y": {"bundle.x"}}) == []


def test_nothing_in_the_bundle_imports_scripts_or_tests() -> None:
    offenders = {
        m: sorted(t for t in ts if t.split(".")[0] in ("scripts", "tests")) for m, ts in import_graph().items()
    }
    assert {m: ts for m, ts in offenders.items() if ts} == {}


def test_layers_point_down() -> None:
    """networks import nothing of the bundle but leaf modules; training only networks; data nothing above it."""
    wrong = {}
    for module, targets in import_graph().items():
        if part(module) not in ALLOWED:
            continue
        allowed = ALLOWED[part(module)] | {part(module)}
        bad = sorted(t for t in targets if t not in LEAVES and part(t) not in allowed)
        if bad:
            wrong[module] = bad
    assert wrong == {}


def test_leaf_modules_import_nothing_of_the_bundle() -> None:
    graph = import_graph()
    assert {leaf: sorted(graph[leaf]) for leaf in LEAVES if graph[leaf]} == {}


#: Parts of the bundle above ``bundle.workflows`` (runs built from its workflows, the Model Zoo packaging), which may
#: import it.
ABOVE_WORKFLOWS = {"experiments", "benchmarks", "packaging"}


def test_the_library_does_not_import_the_workflows() -> None:
    """``bundle.workflows`` composes the configs and calls the library; the library never calls back up."""
    graph = import_graph()
    workflows = {m for m in graph if part(m) == "workflows"}
    users = sorted(m for m, ts in graph.items() if ts & workflows and part(m) not in {*ABOVE_WORKFLOWS, "workflows"})
    assert users == []


def config_folder_mentions(path: Path) -> list[int]:
    """Lines where ``path``'s code (docstrings left out) names the ``configs`` folder: a string ``"configs"`` or one
    starting ``configs/``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    documented = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, documented) and node.body and isinstance(node.body[0], ast.Expr)
    }
    return sorted(
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
        and (node.value.strip("/") == "configs" or node.value.startswith("configs/"))
    )


def test_only_the_workflows_configs_module_names_the_configs_folder(tmp_path: Path) -> None:
    found = {module_name(p): config_folder_mentions(p) for p in BUNDLE.rglob("*.py")}
    home = "bundle.workflows.configs"
    assert {name: lines for name, lines in found.items() if lines} == {home: found[home]}
    assert found[home]
    sample = tmp_path / "sample.py"
    sample.write_text('"""Reads configs/train.json."""\nCONFIGS = ROOT / "configs"\nTRAIN = "configs/train.json"\n')
    assert config_folder_mentions(sample) == [2, 3]


def test_tests_reach_scripts_only_as_commands() -> None:
    """Tests import the library; a script is run as a subprocess (``scripts/x.py``), never imported, whether by
    ``import scripts.x`` or by putting ``scripts/`` on ``sys.path``."""
    offenders = []
    for path in sorted((REPO_ROOT / "tests").glob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            if any(name.split(".")[0] == "scripts" for name in names):
                offenders.append(f"{path.name}:{node.lineno}")
            is_insert = isinstance(node, ast.Call) and ast.unparse(node.func) == "sys.path.insert"
            if is_insert and "scripts" in ast.unparse(node):
                offenders.append(f"{path.name}:{node.lineno}")
    assert offenders == []
