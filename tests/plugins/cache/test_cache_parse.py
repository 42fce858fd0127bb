"""The cache directive: defaults as CoreDNS's, every option, every error with file:line."""

from __future__ import annotations

import pytest

from interkube.corefile.parser import parse_text
from interkube.errors import ConfigError
from interkube.plugin.services import Services
from interkube.plugins.cache.parse import Bucket, CacheConfig, Prefetch, ServeStale, parse
from interkube.server.runtime import build
from testkit.corefile import directive


def error(body: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse(directive(body))
    return str(info.value)


def test_defaults_are_coredns_defaults() -> None:
    cfg = parse(directive("cache"))
    assert cfg == CacheConfig()
    assert cfg.zones == ()
    assert cfg.success == Bucket(capacity=9984, max_ttl=3600, min_ttl=5)
    assert cfg.denial == Bucket(capacity=9984, max_ttl=1800, min_ttl=5)
    assert cfg.prefetch == Prefetch(amount=0, duration=60.0, percentage=10)
    assert cfg.serve_stale is None
    assert cfg.servfail_ttl == 5.0
    assert (cfg.disable_success, cfg.disable_denial, cfg.keepttl) == ((), (), False)


def test_ttl_and_zones() -> None:
    cfg = parse(directive("cache 300 Example.ORG example.net. 10.0.0.0/8"))
    assert cfg.success.max_ttl == cfg.denial.max_ttl == 300
    assert cfg.zones == ("example.org.", "example.net.", "10.in-addr.arpa.")


def test_first_argument_is_a_zone_when_not_a_number() -> None:
    cfg = parse(directive("cache example.org"))
    assert cfg.zones == ("example.org.",)
    assert cfg.success.max_ttl == 3600 and cfg.denial.max_ttl == 1800


def test_every_option() -> None:
    cfg = parse(directive("""cache 600 example.org {
        success 5000 120 10
        denial 2500 60 2
        prefetch 10 2m 20%
        serve_stale 30m verify
        servfail 10s
        disable success a.example.org b.example.org
        disable denial
        keepttl
    }"""))
    assert cfg.success == Bucket(5000, 120, 10)
    assert cfg.denial == Bucket(2500, 60, 2)
    assert cfg.prefetch == Prefetch(10, 120.0, 20)
    assert cfg.serve_stale == ServeStale(1800.0, verify=True)
    assert cfg.servfail_ttl == 10.0
    assert cfg.disable_success == ("a.example.org.", "b.example.org.")
    assert cfg.disable_denial == (".",)
    assert cfg.keepttl


def test_block_sizes_keep_the_directive_ttl_unless_given() -> None:
    cfg = parse(directive("cache 30 {\n success 100\n denial 200 20\n}"))
    assert cfg.success == Bucket(100, 30, 5)
    assert cfg.denial == Bucket(200, 20, 5)


def test_min_ttl_zero_and_max_wins_over_min() -> None:
    cfg = parse(directive("cache {\n success 100 10 0\n denial 100 10 60\n}"))
    assert cfg.success.clamp(0) == 0
    assert cfg.denial.clamp(1) == 10  # MINTTL above TTL: the maximum wins, as in CoreDNS


def test_prefetch_forms() -> None:
    assert parse(directive("cache {\n prefetch 5\n}")).prefetch == Prefetch(5, 60.0, 10)
    assert parse(directive("cache {\n prefetch 5 30s\n}")).prefetch == Prefetch(5, 30.0, 10)
    assert parse(directive("cache {\n prefetch 5 50%\n}")).prefetch == Prefetch(5, 60.0, 50)
    assert parse(directive("cache {\n prefetch 0\n}")).prefetch.amount == 0


def test_serve_stale_forms() -> None:
    assert parse(directive("cache {\n serve_stale\n}")).serve_stale == ServeStale(3600.0, False)
    assert parse(directive("cache {\n serve_stale 10m\n}")).serve_stale == ServeStale(600.0, False)
    assert parse(directive("cache {\n serve_stale 1h IMMEDIATE\n}")).serve_stale == ServeStale(3600.0, False)
    assert parse(directive("cache {\n serve_stale 0 verify\n}")).serve_stale == ServeStale(0.0, True)


def test_servfail_zero_disables_and_five_minutes_is_the_limit() -> None:
    assert parse(directive("cache {\n servfail 0\n}")).servfail_ttl == 0.0
    assert parse(directive("cache {\n servfail 5m\n}")).servfail_ttl == 300.0


def test_disable_lines_add_up() -> None:
    cfg = parse(directive("cache {\n disable success a.example\n disable success b.example\n}"))
    assert cfg.disable_success == ("a.example.", "b.example.")


@pytest.mark.parametrize("body, line, words", [
    ("cache 0", 2, "cache TTL can not be zero or negative: 0"),
    ("cache -5", 2, "cache TTL can not be zero or negative: -5"),
    ("cache bad..zone", 2, "not a valid domain name"),
    ("cache {\n success\n}", 3, "success: expected 1 to 3 arguments, got 0"),
    ("cache {\n success 1 2 3 4\n}", 3, "success: expected 1 to 3 arguments, got 4"),
    ("cache {\n success many\n}", 3, "invalid success capacity 'many'"),
    ("cache {\n success -1\n}", 3, "success capacity -1 is below the minimum of 0"),
    ("cache {\n denial 10 0\n}", 3, "denial TTL 0 is below the minimum of 1"),
    ("cache {\n denial 10 60 -1\n}", 3, "denial MINTTL -1 is below the minimum of 0"),
    ("cache {\n prefetch\n}", 3, "prefetch: expected 1 to 3 arguments, got 0"),
    ("cache {\n prefetch -1\n}", 3, "prefetch amount -1 is below the minimum of 0"),
    ("cache {\n prefetch 1 soon\n}", 3, "invalid duration 'soon'"),
    ("cache {\n prefetch 1 1m 10\n}", 3, "percentage '10' must end with '%'"),
    ("cache {\n prefetch 1 1m 5%\n}", 3, "percentage 5% is outside [10%, 90%]"),
    ("cache {\n prefetch 1 1m 95%\n}", 3, "percentage 95% is outside [10%, 90%]"),
    ("cache {\n prefetch 1 1m x%\n}", 3, "invalid percentage 'x%'"),
    ("cache {\n prefetch 1 20% 1m\n}", 3, "unexpected '1m' after the percentage"),
    ("cache {\n serve_stale 1h verify now\n}", 3, "invalid duration 'now'"),
    ("cache {\n serve_stale 1h verify 1s 2s 3s 4s\n}", 3, "serve_stale: expected 0 to 5 arguments, got 6"),
    ("cache {\n serve_stale 1h later\n}", 3, "invalid refresh mode 'later'"),
    ("cache {\n serve_stale -1h\n}", 3, "invalid duration '-1h'"),
    ("cache {\n servfail\n}", 3, "servfail: expected exactly 1 argument, got 0"),
    ("cache {\n servfail 6m\n}", 3, "over 5 minutes is not permitted"),
    ("cache {\n servfail 5\n}", 3, "invalid duration '5'"),
    ("cache {\n disable\n}", 3, "disable: expected at least 1 argument, got 0"),
    ("cache {\n disable errors\n}", 3, "cache type must be 'success' or 'denial'"),
    ("cache {\n disable denial bad..zone\n}", 3, "not a valid domain name"),
    ("cache {\n keepttl 5\n}", 3, "keepttl: expected exactly 0 arguments, got 1"),
    ("cache {\n\n sucess 100\n}", 4, "cache: unknown option 'sucess'"),
    ("cache {\n keepttl {\n }\n}", 3, "takes no block of options"),
])
def test_errors_name_file_and_line(body: str, line: int, words: str) -> None:
    message = error(body)
    assert message.startswith(f"Corefile:{line}: "), message
    assert words in message, message


def test_setup_takes_the_block_zones_and_server_label() -> None:
    blocks = parse_text("example.org:5300 example.net:5300 {\n bind 127.0.0.1\n cache\n}\n"
                        "other.example:5300 {\n cache 10 sub.other.example\n}\n")
    built = build(blocks, "Corefile", Services())
    first, second = [h for h in built.handlers if h.plugin == "cache"]
    assert first.zones.zones == ("example.org.", "example.net.")  # type: ignore[attr-defined]
    assert first.server == "dns://127.0.0.1:5300"  # type: ignore[attr-defined]
    assert second.zones.zones == ("sub.other.example.",)  # type: ignore[attr-defined]
    assert second.server == "dns://:5300"  # type: ignore[attr-defined]


def test_twice_in_a_block_is_an_error() -> None:
    blocks = parse_text(". {\n cache\n cache 10\n}\n")
    with pytest.raises(ConfigError, match=r"Corefile:3: cache: may appear only once"):
        build(blocks, "Corefile", Services())
