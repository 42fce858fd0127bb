"""What the doctor's tests share: running the checks and picking findings out."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from interkube.doctor.checks import Options, run_checks
from interkube.doctor.findings import Finding, Level

ZONE = "remote.svc.cluster.local."
SOA = f"{ZONE} 3600 IN SOA ns.{ZONE} hostmaster.{ZONE} 7 3600 600 86400 30"


async def doctor(**options: Any) -> list[Finding]:
    # A network check's wait, generous: the machine running the tests may be loaded, and a check
    # expected to pass must not fail because a server was slow (the failing ones wait it out).
    return await run_checks(Options(**{"timeout": 5.0, **options}))


def levels(findings: Sequence[Finding], id: str) -> list[Level]:
    return [f.level for f in findings if f.id == id]


def one(findings: Sequence[Finding], id: str, subject: str = "") -> Finding:
    """The one finding ``id`` (whose subject holds ``subject``)."""
    matching = [f for f in findings if f.id == id and subject in f.subject]
    assert len(matching) == 1, f"{id}: {matching or [(f.id, str(f.level)) for f in findings]}"
    return matching[0]


def zone_file(path: Any, zone: str = ZONE) -> str:
    """A zone file with an SOA and one A record (the file plugin serves it)."""
    path.write_text(f"$ORIGIN {zone}\n@ 3600 IN SOA ns hostmaster 7 3600 600 86400 30\n"
                    "@ 3600 IN NS ns\nns 3600 IN A 127.0.0.1\ndb 3600 IN A 10.1.17.231\n")
    return str(path)
