"""The README's module map against the tree, and the tree's own rules: every module imports,
no import cycle, no frame header parsed outside the codec, no module too long."""

import ast
import importlib
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "chatroom"
MAX_LINES = 400


def modules_in_tree() -> set[str]:
    return {
        str(path.relative_to(ROOT)) for path in PACKAGE.rglob("*.py") if path.name not in ("__init__.py", "__main__.py")
    }


def modules_in_readme() -> set[str]:
    """The modules the README's layout names: a folder at the start of a line (indented by its
    depth), then its modules' file names."""
    text = (ROOT / "README.md").read_text()
    block = text[text.index("## Layout") :]
    block = block[block.index("```\n") + 4 :]
    block = block[: block.index("```")]
    folders: list[str] = []
    named = set()
    for line in block.splitlines():
        match = re.match(r"( *)([\w]+)/ ", line)
        if match:
            depth = len(match.group(1)) // 2
            folders = folders[:depth] + [match.group(2)]
        for name in re.findall(r"\b(\w+\.py)\b", line.split("  ")[0] if not line.strip() else line):
            named.add("/".join([*folders, name]))
    return named


def test_the_readme_maps_every_module_and_only_modules_that_exist():
    in_tree, in_readme = modules_in_tree(), modules_in_readme()
    assert in_readme - in_tree == set(), "the README names modules that do not exist"
    assert in_tree - in_readme == set(), "modules missing from the README's map"


def test_every_module_imports():
    for module in sorted(modules_in_tree()):
        importlib.import_module(module.removesuffix(".py").replace("/", "."))


def imports_of(path: Path) -> set[str]:
    """The chatroom modules path imports at its top level (what a cycle is made of)."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    found = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            if base.startswith("chatroom"):
                found.add(base)
                found.update(f"{base}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("chatroom"))
    return found


def test_no_import_cycle_inside_chatroom():
    graph = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        graph[name] = imports_of(path)
    modules = set(graph)
    edges = {
        name: {target for target in targets if target in modules and target != name} for name, targets in graph.items()
    }
    # A package imports its own modules to export them; that is not a cycle of ideas.
    edges = {name: {t for t in targets if not t.startswith(name + ".")} for name, targets in edges.items()}
    visiting, done = set(), set()

    def visit(name, trail):
        if name in visiting:
            raise AssertionError("import cycle: " + " -> ".join([*trail, name]))
        if name in done:
            return
        visiting.add(name)
        for target in edges[name]:
            visit(target, [*trail, name])
        visiting.discard(name)
        done.add(name)

    for name in sorted(edges):
        visit(name, [])


def test_frame_headers_are_parsed_by_the_codec_only():
    for path in PACKAGE.rglob("*.py"):
        if path.name in ("codec.py", "protocol.py"):
            continue
        text = path.read_text()
        assert "HEADER_SIZE" not in text and '"!BI"' not in text, path


def test_no_module_is_too_long():
    for path in PACKAGE.rglob("*.py"):
        assert len(path.read_text().splitlines()) <= MAX_LINES, path
