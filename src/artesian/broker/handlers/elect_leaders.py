"""ElectLeaders (43): kafka-leader-election and the admin clients' ``elect_leaders`` (KIP-460).

PREFERRED moves a partition's leadership back to its first replica when that one is live and
in sync (the auto leader rebalance does the same on a schedule); UNCLEAN gives a partition
that has no live leader one, from outside the ISR if need be, whatever
unclean.leader.election.enable says, as in Kafka. Answered once the change is in the
metadata log; the brokers take up their new roles as they read it.
"""

from __future__ import annotations

import datetime
import logging
from typing import Any

from kio.schema.errors import ErrorCode

from artesian.broker.handlers._authz import CLUSTER_DENIED, AclOperation, cluster_authorized
from artesian.broker.handlers._build import make, response_module
from artesian.metadata.controller import ControllerError

API_KEY = 43
MIN_VERSION = 0
MAX_VERSION = 2

PREFERRED, UNCLEAN = 0, 1

log = logging.getLogger("artesian.controller")


def handle(ctx: Any, request: Any) -> Any:
    broker = ctx.broker
    mod = response_module(API_KEY, ctx.header.api_version)
    election = int(getattr(request, "election_type", PREFERRED))
    wanted: list[tuple[str, list[int]]] | None = None
    if request.topic_partitions is not None:
        # A partition named twice is elected once (and reported once).
        merged: dict[str, dict[int, None]] = {}
        for t in request.topic_partitions:
            merged.setdefault(t.topic, {}).update(dict.fromkeys(int(p) for p in t.partitions))
        wanted = [(name, list(parts)) for name, parts in merged.items()]

    def answer(
        code: ErrorCode, message: str | None, results: dict[str, list[Any]] | None = None
    ) -> Any:
        if results is None:  # the whole request failed: each partition asked says so
            results = {name: [(p, code, message) for p in ps] for name, ps in wanted or []}
        return make(
            mod.ElectLeadersResponse,
            throttle_time=datetime.timedelta(0),
            error_code=code if ctx.header.api_version >= 1 else ErrorCode.none,
            replica_election_results=tuple(
                make(
                    mod.ReplicaElectionResult,
                    topic=name,
                    partition_result=tuple(
                        make(
                            mod.PartitionResult,
                            partition_id=index,
                            error_code=error,
                            error_message=text,
                        )
                        for index, error, text in outcomes
                    ),
                )
                for name, outcomes in results.items()
            ),
        )

    if not cluster_authorized(ctx, AclOperation.ALTER):
        return answer(ErrorCode.cluster_authorization_failed, CLUSTER_DENIED)
    if election not in (PREFERRED, UNCLEAN):
        return answer(ErrorCode.invalid_request, f"Unknown election type {election}")
    if wanted is not None and not wanted:
        return answer(ErrorCode.none, None, {})
    outcome: dict[str, list[Any]] = {}

    def plan() -> list[Any]:
        records, results = broker.controller.plan_requested_elections(
            election == UNCLEAN, wanted, broker.live_brokers
        )
        outcome.clear()
        outcome.update(results)
        return records  # type: ignore[no-any-return]

    try:
        records = broker.plan_and_commit(plan)
    except ControllerError as e:
        return answer(e.code, e.message)
    if records:
        log.info(
            "%s leader election for %d partition(s) asked by %s",
            "unclean" if election == UNCLEAN else "preferred",
            len(records),
            ctx.connection.principal,
        )
    return answer(ErrorCode.none, None, outcome)
