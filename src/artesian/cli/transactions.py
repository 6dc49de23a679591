"""``artesian transactions``: list and describe transactions, and find and abort hanging ones
(like kafka-transactions.sh).

A transaction hangs when a partition holds its records but its coordinator no longer expects
to end it there: its last stable offset stops, and read_committed consumers with it.
``find-hanging`` reads each partition's producers (DescribeProducers) and keeps the open
transactions their coordinators do not know; ``abort`` writes the abort marker itself
(WriteTxnMarkers to the partition's leader, as Kafka's admin client does).

librdkafka's admin API has none of these requests, so they speak the protocol through
``wire.WireClient``."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer

from artesian.cli.common import (
    DEFAULT_BOOTSTRAP,
    BootstrapOpt,
    ClientOptions,
    CommandConfigOpt,
    JsonOpt,
    PropsOpt,
    TimeoutOpt,
    client_options,
    fail,
    make_app,
    out,
    print_json,
    reporting,
    table,
)
from artesian.cli.wire import WireClient, broker_addresses, coordinator_of

transactions_app = make_app(
    "List and describe transactions, and find and abort hanging ones (like kafka-transactions.sh)."
)

_LIST_TRANSACTIONS, _DESCRIBE_TRANSACTIONS = 66, 65
_DESCRIBE_PRODUCERS, _WRITE_TXN_MARKERS = 61, 27
_TRANSACTION_KEY = 1
# Partitions per DescribeProducers request, as kafka-transactions' find-hanging batches them.
_BATCH = 500

TopicOpt = Annotated[str, typer.Option("--topic", "-t", help="The topic.")]
PartitionOpt = Annotated[int, typer.Option("--partition", "-p", help="The partition.")]
BrokerIdOpt = Annotated[
    int | None,
    typer.Option("--broker-id", help="Ask this replica's broker, not the partition's leader."),
]


@transactions_app.command("list")
def list_(
    state: Annotated[
        list[str] | None,
        typer.Option(
            "--state", help="Only these states (Ongoing, PrepareCommit, ...). Repeatable."
        ),
    ] = None,
    duration_filter: Annotated[
        int | None,
        typer.Option(
            "--duration-filter",
            help="Only transactions open longer than this many milliseconds (KIP-994).",
        ),
    ] = None,
    bootstrap: BootstrapOpt = DEFAULT_BOOTSTRAP,
    command_config: CommandConfigOpt = None,
    props: PropsOpt = None,
    timeout: TimeoutOpt = 15.0,
    as_json: JsonOpt = False,
) -> None:
    """Transactional ids, from every broker (each lists those it coordinates), with their
    coordinators, producer ids and states."""
    opts = client_options(bootstrap, command_config, props, timeout)
    with reporting(opts.bootstrap):
        listed = _list_transactions(
            opts,
            states=tuple(state or ()),
            duration_ms=-1 if duration_filter is None else duration_filter,
        )
        rows = sorted((t, c, p, s) for c, t, p, s in listed)
        if as_json:
            print_json(
                [
                    {"transactional_id": t, "coordinator": c, "producer_id": p, "state": s}
                    for t, c, p, s in rows
                ]
            )
        elif rows:
            out.print(
                table(None, ["TRANSACTIONAL ID", "COORDINATOR", "PRODUCER ID", "STATE"], rows)
            )
        else:
            out.print("No transactions.")


def _list_transactions(
    opts: ClientOptions,
    states: tuple[str, ...] = (),
    producer_ids: tuple[int, ...] = (),
    duration_ms: int = -1,
) -> list[tuple[int, str, int, str]]:
    """(coordinator, transactional id, producer id, state) from every broker."""
    from kio.schema.errors import ErrorCode  # here: the schemas are slow to import

    found = []
    for broker, address in sorted(broker_addresses(opts).items()):  # no partitions needed
        with WireClient.for_options(opts, address) as client:
            resp = client.request(
                _LIST_TRANSACTIONS,
                1,
                state_filters=states,
                producer_id_filters=producer_ids,
                duration_filter=duration_ms,
            )
        if resp.error_code != ErrorCode.none:
            fail(f"ListTransactions at broker {broker} failed: {resp.error_code.name}")
        found += [
            (broker, t.transactional_id, int(t.producer_id), t.transaction_state)
            for t in resp.transaction_states
        ]
    return found


@transactions_app.command()
def describe(
    transactional_id: Annotated[str, typer.Argument(help="The transactional.id.")],
    bootstrap: BootstrapOpt = DEFAULT_BOOTSTRAP,
    command_config: CommandConfigOpt = None,
    props: PropsOpt = None,
    timeout: TimeoutOpt = 15.0,
    as_json: JsonOpt = False,
) -> None:
    """State, producer id and epoch, timeout, start time and partitions of one transaction."""
    from kio.schema.errors import ErrorCode  # here: the schemas are slow to import

    opts = client_options(bootstrap, command_config, props, timeout)
    with reporting(opts.bootstrap):
        t = _describe_transaction(opts, transactional_id)
        if t.error_code == ErrorCode.transactional_id_not_found:
            fail(
                f"no transaction with transactional.id {transactional_id!r}",
                "List them with `artesian transactions list`.",
            )
        if t.error_code != ErrorCode.none:
            fail(f"DescribeTransactions failed: {t.error_code.name}")
        d = _describe(t)
        if as_json:
            print_json(d)
            return
        out.print(
            table(
                None,
                ["TRANSACTIONAL ID", "PRODUCER ID", "EPOCH", "STATE", "TIMEOUT MS", "STARTED"],
                [
                    (
                        d["transactional_id"],
                        d["producer_id"],
                        d["producer_epoch"],
                        d["state"],
                        d["timeout_ms"],
                        d["start_time"] or "-",
                    )
                ],
            )
        )
        if d["partitions"]:
            out.print(table("Partitions", ["TOPIC", "PARTITION"], d["partitions"]))


def _describe(t: Any) -> dict[str, Any]:
    start = t.transaction_start_time
    return {
        "transactional_id": t.transactional_id,
        "producer_id": int(t.producer_id),
        "producer_epoch": int(t.producer_epoch),
        "state": t.transaction_state,
        "timeout_ms": int(t.transaction_timeout.total_seconds() * 1000),
        # -1 on the wire (no transaction open) reads as the epoch or earlier.
        "start_time": start.isoformat() if start is not None and start.year > 1970 else None,
        "partitions": sorted((d.topic, int(p)) for d in t.topics for p in d.partitions),
    }


def _describe_transaction(opts: ClientOptions, transactional_id: str) -> Any:
    """DescribeTransactions' entry for one transactional id, from its coordinator."""
    coordinator = coordinator_of(opts, _TRANSACTION_KEY, transactional_id)
    with WireClient.for_options(opts, coordinator) as client:
        resp = client.request(_DESCRIBE_TRANSACTIONS, 0, transactional_ids=(transactional_id,))
    (t,) = resp.transaction_states
    return t


