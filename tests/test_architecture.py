"""The layers of ARCHITECTURE.md, checked on the source: every import of every module of the
package is read with ``ast`` (those inside functions too) and held against the rules."""
import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "dnewton_core"
KERNEL = {"reference", "cg", "newton", "sgd", "history", "dense", "model", "partition",
          "splits", "costs", "ledger", "data", "environment", "outputs", "network",
          "projection", "memory", "netns", "polling", "ending", "kept", "interrupts",
          "factors"}
MPI_LAYER = {"comm", "distributed", "passes", "checkpoint"}
FIGURES = {"figures", "study.figures", "classroom.figures", "classroom.network_figures"}
THIRD_PARTY_OF_KERNEL = {"numpy"}
EXCEPTIONS = {
    ("data", "sklearn"),    # data.py reads scikit-learn's bundled digits
    ("data", "rdata"),      # data.py reads mlbench's R data files (the Statlog sets)
}


def modules():
    """{dotted name inside the package: path}."""
    out = {}
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE).with_suffix("")
        parts = [p for p in rel.parts if p != "__init__"]
        out[".".join(parts) or "__init__"] = path
    return out


MODULES = modules()


def imports(name):
    """(package-internal module names, top-level external names) that ``name`` imports."""
    path = MODULES[name]
    tree = ast.parse(path.read_text(), str(path))
    package = name.split(".")[:-1] if path.name != "__init__.py" else name.split(".")
    internal, external = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                top = alias.name.split(".")
                if top[0] == "dnewton_core":
                    internal.add(".".join(top[1:]))
                else:
                    external.add(top[0])
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                top = node.module.split(".")
                if top[0] == "dnewton_core":
                    base = top[1:]
                else:
                    external.add(top[0])
                    continue
            else:
                base = package[:len(package) - (node.level - 1)] + \
                    (node.module.split(".") if node.module else [])
            for alias in node.names:
                candidate = ".".join(base + [alias.name])
                internal.add(candidate if candidate in MODULES else ".".join(base))
    return {m for m in internal if m}, external


GRAPH = {name: imports(name) for name in MODULES}


def test_the_layers_cover_every_top_level_module():
    top = {m for m in MODULES if "." not in m} - {"__init__", "__main__"}
    assert top == KERNEL | MPI_LAYER | {"experiment", "figures", "cli", "options", "project",
                                        "study",
                                        "classroom"}, "a new module needs a layer"


@pytest.mark.parametrize("name", sorted(KERNEL))
def test_kernel_imports_only_stdlib_numpy_and_the_kernel(name):
    internal, external = GRAPH[name]
    assert internal <= KERNEL, f"{name} imports {internal - KERNEL}"
    bad = {e for e in external if e not in sys.stdlib_module_names
           and e not in THIRD_PARTY_OF_KERNEL and (name, e) not in EXCEPTIONS}
    assert not bad, f"{name} imports {bad}"


def test_only_comm_imports_mpi4py():
    users = {name for name, (_, external) in GRAPH.items() if "mpi4py" in external}
    assert users == {"comm"}


def test_only_the_figures_modules_import_matplotlib():
    users = {name for name, (_, external) in GRAPH.items() if "matplotlib" in external}
    assert users == FIGURES


def test_study_and_classroom_never_import_each_other():
    for name, (internal, _) in GRAPH.items():
        for a, b in (("study", "classroom"), ("classroom", "study")):
            if name.split(".")[0] == a:
                assert not any(m.split(".")[0] == b for m in internal), (name, internal)


def test_nothing_imports_the_command_line():
    users = {name for name, (internal, _) in GRAPH.items() if "cli" in internal}
    assert users <= {"__main__"}
    for front in ("options", "project"):      # the command line's own modules
        users = {name for name, (internal, _) in GRAPH.items() if front in internal}
        assert users <= {"cli"}, (front, users)


def test_no_import_cycle():
    def visit(name, path):
        for nxt in sorted(GRAPH[name][0]):
            if nxt not in GRAPH:
                continue
            assert nxt not in path, "import cycle: " + " -> ".join(path + [nxt])
            visit(nxt, path + [nxt])
    for name in GRAPH:
        visit(name, [name])


def test_the_checker_sees_imports(tmp_path):
    """The parser finds relative, absolute and function-level imports (else the rules above
    would pass on anything)."""
    assert GRAPH["cli"][0] >= {"comm", "experiment", "study.settings"}
    assert "experiment" in GRAPH["classroom.lessons"][0]          # imported inside a function
    assert "mpi4py" in GRAPH["comm"][1]


def test_no_module_over_about_400_lines():
    long = {name: n for name, path in MODULES.items()
            if (n := len(path.read_text().splitlines())) > 420 and name != "data"}
    assert not long, f"split these modules: {long}"


def test_no_function_over_about_50_lines():
    long = []
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > 55:
                    long.append(f"{name}.{node.name}: {n} lines")
    assert not long, f"split these functions: {long}"
