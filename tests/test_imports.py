"""The study package has no import circles: every import, at the top of a module or inside a function, counted."""

import ast
from pathlib import Path

STUDY = Path(__file__).resolve().parent.parent / "study"


def imports_of(path):
    """The study modules that the module at ``path`` imports, wherever in it."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module == "study":
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("study."):
            found.add(node.module.split(".")[1])
    return found


def test_no_module_of_the_study_imports_itself_through_others():
    graph = {path.stem: imports_of(path) for path in STUDY.glob("*.py")}
    circles = []

    def walk(module, path):
        for imported in graph.get(module, ()):
            if imported in path:
                circles.append(" -> ".join([*path[path.index(imported):], imported]))
            else:
                walk(imported, [*path, imported])

    for module in graph:
        walk(module, [module])
    assert circles == []
