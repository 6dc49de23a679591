"""Connection limits (Kafka's max.connections.per.ip, its overrides, and max.connections): a
connection over a limit is closed as soon as it is accepted, with a log line naming the
limit; the connections already open carry on, and a slot freed by a close is taken again.
The limits are dynamic broker configs. An address over its connection_creation_rate quota
(KIP-612) has its new connection held unserved, then closed."""

from __future__ import annotations

import time
from typing import Any

import pytest
from confluent_kafka.admin import ResourceType
from kio.schema.errors import ErrorCode

from artesian.config.broker import BrokerConfig
from artesian.config.definitions import ConfigError
from tests.broker.test_dynamic_broker_configs import DELETE, DYN_DEFAULT, SET, _alter, _describe
from tests.broker_process import free_port
from tests.kafka_wire import Closed, WireConn, request_frame, sample_request
from tests.metrics import scrape
from tests.security.test_client_quotas import _alter as _alter_quota

REFUSED = "kafka_server_socket_server_connections_refused_total"


def _served(conn: WireConn) -> bool:
    return int(conn.request(18, 3, sample_request(18, 3, "")).error_code) == 0


def _refused(port: int) -> bool:
    """A new connection is closed before it is served."""
    with WireConn(port, timeout=5) as conn:
        try:
            conn.request(18, 3, sample_request(18, 3, ""))
        except Closed:
            return True
        return False


def _wait_served(port: int) -> None:
    """A new connection is served (the broker may still be counting one just closed)."""
    deadline = time.monotonic() + 10
    while _refused(port):
        assert time.monotonic() < deadline, "a closed connection's slot was never freed"
        time.sleep(0.05)


def test_connections_over_a_limit_are_closed_and_the_others_carry_on(
    broker_factory: Any,
) -> None:
    metrics_port = free_port()
    broker = broker_factory(
        {"max.connections.per.ip": "3", "artesian.metrics.port": str(metrics_port)}
    )
    held = [WireConn(broker.port) for _ in range(3)]
    try:
        assert all(_served(c) for c in held)
        assert _refused(broker.port)
        assert _refused(broker.port)
        assert scrape(metrics_port, REFUSED, listener="PLAINTEXT", limit="per_ip") == 2
        assert (
            "127.0.0.1 already has the configured maximum of 3 connections "
            "(max.connections.per.ip)" in broker.log_tail()
        )
        assert all(_served(c) for c in held)
        # A closed connection frees its slot.
        held.pop().close()
        _wait_served(broker.port)
        held.append(WireConn(broker.port))
        assert _served(held[-1])
        assert _refused(broker.port)

        # An override for the address, set while the broker runs (the cluster-wide default,
        # as kafka-configs --entity-default): five from 127.0.0.1. The request itself takes
        # the fourth connection, released after.
        held.pop().close()
        _wait_served(broker.port)
        assert (
            _alter(broker, "", ("max.connections.per.ip.overrides", "127.0.0.1:5", SET), raw=True)
            == 0
        )
        _wait_served(broker.port)
        held += [WireConn(broker.port) for _ in range(3)]
        assert all(_served(c) for c in held) and len(held) == 5
        assert _refused(broker.port)
        assert (
            "127.0.0.1 already has the configured maximum of 5 connections "
            "(max.connections.per.ip.overrides)" in broker.log_tail()
        )

        # max.connections caps the broker whatever the address.
        held.pop().close()
        _wait_served(broker.port)
        assert _alter(broker, "", ("max.connections", "2", SET), raw=True) == 0
        assert all(_served(c) for c in held)  # four open already: none is closed
        assert _refused(broker.port)
        assert (
            "the broker already has the configured maximum of 2 connections (max.connections)"
            in broker.log_tail()
        )
    finally:
        for conn in held:
            conn.close()
    # Down to none: two are taken again.
    _wait_served(broker.port)
    again = [WireConn(broker.port) for _ in range(2)]
    try:
        assert all(_served(c) for c in again)
        assert _refused(broker.port)
    finally:
        for conn in again:
            conn.close()


