"""A broker whose metadata log lives in PostgreSQL (artesian.metadata.store.url), on a real
server: topics, their configs and their data survive a restart and kill -9 with nothing in
the data directory but the logs; a store the broker cannot reach stops it with a clear line."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from tests.broker_process import free_port
from tests.consuming import read_range

T = 20.0


def _produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    for v in values:
        p.produce(topic, v, partition=0)
    assert p.flush(T) == 0


def _topic_config(bootstrap: str, topic: str, name: str) -> str:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    res = ConfigResource("topic", topic)
    return str(admin.describe_configs([res])[res].result(T)[name].value)


def test_topics_live_in_postgres_across_restart_and_kill_9(
    broker_factory: Any, postgres_database: str
) -> None:
    broker = broker_factory({"artesian.metadata.store.url": postgres_database})
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    new = NewTopic("pg", 2, 1, config={"retention.ms": "123456"})
    for f in admin.create_topics([new]).values():
        f.result(T)
    _produce(broker.bootstrap, "pg", [b"a", b"b"])
    assert not (broker.data_dir / "metadata.db").exists()
    with psycopg.connect(postgres_database) as conn:
        kinds = [k for (k,) in conn.execute("SELECT kind FROM artesian_metadata_log")]
    assert "topic" in kinds and kinds.count("partition") == 2

    for stop in (broker.stop, broker.kill9):
        stop()
        broker.start()
        assert _topic_config(broker.bootstrap, "pg", "retention.ms") == "123456"
        md = AdminClient({"bootstrap.servers": broker.bootstrap}).list_topics("pg", timeout=T)
        assert sorted(md.topics["pg"].partitions) == [0, 1]
        assert read_range(broker.bootstrap, "pg", 0, 2) == [(0, b"a"), (1, b"b")]
    assert "metadata log in postgresql://artesian@127.0.0.1" in broker.log_tail(200)


def test_an_unreachable_metadata_store_stops_the_broker(broker_factory: Any) -> None:
    url = f"postgresql://artesian:secret@127.0.0.1:{free_port()}/nowhere"
    with pytest.raises(RuntimeError) as e:
        broker_factory({"artesian.metadata.store.url": url})
    assert "exited with 2" in str(e.value)
    assert "cannot open the metadata store named by artesian.metadata.store.url" in str(e.value)
    assert "secret" not in str(e.value)


def test_an_empty_store_beside_existing_logs_refuses_to_start(
    broker_factory: Any, postgres_database: str
) -> None:
    """A typo in the store URL, or a switch from SQLite, must not make every log a stray."""
    broker = broker_factory()
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    for f in admin.create_topics([NewTopic("keep", 1, 1)]).values():
        f.result(T)
    _produce(broker.bootstrap, "keep", [b"precious"])
    broker.stop()
    broker.settings["artesian.metadata.store.url"] = postgres_database  # empty
    with pytest.raises(RuntimeError) as e:
        broker.start()
    assert "the metadata store is empty" in str(e.value)
    assert (broker.data_dir / "logs" / "keep-0").is_dir()
    del broker.settings["artesian.metadata.store.url"]
    broker.start()
    assert read_range(broker.bootstrap, "keep", 0, 1) == [(0, b"precious")]


def test_passwords_stay_out_of_start_up_errors(broker_factory: Any) -> None:
    for url in (
        f"postgresql://artesian:s3cret@127.0.0.1:{free_port()}/nowhere",
        f"postgresql://artesian@127.0.0.1:{free_port()}/nowhere?password=s3cret",
        "postgresq://artesian:s3cret@127.0.0.1/typo",
    ):
        with pytest.raises(RuntimeError) as e:
            broker_factory({"artesian.metadata.store.url": url})
        assert "exited with 2" in str(e.value)
        assert "s3cret" not in str(e.value)


def test_a_store_of_another_cluster_refuses_to_start(
    broker_factory: Any, postgres_database: str
) -> None:
    def cluster_of(broker: Any) -> str:
        for line in (broker.data_dir / "meta.properties").read_text().splitlines():
            if line.startswith("cluster.id="):
                return line.removeprefix("cluster.id=")
        raise AssertionError("no cluster.id")

    a = broker_factory({"artesian.metadata.store.url": postgres_database}, name="a")
    b = broker_factory(name="b")  # a cluster of its own, in SQLite
    b.stop()
    assert cluster_of(a) != cluster_of(b)
    b.settings["artesian.metadata.store.url"] = postgres_database
    with pytest.raises(RuntimeError) as e:
        b.start()
    assert f"the metadata store belongs to cluster {cluster_of(a)}" in str(e.value)
    assert cluster_of(b) in str(e.value)


def test_a_store_that_refuses_writes_fails_each_request_entity(
    broker_factory: Any, postgres_database: str
) -> None:
    """A store that refuses writes (read-only, privileges revoked) fails CreateTopics and
    IncrementalAlterConfigs topic by topic, resource by resource, with the reason: their
    answers named none of them, and admin clients waited out their timeouts."""
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource

    broker = broker_factory({"artesian.metadata.store.url": postgres_database})
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    for f in admin.create_topics([NewTopic("before", 1, 1)]).values():
        f.result(T)
    deny = (
        "CREATE FUNCTION deny_writes() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN RAISE EXCEPTION 'the store is read-only'; END $$; "
        "CREATE TRIGGER deny BEFORE INSERT ON artesian_metadata_log "
        "FOR EACH STATEMENT EXECUTE FUNCTION deny_writes()"
    )
    with psycopg.connect(postgres_database, autocommit=True) as conn:
        conn.execute(deny)
    try:
        (f,) = admin.create_topics([NewTopic("refused", 1, 1)], request_timeout=T).values()
        error = f.exception(T)
        assert isinstance(error, KafkaException), error
        assert error.args[0].code() == KafkaError.REQUEST_TIMED_OUT
        assert "the metadata store refused the write" in error.args[0].str()
        entry = ConfigEntry("retention.ms", "1000", incremental_operation=AlterConfigOpType.SET)
        resource = ConfigResource("topic", "before", incremental_configs=[entry])
        (f,) = admin.incremental_alter_configs([resource], request_timeout=T).values()
        assert f.exception(T).args[0].code() == KafkaError.REQUEST_TIMED_OUT
    finally:
        with psycopg.connect(postgres_database, autocommit=True) as conn:
            conn.execute("DROP TRIGGER deny ON artesian_metadata_log")
    for f in admin.create_topics([NewTopic("after", 1, 1)]).values():
        assert f.result(T) is None
