"""The state topics' transactional writer against a real broker: a writer that lost its
broker for a while and was replaced meanwhile must not take its transactional id back (a
zombie back from a network partition would fence its successor)."""

from __future__ import annotations

from pathlib import Path

import pytest

from artesian.controlplane.documents import OBSERVED_TOPIC
from artesian.controlplane.state_topics import (
    Fenced,
    StateTopicError,
    StateWriter,
    ensure_state_topics,
    latest_by_key,
)
from tests.broker_process import BrokerProcess


def test_a_writer_replaced_while_its_broker_was_away_stays_fenced(tmp_path: Path) -> None:
    kafka = BrokerProcess(tmp_path / "kafka").start()
    try:
        ensure_state_topics(kafka.bootstrap, (OBSERVED_TOPIC,))
        old = StateWriter(kafka.bootstrap, OBSERVED_TOPIC, timeout=3.0, transactional_id="cell")
        assert old.put("k", b"from the old one") == 0

        kafka.kill9()
        with pytest.raises(StateTopicError) as lost:
            old.put("k", b"lost: no broker")
        assert not isinstance(lost.value, Fenced)
        kafka.start()

        new = StateWriter(kafka.bootstrap, OBSERVED_TOPIC, transactional_id="cell")
        with pytest.raises(Fenced):
            old.put("k", b"the zombie")
        with pytest.raises(Fenced):
            old.put("k", b"the zombie, again")
        new.put("k", b"from the new one")  # not fenced back by the old one

        got = latest_by_key(kafka.bootstrap, OBSERVED_TOPIC, bytes, {"k"}, timeout=10)
        assert got == {"k": b"from the new one"}
        new.close()
    finally:
        kafka.stop()
