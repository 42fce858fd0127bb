"""The built-in default configuration: a loopback-only demo of two scenarios of docs/scenarios.md,
"Forwarded DNS between clusters" and the DNS side of "Discovery across clusters, VIP proxying and
the merged domain"."""

BANNER = """\
Serving the built-in demo, loopback only, on 127.0.0.1:5353.
Forwarded DNS between clusters:
  remote.svc.cluster.local   -> the remote cluster's DNS (127.0.0.1:5354)
  everything else            -> the local cluster's DNS  (127.0.0.1:5355)
Discovery across clusters, VIP proxying and the merged domain (its DNS side):
  cluster.east, cluster.west -> two clusters' Services, one kubernetes stanza each,
                                from snapshot files
  cluster.all                -> both clusters merged, east first
Try:
  dig @127.0.0.1 -p 5353 SRV _couchbase._tcp.cb-example-srv.remote.svc.cluster.local
  dig @127.0.0.1 -p 5353 kube-dns.kube-system.svc.cluster.local
  dig @127.0.0.1 -p 5353 SRV _postgres._tcp.db.shop.svc.cluster.east
  dig @127.0.0.1 -p 5353 AAAA inventory.shop.svc.cluster.west
  dig @127.0.0.1 -p 5353 inventory.shop.svc.cluster.all"""


def banner() -> str:
    return BANNER
