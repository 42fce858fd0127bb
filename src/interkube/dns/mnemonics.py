"""Types, classes and rcodes by the names CoreDNS prints (miekg/dns 1.1.73, CoreDNS 1.15).

Logs that CoreDNS users read line by line (the log and errors plugins) name a query's type as
CoreDNS does. dnspython's names differ for a few types (it says TYPE34 where miekg says ATMA,
and WKS where miekg says TYPE11), so these tables are miekg's, copied, not dnspython's.
"""

from __future__ import annotations

_TYPES: dict[int, str] = {
    0: "None", 1: "A", 2: "NS", 3: "MD", 4: "MF", 5: "CNAME", 6: "SOA", 7: "MB", 8: "MG", 9: "MR",
    10: "NULL", 12: "PTR", 13: "HINFO", 14: "MINFO", 15: "MX", 16: "TXT", 17: "RP", 18: "AFSDB",
    19: "X25", 20: "ISDN", 21: "RT", 23: "NSAP-PTR", 24: "SIG", 25: "KEY", 26: "PX", 27: "GPOS",
    28: "AAAA", 29: "LOC", 30: "NXT", 31: "EID", 32: "NIMLOC", 33: "SRV", 34: "ATMA", 35: "NAPTR",
    36: "KX", 37: "CERT", 39: "DNAME", 41: "OPT", 42: "APL", 43: "DS", 44: "SSHFP", 45: "IPSECKEY",
    46: "RRSIG", 47: "NSEC", 48: "DNSKEY", 49: "DHCID", 50: "NSEC3", 51: "NSEC3PARAM", 52: "TLSA",
    53: "SMIMEA", 55: "HIP", 56: "NINFO", 57: "RKEY", 58: "TALINK", 59: "CDS", 60: "CDNSKEY",
    61: "OPENPGPKEY", 62: "CSYNC", 63: "ZONEMD", 64: "SVCB", 65: "HTTPS", 99: "SPF", 100: "UINFO",
    101: "UID", 102: "GID", 103: "UNSPEC", 104: "NID", 105: "L32", 106: "L64", 107: "LP", 108: "EUI48",
    109: "EUI64", 128: "NXNAME", 249: "TKEY", 250: "TSIG", 251: "IXFR", 252: "AXFR", 253: "MAILB",
    254: "MAILA", 255: "ANY", 256: "URI", 257: "CAA", 258: "AVC", 260: "AMTRELAY", 261: "RESINFO",
    32768: "TA", 32769: "DLV", 65535: "Reserved",
}
_CLASSES: dict[int, str] = {1: "IN", 2: "CS", 3: "CH", 4: "HS", 254: "NONE", 255: "ANY"}
#: The header's 4-bit rcodes; 12 to 15 have no name and print as numbers.
_RCODES: tuple[str, ...] = ("NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED",
                            "YXDOMAIN", "YXRRSET", "NXRRSET", "NOTAUTH", "NOTZONE", "DSOTYPENI",
                            "12", "13", "14", "15")


def type_text(rdtype: int) -> str:
    """``A``, ``ATMA``; ``TYPE65280`` for a type without a name."""
    return _TYPES.get(rdtype) or f"TYPE{rdtype}"


def class_text(rdclass: int) -> str:
    """``IN``, ``CH``; ``CLASS1000`` for a class without a name."""
    return _CLASSES.get(rdclass) or f"CLASS{rdclass}"


def rcode_text(rcode: int) -> str:
    """The name of a header rcode (0 to 15)."""
    return _RCODES[rcode & 0x0F]


#: miekg's StringToType and StringToClass: the exact names above, and nothing else (no TYPE65280).
_TYPE_NUMBERS = {name: number for number, name in _TYPES.items()}
_CLASS_NUMBERS = {name: number for number, name in _CLASSES.items()}


def type_number(name: str) -> int | None:
    """The type a Corefile names as miekg reads it (``A``, ``ANY``; case-sensitive), or None."""
    return _TYPE_NUMBERS.get(name)


def class_number(name: str) -> int | None:
    """The class a Corefile names as miekg reads it (``IN``, ``CH``, ``ANY``), or None."""
    return _CLASS_NUMBERS.get(name)


def type_name(rdtype: int) -> str:
    """miekg's TypeToString: the name, or "" for a type without one."""
    return _TYPES.get(rdtype, "")


def class_name(rdclass: int) -> str:
    """miekg's ClassToString: the name, or "" for a class without one."""
    return _CLASSES.get(rdclass, "")


__all__ = ["class_name", "class_number", "class_text", "rcode_text", "type_name", "type_number", "type_text"]
