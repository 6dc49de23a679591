"""``artesian transactions find-hanging|abort|describe-producers`` and ``list
--duration-filter``, as kafka-transactions.sh: a hanging transaction, one whose records sit in
a partition that its coordinator will never end, is found, told apart from a live one, and
aborted, after which read_committed consumers get past it.

A hanging transaction is made the way one arises: transactional records the coordinator never
heard of (no AddPartitionsToTxn), written where KIP-890's check is off."""

from __future__ import annotations

import datetime
import time
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from artesian.protocol import api
from tests.cli.test_admin_cli import cli, cli_json, fails
from tests.kafka_wire import WireConn
from tests.storage.batches import make_batch

T = 20.0
PRODUCE, TRANSACTIONAL = 0, 0x10
NO_CHECK = {"transaction.partition.verification.enable": "false"}


def _ghost_write(broker: Any, partition: int, producer_id: int, n: int) -> int:
    """``n`` transactional records of a producer no coordinator knows; their base offset."""
    batch = make_batch(
        n=n, attributes=TRANSACTIONAL, producer_id=producer_id, producer_epoch=3, base_sequence=0
    )
    cls = api.request_class(PRODUCE, 9)
    assert cls is not None
    mod = __import__(cls.__module__, fromlist=["_"])
    body = cls(
        transactional_id="ghost",
        acks=-1,
        timeout=datetime.timedelta(seconds=10),
        topic_data=(
            mod.TopicProduceData(
                name="ledger",
                partition_data=(mod.PartitionProduceData(index=partition, records=bytes(batch)),),
            ),
        ),
    )
    with WireConn(broker.port) as conn:
        (p,) = conn.request(PRODUCE, 9, body).responses[0].partition_responses
    assert int(p.error_code) == 0, p
    return int(p.base_offset)


def _committed_values(broker: Any, partition: int) -> list[bytes]:
    """What a read_committed consumer reads of a partition, to its end."""
    c = Consumer(
        {
            "bootstrap.servers": broker.bootstrap,
            "group.id": f"reader-{partition}-{time.monotonic()}",
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
        }
    )
    c.assign([TopicPartition("ledger", partition, 0)])
    values: list[bytes] = []
    deadline = time.monotonic() + T
    try:
        while time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error():
                break  # end of what read_committed may read
            values.append(m.value())
    finally:
        c.close()
    return values


def test_a_hanging_transaction_is_found_and_aborted(broker_factory: Any) -> None:
    broker = broker_factory(NO_CHECK)
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    for f in admin.create_topics([NewTopic("ledger", 2, 1)]).values():
        f.result(T)

    # A live transaction on partition 0: open, known to its coordinator, not hanging.
    live = Producer({"bootstrap.servers": broker.bootstrap, "transactional.id": "live"})
    live.init_transactions(T)
    live.begin_transaction()
    live.produce("ledger", b"live", partition=0)
    assert live.flush(T) == 0
    # Two ghosts: one on each partition, each followed by a plain record.
    start0 = _ghost_write(broker, 0, 9001, 2)
    start1 = _ghost_write(broker, 1, 9002, 3)
    plain = Producer({"bootstrap.servers": broker.bootstrap})
    plain.produce("ledger", b"after-0", partition=0)
    plain.produce("ledger", b"after-1", partition=1)
    assert plain.flush(T) == 0
    assert (start0, start1) == (1, 0)
    assert _committed_values(broker, 1) == []  # held back by the ghost

    producers = cli_json(broker, "transactions", "describe-producers", "-t", "ledger", "-p", "1")
    assert [
        (
            p["producer_id"],
            p["producer_epoch"],
            p["coordinator_epoch"],
            p["last_sequence"],
            p["current_txn_start_offset"],
        )
        for p in producers
    ] == [(9002, 3, -1, 2, 0)]
    assert producers[0]["last_timestamp"] == 1_700_000_000_002

    # The ghosts' records are old (2023), so they pass the 15-minute default; the live one's
    # are not. With 0 minutes the live one is a candidate, told apart by its coordinator.
    time.sleep(0.01)
    for minutes in ("15", "0"):
        hanging = cli_json(
            broker,
            "transactions",
            "find-hanging",
            "-t",
            "ledger",
            "--max-transaction-timeout",
            minutes,
        )
        assert [
            (h["partition"], h["producer_id"], h["current_txn_start_offset"], h["transactional_id"])
            for h in hanging
        ] == [(0, 9001, 1, None), (1, 9002, 0, None)]
    assert hanging[0]["duration_minutes"] > 1_000_000
    assert cli_json(broker, "transactions", "find-hanging", "--broker-id", "1") == hanging
    one = cli_json(broker, "transactions", "find-hanging", "-t", "ledger", "-p", "1")
    assert [(h["topic"], h["partition"], h["producer_id"]) for h in one] == [("ledger", 1, 9002)]
    text = cli(broker, "transactions", "find-hanging", "--broker-id", "1").stdout
    assert "9001" in text and "9002" in text and "transactions abort" in text

    # list: the live transaction, with its coordinator; --duration-filter keeps open ones
    # older than the filter.
    listed = cli_json(broker, "transactions", "list")
    assert [(t["transactional_id"], t["coordinator"], t["state"]) for t in listed] == [
        ("live", 1, "Ongoing")
    ]
    assert cli_json(broker, "transactions", "list", "--duration-filter", "0") == listed
    assert cli_json(broker, "transactions", "list", "--duration-filter", "3600000") == []

    # abort by start offset, and by producer id, epoch and coordinator epoch.
    assert "no open transaction starts at offset 5 of ledger-1" in fails(
        broker, "transactions", "abort", "-t", "ledger", "-p", "1", "--start-offset", "5"
    )
    done = cli(broker, "transactions", "abort", "-t", "ledger", "-p", "1", "--start-offset", "0")
    assert "Aborted the transaction of producer 9002 (epoch 3) in ledger-1." in done.stdout
    cli(
        broker,
        "transactions",
        "abort",
        "-t",
        "ledger",
        "-p",
        "0",
        "--producer-id",
        "9001",
        "--producer-epoch",
        "3",
        "--coordinator-epoch",
        "-1",
    )
    assert cli_json(broker, "transactions", "find-hanging", "-t", "ledger") == []
    (after,) = cli_json(broker, "transactions", "describe-producers", "-t", "ledger", "-p", "1")
    assert after["current_txn_start_offset"] is None

    # read_committed gets past the ghosts; partition 0 stays held by the live transaction
    # until it commits.
    assert _committed_values(broker, 1) == [b"after-1"]
    assert _committed_values(broker, 0) == []
    live.commit_transaction(T)
    assert _committed_values(broker, 0) == [b"live", b"after-0"]


def test_transactions_command_refusals(broker: Any) -> None:
    assert "needs --topic or --broker-id" in fails(broker, "transactions", "find-hanging")
    assert "--partition needs --topic" in fails(
        broker, "transactions", "find-hanging", "--broker-id", "1", "-p", "0"
    )
    assert "no topic 'nope'" in fails(broker, "transactions", "find-hanging", "-t", "nope")
    assert "--start-offset, or with --producer-id" in fails(
        broker, "transactions", "abort", "-t", "x", "-p", "0"
    )
    assert "--producer-id needs --producer-epoch" in fails(
        broker, "transactions", "abort", "-t", "x", "-p", "0", "--producer-id", "1"
    )
    assert "broker 7 is not live" in fails(
        broker, "transactions", "find-hanging", "--broker-id", "7"
    )