@transactions_app.command("describe-producers")
def describe_producers(
    topic: TopicOpt,
    partition: PartitionOpt,
    broker_id: BrokerIdOpt = None,
    bootstrap: BootstrapOpt = DEFAULT_BOOTSTRAP,
    command_config: CommandConfigOpt = None,
    props: PropsOpt = None,
    timeout: TimeoutOpt = 15.0,
    as_json: JsonOpt = False,
) -> None:
    """The producers a partition keeps state for: epoch, last sequence and timestamp, and the
    offset where each one's open transaction starts."""
    opts = client_options(bootstrap, command_config, props, timeout)
    with reporting(opts.bootstrap):
        target = _replica_address(opts, topic, partition, broker_id)
        rows = [
            _producer(s) for s in _describe_producers(opts, target, topic, [partition])[partition]
        ]
        if as_json:
            print_json(rows)
        elif rows:
            out.print(
                table(
                    f"Producers of {topic}-{partition}",
                    [
                        "PRODUCER ID",
                        "EPOCH",
                        "COORDINATOR EPOCH",
                        "LAST SEQUENCE",
                        "LAST TIMESTAMP",
                        "TRANSACTION START OFFSET",
                    ],
                    [
                        (
                            r["producer_id"],
                            r["producer_epoch"],
                            r["coordinator_epoch"],
                            r["last_sequence"],
                            r["last_timestamp"],
                            "-"
                            if r["current_txn_start_offset"] is None
                            else r["current_txn_start_offset"],
                        )
                        for r in rows
                    ],
                )
            )
        else:
            out.print(f"No producer state on {topic}-{partition}.")


