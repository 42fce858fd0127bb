"""`interkube serve` as a process, asked with dig: a live cluster and a snapshot cluster side by side."""

from __future__ import annotations

import shutil
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from testkit.fakekube import FakeKube, as_list, endpoint_slice, service, serving_in_thread, write_kubeconfig
from testkit.servers import free_port, interkube_process, process_output

pytestmark = pytest.mark.skipif(shutil.which("dig") is None, reason="dig is not installed (Debian package dnsutils)")


def dig(port: int, name: str, rdtype: str = "A") -> list[str]:
    out = subprocess.run(["dig", "@127.0.0.1", "-p", str(port), "+short", "+tries=1", "+time=2", rdtype, name],
                         capture_output=True, text=True, timeout=10, check=True)
    return sorted(out.stdout.split("\n")[:-1])


def dig_status(port: int, name: str) -> str:
    out = subprocess.run(["dig", "@127.0.0.1", "-p", str(port), "+tries=1", "+time=2", name],
                         capture_output=True, text=True, timeout=10, check=True).stdout
    return out.split("status: ", 1)[1].split(",", 1)[0]


def eventually(check: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.1)


def write_yaml(path: Path, objects: list[dict[str, Any]]) -> None:
    import yaml

    path.write_text(yaml.safe_dump(as_list(objects)))


def test_serve_a_live_and_a_snapshot_cluster(tmp_path: Path) -> None:
    east = FakeKube(watch=True)
    east.add_all([service("app", "web", cluster_ips=["10.96.0.10"]), service("app", "hl", headless=True),
                  endpoint_slice("app", "hl-1", "hl", [{"ip": "10.244.1.7", "hostname": "pet"}])])
    west = tmp_path / "west.yaml"
    write_yaml(west, [service("app", "web", cluster_ips=["10.97.0.10"])])
    port, ready_port = free_port(), free_port()
    with serving_in_thread(east):
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", {"east": east})
        corefile = tmp_path / "Corefile"
        corefile.write_text(f"""cluster.east:{port} cluster.west:{port} {{
    bind 127.0.0.1
    ready 127.0.0.1:{ready_port}
    kubernetes cluster.east {{
        kubeconfig {kubeconfig} east
    }}
    kubernetes cluster.west {{
        snapshot {west}
    }}
}}
""")
        with interkube_process(corefile, port) as proc:
            assert dig(port, "web.app.svc.cluster.east") == ["10.96.0.10"]
            assert dig(port, "web.app.svc.cluster.west") == ["10.97.0.10"]
            assert dig(port, "_http._tcp.hl.app.svc.cluster.east", "SRV") == ["0 100 8080 pet.hl.app.svc.cluster.east."]
            assert dig_status(port, "nope.app.svc.cluster.east") == "NXDOMAIN"
            with urllib.request.urlopen(f"http://127.0.0.1:{ready_port}/ready", timeout=5) as resp:
                assert resp.status == 200
            # A change in the API, then one in the snapshot file: both show in answers.
            east.add(service("app", "web", cluster_ips=["10.96.0.11"]))
            eventually(lambda: dig(port, "web.app.svc.cluster.east") == ["10.96.0.11"], "the watched update")
            write_yaml(west, [service("app", "web", cluster_ips=["10.97.0.11"])])
            eventually(lambda: dig(port, "web.app.svc.cluster.west") == ["10.97.0.11"], "the reloaded snapshot")
            log = process_output(proc)
    assert "plugin/kubernetes: cluster east: synced from http://127.0.0.1:" in log
    assert "plugin/kubernetes: cluster west: reloaded snapshot" in log
