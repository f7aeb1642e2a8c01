"""The package's shape: no import cycle anywhere in it (counting imports
made only for type checking), and the configs' static text in templates."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("minihpc", "nfs", "scratch")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports() -> dict[str, set[str]]:
    """Each of our modules -> our modules it imports (`from a import b` counts a.b when b is a module)."""
    files = {module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py") if "_tree" not in p.parts}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name in files}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                deps |= {node.module} if node.module in files else set()
                deps |= {f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in files}
        graph[name] = deps - {name}
    return graph


def test_no_import_cycle_in_the_package() -> None:
    graph = imports()
    assert "minihpc.configs" in graph and "minihpc.topology" in graph["minihpc.configs"]
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        if name in path:
            raise AssertionError("import cycle: " + " -> ".join([*path[path.index(name):], name]))
        if name in done:
            return
        for dep in sorted(graph.get(name, ())):
            visit(dep, [*path, name])
        done.add(name)

    for name in sorted(graph):
        visit(name, [])


def test_the_topology_is_only_the_model() -> None:
    graph = imports()
    assert graph["minihpc.topology"] <= {"minihpc.facts", "scratch.policy", "scratch"}, graph["minihpc.topology"]
    assert "slurm.conf" not in (ROOT / "minihpc/topology.py").read_text().replace("minihpc.configs", "")


def test_every_test_file_has_a_name_of_its_own() -> None:
    """make test collects tests/cluster, tests/unit and tests/integration in
    one pytest session (rootdir-relative imports, no packages): two files of
    one name there fail its collection ("import file mismatch")."""
    tests = Path(__file__).resolve().parents[1]
    seen: dict[str, Path] = {}
    for f in sorted(tests.rglob("test_*.py")):
        assert f.name not in seen, f"{f.relative_to(tests)} and {seen[f.name].relative_to(tests)}: rename one"
        seen[f.name] = f
