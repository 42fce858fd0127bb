"""`interkube serve` as a process, asked with dig: a live cluster and a snapshot cluster side by side."""

from __future__ import annotations

import urllib.request
from pathlib import Path

from testkit.dig import dig, needs_dig, short, status
from testkit.fakekube import FakeKube, endpoint_slice, service, serving_in_thread, write_kubeconfig, write_snapshot
from testkit.servers import free_port, interkube_process, process_output
from testkit.waiting import wait_until

pytestmark = needs_dig


def test_serve_a_live_and_a_snapshot_cluster(tmp_path: Path) -> None:
    east = FakeKube(watch=True)
    east.add_all([service("app", "web", cluster_ips=["10.96.0.10"]), service("app", "hl", headless=True),
                  endpoint_slice("app", "hl-1", "hl", [{"ip": "10.244.1.7", "hostname": "pet"}])])
    west = tmp_path / "west.yaml"
    write_snapshot(west, [service("app", "web", cluster_ips=["10.97.0.10"])])
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
            assert short(port, "web.app.svc.cluster.east") == ["10.96.0.10"]
            assert short(port, "web.app.svc.cluster.west") == ["10.97.0.10"]
            assert short(port, "_http._tcp.hl.app.svc.cluster.east", "SRV") == [
                "0 100 8080 pet.hl.app.svc.cluster.east."]
            assert status(dig(port, "nope.app.svc.cluster.east")) == "NXDOMAIN"
            with urllib.request.urlopen(f"http://127.0.0.1:{ready_port}/ready", timeout=5) as resp:
                assert resp.status == 200
            # A change in the API, then one in the snapshot file: both show in answers.
            east.add(service("app", "web", cluster_ips=["10.96.0.11"]))
            wait_until(lambda: short(port, "web.app.svc.cluster.east") == ["10.96.0.11"], "the watched update", 20)
            write_snapshot(west, [service("app", "web", cluster_ips=["10.97.0.11"])])
            wait_until(lambda: short(port, "web.app.svc.cluster.west") == ["10.97.0.11"], "the reloaded snapshot", 20)
            log = process_output(proc)
    assert "plugin/kubernetes: cluster east: synced from http://127.0.0.1:" in log
    assert "plugin/kubernetes: cluster west: reloaded snapshot" in log
