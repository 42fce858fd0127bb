"""``interkube proxy``: other clusters' Service VIPs load-balanced to their pods by nftables.

* :mod:`.config` -- the ``proxy { ... }`` file, and the Service-range overlap check (R6);
* :mod:`.rules` -- Service ports from a cluster index, and the nftables text for them;
* :mod:`.nft` -- ``nft -f -`` transactions and reading the live table back;
* :mod:`.conntrack` -- forgetting UDP flows to endpoints that went away (ctnetlink);
* :mod:`.runtime` -- clusters, the sync loop, metrics, HTTP and the process's life;
* :mod:`.command` -- ``interkube proxy``, ``proxy status`` and ``proxy routes``.

See docs/proxy.md.
"""
