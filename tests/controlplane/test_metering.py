"""The usage meter (sans-I/O) and the ledger's hourly sums: exact byte counts across broker
restarts, silent brokers and a restarted agent; time-weighted brokers and storage."""

from __future__ import annotations

import json

import pytest

from artesian.controlplane.documents import DocumentError, UsageRecord
from artesian.controlplane.metering import HOUR_MS, BrokerSample, UsageLedger, UsageMeter

C = "lkc-abc123"
T = "t-abc123"


def s(bytes_in: int, bytes_out: int = 0, started: float = 100.0, storage: int = 0) -> BrokerSample:
    return BrokerSample(started, bytes_in, bytes_out, storage)


def test_a_record_comes_once_an_interval_has_passed_with_exact_deltas() -> None:
    meter = UsageMeter("local", interval_ms=10_000)
    assert meter.observe(C, T, {1: s(1000, 10), 2: s(500)}, 2, 0) is None
    assert meter.observe(C, T, {1: s(1600, 30), 2: s(700)}, 2, 5_000) is None
    record = meter.observe(C, T, {1: s(2000, 50), 2: s(900)}, 2, 10_000)
    assert record is not None
    # Brokers first seen count from zero: all their traffic is new to the ledger.
    assert (record.bytes_in, record.bytes_out) == (2900, 50)
    assert (record.start_ms, record.end_ms, record.broker_seconds) == (0, 10_000, 20.0)
    assert [(c.id, c.bytes_in) for c in record.counters] == [(1, 2000), (2, 900)]
    meter.written(record)
    nxt = meter.observe(C, T, {1: s(2100, 50), 2: s(900)}, 2, 20_000)
    assert nxt is not None and (nxt.bytes_in, nxt.start_ms) == (100, 10_000)


def test_an_unwritten_record_is_carried_into_the_next() -> None:
    meter = UsageMeter("local", interval_ms=1_000)
    assert meter.observe(C, T, {1: s(0)}, 1, 0) is None  # the first pass opens the window
    first = meter.observe(C, T, {1: s(100)}, 1, 1_000)
    assert first is not None and first.bytes_in == 100
    # Not written (the ledger was down): the next record holds both intervals.
    second = meter.observe(C, T, {1: s(250)}, 1, 2_000)
    assert second is not None and (second.bytes_in, second.start_ms) == (250, 0)


def test_a_restarted_broker_counts_from_zero_and_a_silent_one_later() -> None:
    meter = UsageMeter("local", interval_ms=1)
    meter.observe(C, T, {1: s(0), 2: s(0)}, 2, 0)
    meter.written(meter.observe(C, T, {1: s(1000), 2: s(1000)}, 2, 1) or pytest.fail())
    # Broker 1 restarted and already grew past its old count; broker 2 did not answer.
    record = meter.observe(C, T, {1: s(1500, started=200.0), 2: None}, 2, 2)
    assert record is not None and record.bytes_in == 1500
    meter.written(record)
    # Counters that went back without a new start time are a restart too.
    record = meter.observe(C, T, {1: s(300, started=200.0), 2: s(1400)}, 2, 3)
    assert record is not None and record.bytes_in == 300 + 400


def test_a_resumed_meter_counts_nothing_twice() -> None:
    meter = UsageMeter("local", interval_ms=1_000)
    meter.observe(C, T, {1: s(0)}, 1, 0)
    record = meter.observe(C, T, {1: s(5000, 70)}, 1, 1_000)
    assert record is not None
    meter.written(record)
    stored = UsageRecord.decode(record.encode())

    restarted = UsageMeter("local", interval_ms=1_000)
    restarted.resume(stored)
    nxt = restarted.observe(C, T, {1: s(5600, 90)}, 1, 2_500)
    assert nxt is not None and (nxt.bytes_in, nxt.bytes_out) == (600, 20)
    # The time the agent was away counts: the brokers ran meanwhile.
    assert (nxt.start_ms, nxt.broker_seconds) == (1_000, 1.5)


def test_storage_and_broker_seconds_are_time_weighted_and_removed_brokers_forgotten() -> None:
    meter = UsageMeter("local", interval_ms=4_000)
    meter.observe(C, T, {1: s(0, storage=1000), 2: s(0, storage=3000)}, 2, 0)
    meter.observe(C, T, {1: s(0, storage=2000), 2: s(0, storage=2000)}, 2, 2_000)
    record = meter.observe(C, T, {1: s(0, storage=1000)}, 1, 4_000)
    assert record is not None
    assert record.storage_byte_seconds == 4000 * 2 + 1000 * 2
    assert record.broker_seconds == 2 * 2 + 1 * 2
    assert [c.id for c in record.counters] == [1] and meter.nodes(C) == {1}


def test_a_final_record_does_not_wait_for_the_interval() -> None:
    meter = UsageMeter("local", interval_ms=60_000)
    assert meter.observe(C, T, {1: s(10)}, 1, 0) is None
    final = meter.observe(C, T, {1: s(30)}, 1, 10, final=True)
    assert final is not None and final.bytes_in == 30


def test_the_ledger_sums_per_cluster_and_hour_and_filters() -> None:
    ledger = UsageLedger()
    h = 5 * HOUR_MS

    def rec(cluster: str, tenant: str, end: int, n: int) -> UsageRecord:
        return UsageRecord(cluster, tenant, "local", end - 1000, end, n, 2 * n, 1.0, 10.0)

    for record in (
        rec(C, T, h + 10, 100),
        rec(C, T, h + 20, 50),
        rec(C, T, h + HOUR_MS, 7),  # the next hour
        rec("lkc-other1", "", h + 30, 1),
    ):
        ledger.add(record.id, record)
    rows = ledger.hours()
    assert [(r.cluster, r.hour_start_ms, r.bytes_in) for r in rows] == [
        (C, h, 150),
        ("lkc-other1", h, 1),
        (C, h + HOUR_MS, 7),
    ]
    assert rows[0].bytes_out == 300 and rows[0].broker_seconds == 2.0
    assert [r.bytes_in for r in ledger.hours(tenant=T)] == [150, 7]
    assert [r.bytes_in for r in ledger.hours(cluster="lkc-other1")] == [1]
    assert [r.bytes_in for r in ledger.hours(start_ms=h + HOUR_MS + 5)] == [7]
    assert [r.bytes_in for r in ledger.hours(end_ms=h + HOUR_MS)] == [150, 1]
    # Callers get copies: the ledger's sums are not theirs to change.
    rows[0].bytes_in = 0
    assert ledger.hours(tenant=T)[0].bytes_in == 150


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
        {"counters": {}},
    ],
)
def test_a_malformed_usage_record_is_refused(change: dict[str, object]) -> None:
    doc = json.loads(UsageRecord(C, T, "local", 0, 1, 1, 1, 1.0, 1.0).encode())
    doc.update(change)
    with pytest.raises(DocumentError):
        UsageRecord.decode(json.dumps(doc).encode())
