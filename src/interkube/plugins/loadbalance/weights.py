"""The weight file of `loadbalance weighted`: names, and a weight for each of their addresses.

::

    # comments and empty lines are ignored
    www.example.com
    100.64.1.1 3
    100.64.1.2 1

A line with one field names a domain (a trailing dot is added when missing); the lines with two
fields after it give an address of that domain and its weight, 1 to 255. Addresses an answer
holds that the file does not name weigh 1. Names are matched without regard to letter case.
"""

from __future__ import annotations

import ipaddress

from interkube.dns.names import to_wire
from interkube.errors import InterkubeError

#: lower-cased wire name -> packed address -> weight
Weights = dict[bytes, dict[bytes, int]]


class WeightFileError(InterkubeError):
    """A weight file that cannot be used (the message names the file and the line)."""


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def parse_weights(text: str, path: str) -> Weights:
    """The weights of ``text`` (the contents of ``path``); raises WeightFileError."""
    domains: Weights = {}
    current: dict[bytes, int] | None = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        where = f"{path}:{number}"
        if len(fields) == 1:
            name = fields[0]
            if _is_address(name):
                raise WeightFileError(f"{where}: {name!r} is an address, not a domain name "
                                      "(a missing weight value?)")
            try:
                key = to_wire(name if name.endswith(".") else name + ".")
            except Exception as exc:  # dnspython's name errors have no common base worth naming
                raise WeightFileError(f"{where}: invalid domain name {name!r}: {exc}") from None
            current = domains.setdefault(key, {})
        elif len(fields) == 2:
            try:
                address = ipaddress.ip_address(fields[0])
            except ValueError:
                raise WeightFileError(f"{where}: invalid IP address {fields[0]!r}") from None
            if not fields[1].isdigit() or not 1 <= int(fields[1]) <= 255:
                raise WeightFileError(f"{where}: invalid weight {fields[1]!r} (expected 1 to 255)")
            if current is None:
                raise WeightFileError(f"{where}: an address before any domain name")
            current[address.packed] = int(fields[1])
        else:
            raise WeightFileError(f"{where}: cannot read {line!r} (expected a domain name, or an address "
                                  "and a weight)")
    return domains
