"""The package's layers point one way, and no module imports itself back through others.

From the bottom: the wire core and the Corefile syntax (``dns``, ``corefile``, ``errors``); the
shared helpers (``pkg``); transports, TLS, cluster sources and address plans (``upstream``,
``tlsutil``, ``kube``, ``netplan``); the plugin contract (``plugin``); the plugins; the runtime
(``server``) and the commands beside it (``deploy``, ``webhook``, ``proxy``); the command
line. A module may import its own layer and the ones below, and a plugin no other plugin. Read
from the source with ``ast``, so that an import inside a function counts as much as one at the
top.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "interkube"

#: Layer of each top-level part (modules of the root package: ``interkube.errors`` and so on).
LAYERS: dict[str, int] = {
    "errors": 0, "__init__": 0, "__main__": 7, "_udpfast": 0,
    "dns": 0, "corefile": 0,
    "pkg": 1,
    "tlsutil": 2, "upstream": 2, "kube": 2, "netplan": 2,
    "plugin": 3,
    "plugins": 4,
    "server": 5,
    # commands beside the server: manifests, the admission webhook, the Service proxy, the
    # ExternalName controller, the network-namespace lab and the doctor that checks a setup
    "deploy": 5, "webhook": 5, "proxy": 5, "externalnames": 5, "lab": 5, "doctor": 5,
    "cli": 6,
}


def modules() -> Iterator[tuple[str, Path]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(SRC).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        yield ".".join(parts), path


def imports(path: Path, *, runtime_only: bool = False, root: Path = SRC) -> Iterator[tuple[int, str]]:
    """(line, module) of every interkube import in the file. ``runtime_only`` leaves out those
    under ``if TYPE_CHECKING:`` and inside functions (they cannot form an import cycle)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = ".".join(path.relative_to(root).with_suffix("").parts[:-1])

    def visit(node: ast.AST, top: bool) -> Iterator[tuple[int, str]]:
        for child in ast.iter_child_nodes(node):
            if runtime_only and isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if runtime_only and isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            if isinstance(child, ast.Import):
                for alias in child.names:
                    if alias.name.startswith("interkube"):
                        yield child.lineno, alias.name
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    base = ".".join([*package.split(".")[:len(package.split(".")) - child.level + 1], base])
                if base.startswith("interkube"):
                    for alias in child.names:
                        yield child.lineno, f"{base}.{alias.name}" if _is_module(f"{base}.{alias.name}") else base
            yield from visit(child, top)

    yield from visit(tree, True)


def _is_module(name: str) -> bool:
    rel = Path(*name.split("."))
    return (SRC / rel).with_suffix(".py").exists() or (SRC / rel / "__init__.py").exists()


def part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_every_part_has_a_layer() -> None:
    found = {part(name) for name, _ in modules()}
    assert found <= set(LAYERS), f"give these a layer: {sorted(found - set(LAYERS))}"


def violations(module: str, path: Path, root: Path = SRC) -> list[str]:
    mine = part(module)
    wrong = []
    for line, target in imports(path, root=root):
        theirs = part(target)
        if theirs == "testing" or target.startswith("testkit"):
            wrong.append(f"{path.name}:{line} imports test support {target}")
        elif LAYERS.get(theirs, 0) > LAYERS[mine]:
            wrong.append(f"{path.name}:{line} imports {target} (layer {theirs} is above {mine})")
        elif mine == "plugins" and theirs == "plugins":
            own = module.split(".")[2]
            other = target.split(".")[2] if len(target.split(".")) > 2 else ""
            if other and other != own:
                wrong.append(f"{path.name}:{line}: plugin {own} imports plugin {other}'s {target}")
    return wrong


@pytest.mark.parametrize(("module", "path"), list(modules()), ids=lambda v: v if isinstance(v, str) else "")
def test_imports_point_down(module: str, path: Path) -> None:
    wrong = violations(module, path)
    assert not wrong, "\n".join(wrong)


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def walk(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in graph:
                continue
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt):], nxt])
            elif nxt not in state:
                walk(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            walk(node)
    return cycles


def test_no_import_cycles() -> None:
    graph = {name: {target for _, target in imports(path, runtime_only=True) if target != name}
             for name, path in modules()}
    cycles = find_cycles(graph)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_a_cycle_is_found() -> None:
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]


def test_the_reader_finds_imports_inside_functions_and_between_plugins(tmp_path: Path) -> None:
    kube = tmp_path / "interkube" / "kube" / "probe.py"
    kube.parent.mkdir(parents=True)
    kube.write_text("def f():\n    from interkube.plugins.forward import parse\n")
    assert violations("interkube.kube.probe", kube, tmp_path) == [
        "probe.py:2 imports interkube.plugins.forward.parse (layer plugins is above kube)"]
    plugin = tmp_path / "interkube" / "plugins" / "merge" / "probe.py"
    plugin.parent.mkdir(parents=True)
    plugin.write_text("from interkube.plugins.forward.parse import ForwardConfig\n"
                      "from interkube.plugins.merge.parse import MergeConfig\n")
    assert violations("interkube.plugins.merge.probe", plugin, tmp_path) == [
        "probe.py:1: plugin merge imports plugin forward's interkube.plugins.forward.parse"]