def test_connection_limit_settings_are_checked() -> None:
    assert BrokerConfig({"max.connections.per.ip.overrides": "127.0.0.1:5, ::1:7"}).get(
        "max.connections.per.ip.overrides"
    )
    for bad, why in (
        ({"max.connections.per.ip": "0"}, "only if max.connections.per.ip.overrides is set"),
        ({"max.connections.per.ip.overrides": "127.0.0.1"}, "is not host:count"),
        ({"max.connections.per.ip.overrides": "127.0.0.1:many"}, "is not host:count"),
        ({"max.connections": "-1"}, "max.connections"),
    ):
        with pytest.raises(ConfigError, match=why):
            BrokerConfig(bad)
    BrokerConfig({"max.connections.per.ip": "0", "max.connections.per.ip.overrides": "10.0.0.1:2"})
    config = BrokerConfig({})
    with pytest.raises(ConfigError, match="is not host:count"):
        config.validate_dynamic({"max.connections.per.ip.overrides": "nonsense"})
    config.validate_dynamic({"max.connections.per.ip": "10"})
    # A cluster default checked on another broker, that would let nobody in here, is not
    # applied here (this broker keeps its own); with its own overrides it is.
    assert config.update_dynamic({}, {"max.connections.per.ip": "0"}) == ["max.connections.per.ip"]
    assert config.get_int("max.connections.per.ip") == 2_147_483_647
    assert (
        config.update_dynamic(
            {"max.connections.per.ip.overrides": "10.0.0.1:4"}, {"max.connections.per.ip": "0"}
        )
        == []
    )
    assert config.get_int("max.connections.per.ip") == 0
    # Listener limits: per listener, named in lower case, not per mechanism.
    for bad in ("listener.name.PLAINTEXT.max.connections", "listener.name.x.plain.max.connections"):
        with pytest.raises(ConfigError, match="Unknown broker config name"):
            BrokerConfig({bad: "2"})


def test_an_address_over_its_connection_rate_is_held_then_closed(broker_factory: Any) -> None:
    metrics_port = free_port()
    broker = broker_factory({"artesian.metrics.port": str(metrics_port)})
    versions = request_frame(18, 3, 1, sample_request(18, 3, ""))
    with WireConn(broker.port) as admin:
        # Every address: no new connection at all.
        assert _alter_quota(admin, {"ip": None}, {"connection_creation_rate": 0.0}) == (0, None)
        try:
            for _ in range(2):
                before = time.monotonic()
                with WireConn(broker.port) as held:
                    # Never served (what it sends is dropped unread), and closed once the
                    # quota's window is over, not at once: a client does not reconnect
                    # in a tight loop.
                    held.send(versions * 100)
                    held.expect_closed(timeout=10)
                    assert time.monotonic() - before >= 0.95
            assert scrape(metrics_port, REFUSED, listener="PLAINTEXT", limit="rate") == 2
            assert _served(admin)  # open before: it carries on
            # The address's own quota beats the default one, and a raise applies at once.
            assert (
                _alter_quota(admin, {"ip": "127.0.0.1"}, {"connection_creation_rate": 100.0})[0]
                == 0
            )
            for _ in range(5):
                with WireConn(broker.port) as conn:
                    assert _served(conn)
            assert scrape(metrics_port, REFUSED, listener="PLAINTEXT", limit="rate") == 2
        finally:
            _alter_quota(admin, {"ip": None}, {"connection_creation_rate": None})
            _alter_quota(admin, {"ip": "127.0.0.1"}, {"connection_creation_rate": None})


def test_limits_set_live_are_checked_as_the_broker_would_run_with_them(
    broker_factory: Any,
) -> None:
    """No address may be left unable to connect: a per-address limit of 0 is taken with
    overrides (set together, or already there), and the overrides may not be deleted from
    under it."""
    broker = broker_factory()
    invalid_config = 40
    both = (
        ("max.connections.per.ip", "0", SET),
        ("max.connections.per.ip.overrides", "127.0.0.1:3", SET),
    )
    assert _alter(broker, "", ("max.connections.per.ip", "0", SET), raw=True) == invalid_config
    assert _alter(broker, "", *both, raw=True) == 0
    held = [WireConn(broker.port) for _ in range(3)]
    try:
        assert all(_served(c) for c in held)
        assert _refused(broker.port)
        # The only way in may not be taken away, on any layer.
        gone = ("max.connections.per.ip.overrides", None, DELETE)
        held.pop().close()
        _wait_served(broker.port)
        assert _alter(broker, "", gone, raw=True) == invalid_config
        assert _alter(broker, "1", ("max.connections.per.ip.overrides", "", SET), raw=True) == (
            invalid_config
        )
        # A broker-level limit over the cluster default's 0 lets everyone in again.
        assert _alter(broker, "1", ("max.connections.per.ip", "10", SET), raw=True) == 0
        assert _alter(broker, "", gone, raw=True) == 0
    finally:
        for conn in held:
            conn.close()
    _wait_served(broker.port)
    more = [WireConn(broker.port) for _ in range(5)]
    try:
        assert all(_served(c) for c in more)
    finally:
        for conn in more:
            conn.close()


