"""Kafka's RackAwareReplicaSelector, sans-I/O: which replica a consumer in a rack reads from,
and which followers a leader may name at all."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from artesian.broker.replica_manager import FollowerState, Partition
from artesian.config.broker import LEADER_SELECTOR, RACK_AWARE_REPLICA_SELECTOR, BrokerConfig
from artesian.config.definitions import InvalidConfigError
from artesian.replication.replica_selector import (
    ReplicaView,
    preferred_read_replica,
    select_rack_aware,
)
from tests.storage.batches import make_batch
from tests.storage.test_log import NOW, open_log

LEADER = ReplicaView(1, "a", 100, 0)


def test_the_leader_unless_another_replica_is_in_the_clients_rack() -> None:
    b_low = ReplicaView(2, "b", 90, 0)
    b_high = ReplicaView(3, "b", 100, 500)
    b_high_recent = ReplicaView(4, "b", 100, 20)
    views = [LEADER, b_low, b_high, b_high_recent]
    assert select_rack_aware("", LEADER, views) is LEADER
    assert select_rack_aware("z", LEADER, views) is LEADER
    assert select_rack_aware("a", LEADER, [*views, ReplicaView(5, "a", 200, 0)]) is LEADER
    # Highest log end offset first, then the one caught up most recently.
    assert select_rack_aware("b", LEADER, views) is b_high_recent
    assert select_rack_aware("b", LEADER, [LEADER, b_low, b_high]) is b_high
    assert select_rack_aware("b", LEADER, [LEADER, b_low]) is b_low


def _partition(tmp_path: Path) -> Partition:
    log = open_log(tmp_path / "t-0")
    log.append_as_leader(make_batch(n=10), 3, NOW)
    p = Partition("t", 0, uuid.uuid4(), log, 3, (1, 2, 3, 4), (1, 2, 3), leader=1, local_id=1)
    p.followers = {
        2: FollowerState(log_end_offset=10, log_start_offset=0, last_caught_up_ms=NOW),
        3: FollowerState(log_end_offset=4, log_start_offset=2, last_caught_up_ms=NOW),
        4: FollowerState(log_end_offset=10, log_start_offset=0, last_caught_up_ms=NOW),
    }
    return p


def test_only_in_sync_live_followers_holding_the_offset_are_named(tmp_path: Path) -> None:
    p = _partition(tmp_path)
    racks = {1: "a", 2: "b", 3: "c", 4: "d"}
    live = {1, 2, 3, 4}

    def pick(rack: str, offset: int, selector: str | None = RACK_AWARE_REPLICA_SELECTOR) -> int:
        return preferred_read_replica(selector, p, rack, offset, NOW, racks.get, live.__contains__)

    assert pick("b", 5) == 2
    assert pick("b", 5, LEADER_SELECTOR) == -1
    assert pick("b", 5, None) == -1
    assert pick("", 5) == -1
    assert pick("a", 5) == -1  # the leader's own rack
    # Broker 3 holds offsets 2-4 only.
    assert [pick("c", offset) for offset in (1, 2, 4, 5)] == [-1, 3, 3, -1]
    assert pick("d", 5) == -1  # broker 4 is outside the ISR
    live.discard(2)
    assert pick("b", 5) == -1  # not live, or not on the client's listener
    p.log.close()


def test_replica_selector_class_takes_kafkas_selectors_only() -> None:
    assert BrokerConfig().get("replica.selector.class") is None
    for name in (RACK_AWARE_REPLICA_SELECTOR, LEADER_SELECTOR):
        assert BrokerConfig({"replica.selector.class": name}).get("replica.selector.class") == name
    with pytest.raises(InvalidConfigError):
        BrokerConfig({"replica.selector.class": "com.example.MySelector"})


def test_replica_fetch_wait_must_fit_the_socket_timeout_and_the_lag_time() -> None:
    """Kafka's checks: a longer follower long poll would time out its socket, or make the
    leader drop an idle follower from the ISR for lag."""
    BrokerConfig({"replica.fetch.wait.max.ms": "30000", "replica.lag.time.max.ms": "30000"})
    for props in (
        {"replica.fetch.wait.max.ms": "30001"},  # the socket timeout's default is 30000
        {"replica.fetch.wait.max.ms": "5000", "replica.lag.time.max.ms": "3000"},
    ):
        with pytest.raises(InvalidConfigError, match=r"replica\.fetch\.wait\.max\.ms"):
            BrokerConfig(props)
