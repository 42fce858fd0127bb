"""The built-in default configuration: a loopback-only demo of seeds 000 and 002."""

BANNER = """\
Serving the built-in demo, loopback only:
  127.0.0.1:5353  remote.svc.cluster.local -> the remote cluster's DNS (127.0.0.1:5354)   (seed 000)
                  cluster.east, cluster.west -> two clusters' Services, one kubernetes
                                              stanza each, from snapshot files        (seed 002)
                  cluster.all              -> both clusters merged, east first        (seed 002)
                  everything else          -> the local cluster's DNS  (127.0.0.1:5355)
Try:
  dig @127.0.0.1 -p 5353 SRV _couchbase._tcp.cb-example-srv.remote.svc.cluster.local
  dig @127.0.0.1 -p 5353 kube-dns.kube-system.svc.cluster.local
  dig @127.0.0.1 -p 5353 SRV _postgres._tcp.db.shop.svc.cluster.east
  dig @127.0.0.1 -p 5353 AAAA inventory.shop.svc.cluster.west
  dig @127.0.0.1 -p 5353 inventory.shop.svc.cluster.all"""


def banner() -> str:
    return BANNER
