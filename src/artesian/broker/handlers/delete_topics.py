"""DeleteTopics (20): by name, or by topic id from v6."""

from __future__ import annotations

import datetime
import logging
from typing import Any

from kio.schema.errors import ErrorCode

from artesian.broker.handlers._build import make, response_module
from artesian.metadata.controller import ControllerError

API_KEY = 20
MIN_VERSION = 1
MAX_VERSION = 6

log = logging.getLogger("artesian.admin")


def handle(ctx: Any, request: Any) -> Any:
    broker = ctx.broker
    mod = response_module(API_KEY, ctx.header.api_version)
    if hasattr(request, "topics"):
        wanted = [(t.name, t.topic_id) for t in request.topics]
    else:
        wanted = [(name, None) for name in request.topic_names]
    results = []
    for name, topic_id in wanted:
        code, message = ErrorCode.none, None
        topic = (
            broker.image.topics_by_id.get(topic_id) if topic_id else broker.image.topics.get(name)
        )
        try:
            if not broker.config.get("delete.topic.enable"):
                raise ControllerError(
                    ErrorCode.topic_deletion_disabled, "Topic deletion is disabled."
                )
            broker.plan_and_commit(
                lambda name=name, topic_id=topic_id: broker.controller.plan_delete_topic(
                    name, topic_id
                )
            )
            log.info("deleted topic %s", topic.name if topic else name)
        except ControllerError as e:
            code, message = e.code, e.message
        results.append(
            make(
                mod.DeletableTopicResult,
                name=topic.name if topic is not None else name,
                topic_id=topic.topic_id if topic is not None else topic_id,
                error_code=code,
                error_message=message,
            )
        )
    return make(
        mod.DeleteTopicsResponse, throttle_time=datetime.timedelta(0), responses=tuple(results)
    )
