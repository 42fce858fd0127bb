"""Kubernetes clusters as DNS sees them: sources, stripped records, one index per cluster.

* :mod:`.objects` -- immutable records of Services, EndpointSlices, Pods and MCS objects,
  decoded from the API's JSON (or kubectl's YAML) keeping only what DNS needs;
* :mod:`.index` -- one cluster's records and reverse maps, and the dependency keys each
  change reports (what answers built from the index may have read);
* :mod:`.cluster` -- a cluster: its source, current index, sync state, counters, subscribers;
* :mod:`.live` -- list+watch against the API (bookmarks, relist on 410, backoff, silence);
* :mod:`.snapshot` -- Kubernetes List files, re-read when they change;
* :mod:`.access` -- kubeconfig, endpoint+TLS and in-cluster settings (lightkube, in
  :mod:`.lightkube_config`, only for exec plugins and what else it alone reads);
* :mod:`.filters`, :mod:`.labels` -- which objects a stanza keeps;
* :mod:`.registry` -- the process-wide clusters by name, for plugins that span clusters.
"""
