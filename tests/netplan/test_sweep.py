"""The interval sweep finds exactly the overlapping pairs; free blocks are free."""

from __future__ import annotations

import ipaddress

from hypothesis import given, settings
from hypothesis import strategies as st

from interkube.netplan.sweep import first_free_block, merge_intervals, overlapping_pairs


@st.composite
def networks(draw: st.DrawFn) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    # A narrow address window makes overlaps frequent; IPv6 ones mirror it so that a sweep that
    # mixed up families would pair them.
    prefix = draw(st.integers(min_value=20, max_value=32))
    start = draw(st.integers(min_value=0, max_value=(1 << 14) - 1)) << 12
    if draw(st.booleans()):
        return ipaddress.IPv4Network((start >> (32 - prefix) << (32 - prefix), prefix))
    return ipaddress.IPv6Network((start >> (32 - prefix) << (32 - prefix), prefix + 96))


@settings(max_examples=300, deadline=None)
@given(st.lists(networks(), max_size=40))
def test_sweep_finds_exactly_the_overlapping_pairs(nets: list) -> None:
    found = {frozenset((a, b)) for a, b in overlapping_pairs((n, i) for i, n in enumerate(nets))}
    expected = {frozenset((i, j)) for i in range(len(nets)) for j in range(i + 1, len(nets))
                if nets[i].version == nets[j].version and nets[i].overlaps(nets[j])}
    assert found == expected


def test_sweep_yields_the_outer_block_first() -> None:
    big = ipaddress.ip_network("10.0.0.0/8")
    small = ipaddress.ip_network("10.1.2.0/24")
    assert list(overlapping_pairs([(small, "small"), (big, "big")])) == [("big", "small")]


def test_identical_blocks_pair_once() -> None:
    net = ipaddress.ip_network("172.20.0.0/16")
    assert len(list(overlapping_pairs([(net, 1), (net, 2), (net, 3)]))) == 3


def test_merge_joins_touching_intervals() -> None:
    assert merge_intervals([(10, 20), (0, 4), (5, 6), (15, 30), (40, 41)]) == [(0, 6), (10, 30), (40, 41)]


@settings(max_examples=200, deadline=None)
@given(st.lists(networks(), max_size=20), st.integers(min_value=18, max_value=32))
def test_first_free_block_is_free_and_lowest(nets: list, prefix: int) -> None:
    pool = ipaddress.IPv4Network("0.0.0.0/6")
    v4 = [n for n in nets if n.version == 4]
    used = merge_intervals((int(n.network_address), int(n.broadcast_address)) for n in v4)
    block = first_free_block(pool, prefix, used)
    assert block is not None  # the nets only reach 2^26, the pool is 2^26 + far more
    assert block.prefixlen == prefix and block.subnet_of(pool)
    assert not any(block.overlaps(n) for n in v4)
    lower = ipaddress.IPv4Network((int(block.network_address) - block.num_addresses, prefix)) \
        if int(block.network_address) else None
    assert lower is None or any(lower.overlaps(n) for n in v4)


def test_first_free_block_gives_up_when_full() -> None:
    pool = ipaddress.IPv4Network("10.0.0.0/24")
    used = [(int(pool.network_address), int(pool.broadcast_address))]
    assert first_free_block(pool, 26, used) is None
    assert first_free_block(pool, 20, []) is None
    six = ipaddress.IPv6Network("fd00::/64")
    assert first_free_block(six, 80, []) == ipaddress.IPv6Network("fd00::/80")
