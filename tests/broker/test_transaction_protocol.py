"""The transaction APIs frame by frame: exact error codes of InitProducerId, AddPartitionsToTxn,
AddOffsetsToTxn, EndTxn, TxnOffsetCommit and transactional Produce; pending offsets and
OffsetFetch's require_stable; Fetch's last stable offset and aborted transactions;
DescribeTransactions and ListTransactions."""

from __future__ import annotations

import datetime
import time
from typing import Any

from kio.schema.add_offsets_to_txn.v3 import request as add_offsets
from kio.schema.add_partitions_to_txn.v1 import request as add_partitions_v1
from kio.schema.add_partitions_to_txn.v3 import request as add_partitions
from kio.schema.describe_producers.v0 import request as describe_producers
from kio.schema.describe_transactions.v0 import request as describe
from kio.schema.end_txn.v3 import request as end_txn
from kio.schema.init_producer_id.v4 import request as init_pid
from kio.schema.list_transactions.v1 import request as list_txns
from kio.schema.offset_fetch.v7 import request as offset_fetch
from kio.schema.txn_offset_commit.v3 import request as txn_commit

from artesian.protocol import api
from tests.kafka_wire import WireConn, create_topic, sample_request
from tests.storage.batches import make_batch

INIT_PRODUCER_ID, ADD_PARTITIONS, ADD_OFFSETS, END_TXN, TXN_OFFSET_COMMIT = 22, 24, 25, 26, 28
PRODUCE, FETCH, OFFSET_FETCH, DESCRIBE, LIST = 0, 1, 9, 65, 66
NONE, UNKNOWN_TOPIC, INVALID_PRODUCER_EPOCH, INVALID_TXN_STATE = 0, 3, 47, 48
INVALID_PRODUCER_ID_MAPPING, INVALID_TRANSACTION_TIMEOUT = 49, 50
OPERATION_NOT_ATTEMPTED, UNSTABLE_OFFSET_COMMIT, PRODUCER_FENCED = 55, 88, 90
TRANSACTIONAL = 0x10
SETTINGS = {"transaction.state.log.num.partitions": "2", "offsets.topic.num.partitions": "2"}


def _init(conn: WireConn, tid: str, timeout_ms: int = 60_000) -> tuple[int, int, int]:
    resp = conn.request(
        INIT_PRODUCER_ID,
        4,
        init_pid.InitProducerIdRequest(
            transactional_id=tid,
            transaction_timeout=datetime.timedelta(milliseconds=timeout_ms),
            producer_id=-1,
            producer_epoch=-1,
        ),
    )
    return int(resp.error_code), resp.producer_id, resp.producer_epoch


def _add(conn: WireConn, tid: str, pid: int, epoch: int, *tps: tuple[str, int]) -> dict[Any, int]:
    topics: dict[str, list[int]] = {}
    for t, p in tps:
        topics.setdefault(t, []).append(p)
    resp = conn.request(
        ADD_PARTITIONS,
        3,
        add_partitions.AddPartitionsToTxnRequest(
            v3_and_below_transactional_id=tid,
            v3_and_below_producer_id=pid,
            v3_and_below_producer_epoch=epoch,
            v3_and_below_topics=tuple(
                add_partitions.AddPartitionsToTxnTopic(name=t, partitions=tuple(ps))
                for t, ps in topics.items()
            ),
        ),
    )
    return {
        (t.name, r.partition_index): int(r.partition_error_code)
        for t in resp.results_by_topic_v3_and_below
        for r in t.results_by_partition
    }


def _end(conn: WireConn, tid: str, pid: int, epoch: int, commit: bool) -> int:
    resp = conn.request(
        END_TXN,
        3,
        end_txn.EndTxnRequest(
            transactional_id=tid, producer_id=pid, producer_epoch=epoch, committed=commit
        ),
    )
    return int(resp.error_code)


