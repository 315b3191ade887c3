"""JsonClient: timeouts, retries with backoff, Retry-After, error translation, redaction."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest

from caftm.clock import FakeClock
from caftm.errors import AuthError, ConfigError, ProviderError
from caftm.signals.base import Basis, Kind
from caftm.signals.http import (
    JsonClient,
    RetryPolicy,
    chunked,
    mapped_name,
    parse_utc,
    provider_reading,
    retry_after_s,
)

from .conformance import retry_on
from .servers import FakeProvider, Fault, Seen

SECRET = "sk-live-3c0ffee"
QUICK = RetryPolicy(timeout_s=2.0, max_retries=3, backoff_base_s=0.01, backoff_max_s=0.02)


class EchoServer(FakeProvider):
    def route(self, seen: Seen) -> tuple[int, Any]:
        return 200, {"path": seen.path, "query": seen.query}


@pytest.fixture
def server() -> Iterator[EchoServer]:
    with EchoServer() as server:
        yield server


def client(server: FakeProvider, policy: RetryPolicy = QUICK) -> JsonClient:
    return JsonClient(
        "acme",
        server.url,
        auth_hint="set CAFTM_ACME_TOKEN",
        policy=policy,
        headers={"x-key": SECRET},
        secrets=[SECRET],
    )


def test_success_decodes_json_and_sends_params(server: EchoServer) -> None:
    body = client(server).get_json("/v1/thing", {"zone": "DE"})
    assert body == {"path": "/v1/thing", "query": {"zone": ["DE"]}}
    assert server.seen[0].headers["x-key"] == SECRET


def test_retries_5xx_then_succeeds(server: EchoServer) -> None:
    server.fail(Fault(500), Fault(502), Fault(503))
    assert client(server).get_json("/x")["path"] == "/x"
    assert len(server.seen) == 4


def test_gives_up_after_max_retries(server: EchoServer) -> None:
    server.fail(*[Fault(503) for _ in range(5)])
    with pytest.raises(ProviderError, match=r"acme answered HTTP 503 at /x after 4 attempt"):
        client(server).get_json("/x")
    assert len(server.seen) == 4


def test_backoff_grows_exponentially(server: EchoServer) -> None:
    virtual = FakeClock()
    policy = retry_on(virtual, timeout_s=2.0, max_retries=4, backoff_base_s=0.5, backoff_max_s=3.0)
    server.fail(*[Fault(500) for _ in range(4)])
    client(server, policy).get_json("/x")
    # base 0.5 s doubling, capped at 3 s, then up to +50% jitter: 0.5-0.75, 1-1.5, 2-3, 3-4.5
    low = [0.5, 1.0, 2.0, 3.0]
    assert len(virtual.slept_s) == 4 and len(server.seen) == 5
    assert all(b <= w <= 1.5 * b for w, b in zip(virtual.slept_s, low, strict=True)), (
        virtual.slept_s
    )


def test_retry_after_seconds_is_honoured(server: EchoServer) -> None:
    virtual = FakeClock()
    server.fail(Fault(429, headers={"Retry-After": "7"}))
    client(server, retry_on(virtual, retry_after_cap_s=30.0)).get_json("/x")
    assert virtual.slept_s == [7.0] and len(server.seen) == 2


def test_retry_after_http_date_is_honoured_and_capped(server: EchoServer) -> None:
    later = format_datetime(datetime.now(UTC) + timedelta(hours=1), usegmt=True)
    server.fail(Fault(503, headers={"Retry-After": later}))
    virtual = FakeClock()
    client(server, retry_on(virtual, max_retries=1, retry_after_cap_s=30.0)).get_json("/x")
    assert virtual.slept_s == [30.0]  # an hour asked for, the cap honoured


def test_retry_after_parsing() -> None:
    now = datetime(2024, 1, 1, 12, tzinfo=UTC)
    assert retry_after_s("7") == 7.0
    assert retry_after_s("Mon, 01 Jan 2024 12:00:30 GMT", now=now) == 30.0
    assert retry_after_s("Mon, 01 Jan 2024 11:00:00 GMT", now=now) == 0.0
    assert retry_after_s("soon") is None and retry_after_s(None) is None


def test_deadline_stops_retrying(server: EchoServer) -> None:
    server.fail(*[Fault(429, headers={"Retry-After": "25"}) for _ in range(4)])
    virtual = FakeClock()
    policy = retry_on(virtual, max_retries=3, retry_after_cap_s=30.0, deadline_s=60.0)
    with pytest.raises(ProviderError, match="HTTP 429 at /x after 3 attempt"):
        client(server, policy).get_json("/x")
    assert virtual.slept_s == [25.0, 25.0]  # a third wait would end past the 60 s deadline
    assert len(server.seen) == 3


def test_401_and_403_are_auth_errors_with_hint_and_no_key(
    server: EchoServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    for status in (401, 403):
        server.fail(Fault(status, {"detail": f"key {SECRET} revoked"}))
        with pytest.raises(AuthError, match="set CAFTM_ACME_TOKEN") as info:
            client(server).get_json("/x")
        assert f"HTTP {status} at /x" in str(info.value) and SECRET not in str(info.value)
    assert SECRET not in caplog.text


def test_client_errors_are_not_retried_and_are_redacted(server: EchoServer) -> None:
    server.fail(Fault(400, {"message": f"bad zone for key {SECRET}"}))
    with pytest.raises(ProviderError, match=r"HTTP 400 at /x: .*\*\*\*") as info:
        client(server).get_json("/x")
    assert SECRET not in str(info.value)
    assert len(server.seen) == 1


def test_timeout_names_the_timeout(server: EchoServer) -> None:
    server.delay_s = 1.0
    policy = RetryPolicy(timeout_s=0.2, max_retries=2)
    began = time.monotonic()
    with pytest.raises(ProviderError, match=r"did not answer within the 0\.2 s timeout at /slow"):
        client(server, policy).get_json("/slow")
    assert time.monotonic() - began < 0.8


def test_non_json_bodies(server: EchoServer) -> None:
    server.fail(Fault(200, "<html>login</html>", "text/html"))
    with pytest.raises(ProviderError, match=r"provider acme answered with non-JSON \(text/html\)"):
        client(server).get_json("/x")
    server.fail(Fault(200, "{not json", "application/json"))
    with pytest.raises(ProviderError, match="non-JSON"):
        client(server).get_json("/x")


def test_connection_refused_is_retried_then_provider_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    refused = JsonClient("acme", f"http://127.0.0.1:{port}", auth_hint="-", policy=QUICK)
    with pytest.raises(ProviderError, match=r"cannot reach acme at http://127\.0\.0\.1"):
        refused.get_json("/x")
    assert caplog.text.count("retry") == 3


def test_bad_base_url_is_config_error() -> None:
    with pytest.raises(ConfigError, match="must start with http"):
        JsonClient("acme", "ftp://example", auth_hint="-")


def test_repr_hides_headers(server: EchoServer) -> None:
    assert SECRET not in repr(client(server))


def test_parse_utc_and_provider_reading() -> None:
    assert parse_utc("2024-01-01T00:00Z", provider="p") == datetime(2024, 1, 1, tzinfo=UTC)
    assert parse_utc("2024-01-01T02:00:00+02:00", provider="p") == datetime(2024, 1, 1, tzinfo=UTC)
    with pytest.raises(ProviderError, match="p gave an unparseable time"):
        parse_utc("yesterday", provider="p")
    when = datetime(2024, 1, 1, tzinfo=UTC)
    ok = provider_reading(
        provider="p", zone="Z", time=when, value=12, basis=Basis.DIRECT, kind=Kind.MEASURED
    )
    assert ok.intensity_g_per_kwh == 12.0 and ok.source == "p"
    for bad in (None, "12", True, -1.0, 3000.0, float("nan")):
        with pytest.raises(ProviderError, match=r"p gave .* zone Z"):
            provider_reading(
                provider="p", zone="Z", time=when, value=bad, basis=Basis.DIRECT, kind=Kind.MEASURED
            )


def test_chunked_covers_the_range_and_refuses_a_non_positive_span() -> None:
    start = datetime(2024, 1, 1, tzinfo=UTC)
    end = start + timedelta(days=25)
    chunks = list(chunked(start, end, timedelta(days=10)))
    assert [(b - start).days for b, _ in chunks] == [0, 10, 20]
    assert [(a - start).days for _, a in chunks] == [10, 20, 25]
    with pytest.raises(ConfigError, match="must be positive"):
        list(chunked(start, end, timedelta(0)))


def test_mapped_name_prefers_override_then_mapping_then_a_native_looking_zone() -> None:
    mapping = {"GB": "UK", "DE": "DE"}

    def native(name: str) -> bool:
        return name.islower()

    def name_for(zone: str, override: str | None = None) -> str:
        return mapped_name(
            zone,
            mapping,
            override=override,
            looks_native=native,
            what="test region",
            example="region='abc'",
        )

    assert name_for("GB") == "UK"
    assert name_for("GB", override="forced") == "forced"
    assert name_for("XX", override="forced") == "forced"
    assert name_for("abc") == "abc"
    for bad in ("XX", ""):
        with pytest.raises(ConfigError) as info:
            name_for(bad)
        assert str(info.value) == (
            f"zone {bad!r} has no test region; give the test region itself as the zone "
            "(e.g. abc), map it with the source's option (region='abc'), or use one of the "
            "mapped zones: DE, GB"
        )
