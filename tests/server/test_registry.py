"""Every plugin in the registry names a setup that exists, and reading a Corefile's plugins
imports their parsers only (their setup modules load when a server is built)."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

from interkube.server import registry


@pytest.mark.parametrize("name", registry.available())
def test_each_plugin_names_a_setup_module_that_has_setup(name: str) -> None:
    plugin = importlib.import_module(f"interkube.plugins.{name}").PLUGIN
    module = plugin.setup.module
    assert module == f"interkube.plugins.{name}.setup"
    assert callable(importlib.import_module(module).setup)


def test_loading_every_plugin_imports_no_setup_module() -> None:
    code = ("import sys\nfrom interkube.server import registry\nregistry.available()\n"
            "print(sorted(m for m in sys.modules if m.startswith('interkube.plugins.') and m.endswith('.setup')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
