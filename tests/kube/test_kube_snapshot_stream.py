"""The streaming YAML reader gives exactly what yaml.safe_load gives, one item at a time."""

from __future__ import annotations

from pathlib import Path

import yaml

from interkube.kube.snapshot import read_objects

DOC = """\
apiVersion: v1
items:
- apiVersion: v1
  kind: Service
  metadata:
    creationTimestamp: "2026-01-01T00:00:00Z"
    labels: {app: web, "tier": "1", replicas: 3, on: yes}
    name: web
    namespace: shop
  spec:
    clusterIP: 10.96.0.5
    ports:
    - {name: http, port: 80, protocol: TCP, targetPort: 8080}
    - port: 443
    publishNotReadyAddresses: false
    note: |
      block text
    empty: null
    stamp: 2026-01-01T00:00:00Z
    ratio: 0.5
- apiVersion: discovery.k8s.io/v1
  kind: EndpointSlice
  metadata: {name: web-abc, namespace: shop, labels: {kubernetes.io/service-name: web}}
  addressType: IPv4
  endpoints: []
kind: List
metadata:
  resourceVersion: ""
---
apiVersion: v1
kind: ServiceList
items:
- metadata: {name: kindless, namespace: shop}
  spec: {clusterIP: None}
---
apiVersion: v1
kind: Service
metadata: {name: single, namespace: other}
spec: {clusterIP: 10.96.0.9}
---
"""


def test_streamed_items_equal_safe_load(tmp_path: Path) -> None:
    path = tmp_path / "snap.yaml"
    path.write_text(DOC)
    got = [(kind.kind if kind else None, dict(obj)) for kind, obj in read_objects(str(path))]
    docs = [d for d in yaml.safe_load_all(DOC) if d]
    expected = [("Service", docs[0]["items"][0]), ("EndpointSlice", docs[0]["items"][1]),
                ("Service", docs[1]["items"][0]), ("Service", docs[2])]
    assert got == expected
