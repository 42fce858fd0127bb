"""The remote cluster of "Forwarded DNS between clusters" (docs/scenarios.md): a clustered
database's SRV name in the remote namespace, its three pods, and dnsmasq answering for them as
the remote cluster's DNS, for tests that put interkube (or a DoT front) in front of it::

    with remote_cluster_dns(port):
        answer = query(SRV_NAME, "SRV", proxy_port)  # three SRV records, the pods' A records
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator

from testkit.servers import dnsmasq

#: The zone the proxy forwards to the remote cluster.
REMOTE = "remote.svc.cluster.local"
#: The remote pods: the label of each one's name under the headless Service, and its address.
PODS = {"10-1-17-231": "10.1.17.231", "10-1-46-20": "10.1.46.20", "10-1-68-212": "10.1.68.212"}
#: What the client asks for: one SRV record a pod (port 11210, priority 0, weight 33).
SRV_NAME = f"_couchbase._tcp.cb-example-srv.{REMOTE}"


@contextlib.contextmanager
def remote_cluster_dns(port: int) -> Iterator[subprocess.Popen[bytes]]:
    """dnsmasq on loopback ``port`` answering SRV_NAME and the pods' names (skips without dnsmasq)."""
    srv = tuple(f"{SRV_NAME},{pod}.cb-example-srv.{REMOTE},11210,0,33" for pod in PODS)
    records = {f"{pod}.cb-example-srv.{REMOTE}": [ip] for pod, ip in PODS.items()}
    with dnsmasq(port, records, srv=srv) as proc:
        yield proc
