"""The wheel installs what it imports, and ships the package and nothing else.

The wheel is built from a copy of the source tree with pip (build isolation: setuptools comes
from the package registry or pip's cache, as in ``pip install .``). Then:

- every import in every shipped module, read with ``ast`` (an import inside a function counts:
  it runs the day that code path does), must come from a requirement the wheel declares;
  an import guarded by ``except ImportError`` may come from an optional extra instead;
- the wheel is installed with pip into a fresh venv that holds nothing else, its declared
  requirements (recursively, with the versions they ask for) are added to that venv from this
  environment's installed distributions, and there every module of the *installed* package is
  imported, every import target any module names is resolved, and the ``interkube`` script runs.

Taking the requirements from this environment rather than from the registry keeps the test
offline once the build backend is cached and well under a minute; what it proves is the same:
the installed package needs nothing its metadata does not ask for.
"""

from __future__ import annotations

import ast
import email.parser
import importlib.machinery
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

pytestmark = pytest.mark.wheel

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "src" / "interkube"
#: What is outside the wheel but still ours: what tests/, testkit/ and bench/ import by name.
LOCAL_TREES = ("tests", "testkit", "bench")
#: Catching one of these around an import makes the import optional.
IMPORT_ERRORS = {"ImportError", "ModuleNotFoundError", "Exception", "BaseException"}


@dataclass(frozen=True)
class Import:
    module: str              # absolute dotted name
    names: tuple[str, ...]   # what ``from module import ...`` takes
    where: str               # file:line
    optional: bool           # inside ``try: ... except ImportError``
    typing_only: bool        # under ``if TYPE_CHECKING:``, never run


@dataclass(frozen=True)
class Wheel:
    path: Path
    entries: tuple[str, ...]
    requires: tuple[Requirement, ...]
    extras: tuple[str, ...]

    def base(self) -> list[Requirement]:
        return [r for r in self.requires if r.marker is None or r.marker.evaluate({"extra": ""})]

    def extra(self, name: str) -> list[Requirement]:
        return [r for r in self.requires
                if r.marker is not None and r.marker.evaluate({"extra": name})
                and not r.marker.evaluate({"extra": ""})]

    def modules(self) -> dict[str, str]:
        """Dotted module name -> source text, for every .py file shipped."""
        out: dict[str, str] = {}
        with zipfile.ZipFile(self.path) as zf:
            for entry in self.entries:
                if entry.endswith(".py"):
                    out[module_name(entry)] = zf.read(entry).decode("utf-8")
        return out


def module_name(entry: str) -> str:
    parts = entry.removesuffix(".py").split("/")
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def canonical(requirements: Iterable[Requirement]) -> set[str]:
    return {canonicalize_name(r.name) for r in requirements}


def run(args: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None,
        stdin: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, input=stdin, capture_output=True, text=True, env=env, cwd=cwd,
                          timeout=timeout)