def _producer(s: Any) -> dict[str, Any]:
    start = int(s.current_txn_start_offset)
    return {
        "producer_id": int(s.producer_id),
        "producer_epoch": int(s.producer_epoch),
        "coordinator_epoch": int(s.coordinator_epoch),
        "last_sequence": int(s.last_sequence),
        "last_timestamp": int(s.last_timestamp),
        "current_txn_start_offset": None if start < 0 else start,
    }


def _placement(
    opts: ClientOptions, topic: str | None
) -> tuple[dict[int, str], dict[tuple[str, int], tuple[int, tuple[int, ...]]]]:
    """host:port of each live broker, and (leader, replicas) of each partition of ``topic``
    (None: of every topic)."""
    md = opts.admin().list_topics(timeout=opts.timeout)
    if topic is not None and topic not in md.topics:
        fail(f"no topic {topic!r}", "List the topics with `artesian topic list`.")
    placed = {
        (name, p.id): (p.leader, tuple(p.replicas))
        for name, t in md.topics.items()
        if topic is None or name == topic
        for p in t.partitions.values()
    }
    return broker_addresses(opts, md), placed


def _replica_address(opts: ClientOptions, topic: str, partition: int, broker_id: int | None) -> str:
    """host:port of the broker to ask about a partition: ``broker_id``'s, else its leader's."""
    brokers, placed = _placement(opts, topic)
    if (topic, partition) not in placed:
        fail(f"{topic} has no partition {partition}")
    broker = placed[(topic, partition)][0] if broker_id is None else broker_id
    if broker not in brokers:
        fail(
            f"broker {broker} is not live"
            if broker_id is not None
            else f"{topic}-{partition} has no leader",
            "See the brokers with `artesian cluster describe`.",
        )
    return brokers[broker]


def _describe_producers(
    opts: ClientOptions, address: str, topic: str, partitions: list[int]
) -> dict[int, list[Any]]:
    """DescribeProducers' active producers per partition of one topic, from one broker."""
    from kio.schema.describe_producers.v0.request import TopicRequest
    from kio.schema.errors import ErrorCode
    from kio.schema.types import TopicName
    from kio.static.primitive import i32

    with WireClient.for_options(opts, address) as client:
        resp = client.request(
            _DESCRIBE_PRODUCERS,
            0,
            topics=(
                TopicRequest(
                    name=TopicName(topic), partition_indexes=tuple(i32(p) for p in partitions)
                ),
            ),
        )
    found = {}
    for t in resp.topics:
        for p in t.partitions:
            if p.error_code != ErrorCode.none:
                fail(
                    f"DescribeProducers of {topic}-{int(p.partition_index)} at {address} failed: "
                    f"{p.error_code.name}"
                )
            found[int(p.partition_index)] = list(p.active_producers)
    return found


