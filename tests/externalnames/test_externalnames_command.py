"""``interkube externalnames`` refuses flags it cannot use, naming the flag (or the kubeconfig and
context), before it contacts any cluster."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from interkube.cli import main


@pytest.fixture
def kubeconfig(tmp_path: Path) -> Path:
    """Two contexts whose API (a closed loopback port) is never reached by these tests."""
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": n, "cluster": {"server": "http://127.0.0.1:9"}} for n in ("a", "b")],
        "users": [{"name": "u", "user": {}}],
        "contexts": [{"name": n, "context": {"cluster": n, "user": "u"}} for n in ("a", "b", "arn:aws:x/y")],
        "current-context": "a"}))
    return path


@pytest.mark.parametrize(("args", "message"), [
    (["--selector", "app in (x"], "--selector: expected ',' between requirements"),
    (["--lease", "just-a-name"], "--lease: 'just-a-name' is not NAMESPACE/NAME"),
    (["--concurrency", "0"], "--concurrency: at least 1"),
    (["--resync", "soon"], "--resync:"),
    (["--target", "c"], "has no context 'c' (it has: a, arn:aws:x/y, b)"),
    (["--source", "arn:aws:x/y"], "the source cluster's name 'arn:aws:x/y' cannot be a label value"),
])
def test_unusable_flags_are_refused_naming_them(kubeconfig: Path, capsys: pytest.CaptureFixture[str],
                                                args: list[str], message: str) -> None:
    argv = ["externalnames", "--kubeconfig", str(kubeconfig), "--source", "a", "--target", "b", "--once"]
    for flag, value in zip(args[::2], args[1::2], strict=True):
        if flag in argv:
            argv[argv.index(flag) + 1] = value
        else:
            argv += [flag, value]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("interkube externalnames: ") and message in err, err


def test_no_kubeconfig_at_all(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("KUBECONFIG", raising=False)
    assert main(["externalnames", "--source", "a", "--target", "b"]) == 1
    assert "--kubeconfig: no file given and $KUBECONFIG is not set" in capsys.readouterr().err