def clean_env() -> dict[str, str]:
    """This environment minus whatever would let the venv see this checkout or this site."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONNOUSERSITE"] = "1"
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # the linked requirements are this environment's files
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


# --- reading imports ----------------------------------------------------------------------------

def _catches_import_error(handler: ast.ExceptHandler) -> bool:
    if handler.type is None:
        return True
    caught = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
    return any(isinstance(c, ast.Name) and c.id in IMPORT_ERRORS for c in caught)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports(source: str, filename: str, package: str) -> Iterator[Import]:
    """Every absolute import in ``source`` (relative ones resolved against ``package``)."""

    def visit(node: ast.AST, optional: bool, typing_only: bool) -> Iterator[Import]:
        if isinstance(node, ast.Try | ast.TryStar):
            guarded = optional or any(_catches_import_error(h) for h in node.handlers)
            for stmt in node.body:
                yield from visit(stmt, guarded, typing_only)
            for stmt in [*node.handlers, *node.orelse, *node.finalbody]:
                yield from visit(stmt, optional, typing_only)
            return
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for stmt in node.body:
                yield from visit(stmt, optional, True)
            for stmt in node.orelse:
                yield from visit(stmt, optional, typing_only)
            return
        where = f"{filename}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(alias.name, (), where, optional, typing_only)
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, module] if module else base)
            yield Import(module, tuple(a.name for a in node.names), where, optional, typing_only)
        for child in ast.iter_child_nodes(node):
            yield from visit(child, optional, typing_only)

    yield from visit(ast.parse(source, filename), False, False)


def third_party(imp: Import, local: set[str]) -> bool:
    top = imp.module.split(".")[0]
    return not imp.typing_only and top not in sys.stdlib_module_names and top not in local


def module_owners() -> dict[str, set[str]]:
    """Dotted module name -> the installed distributions that ship it (from their RECORDs), so
    that ``lightkube.resources`` is lightkube-models' and ``lightkube.config`` lightkube's."""
    suffixes = sorted([".py", *importlib.machinery.EXTENSION_SUFFIXES], key=len, reverse=True)
    owners: dict[str, set[str]] = {}
    for dist in importlib.metadata.distributions():
        name = canonicalize_name(dist.metadata["Name"])
        for file in dist.files or ():
            parts = file.parts
            suffix = next((s for s in suffixes if parts[-1].endswith(s)), None)
            if parts[0] == ".." or suffix is None:
                continue
            stem = parts[-1][: -len(suffix)]
            dotted = [*parts[:-1], *([] if stem == "__init__" else [stem])]
            if dotted and all(p.isidentifier() for p in dotted):
                owners.setdefault(".".join(dotted), set()).add(name)
    return owners


def owner(module: str, owners: dict[str, set[str]]) -> set[str]:
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        found = owners.get(".".join(parts[:n]))
        if found:
            return found
    return set()


# --- the wheel ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Wheel:
    # A copy, because pip builds in place: the build/ and egg-info it leaves, and a compiled
    # extension from an editable install, stay out of the checkout and out of the wheel.
    work = tmp_path_factory.mktemp("wheel")
    tree = work / "tree"
    tree.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy2(REPO / name, tree / name)
    shutil.copytree(REPO / "src", tree / "src",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.so", "*.egg-info", "build"))
    out = work / "dist"
    proc = run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", str(out), str(tree)],
               env=clean_env(), timeout=300)
    assert proc.returncode == 0, f"pip wheel failed:\n{proc.stdout}\n{proc.stderr}"
    (path,) = out.glob("interkube-*.whl")
    with zipfile.ZipFile(path) as zf:
        entries = tuple(zf.namelist())
        (metadata,) = [e for e in entries if e.endswith(".dist-info/METADATA")]
        meta = email.parser.Parser().parsestr(zf.read(metadata).decode("utf-8"))
    return Wheel(path, entries, tuple(Requirement(r) for r in meta.get_all("Requires-Dist") or ()),
                 tuple(meta.get_all("Provides-Extra") or ()))


def test_the_wheel_ships_the_package_and_its_data_only(wheel: Wheel) -> None:
    version = importlib.metadata.version("interkube")
    assert {e.split("/")[0] for e in wheel.entries} == {"interkube", f"interkube-{version}.dist-info"}
    shipped = {e.removeprefix("interkube/") for e in wheel.entries if e.startswith("interkube/")}

    # Every module of the source tree, so that a folder missing its __init__.py is not silently
    # left out, and nothing that is test support (it lives in testkit/, outside the wheel).
    sources = {str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts}
    assert {e for e in shipped if e.endswith(".py")} == sources
    assert not [e for e in shipped if {"testing", "testkit", "tests", "conftest.py"} & set(e.split("/"))]

    # Data: what the package reads (the built-in default's files), the plugin manuals and the
    # typing marker. Not the extension's C source, which the wheel has already compiled.
    default = PACKAGE / "server" / "default"
    data = {"py.typed"} | {str(p.relative_to(PACKAGE)) for p in PACKAGE.glob("plugins/*/README.md")} | \
        {str(p.relative_to(PACKAGE)) for p in default.iterdir() if p.is_file() and p.suffix not in (".py", ".pyc")}
    extensions = {e for e in shipped if any(e.endswith(s) for s in importlib.machinery.EXTENSION_SUFFIXES)}
    assert {e for e in shipped if not e.endswith(".py")} - extensions == data
    assert all(e.startswith("_udpfast.") for e in extensions), extensions


def test_every_import_of_the_package_is_declared(wheel: Wheel) -> None:
    owners = module_owners()
    base = canonical(wheel.base())
    # The test extra is for the test suite; the package may not fall back on it.
    optional = set().union(*(canonical(wheel.extra(e)) for e in wheel.extras if e != "test"))
    problems: list[str] = []
    used: set[str] = set()
    for module, source in wheel.modules().items():
        for imp in imports(source, module, package_of(wheel, module)):
            if not third_party(imp, {"interkube"}):
                continue
            dists = owner(imp.module, owners)
            allowed = base | optional if imp.optional else base
            if not dists:
                problems.append(f"{imp.where}: imports {imp.module}, which no installed distribution provides")
            elif not dists & allowed:
                problems.append(f"{imp.where}: imports {imp.module} (from {', '.join(sorted(dists))}), "
                                f"which is not a declared {'requirement or extra' if imp.optional else 'requirement'}")
            used |= dists & base
    assert not problems, "\n".join(problems)
    assert base == used, f"declared but never imported: {sorted(base - used)}"


def package_of(wheel: Wheel, module: str) -> str:
    """The package a module's relative imports start from: itself if it is one."""
    if f"{module.replace('.', '/')}/__init__.py" in wheel.entries:
        return module
    return module.rpartition(".")[0]