def test_a_listener_has_a_limit_of_its_own(broker_factory: Any) -> None:
    metrics_port = free_port()
    broker = broker_factory(
        {
            "listener.name.plaintext.max.connections": "2",
            "artesian.metrics.port": str(metrics_port),
        }
    )
    held = [WireConn(broker.port) for _ in range(2)]
    try:
        assert all(_served(c) for c in held)
        assert _refused(broker.port)
        assert scrape(metrics_port, REFUSED, listener="PLAINTEXT", limit="listener") == 1
        assert (
            "listener PLAINTEXT already has the configured maximum of 2 connections "
            "(listener.name.plaintext.max.connections)" in broker.log_tail()
        )
        # Raised live, for this listener only.
        held.pop().close()
        _wait_served(broker.port)
        assert (
            _alter(broker, "", ("listener.name.plaintext.max.connections", "3", SET), raw=True) == 0
        )
        _wait_served(broker.port)
        held += [WireConn(broker.port) for _ in range(2)]
        assert all(_served(c) for c in held)
        assert _refused(broker.port)
    finally:
        for conn in held:
            conn.close()
    # DescribeConfigs shows it, on the cluster default and on the broker.
    _wait_served(broker.port)
    name = "listener.name.plaintext.max.connections"
    assert _describe(broker, ResourceType.BROKER, "")[name][:2] == ("3", DYN_DEFAULT)
    assert _describe(broker, ResourceType.BROKER, "1")[name][:2] == ("3", DYN_DEFAULT)


def test_connections_beyond_the_creation_rate_are_held_then_served(broker_factory: Any) -> None:
    """max.connection.creation.rate (KIP-612): a burst past the rate is not refused, as an
    address over its own quota is; each connection waits its turn and is served. The
    listener's rate and the broker's are each held to."""
    metrics_port = free_port()
    broker = broker_factory({"artesian.metrics.port": str(metrics_port)})
    held = "kafka_server_socket_server_connection_accept_throttle_seconds_total"
    versions = request_frame(18, 3, 1, sample_request(18, 3, ""))
    listener_rate = "listener.name.plaintext.max.connection.creation.rate"
    broker_rate = "max.connection.creation.rate"
    # The listener's own rate; then the broker's, with the listener's set far above it.
    for settings in ({listener_rate: "2"}, {broker_rate: "2", listener_rate: "1000"}):
        for name, value in settings.items():
            assert _alter(broker, "", (name, value, SET), raw=True) == 0
        time.sleep(1.0)  # the bucket refills after the alter's own connection
        before = scrape(metrics_port, held, listener="PLAINTEXT")
        started = time.monotonic()
        burst = [WireConn(broker.port, timeout=15) for _ in range(6)]
        try:
            for conn in burst:
                conn.send(versions)
            # Every one is answered, none closed; at 2 a second the last waits about 2 s.
            for conn in burst:
                assert len(conn.recv_frame()) > 0
            assert time.monotonic() - started >= 1.0, settings
        finally:
            for conn in burst:
                conn.close()
        assert scrape(metrics_port, held, listener="PLAINTEXT") - before >= 1.0, settings
        assert scrape(metrics_port, REFUSED, listener="PLAINTEXT", limit="rate") == 0
        for name in settings:
            assert _alter(broker, "", (name, None, DELETE), raw=True) == 0
    # Refused live, as Kafka's listener quota refuses it.
    for name in (broker_rate, listener_rate):
        assert _alter(broker, "", (name, "0", SET), raw=True) == ErrorCode.invalid_config
    assert _describe(broker, ResourceType.BROKER, "1")[broker_rate][0] == "2147483647"