@transactions_app.command("find-hanging")
def find_hanging(
    topic: Annotated[
        str | None, typer.Option("--topic", "-t", help="Search this topic's partitions.")
    ] = None,
    partition: Annotated[
        int | None, typer.Option("--partition", "-p", help="Only this partition (with --topic).")
    ] = None,
    broker_id: Annotated[
        int | None,
        typer.Option("--broker-id", help="Search the partitions this broker holds replicas of."),
    ] = None,
    max_transaction_timeout: Annotated[
        int,
        typer.Option(
            "--max-transaction-timeout",
            help="Minutes: only transactions whose last write is older are looked at (the "
            "largest transaction.timeout.ms your producers use; 15 as Kafka's "
            "transaction.max.timeout.ms).",
        ),
    ] = 15,
    bootstrap: BootstrapOpt = DEFAULT_BOOTSTRAP,
    command_config: CommandConfigOpt = None,
    props: PropsOpt = None,
    timeout: TimeoutOpt = 15.0,
    as_json: JsonOpt = False,
) -> None:
    """Open transactions in partitions that their coordinators will never end: they hold back
    the last stable offset, and read_committed consumers with it. Abort each with
    `artesian transactions abort`."""
    if topic is None and broker_id is None:
        fail("find-hanging needs --topic or --broker-id to limit the search", code=2)
    if partition is not None and topic is None:
        fail("--partition needs --topic", code=2)
    opts = client_options(bootstrap, command_config, props, timeout)
    with reporting(opts.bootstrap):
        hanging = _hanging(opts, topic, partition, broker_id, max_transaction_timeout * 60_000)
        if as_json:
            print_json(hanging)
        elif hanging:
            out.print(
                table(
                    "Hanging transactions",
                    [
                        "TOPIC",
                        "PARTITION",
                        "PRODUCER ID",
                        "EPOCH",
                        "COORDINATOR EPOCH",
                        "START OFFSET",
                        "LAST TIMESTAMP",
                        "DURATION (MIN)",
                    ],
                    [
                        (
                            h["topic"],
                            h["partition"],
                            h["producer_id"],
                            h["producer_epoch"],
                            h["coordinator_epoch"],
                            h["current_txn_start_offset"],
                            h["last_timestamp"],
                            h["duration_minutes"],
                        )
                        for h in hanging
                    ],
                )
            )
            out.print(
                "Abort one with `artesian transactions abort --topic T --partition P "
                "--start-offset O`."
            )
        else:
            out.print("No hanging transactions.")


def _hanging(
    opts: ClientOptions,
    topic: str | None,
    partition: int | None,
    broker_id: int | None,
    max_timeout_ms: int,
) -> list[dict[str, Any]]:
    from kio.schema.errors import ErrorCode

    brokers, placed = _placement(opts, topic)
    if broker_id is not None and broker_id not in brokers:
        fail(f"broker {broker_id} is not live", "See the brokers with `artesian cluster describe`.")
    if partition is not None and (topic, partition) not in placed:
        fail(f"{topic} has no partition {partition}")
    # Which broker to ask about which partitions: the one named, else each leader.
    asks: dict[tuple[str, str], list[int]] = {}
    for (name, index), (leader, replicas) in sorted(placed.items()):
        if partition is not None and index != partition:
            continue
        if broker_id is not None and broker_id not in replicas:
            continue
        target = broker_id if broker_id is not None else leader
        if target not in brokers:
            fail(f"{name}-{index} has no leader", "Retry once it has one, or name --broker-id.")
        asks.setdefault((brokers[target], name), []).append(index)
    now_ms = int(time.time() * 1000)
    candidates: list[tuple[str, int, Any]] = []
    for (address, name), indexes in asks.items():
        for i in range(0, len(indexes), _BATCH):
            found = _describe_producers(opts, address, name, indexes[i : i + _BATCH])
            for index, producers in found.items():
                candidates += [
                    (name, index, s)
                    for s in producers
                    if s.current_txn_start_offset >= 0
                    and now_ms - s.last_timestamp > max_timeout_ms
                ]
    if not candidates:
        return []
    producer_ids = tuple(sorted({int(s.producer_id) for _, _, s in candidates}))
    ids = {p: t for _, t, p, _ in _list_transactions(opts, producer_ids=producer_ids)}
    # Partitions each coordinator still expects to end (DescribeTransactions lists the ones
    # of an open transaction, and those still without a marker while it completes).
    expected: dict[int, set[tuple[str, int]]] = {}
    for producer_id, transactional_id in ids.items():
        t = _describe_transaction(opts, transactional_id)
        if t.error_code == ErrorCode.none and int(t.producer_id) == producer_id:
            expected[producer_id] = {(d.topic, int(p)) for d in t.topics for p in d.partitions}
        elif t.error_code not in (ErrorCode.none, ErrorCode.transactional_id_not_found):
            fail(f"DescribeTransactions of {transactional_id!r} failed: {t.error_code.name}")
    return [
        {
            "topic": name,
            "partition": index,
            **_producer(s),
            "transactional_id": ids.get(int(s.producer_id)),
            "duration_minutes": (now_ms - int(s.last_timestamp)) // 60_000,
        }
        for name, index, s in candidates
        if (name, index) not in expected.get(int(s.producer_id), set())
    ]


