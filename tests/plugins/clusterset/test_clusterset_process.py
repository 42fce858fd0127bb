"""`interkube serve` as a process, asked with dig: cluster.all and clusterset.local over three clusters."""

from __future__ import annotations

import urllib.request
from pathlib import Path

from testkit.dig import dig, needs_dig, short, status
from testkit.servers import free_port, interkube_process

from clusterset_data import ALL, MCS, corefile

pytestmark = needs_dig


def test_serve_the_clusterset_to_dig(tmp_path: Path, snapshots: dict[str, Path]) -> None:
    port, ready_port = free_port(), free_port()
    conf = tmp_path / "Corefile"
    text = corefile(snapshots, ALL + MCS, extra=f"    ready 127.0.0.1:{ready_port}\n")
    conf.write_text(text.replace("PORT", str(port)))
    with interkube_process(conf, port):
        assert short(port, "web.shop.svc.cluster.all") == ["10.96.1.10"]
        assert short(port, "api.shop.svc.cluster.all") == ["10.244.2.20"]
        assert short(port, "_pg._tcp.db.shop.svc.cluster.all", "SRV") == [
            "0 100 5432 db-0.east.db.shop.svc.cluster.all."]
        assert short(port, "db-0.central.eu.db.shop.svc.cluster.all") == ["10.244.3.40"]
        assert status(dig(port, "west.db.shop.svc.cluster.all")) == "NXDOMAIN"
        assert short(port, "front.mcs.svc.clusterset.local") == ["10.200.0.10"]
        assert short(port, "front.mcs.svc.clusterset.local", "AAAA") == ["fd00:200::10"]
        assert short(port, "pets.mcs.svc.clusterset.local") == ["10.244.1.60", "10.244.3.60"]
        assert short(port, "_peer._tcp.pets.mcs.svc.clusterset.local", "SRV") == [
            "0 33 2380 pet-0.central.eu.pets.mcs.svc.clusterset.local.",
            "0 33 2380 pet-0.east.pets.mcs.svc.clusterset.local.",
            "0 33 2380 pet-1.central.eu.pets.mcs.svc.clusterset.local."]
        assert short(port, "dns-version.clusterset.local", "TXT") == ['"1.0.0"']
        for name in ("west.front", "hidden", "quiet", "alias"):
            assert status(dig(port, f"{name}.mcs.svc.clusterset.local")) == "NXDOMAIN", name
        assert "flags: qr aa rd" in dig(port, "web.shop.svc.cluster.all")
        with urllib.request.urlopen(f"http://127.0.0.1:{ready_port}/ready", timeout=5) as resp:
            assert resp.status == 200
