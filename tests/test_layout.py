"""The house rules, checked: the layers show as folders, and nothing crosses a wall it should not."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import mockstream
from mockstream.faults import KINDS

PACKAGE = Path(mockstream.__file__).parent
LAYERS = ("plan", "dialects", "faults", "deliver", "server", "record", "process", "testing")


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _is_type_checking(node: ast.If) -> bool:
    return isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"


def module_imports(name: str, path: Path, submodules: frozenset[str] = frozenset()) -> set[str]:
    """What the module imports when it is imported (not under TYPE_CHECKING, not inside functions)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.If) and not _is_type_checking(node):
                visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)
            elif isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")
                    anchor = anchor[: len(anchor) - node.level + 1]
                    base = ".".join([*anchor, *([base] if base else [])])
                names = {f"{base}.{alias.name}" for alias in node.names}
                found.update(names)
                if not names <= submodules:  # `from . import chat` imports a submodule, not a cycle to its package
                    found.add(base)

    visit(tree.body)
    return found


def test_the_layers_are_folders():
    top = sorted(p.name for p in PACKAGE.iterdir() if p.is_dir() and not p.name.startswith("__"))
    assert top == sorted(LAYERS)
    loose = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert loose == ["__init__.py", "__main__.py", "errors.py"]


def test_no_import_circle():
    known = modules()
    names = frozenset(known)
    graph = {
        name: {m for m in module_imports(name, path, names) if m in known and m != name} for name, path in known.items()
    }
    done: set[str] = set()

    def walk(node: str, trail: list[str]) -> list[str]:
        if node in trail:
            return [*trail[trail.index(node) :], node]
        if node in done:
            return []
        for nxt in sorted(graph[node]):
            cycle = walk(nxt, [*trail, node])
            if cycle:
                return cycle
        done.add(node)
        return []

    for name in sorted(graph):
        cycle = walk(name, [])
        assert not cycle, " -> ".join(cycle)


def test_no_module_outside_faults_names_a_fault_class():
    names = {cls.__name__ for cls in KINDS.values()}
    pattern = re.compile(r"\b(" + "|".join(sorted(names)) + r")\b")
    offenders = [
        f"{path.relative_to(PACKAGE)}:{number}"
        for name, path in modules().items()
        if not name.startswith("mockstream.faults")
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if pattern.search(line)
    ]
    assert offenders == []


def test_only_sse_py_writes_sse_framing():
    pattern = re.compile(r"""b?["'](data|event|id|retry): """)
    offenders = [
        f"{path.relative_to(PACKAGE)}:{number}"
        for name, path in modules().items()
        if name != "mockstream.deliver.sse"
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if pattern.search(line)
    ]
    assert offenders == []


def test_the_server_room_is_thin():
    lines = len((PACKAGE / "server" / "app.py").read_text(encoding="utf-8").splitlines())
    assert lines < 250


def test_no_module_reaches_into_another_modules_private_names():
    known = modules()
    offenders = []
    for name, path in known.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("mockstream")):
                private = [alias.name for alias in node.names if alias.name.startswith("_")]
                offenders += [f"{name}: {alias}" for alias in private if not alias.endswith("__")]
    assert offenders == []


def test_delivery_knows_no_fault_and_dialects_know_no_server():
    known = modules()
    for name, path in known.items():
        imported = module_imports(name, path)
        if name.startswith("mockstream.deliver"):
            assert not [m for m in imported if m.startswith(("mockstream.faults", "mockstream.dialects"))], name
        if name.startswith(("mockstream.dialects", "mockstream.plan", "mockstream.faults")):
            outer = ("mockstream.server", "mockstream.process", "aiohttp")
            assert not [m for m in imported if m.startswith(outer)], name


def test_the_line_endings_the_schema_takes_are_the_ones_sse_frames():
    from mockstream.deliver import sse
    from mockstream.plan import schema

    assert tuple(sse.LINE_ENDINGS) == schema.LINE_ENDINGS


def test_the_server_reaches_the_recorder_only_through_its_state():
    """The server hands a miss to `State.proxy` (a Protocol): it never imports the recorder, so a server that
    records nothing loads none of it."""
    offenders = [
        name
        for name, path in modules().items()
        if name.startswith(("mockstream.server", "mockstream.plan", "mockstream.dialects", "mockstream.deliver"))
        and any(m.startswith("mockstream.record") for m in module_imports(name, path))
    ]
    assert offenders == []
