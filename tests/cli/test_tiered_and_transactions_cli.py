"""``artesian transactions list|describe`` and the tiered columns of ``artesian topic describe``,
which speak the protocol themselves (librdkafka's admin API has neither DescribeTransactions
nor ListTransactions, and refuses ListOffsets -4/-5). Run as subprocesses against a real
broker; outputs checked exactly through --json."""

from __future__ import annotations

from typing import Any

from confluent_kafka import Producer

from tests.broker.test_tiered_storage import TIERED, TOPIC_CONFIG, _tier
from tests.cli.test_admin_cli import cli_json, fails

T = 20.0


def test_transactions_list_and_describe(broker: Any) -> None:
    assert cli_json(broker, "transactions", "list") == []
    open_ = Producer({"bootstrap.servers": broker.bootstrap, "transactional.id": "open-one"})
    open_.init_transactions(T)
    open_.begin_transaction()
    open_.produce("ledger", b"x", partition=0)
    assert open_.flush(T) == 0
    done = Producer({"bootstrap.servers": broker.bootstrap, "transactional.id": "done-one"})
    done.init_transactions(T)
    done.begin_transaction()
    done.produce("ledger", b"y", partition=0)
    done.commit_transaction(T)

    listed = cli_json(broker, "transactions", "list")
    assert [(t["transactional_id"], t["state"]) for t in listed] == [
        ("done-one", "CompleteCommit"),
        ("open-one", "Ongoing"),
    ]
    assert cli_json(broker, "transactions", "list", "--state", "Ongoing") == [listed[1]]

    d = cli_json(broker, "transactions", "describe", "open-one")
    assert d["transactional_id"] == "open-one"
    assert d["state"] == "Ongoing"
    assert d["producer_id"] == listed[1]["producer_id"]
    assert d["producer_epoch"] == 0
    assert d["timeout_ms"] == 60000
    assert d["start_time"] is not None
    assert d["partitions"] == [["ledger", 0]]
    assert cli_json(broker, "transactions", "describe", "done-one")["partitions"] == []
    assert "no transaction with transactional.id 'nope'" in fails(
        broker, "transactions", "describe", "nope"
    )
    open_.abort_transaction(T)


def test_topic_describe_shows_where_the_local_log_starts_and_what_is_tiered(
    broker_factory: Any,
) -> None:
    broker = broker_factory(TIERED)
    local_start = _tier(broker, "hist", 3000, TOPIC_CONFIG)
    (p,) = cli_json(broker, "topic", "describe", "hist")["partitions"]
    assert (p["earliest"], p["latest"]) == (0, 3000)
    assert p["local_start"] == local_start
    assert local_start - 1 <= p["tiered_to"] < 3000
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    for f in admin.create_topics([NewTopic("plain", 1, 1)]).values():
        f.result(T)
    (q,) = cli_json(broker, "topic", "describe", "plain")["partitions"]
    assert "local_start" not in q and "tiered_to" not in q
