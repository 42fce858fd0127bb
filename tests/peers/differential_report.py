"""Print the differential figures: interkube against CoreDNS over the corpus.

    python -m tests.peers.differential_report [--details] [--keep DIR]

Starts its own etcd + kube-apiserver and both DNS servers on loopback (the peers come from
``scripts/build-peers``), asks every question of ``tests/peers/differential_corpus.py`` and
prints how many were compared, how many were identical, and each divergence of
``docs/divergences.md`` with the cases it explains. ``--details`` also prints both answers of
every case that differs. Exit status 1 when a difference is not documented (or a documented one
is gone), 2 when the peers are not built.

Run it from the repository root (it is imported as ``tests.peers...``).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from testkit.kubeapi import KubeAPI
from testkit.peers import find_peer, skip_message
from tests.peers.differential_corpus import documented, judge, report, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--details", action="store_true",
                        help="print both answers of every case that differs")
    parser.add_argument("--keep", metavar="DIR", help="work in DIR and keep it (logs, Corefiles)")
    args = parser.parse_args(argv)

    binaries = {name: find_peer(name) for name in ("coredns", "kube-apiserver", "etcd")}
    missing = [name for name, path in binaries.items() if path is None]
    if missing:
        print(f"differential_report: {'; '.join(skip_message(n) for n in missing)}", file=sys.stderr)
        return 2
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="interkube-diff-"))
    work.mkdir(parents=True, exist_ok=True)
    api = KubeAPI(work / "kubeapi", binaries["kube-apiserver"], binaries["etcd"])  # type: ignore[arg-type]
    try:
        api.start()
        api.install_mcs_crds()
        _, results = run(api, binaries["coredns"], work / "dns")  # type: ignore[arg-type]
    finally:
        api.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    verdict = judge(results, documented())
    print(report(verdict))
    if args.details:
        print("\nevery case that differs:")
        for r in results:
            if r.differs:
                print("  " + r.describe().replace("\n", "\n  "))
    return 0 if verdict.ok() else 1


if __name__ == "__main__":
    sys.exit(main())
