"""Two brokers sharing a metadata store, logging in to each other over a secured
inter-broker listener, and the check that they replicate: a topic on both, acks=all, the
leader killed, every record read back from the survivor."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from tests.broker_process import BrokerProcess

RoundTrip = Callable[[dict[str, str], str], list[tuple[int, bytes]]]


def start_pair(
    tmp_path: Path, listener_settings: Callable[[BrokerProcess], dict[str, str]]
) -> list[BrokerProcess]:
    """Brokers 1 and 2 on one store, each with ``listener_settings(proc)`` (its listeners)."""
    from tests.replication.cluster import FAST

    store = f"sqlite:///{tmp_path}/metadata.db"
    brokers = []
    for node in (1, 2):
        proc = BrokerProcess(tmp_path / f"b{node}")
        proc.settings = {
            "node.id": str(node),
            "artesian.metadata.store.url": store,
            **FAST,
            **listener_settings(proc),
        }
        brokers.append(proc.start())
    return brokers


def wait_for_both(admin: AdminClient) -> None:
    deadline = time.monotonic() + 20
    while set(admin.list_topics(timeout=5).brokers) != {1, 2}:
        assert time.monotonic() < deadline, "the brokers never both joined"
        time.sleep(0.1)


def create_once_all_are_known(admin: AdminClient, topic: Any) -> None:
    """The broker that creates it reads the others' registrations within a metadata poll."""
    deadline = time.monotonic() + 20
    while True:
        (created,) = admin.create_topics([topic]).values()
        try:
            created.result(20)
            return
        except KafkaException as e:
            retriable = e.args[0].code() in (38, 39)  # INVALID_REPLICATION_FACTOR, _ASSIGNMENT
            if not retriable or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def replicated_through_a_leader_kill(
    brokers: list[BrokerProcess],
    conf: dict[str, str],
    topic: str,
    round_trip: RoundTrip,
    configs: dict[str, str] | None = None,
) -> None:
    """``round_trip`` writes 5 records with acks=all to a topic on both brokers (so only
    once the follower has fetched them) and reads them back; after the leader's kill -9 the
    survivor serves the same 5 at the same offsets."""
    admin = AdminClient(conf)
    wait_for_both(admin)
    create_once_all_are_known(admin, NewTopic(topic, 1, 2, config=configs or {}))
    expected = [(i, f"{topic}-{i}".encode()) for i in range(5)]
    assert round_trip(conf, topic) == expected
    partition = admin.list_topics(topic, timeout=10).topics[topic].partitions[0]
    assert sorted(partition.isrs) == [1, 2]
    brokers[partition.leader - 1].kill9()
    survivor = brokers[2 - partition.leader]
    consumer = Consumer(
        {**conf, "bootstrap.servers": survivor.bootstrap, "group.id": f"after-kill-{topic}"}
    )
    consumer.assign([TopicPartition(topic, 0, 0)])
    got: list[tuple[int, bytes]] = []
    deadline = time.monotonic() + 30
    try:
        while len(got) < 5 and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and not msg.error():
                got.append((msg.offset(), msg.value()))
    finally:
        consumer.close()
    assert got == expected