def _produce(
    conn: WireConn, tid: str | None, topic: str, pid: int, epoch: int, seq: int
) -> tuple[int, int]:
    batch = make_batch(
        n=2,
        attributes=TRANSACTIONAL,
        producer_id=pid,
        producer_epoch=epoch,
        base_sequence=seq,
    )
    cls = api.request_class(PRODUCE, 9)
    assert cls is not None
    mod = __import__(cls.__module__, fromlist=["_"])
    body = cls(
        transactional_id=tid,
        acks=-1,
        timeout=datetime.timedelta(seconds=10),
        topic_data=(
            mod.TopicProduceData(
                name=topic,
                partition_data=(mod.PartitionProduceData(index=0, records=bytes(batch)),),
            ),
        ),
    )
    (p,) = conn.request(PRODUCE, 9, body).responses[0].partition_responses
    return int(p.error_code), p.base_offset


def _txn_commit(conn: WireConn, tid: str, pid: int, epoch: int, offset: int) -> int:
    resp = conn.request(
        TXN_OFFSET_COMMIT,
        3,
        txn_commit.TxnOffsetCommitRequest(
            transactional_id=tid,
            group_id="g",
            producer_id=pid,
            producer_epoch=epoch,
            generation_id=-1,
            member_id="",
            group_instance_id=None,
            topics=(
                txn_commit.TxnOffsetCommitRequestTopic(
                    name="t",
                    partitions=(
                        txn_commit.TxnOffsetCommitRequestPartition(
                            partition_index=0,
                            committed_offset=offset,
                            committed_leader_epoch=-1,
                            committed_metadata="m",
                        ),
                    ),
                ),
            ),
        ),
    )
    return int(resp.topics[0].partitions[0].error_code)


def _producers(conn: WireConn, topics: dict[str, tuple[int, ...]]) -> dict[Any, Any]:
    """DescribeProducers: (topic, partition) -> (error code, [(producer id, epoch, last
    sequence, last timestamp, coordinator epoch, open transaction's first offset)])."""
    resp = conn.request(
        61,
        0,
        describe_producers.DescribeProducersRequest(
            topics=tuple(
                describe_producers.TopicRequest(name=t, partition_indexes=ps)
                for t, ps in topics.items()
            )
        ),
    )
    return {
        (t.name, p.partition_index): (
            int(p.error_code),
            [
                (
                    s.producer_id,
                    s.producer_epoch,
                    s.last_sequence,
                    s.last_timestamp,
                    s.coordinator_epoch,
                    s.current_txn_start_offset,
                )
                for s in p.active_producers
            ],
        )
        for t in resp.topics
        for p in t.partitions
    }


def _offset_fetch(conn: WireConn, stable: bool) -> tuple[int, int]:
    resp = conn.request(
        OFFSET_FETCH,
        7,
        offset_fetch.OffsetFetchRequest(
            group_id="g",
            topics=(offset_fetch.OffsetFetchRequestTopic(name="t", partition_indexes=(0,)),),
            require_stable=stable,
        ),
    )
    p = resp.topics[0].partitions[0]
    return int(p.error_code), p.committed_offset


def _fetch_committed(conn: WireConn, offset: int = 0) -> Any:
    req = sample_request(
        FETCH,
        12,
        "t",
        fetch_offset=offset,
        isolation_level=1,
        max_wait=datetime.timedelta(0),
        min_bytes=0,
        max_bytes=1 << 20,
        partition_max_bytes=1 << 20,
    )
    (t,) = conn.request(FETCH, 12, req).responses
    (p,) = t.partitions
    return p