def test_tests_and_tools_import_only_what_the_test_extra_adds(wheel: Wheel) -> None:
    owners = module_owners()
    allowed = canonical(wheel.base()).union(*(canonical(wheel.extra(e)) for e in wheel.extras))
    files = [p for tree in LOCAL_TREES for p in (REPO / tree).rglob("*.py") if "__pycache__" not in p.parts]
    # Test modules import their neighbours by bare name (pytest puts their folder on sys.path).
    local = {"interkube", *LOCAL_TREES} | {p.stem for p in files} | {p.parent.name for p in files}
    problems: list[str] = []
    for path in files:
        rel = path.relative_to(REPO)
        package = ".".join(rel.parent.parts)
        for imp in imports(path.read_text(encoding="utf-8"), str(rel), package):
            if not third_party(imp, local):
                continue
            dists = owner(imp.module, owners)
            if not dists & allowed:
                problems.append(f"{imp.where}: imports {imp.module} "
                                f"({', '.join(sorted(dists)) or 'not installed'}): not in the requirements or extras")
    assert not problems, "\n".join(problems)


# --- the installed wheel ------------------------------------------------------------------------

def requirement_closure(requirements: Iterable[Requirement]) -> dict[str, importlib.metadata.Distribution]:
    """The installed distributions that satisfy ``requirements`` and, recursively, theirs (with
    the extras asked for), each checked against the versions asked for, as ``pip check`` would."""
    found: dict[str, importlib.metadata.Distribution] = {}
    done: set[tuple[str, str]] = set()
    problems: list[str] = []
    todo = [(r, "interkube") for r in requirements]
    while todo:
        req, by = todo.pop()
        key = canonicalize_name(req.name)
        try:
            dist = found.get(key) or importlib.metadata.distribution(req.name)
        except importlib.metadata.PackageNotFoundError:
            problems.append(f"{by} requires {req}: not installed")
            continue
        if not req.specifier.contains(dist.version, prereleases=True):
            problems.append(f"{by} requires {req}: {dist.version} is installed")
        found[key] = dist
        for extra in ("", *req.extras):
            if (key, extra) in done:
                continue
            done.add((key, extra))
            for sub in map(Requirement, dist.requires or ()):
                base = sub.marker is None or sub.marker.evaluate({"extra": ""})
                added = not base and sub.marker is not None and sub.marker.evaluate({"extra": extra})
                if added if extra else base:  # the base requirements, or those the extra adds
                    todo.append((sub, f"{dist.metadata['Name']} {dist.version}"))
    assert not problems, "this environment does not satisfy the wheel's requirements " \
        "(`pip install .` first):\n" + "\n".join(problems)
    return found