@transactions_app.command()
def abort(
    topic: TopicOpt,
    partition: PartitionOpt,
    start_offset: Annotated[
        int | None,
        typer.Option(
            "--start-offset",
            help="Where the transaction to abort starts in the partition (see find-hanging).",
        ),
    ] = None,
    producer_id: Annotated[
        int | None,
        typer.Option("--producer-id", help="Instead of --start-offset: the producer's id..."),
    ] = None,
    producer_epoch: Annotated[
        int | None, typer.Option("--producer-epoch", help="...its epoch...")
    ] = None,
    coordinator_epoch: Annotated[
        int | None,
        typer.Option("--coordinator-epoch", help="...and the coordinator epoch of its markers."),
    ] = None,
    bootstrap: BootstrapOpt = DEFAULT_BOOTSTRAP,
    command_config: CommandConfigOpt = None,
    props: PropsOpt = None,
    timeout: TimeoutOpt = 15.0,
) -> None:
    """Abort a hanging transaction in one partition: write its abort marker there, as its
    coordinator would have. Needs ClusterAction on the cluster where ACLs are on."""
    from kio.schema.errors import ErrorCode
    from kio.schema.types import ProducerId, TopicName
    from kio.schema.write_txn_markers.v1.request import WritableTxnMarker, WritableTxnMarkerTopic
    from kio.static.primitive import i16, i32

    if start_offset is None and producer_id is None:
        fail(
            "name the transaction to abort with --start-offset, or with --producer-id, "
            "--producer-epoch and --coordinator-epoch",
            "Find it with `artesian transactions find-hanging`.",
            code=2,
        )
    if start_offset is None and (producer_epoch is None or coordinator_epoch is None):
        fail("--producer-id needs --producer-epoch and --coordinator-epoch", code=2)
    opts = client_options(bootstrap, command_config, props, timeout)
    with reporting(opts.bootstrap):
        leader = _replica_address(opts, topic, partition, None)
        if start_offset is not None:
            producers = _describe_producers(opts, leader, topic, [partition])[partition]
            match = [s for s in producers if s.current_txn_start_offset == start_offset]
            if not match:
                fail(
                    f"no open transaction starts at offset {start_offset} of {topic}-{partition}",
                    f"See its producers with `artesian transactions describe-producers "
                    f"--topic {topic} --partition {partition}`.",
                )
            s = match[0]
            producer_id, producer_epoch = int(s.producer_id), int(s.producer_epoch)
            coordinator_epoch = int(s.coordinator_epoch)
        assert producer_id is not None and producer_epoch is not None
        assert coordinator_epoch is not None
        # A transaction whose producer never saw a marker has coordinator epoch -1: 0 is
        # no newer than any coordinator's, as kafka-transactions sends.
        marker = WritableTxnMarker(
            producer_id=ProducerId(producer_id),
            producer_epoch=i16(producer_epoch),
            transaction_result=False,
            topics=(
                WritableTxnMarkerTopic(name=TopicName(topic), partition_indexes=(i32(partition),)),
            ),
            coordinator_epoch=i32(max(coordinator_epoch, 0)),
        )
        with WireClient.for_options(opts, leader) as client:
            resp = client.request(_WRITE_TXN_MARKERS, 1, markers=(marker,))
        (code,) = [p.error_code for m in resp.markers for t in m.topics for p in t.partitions]
        if code != ErrorCode.none:
            hint = (
                "Aborting needs ClusterAction on the cluster."
                if code == ErrorCode.cluster_authorization_failed
                else ""
            )
            fail(f"aborting the transaction of producer {producer_id} failed: {code.name}", hint)
        out.print(
            f"Aborted the transaction of producer {producer_id} (epoch {producer_epoch}) "
            f"in {topic}-{partition}."
        )