def test_transaction_protocol_error_codes_and_visibility(broker_factory: Any) -> None:
    broker = broker_factory(SETTINGS)
    with WireConn(broker.port) as conn:
        create_topic(conn, "t")
        assert _init(conn, "tx", timeout_ms=0)[0] == INVALID_TRANSACTION_TIMEOUT
        assert _init(conn, "tx", timeout_ms=900_001)[0] == INVALID_TRANSACTION_TIMEOUT
        code, pid, epoch = _init(conn, "tx")
        assert (code, epoch) == (NONE, 0) and pid >= 0
        again = _init(conn, "tx")
        assert again == (NONE, pid, 1)  # same producer id, epoch bumped
        epoch = 1

        # Unknown id, stale epoch (PRODUCER_FENCED from v2, INVALID_PRODUCER_EPOCH before).
        assert _add(conn, "nobody", pid, epoch, ("t", 0)) == {("t", 0): INVALID_PRODUCER_ID_MAPPING}
        assert _add(conn, "tx", pid, 0, ("t", 0)) == {("t", 0): PRODUCER_FENCED}
        old = conn.request(
            ADD_PARTITIONS,
            1,
            add_partitions_v1.AddPartitionsToTxnRequest(
                v3_and_below_transactional_id="tx",
                v3_and_below_producer_id=pid,
                v3_and_below_producer_epoch=0,
                v3_and_below_topics=(
                    add_partitions_v1.AddPartitionsToTxnTopic(name="t", partitions=(0,)),
                ),
            ),
        )
        code = old.results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code
        assert int(code) == INVALID_PRODUCER_EPOCH
        # One bad partition: nothing is added, the good ones are not attempted.
        assert _add(conn, "tx", pid, epoch, ("t", 0), ("nope", 0)) == {
            ("t", 0): OPERATION_NOT_ATTEMPTED,
            ("nope", 0): UNKNOWN_TOPIC,
        }
        assert _end(conn, "tx", pid, epoch, commit=True) == INVALID_TXN_STATE  # nothing open

        # A transactional write to a partition not in the transaction is refused, unwritten.
        assert _produce(conn, "tx", "t", pid, epoch, 0) == (INVALID_TXN_STATE, -1)
        # Transactional records without a transactional id: the whole request is refused,
        # authorizer or not, as in KafkaApis (TRANSACTIONAL_ID_AUTHORIZATION_FAILED).
        assert _produce(conn, None, "t", pid, epoch, 0) == (53, -1)
        assert _add(conn, "tx", pid, epoch, ("t", 0)) == {("t", 0): NONE}
        assert _produce(conn, "tx", "t", pid, epoch, 0) == (NONE, 0)  # offsets 0, 1
        # DescribeProducers (kafka-transactions.sh find-hanging): the open transaction
        # starts at 0; the batch's sequences are 0-1 and its last timestamp ...001.
        assert _producers(conn, {"t": (0, 7), "nope": (0,)}) == {
            ("t", 0): (NONE, [(pid, epoch, 1, 1_700_000_000_001, -1, 0)]),
            ("t", 7): (UNKNOWN_TOPIC, []),
            ("nope", 0): (UNKNOWN_TOPIC, []),
        }

        # Offsets in the transaction: only after AddOffsetsToTxn, and pending until commit.
        assert _txn_commit(conn, "tx", pid, epoch, 2) == INVALID_TXN_STATE
        resp = conn.request(
            ADD_OFFSETS,
            3,
            add_offsets.AddOffsetsToTxnRequest(
                transactional_id="tx", producer_id=pid, producer_epoch=epoch, group_id="g"
            ),
        )
        assert int(resp.error_code) == NONE
        assert _txn_commit(conn, "tx", pid, epoch, 2) == NONE
        assert _offset_fetch(conn, stable=True) == (UNSTABLE_OFFSET_COMMIT, -1)
        assert _offset_fetch(conn, stable=False) == (NONE, -1)

        p = _fetch_committed(conn)
        assert (p.high_watermark, p.last_stable_offset) == (2, 0)
        assert not p.records

        described = conn.request(
            DESCRIBE, 0, describe.DescribeTransactionsRequest(transactional_ids=("tx", "nobody"))
        ).transaction_states
        assert [(s.transactional_id, int(s.error_code)) for s in described] == [
            ("tx", NONE),
            ("nobody", 105),  # TRANSACTIONAL_ID_NOT_FOUND
        ]
        assert (described[0].transaction_state, described[0].producer_epoch) == ("Ongoing", 1)
        topics = {t.topic: tuple(t.partitions) for t in described[0].topics}
        assert topics["t"] == (0,) and "__consumer_offsets" in topics
        listed = conn.request(
            LIST,
            1,
            list_txns.ListTransactionsRequest(
                state_filters=("Ongoing", "Bogus"), producer_id_filters=(), duration_filter=-1
            ),
        )
        assert [(s.transactional_id, s.transaction_state) for s in listed.transaction_states] == [
            ("tx", "Ongoing")
        ]
        assert tuple(listed.unknown_state_filters) == ("Bogus",)
        # v2 (KIP-1152): a pattern matched against the whole transactional id.
        from kio.schema.list_transactions.v2 import request as list_txns2

        def listed_by(pattern: str | None) -> tuple[int, list[str]]:
            answer = conn.request(
                LIST,
                2,
                list_txns2.ListTransactionsRequest(
                    state_filters=(),
                    producer_id_filters=(),
                    duration_filter=-1,
                    transactional_id_pattern=pattern,
                ),
            )
            return int(answer.error_code), [s.transactional_id for s in answer.transaction_states]

        assert listed_by("t.") == (NONE, ["tx"])
        assert listed_by("t") == (NONE, [])  # the whole id, not a part of it
        assert listed_by(None) == listed_by("") == (NONE, ["tx"])
        assert listed_by("(unclosed") == (128, [])  # INVALID_REGULAR_EXPRESSION

        # Commit: the marker lands at 2, LSO = HW = 3, the offset becomes visible.
        committed_from = int(time.time() * 1000)
        assert _end(conn, "tx", pid, epoch, commit=True) == NONE
        committed_by = int(time.time() * 1000)
        assert _end(conn, "tx", pid, epoch, commit=True) == NONE  # a retry: same answer
        assert _end(conn, "tx", pid, epoch, commit=False) == INVALID_TXN_STATE
        assert _offset_fetch(conn, stable=True) == (NONE, 2)
        # The marker closed it, written by the coordinator at its epoch, and (as in Kafka)
        # its timestamp is the producer's last.
        ((code, [(*state, last_timestamp, coordinator_epoch, open_from)]),) = _producers(
            conn, {"t": (0,)}
        ).values()
        assert (code, state, coordinator_epoch, open_from) == (NONE, [pid, epoch, 1], 0, -1)
        assert committed_from <= last_timestamp <= committed_by
        p = _fetch_committed(conn)
        assert (p.high_watermark, p.last_stable_offset, list(p.aborted_transactions)) == (3, 3, [])

        # An aborted transaction (3, 4, ABORT at 5) is listed for read_committed fetches.
        assert _add(conn, "tx", pid, epoch, ("t", 0)) == {("t", 0): NONE}
        assert _produce(conn, "tx", "t", pid, epoch, 2) == (NONE, 3)
        assert _end(conn, "tx", pid, epoch, commit=False) == NONE
        # (The test batches carry 2023 timestamps, so the marker at 2 rolled a segment by
        # segment.ms: a fetch from 0 returns that first segment alone, and no aborted ones.)
        p = _fetch_committed(conn, 2)
        assert (p.high_watermark, p.last_stable_offset) == (6, 6)
        assert [(a.producer_id, a.first_offset) for a in p.aborted_transactions] == [(pid, 3)]
        # One past the aborted transaction's marker, nothing is listed.
        assert list(_fetch_committed(conn, 6).aborted_transactions) == []


def test_verification_is_off_with_transaction_partition_verification_enable_false(
    broker_factory: Any,
) -> None:
    broker = broker_factory({**SETTINGS, "transaction.partition.verification.enable": "false"})
    with WireConn(broker.port) as conn:
        create_topic(conn, "t")
        code, pid, epoch = _init(conn, "tx")
        assert code == NONE
        # Not added to the transaction, and written all the same (Kafka before 3.6).
        assert _produce(conn, "tx", "t", pid, epoch, 0) == (NONE, 0)
        # Offsets too: committed in the transaction without AddOffsetsToTxn.
        assert _txn_commit(conn, "tx", pid, epoch, 2) == NONE
