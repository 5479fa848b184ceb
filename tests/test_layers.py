"""The package's layers: no import cycles, every module importable on its own."""
import ast
import importlib
from pathlib import Path

import pytest

import diffbits

ROOT = Path(diffbits.__file__).parent


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = sorted(module_name(p) for p in ROOT.rglob("*.py"))
IMPORTABLE = [m for m in MODULES if m != "diffbits.__main__"]  # that one runs the command line


def imports_of(path: Path) -> set[str]:
    """diffbits modules ``path`` imports, at the top or inside functions (TYPE_CHECKING blocks aside)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING":
            node.body = []
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            for alias in node.names:
                full = f"{base}.{alias.name}"
                out.add(full if full in MODULES else base)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return {m for m in out if m in MODULES and m != name}


def test_no_import_cycles():
    graph = {module_name(p): imports_of(p) for p in ROOT.rglob("*.py")}
    done, stack = set(), []

    def visit(m):
        if m in stack:
            cycle = stack[stack.index(m):] + [m]
            pytest.fail("import cycle: " + " -> ".join(cycle))
        if m in done:
            return
        stack.append(m)
        for n in sorted(graph[m] - {p for p in graph if m.startswith(p + ".")}):  # a package's own face aside
            visit(n)
        stack.pop()
        done.add(m)

    for m in sorted(graph):
        visit(m)
    assert graph["diffbits.codec.files"] and "diffbits.train" not in graph["diffbits.codec.files"]


@pytest.mark.parametrize("name", IMPORTABLE)
def test_every_module_imports(name):
    assert importlib.import_module(name).__name__ == name
