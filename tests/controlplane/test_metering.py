"""The usage meter (sans-I/O) and the ledger's hourly sums: exact byte counts across broker
restarts, silent brokers, unwritten records and a restarted agent; time-weighted brokers and
storage on the monotonic clock; nothing billed twice."""

from __future__ import annotations

import json

import pytest

from artesian.controlplane.data_plane import _broker_sample, parse_sample
from artesian.controlplane.documents import DocumentError, UsageRecord
from artesian.controlplane.metering import HOUR_MS, BrokerSample, UsageLedger, UsageMeter

C = "lkc-abc123"
T = "t-abc123"
WALL = 1_800_000_000_000  # wall-clock ms of the meter's first pass
STARTED = WALL / 1000 - 3600.0  # the brokers started an hour before it


def s(
    bytes_in: int, bytes_out: int = 0, started: float = STARTED, storage: int = 0
) -> BrokerSample:
    return BrokerSample(started, bytes_in, bytes_out, storage)


def at(
    meter: UsageMeter, seconds: float, samples: dict[int, BrokerSample | None], **kw: object
) -> list[UsageRecord]:
    """One pass ``seconds`` after the first, wall and monotonic clocks agreeing."""
    running = kw.pop("running", len(samples))
    return meter.observe(C, T, samples, running, WALL + int(seconds * 1000), 100.0 + seconds, **kw)  # type: ignore[arg-type]


def test_brokers_older_than_the_meter_are_measured_from_its_first_pass() -> None:
    """Clusters running when metering starts (an upgrade): their past is not billed now."""
    meter = UsageMeter("local", interval_ms=10_000)
    assert at(meter, 0, {1: s(10**12, 10**12), 2: s(500)}) == []
    assert at(meter, 5, {1: s(10**12 + 600, 10**12 + 20), 2: s(700)}) == []
    (record,) = at(meter, 10, {1: s(10**12 + 1000, 10**12 + 40), 2: s(900)})
    assert (record.bytes_in, record.bytes_out) == (1000 + 400, 40)
    assert (record.start_ms, record.end_ms, record.broker_seconds) == (WALL, WALL + 10_000, 20.0)
    assert [(c.id, c.bytes_in) for c in record.counters] == [(1, 10**12 + 1000), (2, 900)]
    meter.written(record)
    (nxt,) = at(meter, 20, {1: s(10**12 + 1100, 10**12 + 40), 2: s(900)})
    assert (nxt.bytes_in, nxt.start_ms) == (100, WALL + 10_000)


def test_a_broker_started_since_the_last_pass_counts_from_zero() -> None:
    meter = UsageMeter("local", interval_ms=1_000)
    at(meter, 0, {1: s(0)})
    new = s(250, started=WALL / 1000 + 0.5)  # scaled out between the passes
    (record,) = at(meter, 1, {1: s(100), 2: new})
    assert record.bytes_in == 100 + 250
    assert record.broker_seconds == 1.0 + 0.5  # the new one ran half of the second


def test_an_unwritten_record_is_sent_again_unchanged_and_the_next_follows_it() -> None:
    meter = UsageMeter("local", interval_ms=1_000)
    at(meter, 0, {1: s(0)})
    (first,) = at(meter, 1, {1: s(100)})
    # Not written (the ledger was down, or the write timed out): the same record again,
    # while the traffic since goes into the next window.
    (again,) = at(meter, 2, {1: s(250)})
    assert again == first
    (again,) = at(meter, 3, {1: s(300)})
    assert again == first
    meter.written(first)
    (second,) = at(meter, 4, {1: s(320)})
    assert (second.start_ms, second.bytes_in) == (first.end_ms, 220)
    meter.written(second)
    assert at(meter, 4.5, {1: s(320)}) == []


def test_a_final_record_follows_an_unwritten_one_once_it_is_written() -> None:
    meter = UsageMeter("local", interval_ms=60_000)
    at(meter, 0, {1: s(0)})
    (first,) = at(meter, 60, {1: s(10)})
    # The deletion is retried pass after pass while the ledger is down: one record waits.
    for seconds in (61, 62, 63):
        assert at(meter, seconds, {1: s(30)}, final=True) == [first]
    meter.written(first)
    (final,) = at(meter, 64, {1: s(30)}, final=True)
    assert (final.start_ms, final.bytes_in) == (first.end_ms, 20) and final.seq > first.seq


