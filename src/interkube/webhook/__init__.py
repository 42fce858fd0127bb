"""``interkube webhook``: a mutating admission webhook that points Pods at interkube's DNS.

At Pod CREATE it sets ``dnsPolicy: None`` and a ``dnsConfig`` whose nameservers are interkube's
Service IP(s) and whose search list is the one the cluster's DNS would have given, plus extra
domains (``cluster.all``). What the Kubernetes docs call "injected using a mutating admission
controller" in the multi-cluster DNS scenario.

* :mod:`interkube.webhook.mutate` - the decision and the JSONPatch, pure (no I/O).
* :mod:`interkube.webhook.server` - the HTTPS server (admission.k8s.io/v1), health, metrics.
* :mod:`interkube.webhook.command` - ``interkube webhook``'s flags.
* :mod:`interkube.webhook.manifests` - ``interkube render webhook``: the objects that deploy it.
"""
