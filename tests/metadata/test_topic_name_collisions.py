"""Topic names that would share Kafka's metric names ("." read as "_") are refused, through
an index the image keeps as topics come and go; a logical cluster's names only against its
own."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from kio.schema.errors import ErrorCode

from artesian.metadata.controller import Controller, ControllerError, NewTopic
from artesian.metadata.image import MetadataImage
from artesian.metadata.records import RegisterBrokerRecord, RemoveTopicRecord, TopicRecord
from artesian.metadata.store import SqliteMetadataStore


def _controller(tmp_path: Path, *names: str) -> tuple[Controller, dict[str, str]]:
    image = MetadataImage()
    image.apply(0, RegisterBrokerRecord(1, "127.0.0.1", 9091))
    ids = {name: str(uuid.uuid4()) for name in names}
    for offset, name in enumerate(names, start=1):
        image.apply(offset, TopicRecord(name, ids[name]))
    return Controller(SqliteMetadataStore(tmp_path / "m.db"), image), ids


def _refusal(c: Controller, name: str) -> str | None:
    try:
        c.plan_create_topic(NewTopic(name, 1, 1, {}))
    except ControllerError as e:
        assert e.code is ErrorCode.invalid_topic_exception
        return e.message
    return None


def test_names_colliding_in_metric_names(tmp_path: Path) -> None:
    c, ids = _controller(tmp_path, "a.b_c", "lkc-ab12_orders.eu", "lkc-ab12.orders_us")
    assert _refusal(c, "a_b.c") == "Topic 'a_b.c' collides with existing topic: a.b_c"
    assert _refusal(c, "a_b_c") == "Topic 'a_b_c' collides with existing topic: a.b_c"
    assert _refusal(c, "a.b.d") is None
    # Within one logical cluster's namespace, as anywhere...
    assert _refusal(c, "lkc-ab12_orders_eu") == (
        "Topic 'lkc-ab12_orders_eu' collides with existing topic: lkc-ab12_orders.eu"
    )
    # ... but a shared-cluster name outside it neither refuses nor shows itself to it.
    assert _refusal(c, "lkc-ab12_orders.us") is None
    # A removed topic frees the names it collided with.
    c.image.apply(10, RemoveTopicRecord(ids["a.b_c"]))
    assert _refusal(c, "a_b_c") is None
    assert "a_b_c" not in c.image.topics_by_metric_name


@pytest.mark.parametrize("name", ["plain", "with-dash"])
def test_names_without_dots_or_underscores_collide_only_with_themselves(
    tmp_path: Path, name: str
) -> None:
    c, _ = _controller(tmp_path, "plain", "with-dash")
    with pytest.raises(ControllerError) as exists:
        c.plan_create_topic(NewTopic(name, 1, 1, {}))
    assert exists.value.code is ErrorCode.topic_already_exists
