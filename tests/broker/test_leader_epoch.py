"""Leader epochs (KIP-320): requests carrying a current leader epoch are checked against the
partition's; OffsetForLeaderEpoch answers the end offset of an epoch."""

from __future__ import annotations

from typing import Any

import pytest

from tests.kafka_wire import WireConn, create_topic, high_watermark, sample_request
from tests.storage.batches import make_batch

FETCH, LIST_OFFSETS, PRODUCE, OFFSET_FOR_LEADER_EPOCH = 1, 2, 0, 23
FENCED_LEADER_EPOCH, UNKNOWN_LEADER_EPOCH = 74, 75


@pytest.fixture
def broker(module_broker_factory: Any) -> Any:
    """One broker for the module: each case writes to a topic of its own."""
    return module_broker_factory()


def _partition(resp: Any, topics_field: str, partitions_field: str) -> Any:
    return getattr(getattr(resp, topics_field)[0], partitions_field)[0]


@pytest.mark.parametrize(("epoch", "expected"), [(-1, 0), (0, 0), (1, UNKNOWN_LEADER_EPOCH)])
def test_current_leader_epoch_is_checked(broker: Any, epoch: int, expected: int) -> None:
    topic = f"epochs-{epoch + 1}"
    with WireConn(broker.port) as conn:
        create_topic(conn, topic)
        produce = sample_request(PRODUCE, 9, topic, batch=bytes(make_batch(n=3)))
        conn.request(PRODUCE, 9, produce)
        assert high_watermark(conn, topic) == 3

        fetch = conn.request(
            FETCH, 12, sample_request(FETCH, 12, topic, current_leader_epoch=epoch)
        )
        listed = conn.request(
            LIST_OFFSETS,
            7,
            sample_request(LIST_OFFSETS, 7, topic, current_leader_epoch=epoch, timestamp=-1),
        )
        ofle = conn.request(
            OFFSET_FOR_LEADER_EPOCH,
            4,
            sample_request(
                OFFSET_FOR_LEADER_EPOCH, 4, topic, current_leader_epoch=epoch, leader_epoch=0
            ),
        )
    assert int(_partition(fetch, "responses", "partitions").error_code) == expected
    listed_p = _partition(listed, "topics", "partitions")
    assert int(listed_p.error_code) == expected
    end = _partition(ofle, "topics", "partitions")
    assert int(end.error_code) == expected
    if expected == 0:
        assert listed_p.offset == 3
        # Epoch 0 is the latest: its end offset is the log end offset.
        assert (end.leader_epoch, end.end_offset) == (0, 3)
