"""Scenario Split DNS and traffic strategies, in network namespaces (docs/lab.md).

The StatefulSet's members advertise public names, `cb-example-N.<cluster>.db.example`, which the
"public" DNS (a zone every cluster's DNS serves alike) gives the members' load-balancer
addresses on their cluster's router. Inside the members' own cluster, the splitdns plugin answers
those names with the pods' own addresses (no hairpin through the router); from the other
cluster, the same name is the public address, whose connection reaches the same pod. A member
whose endpoint stops being ready falls back to its public address inside its cluster too.
"""

from __future__ import annotations

import json

from plans import FORWARDED

from interkube.lab.data import write_json
from interkube.lab.layout import STATEFUL_PORT
from testkit.lab import LabUp
from testkit.waiting import wait_until


def a_records(lab: object, cluster: str, name: str) -> list[str]:
    reply = lab.query(cluster, "client", name)  # type: ignore[attr-defined]
    return [str(r) for rrset in reply.answer for r in rrset]


def test_a_members_public_name_is_its_pod_inside_and_its_public_address_outside(lab_up: LabUp) -> None:
    lab = lab_up(FORWARDED)
    one = lab.cluster("cluster1")
    name = "cb-example-0.cluster1.db.example"
    pod, public = one.pod("cb-example-0").addresses[0], one.public["cb-example-0"]
    assert public != pod
    assert a_records(lab, "cluster1", name) == [pod]
    assert a_records(lab, "cluster2", name) == [public]
    assert lab.connect("cluster1", "client", pod, STATEFUL_PORT) == "cluster1/cb-example-0"
    assert lab.connect("cluster2", "client", public, STATEFUL_PORT) == "cluster1/cb-example-0"
    # The other cluster's member, seen from here, is its public address.
    elsewhere = lab.cluster("cluster2").public["cb-example-1"]
    assert a_records(lab, "cluster1", "cb-example-1.cluster2.db.example") == [elsewhere]

    # The member's endpoint turns not ready: inside its cluster the name falls back to public.
    path = lab.state_dir / "data" / "cluster1.json"
    data = json.loads(path.read_text())
    for item in data["items"]:
        if item["kind"] == "EndpointSlice" and item["metadata"]["name"].startswith("cb-example-srv"):
            for endpoint in item["endpoints"]:
                if endpoint.get("hostname") == "cb-example-0":
                    endpoint["conditions"]["ready"] = False
    write_json(path, data)
    wait_until(lambda: a_records(lab, "cluster1", name) == [public], f"{name} answered with {public} in cluster1")
    assert lab.connect("cluster1", "client", public, STATEFUL_PORT) == "cluster1/cb-example-0"  # the hairpin