def test_a_restarted_broker_counts_from_zero_and_a_silent_one_at_its_next_answer() -> None:
    meter = UsageMeter("local", interval_ms=1)
    at(meter, 0, {1: s(1000), 2: s(1000)})
    restarted = s(1500, started=WALL / 1000 + 0.2)
    (record,) = at(meter, 1, {1: restarted, 2: None}, running=2)
    assert record.bytes_in == 1500
    meter.written(record)
    # Counters that went back without a new start time are a restart too.
    (record,) = at(meter, 2, {1: s(300, started=restarted.started), 2: s(1400)})
    assert record.bytes_in == 300 + 400


def test_a_resumed_meter_counts_nothing_twice_and_no_broker_longer_than_it_ran() -> None:
    meter = UsageMeter("local", interval_ms=1_000)
    at(meter, 0, {1: s(5000), 2: s(0)})
    (record,) = at(meter, 1, {1: s(5000 + 700, 70), 2: s(50)})
    meter.written(record)
    stored = UsageRecord.decode(record.encode())

    # A new agent (its own monotonic clock) 10 s later; broker 2's host rebooted 4 s ago.
    restarted = UsageMeter("local", interval_ms=1_000)
    restarted.resume(stored)
    rebooted = s(40, started=(WALL + 7_000) / 1000)
    (nxt,) = restarted.observe(C, T, {1: s(5000 + 900, 90), 2: rebooted}, 2, WALL + 11_000, 7.0)
    assert (nxt.bytes_in, nxt.bytes_out) == (200 + 40, 20)
    assert (nxt.start_ms, nxt.broker_seconds) == (WALL + 1_000, 10.0 + 4.0)


def test_time_is_the_monotonic_clocks_and_the_wall_clock_only_labels() -> None:
    meter = UsageMeter("local", interval_ms=10_000)
    meter.observe(C, T, {1: s(0)}, 1, WALL, 50.0)
    # The wall clock jumps an hour ahead, then back: 5 s passed each time.
    assert meter.observe(C, T, {1: s(0)}, 1, WALL + 3_600_000, 55.0) == []
    (record,) = meter.observe(C, T, {1: s(0)}, 1, WALL - 3_600_000, 60.0)
    assert record.broker_seconds == 10.0
    assert record.start_ms <= record.end_ms


def test_storage_is_time_weighted_and_a_silent_broker_keeps_its_last() -> None:
    meter = UsageMeter("local", interval_ms=4_000)
    at(meter, 0, {1: s(0, storage=1000), 2: s(0, storage=3000)})
    at(meter, 2, {1: s(0, storage=2000), 2: None}, running=2)
    (record,) = at(meter, 4, {1: s(0, storage=1000)})
    assert record.storage_byte_seconds == (2000 + 3000) * 2 + 1000 * 2
    assert [c.id for c in record.counters] == [1] and meter.nodes(C) == {1}


def _record(cluster: str, tenant: str, start: int, end: int, n: int, seq: int) -> UsageRecord:
    return UsageRecord(cluster, tenant, "local", start, end, n, 2 * n, 1.0, 10.0, seq=seq)


def test_the_ledger_sums_per_cluster_and_hour_and_filters() -> None:
    ledger = UsageLedger()
    h = 5 * HOUR_MS
    for record in (
        _record(C, T, h, h + 10, 100, 1),
        _record(C, T, h + 10, h + 20, 50, 2),
        _record(C, T, h + 20, h + HOUR_MS, 7, 3),  # ends in the next hour
        _record("lkc-other1", "", h, h + 30, 1, 1),
    ):
        ledger.add(record.id, record)
    rows = ledger.hours()
    assert [(r.cluster, r.hour_start_ms, r.used.bytes_in) for r in rows] == [
        (C, h, 150),
        ("lkc-other1", h, 1),
        (C, h + HOUR_MS, 7),
    ]
    assert rows[0].used.bytes_out == 300 and rows[0].used.broker_seconds == 2.0
    assert [r.used.bytes_in for r in ledger.hours(tenant=T)] == [150, 7]
    assert [r.used.bytes_in for r in ledger.hours(cluster="lkc-other1")] == [1]
    assert [r.used.bytes_in for r in ledger.hours(start_ms=h + HOUR_MS + 5)] == [7]
    assert [r.used.bytes_in for r in ledger.hours(end_ms=h + HOUR_MS)] == [150, 1]
    rows[0].used.bytes_in = 0  # callers get copies
    assert ledger.hours(tenant=T)[0].used.bytes_in == 150


def test_the_ledger_counts_a_record_sent_twice_once() -> None:
    ledger = UsageLedger()
    first, second = _record(C, T, 0, 60_000, 10, 1), _record(C, T, 60_000, 120_000, 5, 2)
    # Zero-length, as after a wall clock stepped back: its number still tells it apart.
    third = _record(C, T, 120_000, 120_000, 500, 3)
    for record in (first, first, second, first, second, third, third):
        ledger.add(record.id, record)
    assert sum(r.used.bytes_in for r in ledger.hours()) == 515


