"""Writing rendered manifests: one YAML stream on stdout, or a kustomize-ready directory.

A directory holds ``kustomization.yaml`` and one file per kind (``deployment.yaml``,
``service.yaml``, ...; several objects of a kind share its file, in the order given). It is
written whole into a temporary sibling and renamed into place, so that a failure half way
leaves the destination as it was: nothing partial is ever applied by a later
``kubectl apply -k``. A destination that exists is replaced only when it is empty or was itself
written by ``interkube render`` (its ``kustomization.yaml`` starts with :data:`HEADER`): any
other directory is refused, never deleted.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from interkube.errors import RenderError

#: First line of every kustomization.yaml we write: what marks a directory as ours to replace.
HEADER = "# Written by `interkube render`; regenerate rather than edit (overlays belong elsewhere).\n"


class _Dumper(yaml.SafeDumper):
    """Block style, keys in the order written (a manifest reads apiVersion, kind, metadata
    first), and multi-line strings (the Corefile) as ``|`` literals that read as the file."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        # Lists indented under their key, as kubectl and most hand-written manifests do.
        super().increase_indent(flow, False)


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    # Trailing spaces on a line make PyYAML fall back to a quoted scalar; those are rare in a
    # Corefile and the quoted form is still correct, so no stripping is done here.
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def dump(obj: Mapping[str, Any]) -> str:
    """One manifest as YAML (no document markers)."""
    return yaml.dump(dict(obj), Dumper=_Dumper, sort_keys=False, default_flow_style=False,
                     allow_unicode=True, width=1000)


def stream(objects: Sequence[Mapping[str, Any]]) -> str:
    """Every manifest in one multi-document YAML stream."""
    return "".join(f"---\n{dump(obj)}" for obj in objects)


def file_name(kind: str) -> str:
    """The file a kind goes to in a directory: ``Deployment`` -> ``deployment.yaml``."""
    return f"{kind.lower()}.yaml"


def files(objects: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """File name -> content of a kustomize directory, kustomization.yaml included (its
    ``resources`` in the order the kinds first appear)."""
    by_file: dict[str, list[Mapping[str, Any]]] = {}
    for obj in objects:
        kind = obj.get("kind")
        if not isinstance(kind, str) or not kind:
            raise RenderError(f"a rendered object has no kind: {dict(obj)!r:.200}")
        by_file.setdefault(file_name(kind), []).append(obj)
    out = {name: stream(objs) for name, objs in by_file.items()}
    kustomization = {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
                     "resources": list(by_file)}
    out["kustomization.yaml"] = HEADER + dump(kustomization)
    return out


def write_manifests(objects: Sequence[Mapping[str, Any]], dest: str) -> None:
    """Write ``objects`` to ``dest``: ``-`` for one YAML stream on stdout, else a directory
    (see the module's docstring). Raises RenderError, having written nothing, when the
    directory cannot be written or is not ours to replace."""
    if dest == "-":
        write_text(stream(objects))  # whole before the first byte goes out
        return
    write_directory(Path(dest), files(objects))


def write_text(text: str) -> None:
    """A whole YAML stream on stdout."""
    sys.stdout.write(text)
    sys.stdout.flush()


def write_directory(dest: Path, content: Mapping[str, str]) -> None:
    """File name -> content written as the directory ``dest``, whole or not at all (see the
    module's docstring), for targets that make their own files (a kustomize Component)."""
    _write_directory(dest, content)


def _ours(path: Path) -> bool:
    """Whether an existing ``path`` may be replaced: an empty directory, or one we wrote."""
    if not path.is_dir() or path.is_symlink():
        return False
    entries = list(path.iterdir())
    if not entries:
        return True
    kustomization = path / "kustomization.yaml"
    try:
        with kustomization.open(encoding="utf-8") as f:
            first = f.readline()
    except OSError:
        return False
    # Only YAML files beside it: anything else (notes, patches, a .git) means a user put it
    # there, and replacing the directory would delete it.
    return first == HEADER and all(e.is_file() and e.suffix == ".yaml" for e in entries)


def _write_directory(dest: Path, content: Mapping[str, str]) -> None:
    dest = dest.absolute()
    if dest.exists() and not _ours(dest):
        raise RenderError(f"{dest} exists and was not written by interkube render: not replacing it "
                             "(remove it, or give an empty or new directory)")
    parent = dest.parent
    if not parent.is_dir():
        raise RenderError(f"cannot write {dest}: {parent} is not a directory")
    # Dot names: globs and watchers that skip hidden files skip the work in progress.
    tmp = parent / f".{dest.name}.{secrets.token_hex(4)}.tmp"
    old = parent / f".{dest.name}.{secrets.token_hex(4)}.old"
    try:
        tmp.mkdir(mode=0o755)
        for name, text in content.items():
            (tmp / name).write_text(text, encoding="utf-8")
        if dest.exists():
            os.rename(dest, old)
            try:
                os.rename(tmp, dest)
            except OSError:
                os.rename(old, dest)  # put the previous output back
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, dest)
    except OSError as exc:
        with contextlib.suppress(OSError):
            shutil.rmtree(tmp)
        raise RenderError(f"cannot write {dest}: {exc.strerror or exc}") from exc