def link_distributions(dists: Iterable[importlib.metadata.Distribution], into: Path) -> None:
    """Symlink each distribution's top-level files and folders (its modules and its .dist-info,
    so that importlib.metadata and pip see its version) into ``into``."""
    for dist in dists:
        assert dist.files is not None, f"{dist.metadata['Name']} has no RECORD: cannot tell its files"
        root = Path(str(dist.locate_file("")))
        for top in sorted({f.parts[0] for f in dist.files}):
            if top in ("..", "__pycache__") or top.endswith(".pth"):
                continue
            source, target = root / top, into / top
            if source.exists() and not target.exists():
                target.symlink_to(source)


#: Run by the venv's interpreter: imports every module of the installed package, then resolves
#: every (module, names) pair it is handed; prints what it found as JSON.
PROBE = r"""
import importlib, importlib.machinery, json, pathlib, sys
targets = json.load(sys.stdin)
import interkube
# The files, not pkgutil.walk_packages: that one skips folders without an __init__.py
# (namespace packages), which setuptools ships all the same.
root = pathlib.Path(interkube.__file__).parent
suffixes = [".py", *importlib.machinery.EXTENSION_SUFFIXES]
modules = []
for path in sorted(root.rglob("*")):
    suffix = next((s for s in suffixes if path.name.endswith(s)), None)
    if suffix is None or "__pycache__" in path.parts or path.name == "__main__.py":
        continue  # running __main__ is the script's job
    parts = ["interkube", *path.relative_to(root).parent.parts, path.name[: -len(suffix)]]
    name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
    importlib.import_module(name)
    modules.append(name)
missing = []
for module, names, where in targets:
    try:
        found = importlib.import_module(module)
        for name in names:
            if name != "*" and not hasattr(found, name):
                importlib.import_module(f"{module}.{name}")
    except ImportError as exc:
        missing.append(f"{where}: {module} {names}: {exc}")
print(json.dumps({"prefix": sys.prefix, "file": interkube.__file__, "modules": modules,
                  "missing": missing}))
"""


def test_the_installed_wheel_imports_and_runs_with_its_declared_requirements_only(
        wheel: Wheel, tmp_path: Path) -> None:
    env = clean_env()
    venv = tmp_path / "venv"
    proc = run([sys.executable, "-m", "venv", "--without-pip", str(venv)], env=env)
    assert proc.returncode == 0, proc.stderr
    python = venv / "bin" / "python"
    pip = [sys.executable, "-m", "pip", "--python", str(python)]
    proc = run([*pip, "install", "--no-deps", "--no-index", str(wheel.path)], env=env)
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"

    site = Path(run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                    env=env).stdout.strip())
    requirements = tmp_path / "requirements"
    requirements.mkdir()
    link_distributions(requirement_closure(wheel.base()).values(), requirements)
    (site / "declared-requirements.pth").write_text(f"{requirements}\n")
    proc = run([*pip, "check"], env=env)
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"

    # Every import target named anywhere in the package, including those inside functions
    # (lightkube's resources, say, which only `interkube check --kubeconfig` reaches).
    targets = sorted({(imp.module, imp.names, imp.where)
                      for module, source in wheel.modules().items()
                      for imp in imports(source, module, package_of(wheel, module))
                      if third_party(imp, {"interkube"}) and not imp.optional})
    proc = run([str(python), "-I", "-c", PROBE], env=env, cwd=tmp_path, stdin=json.dumps(targets))
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"
    found = json.loads(proc.stdout)
    assert Path(found["prefix"]) == venv and Path(found["file"]).is_relative_to(site)
    shipped = {module_name(e) for e in wheel.entries if e.startswith("interkube/") and e.endswith(".py")} | \
        {module_name(e.split(".")[0]) for e in wheel.entries if e.startswith("interkube/_udpfast.")}
    assert set(found["modules"]) == shipped - {"interkube.__main__"}
    assert found["missing"] == []

    interkube = str(venv / "bin" / "interkube")
    proc = run([interkube, "serve", "-plugins"], env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    plugins = {e.split("/")[2] for e in wheel.entries
               if e.startswith("interkube/plugins/") and e.endswith("/__init__.py") and e.count("/") == 3}
    assert sorted(proc.stdout.split()) == sorted(plugins)
    proc = run([interkube, "check", "--help"], env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: interkube check")