def test_records_are_numbered_upwards_across_resumes_and_lost_resumes() -> None:
    meter = UsageMeter("local", interval_ms=1_000)
    at(meter, 0, {1: s(0)})
    (first,) = at(meter, 1, {1: s(1)})
    assert at(meter, 1.5, {1: s(1)}) == [first]  # sent again: the same number
    meter.written(first)
    (second,) = at(meter, 2, {1: s(2)})
    assert first.seq < second.seq
    resumed = UsageMeter("local", interval_ms=1_000)
    resumed.resume(second)
    (third,) = resumed.observe(C, T, {1: s(3)}, 1, second.end_ms + 1_000, 0.0)
    assert third.seq > second.seq and third.bytes_in == 1
    # An agent that found no record to resume from still numbers past the ones before.
    fresh = UsageMeter("local", interval_ms=1_000)
    fresh.observe(C, T, {1: s(3)}, 1, third.end_ms + 5_000, 0.0)
    (fourth,) = fresh.observe(C, T, {1: s(4)}, 1, third.end_ms + 6_000, 1.0)
    assert fourth.seq > third.seq
    ledger = UsageLedger()
    for record in (first, second, third, fourth):
        ledger.add(record.id, record)
    assert sum(r.used.bytes_in for r in ledger.hours()) == 4  # one byte each, none dropped


@pytest.mark.parametrize(
    "change",
    [
        {"id": "orders"},
        {"tenant": "acme"},
        {"start_ms": 5, "end_ms": 4},
        {"bytes_in": -1},
        {"bytes_out": 1.5},
        {"broker_seconds": "1"},
        {"counters": [{"id": 1, "started": 1.0, "bytes_in": -5, "bytes_out": 0}]},
        {
            "counters": [
                {"id": 1, "started": 1.0, "bytes_in": 5, "bytes_out": 0, "storage_bytes": -1}
            ]
        },
        {"counters": {}},
        {"seq": 0},
        {"seq": "1"},
    ],
)
def test_a_malformed_usage_record_is_refused(change: dict[str, object]) -> None:
    doc = json.loads(UsageRecord(C, T, "local", 0, 1, 1, 1, 1.0, 1.0).encode())
    doc.update(change)
    with pytest.raises(DocumentError):
        UsageRecord.decode(json.dumps(doc).encode())


def test_a_shared_brokers_counters_are_split_between_its_logical_clusters_and_itself() -> None:
    text = "\n".join(
        [
            "# HELP kafka_server_broker_topic_bytes_in_total Bytes produced by clients.",
            "# TYPE kafka_server_broker_topic_bytes_in_total counter",
            'kafka_server_broker_topic_bytes_in_total{topic="orders"} 100.0',
            'kafka_server_broker_topic_bytes_in_created{topic="orders"} 1.7e9',
            'kafka_server_broker_topic_bytes_in_total{topic="lkc-north1_orders"} 30.0',
            'kafka_server_broker_topic_bytes_in_total{topic="lkc-north1_clicks"} 5.0',
            'kafka_server_broker_topic_bytes_in_total{topic="lkc-north12_orders"} 7.0',
            'kafka_server_broker_topic_bytes_out_total{topic="lkc-north1_orders"} 60.0',
            "artesian_log_leader_size_bytes 1000.0",
            'artesian_logical_cluster_leader_size_bytes{logical_cluster="lkc-north1"} 400.0',
            'artesian_logical_cluster_leader_size_bytes{logical_cluster="lkc-north12"} 100.0',
            "process_start_time_seconds 1.7e9",
        ]
    )
    sample = parse_sample(text)
    assert sample is not None
    north = _broker_sample(sample, "lkc-north1")
    assert north is not None
    assert (north.bytes_in, north.bytes_out, north.storage_bytes) == (35, 60, 400)
    other = _broker_sample(sample, "lkc-north12")
    assert other is not None and (other.bytes_in, other.storage_bytes) == (7, 100)
    gross = _broker_sample(sample)
    assert gross is not None and (gross.bytes_in, gross.storage_bytes) == (142, 1000)
    # The shared cluster itself is billed what its logical clusters are not.
    net = _broker_sample(sample, net=True)
    assert net is not None
    assert (net.bytes_in, net.bytes_out, net.storage_bytes) == (100, 0, 500)
    assert parse_sample("kafka_server_broker_topic_bytes_in_total nonsense") is None
