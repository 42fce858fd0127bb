"""The built-in default configuration: a loopback-only demo of seed 000."""

BANNER = """\
Serving the built-in demo (seed 000: DNS forwarded between two clusters), loopback only:
  127.0.0.1:5353  remote.svc.cluster.local -> the remote cluster's DNS (127.0.0.1:5354)
                  everything else          -> the local cluster's DNS  (127.0.0.1:5355)
Try:
  dig @127.0.0.1 -p 5353 SRV _couchbase._tcp.cb-example-srv.remote.svc.cluster.local
  dig @127.0.0.1 -p 5353 kube-dns.kube-system.svc.cluster.local"""


def banner() -> str:
    return BANNER
