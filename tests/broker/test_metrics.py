"""The Prometheus endpoint (artesian.metrics.port) counts what the broker did, exactly."""

from __future__ import annotations

import datetime
import urllib.request
from collections.abc import Callable

from prometheus_client.parser import text_string_to_metric_families

from tests.broker_process import BrokerProcess, free_port
from tests.kafka_wire import WireConn, create_topic, fetch_raw, sample_request
from tests.storage.batches import make_batch

PRODUCE, FETCH = 0, 1


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = resp.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_metrics_count_requests_bytes_records_and_fetch_sessions(
    broker_factory: Callable[..., BrokerProcess],
) -> None:
    metrics_port = free_port()
    broker = broker_factory({"artesian.metrics.port": str(metrics_port)})
    batch = bytes(make_batch(n=4, value_size=100))
    with WireConn(broker.port) as conn:
        create_topic(conn, "m", partitions=2)
        resp = conn.request(PRODUCE, 9, sample_request(PRODUCE, 9, "m", batch=batch))
        assert int(resp.responses[0].partition_responses[0].error_code) == 0
        assert len(fetch_raw(conn, "m", 0)) == len(batch)
        # A full fetch at epoch 0 opens a session over both partitions.
        session = conn.request(
            FETCH,
            12,
            sample_request(
                FETCH, 12, "m", session_epoch=0, max_wait=datetime.timedelta(0), fetch_offset=4
            ),
        )
        assert session.session_id != 0
        m = scrape(metrics_port)

    topic = (("topic", "m"),)
    assert m[("kafka_server_broker_topic_bytes_in_total", topic)] == len(batch)
    assert m[("kafka_server_broker_topic_messages_in_total", topic)] == 4
    assert m[("kafka_server_broker_topic_bytes_out_total", topic)] == len(batch)
    assert m[("kafka_network_requests_total", (("request", "Produce"),))] == 1
    assert m[("kafka_network_requests_total", (("request", "Fetch"),))] == 2
    assert m[("kafka_server_replica_manager_partition_count", ())] == 2
    assert m[("kafka_server_socket_server_connection_count", ())] == 1
    assert m[("kafka_server_fetch_session_cache_num_incremental_fetch_sessions", ())] == 1
    assert m[("kafka_server_fetch_session_cache_num_incremental_fetch_partitions_cached", ())] == 1
    evictions = "kafka_server_fetch_session_cache_incremental_fetch_session_evictions_total"
    assert m[(evictions, ())] == 0


def test_a_gauge_counted_while_its_dict_changes_never_fails_the_scrape() -> None:
    """Gauges count on prometheus-client's thread over dicts the event loop resizes; one that
    raised failed the whole scrape (HTTP 500 with 20,000 groups churning). Counted again,
    then given up as 0."""
    from artesian.broker.server import _scraped

    attempts: list[int] = []

    def flaky() -> int:
        attempts.append(1)
        if len(attempts) < 3:
            raise RuntimeError("dictionary changed size during iteration")
        return 7

    assert _scraped(flaky) == 7 and len(attempts) == 3

    def always() -> int:
        raise RuntimeError("dictionary changed size during iteration")

    assert _scraped(always) == 0
