"""``artesian share-groups list|describe|reset-offsets|delete-offsets``, which speak the share
group APIs themselves (librdkafka's admin API has none), run as subprocesses against a real
broker; outputs checked exactly through --json."""

from __future__ import annotations

from typing import Any

import pytest

from tests.broker.test_share_group_offsets import EARLIEST_AND_PATIENT, _leave
from tests.broker.test_share_groups import (
    ACCEPT,
    NONE,
    SHARE,
    _acquired,
    _Member,
    _partition,
    _produce,
    _set_group_configs,
    _topic,
)
from tests.cli.test_admin_cli import cli, cli_json, fails


@pytest.fixture
def broker(module_broker_factory: Any) -> Any:
    return module_broker_factory(SHARE)


def test_share_group_offsets_from_the_command_line(broker: Any) -> None:
    topic_id = _topic(broker, "cli-t", 1)
    _set_group_configs(broker, "cli-g", EARLIEST_AND_PATIENT)
    _produce(broker, "cli-t", [f"v{i}" for i in range(10)], 1)
    assert "share group 'cli-g' does not exist" in fails(
        broker, "share-groups", "describe", "cli-g"
    )

    m = _Member(broker, "cli-g")
    assert int(m.heartbeat(("cli-t",)).error_code) == NONE
    assert _acquired(_partition(m.fetch(topic_id))) == [(0, 9, 1)]
    r = m.fetch(topic_id, acks=((0, 3, (ACCEPT,)),), wait_ms=10)
    assert int(_partition(r).acknowledge_error_code) == NONE

    assert {"group": "cli-g", "state": "Stable"} in cli_json(broker, "share-groups", "list")
    d = cli_json(broker, "share-groups", "describe", "cli-g")
    assert (d["state"], [x["assignment"] for x in d["members"]]) == ("Stable", [["cli-t[0]"]])
    assert d["members"][0]["member_id"] == m.member_id
    assert d["offsets"] == [{"topic": "cli-t", "partition": 0, "start_offset": 4, "lag": 6}]
    err = fails(broker, "share-groups", "reset-offsets", "cli-g", "-t", "cli-t", "--to-earliest")
    assert "share group 'cli-g' is active (Stable, 1 members)" in err
    _leave(m, topic_id)

    # A dry run changes nothing; --execute does, clamped to the log.
    plan = cli_json(
        broker, "share-groups", "reset-offsets", "cli-g", "-t", "cli-t", "--to-offset", "2"
    )
    assert plan == {
        "group": "cli-g",
        "executed": False,
        "partitions": [{"topic": "cli-t", "partition": 0, "current_offset": 4, "new_offset": 2}],
    }
    offsets = cli_json(broker, "share-groups", "describe", "cli-g")["offsets"]
    assert offsets == [{"topic": "cli-t", "partition": 0, "start_offset": 4, "lag": 6}]
    args = ("share-groups", "reset-offsets", "cli-g", "-t", "cli-t:0", "--execute")
    assert cli_json(broker, *args, "--to-offset", "99")["partitions"][0]["new_offset"] == 10
    assert cli_json(broker, *args, "--to-earliest")["partitions"][0]["current_offset"] == 10
    d = cli_json(broker, "share-groups", "describe", "cli-g")
    assert (d["state"], d["members"]) == ("Empty", [])
    assert d["offsets"] == [{"topic": "cli-t", "partition": 0, "start_offset": 0, "lag": 10}]
    assert "Reset the offsets of share group cli-g." in cli(broker, *args, "--to-latest").stdout
    assert "bad --topic" in fails(
        broker, "share-groups", "reset-offsets", "cli-g", "-t", "cli-t:x", "--to-latest"
    )
    assert "give exactly one of" in fails(
        broker, "share-groups", "reset-offsets", "cli-g", "-t", "cli-t"
    )

    # Deleting the offsets: the next consumer starts where share.auto.offset.reset says.
    assert cli_json(broker, "share-groups", "delete-offsets", "cli-g", "-t", "cli-t") == {
        "group": "cli-g",
        "deleted": ["cli-t"],
    }
    assert cli_json(broker, "share-groups", "describe", "cli-g")["offsets"] == []
    assert "There is no offset information to delete." in fails(
        broker, "share-groups", "delete-offsets", "cli-g", "-t", "cli-t"
    )
    # And the group goes as any other.
    cli(broker, "groups", "delete", "cli-g")
    assert "share group 'cli-g' does not exist" in fails(
        broker, "share-groups", "describe", "cli-g"
    )


def test_share_group_commands_say_when_share_groups_are_off(broker_factory: Any) -> None:
    """A broker without group.share.enable closes a connection that sends their APIs; the
    commands say so instead of calling the broker unreachable."""
    broker = broker_factory({"group.share.enable": "false"})
    for args in (
        ("describe", "workers"),
        ("reset-offsets", "workers", "--topic", "t", "--to-earliest"),
    ):
        message = fails(broker, "share-groups", *args)
        assert "share groups are off on" in message and "group.share.enable=true" in message
