"""Desired and observed state as compacted Kafka topics: a writer, and a table that holds the
latest document per key (a KTable, in Kafka Streams' words) kept current by a reader thread.

The topics live on the control plane's own Kafka cluster, which any Kafka will do; the embedded
default is an Artesian broker. They have one partition: the documents are few and small, and
one partition gives one order to read them in.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic

from artesian.controlplane.documents import (
    DESIRED_TOPIC,
    OBSERVED_TOPIC,
    STATE_TOPIC_CONFIG,
    USAGE_TOPIC,
    USAGE_TOPIC_CONFIG,
    DocumentError,
)

log = logging.getLogger("artesian.controlplane")
T = TypeVar("T")


class StateTopicError(RuntimeError):
    pass


class Fenced(StateTopicError):
    """Another writer with the same transactional.id started (or the producer failed for
    good): this one may write no more, and must not start again on its own, since that
    would fence the writer that replaced it."""


def ensure_state_topics(
    bootstrap: str,
    topics: tuple[str, ...] = (DESIRED_TOPIC, OBSERVED_TOPIC),
    timeout: float = 30.0,
) -> None:
    """Create the state topics if missing (replicated up to 3 times, as brokers allow)."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    md = admin.list_topics(timeout=timeout)
    rf = min(3, len(md.brokers))
    missing = [t for t in topics if t not in md.topics]
    if not missing:
        return
    futures = admin.create_topics(
        [
            NewTopic(
                t, 1, rf, config=USAGE_TOPIC_CONFIG if t == USAGE_TOPIC else STATE_TOPIC_CONFIG
            )
            for t in missing
        ],
        operation_timeout=timeout,
    )
    for topic, future in futures.items():
        try:
            future.result(timeout)
        except Exception as e:
            err = e.args[0] if e.args and isinstance(e.args[0], KafkaError) else None
            if err is None or err.code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise StateTopicError(f"cannot create {topic} on {bootstrap}: {e}") from e


class StateWriter:
    """Writes documents with acks=all and idempotence; each call returns once it is stored.

    With a ``transactional_id``, each document is written in a transaction of that id, and
    making the writer fences any older one with the same id (Kafka's zombie fencing): its
    next write fails with Fenced, and what it had not committed is aborted. The readers
    (librdkafka's default read_committed) never see a fenced writer's late writes."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        timeout: float = 15.0,
        transactional_id: str | None = None,
    ) -> None:
        self.topic = topic
        self.timeout = timeout
        self.transactional_id = transactional_id
        self._config: dict[str, object] = {
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "enable.idempotence": True,
        }
        if transactional_id is not None:
            self._config["transactional.id"] = transactional_id
            # Long enough to outlast a commit and its retry through a network stall (the
            # coordinator aborting it first would fence this writer for good); a writer killed
            # mid-write holds read_committed readers back until then, unless its successor
            # starts and aborts it at once.
            self._config["transaction.timeout.ms"] = int(timeout * 8000)
        self._lock = threading.Lock()
        self._producer: Producer | None = None
        self._producer = self._new_producer()
        self._pending: str | None = None  # "commit" or "abort": what a failed write left open

    def _new_producer(self) -> Producer:
        producer = Producer(self._config)
        if self.transactional_id is not None:
            try:
                producer.init_transactions(self.timeout)
            except KafkaException as e:
                raise StateTopicError(
                    f"{self.topic}: cannot start transactions as {self.transactional_id}: {e}"
                ) from e
        return producer

    def put(self, key: str, value: bytes | None, topic: str | None = None) -> int:
        """Store ``value`` (None: a tombstone) under ``key`` in ``topic`` (the writer's own
        by default); returns its offset."""
        result: list[tuple[KafkaError | None, int]] = []
        with self._lock:
            if self.transactional_id is not None:
                return self._put_in_transaction(topic or self.topic, key, value, result)
            producer = self._producer
            assert producer is not None
            self._produce(producer, topic or self.topic, key, value, result)
            producer.flush(self.timeout)
            if not result:
                # Failed must mean not written: the record must not land after the caller
                # has given up on it (and perhaps retried).
                producer.purge()
                producer.flush(0)
        return self._offset(topic or self.topic, result)

    @staticmethod
    def _produce(
        producer: Producer,
        topic: str,
        key: str,
        value: bytes | None,
        result: list[tuple[KafkaError | None, int]],
    ) -> None:
        producer.produce(
            topic,
            value,
            key.encode(),
            partition=0,
            on_delivery=lambda err, msg: result.append((err, msg.offset())),
        )

    def _offset(self, topic: str, result: list[tuple[KafkaError | None, int]]) -> int:
        if not result:
            raise StateTopicError(f"{topic}: no acknowledgement within {self.timeout} s")
        err, offset = result[0]
        if err is not None:
            raise StateTopicError(f"{topic}: {err.str()}")
        return offset

    def _put_in_transaction(
        self, topic: str, key: str, value: bytes | None, result: list[tuple[KafkaError | None, int]]
    ) -> int:
        # One producer for the writer's life: making another would fence whichever writer
        # took over this transactional id meanwhile (a zombie back from a network partition
        # would fence its successor).
        producer = self._producer
        assert producer is not None
        try:
            self._settle(producer)
            producer.begin_transaction()
            # Whatever fails from here (a produce refused locally, an interrupt) leaves the
            # transaction open: the next write aborts it first.
            self._pending = "abort"
            self._produce(producer, topic, key, value, result)
            self._pending = "commit"
            producer.commit_transaction(self.timeout)
            self._pending = None
        except KafkaException as e:
            err = e.args[0] if e.args and isinstance(e.args[0], KafkaError) else None
            if err is None:
                raise StateTopicError(f"{topic}: {e}") from e
            if err.code() in FENCED or err.fatal():
                raise Fenced(
                    f"{topic}: this writer of {self.transactional_id} was fenced or failed "
                    f"for good ({err.str()})"
                ) from e
            if err.txn_requires_abort():
                self._pending = "abort"
                with contextlib.suppress(KafkaException):
                    self._settle(producer)
                raise StateTopicError(f"{topic}: not written ({err.str()})") from e
            # Retriable (a commit that timed out): the next write settles it first.
            raise StateTopicError(f"{topic}: {err.str()} (the write may or may not land)") from e
        return self._offset(topic, result)

    def _settle(self, producer: Producer) -> None:
        """Finish what a failed write left open: a commit that timed out is committed (it
        may land yet), a transaction that must be aborted is aborted."""
        if self._pending == "commit":
            producer.commit_transaction(self.timeout)
        elif self._pending == "abort":
            producer.abort_transaction(self.timeout)
        self._pending = None

    def close(self) -> None:
        if self._producer is not None:
            if self._pending is not None:  # not left open to hold readers back
                with contextlib.suppress(KafkaException):
                    self._settle(self._producer)
            self._producer.flush(self.timeout)


# How long an open transaction of a writer that died can hold the last stable offset back: a
# state writer's transaction timeout (8 x its 15 s write timeout), plus Kafka's 10 s abort
# cleanup interval, with room to spare.
OPEN_TRANSACTION_WAIT_S = 150.0

# Errors that mean another producer of the same transactional.id has taken over.
FENCED = frozenset(
    {KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH}
)


class StateTable(Generic[T]):
    """The latest valid document per key of a state topic, read from its beginning."""

    def __init__(
        self, bootstrap: str, topic: str, decode: Callable[[bytes], T], poll_seconds: float = 0.2
    ) -> None:
        self.topic = topic
        self._bootstrap = bootstrap
        self._decode = decode
        self._poll = poll_seconds
        self._docs: dict[str, T] = {}
        self._position = 0  # the next offset to read
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"artesian-state-{topic}",  # required by librdkafka; never commits
                "enable.auto.commit": False,
                "enable.partition.eof": False,
            }
        )
        self._consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        self._thread = threading.Thread(target=self._run, name=f"state-{topic}", daemon=True)
        # Called on the reader thread for every record, with None for a deletion or an
        # unreadable record, before writers waiting on its offset go on: a listener must not
        # wait on this table nor take a lock its writers hold.
        self.listeners: list[Callable[[str, T | None], None]] = []
        # Keys whose latest record could not be read: not known to be deleted.
        self.unreadable: set[str] = set()

    def start(self) -> StateTable[T]:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.ident is not None:  # started
            self._thread.join(10)
        self._consumer.close()

    def alive(self) -> bool:
        return self._thread.is_alive()

    def get(self, key: str) -> T | None:
        with self._changed:
            return self._docs.get(key)

    def snapshot(self) -> dict[str, T]:
        with self._changed:
            return dict(self._docs)

    def catch_up(self, timeout: float) -> None:
        """Wait until the table holds everything the topic held when called: before acting
        on it, since a key not read yet is not a key deleted."""
        # Its own client: the reader thread's consumer is busy polling.
        probe = Consumer({"bootstrap.servers": self._bootstrap, "group.id": "artesian-probe"})
        try:
            _low, high = probe.get_watermark_offsets(
                TopicPartition(self.topic, 0), timeout=timeout, cached=False
            )
        finally:
            probe.close()
        if high > 0 and not self.wait_for(high - 1, timeout):
            raise TimeoutError(f"{self.topic} could not be read to offset {high} in {timeout} s")

    def wait_for(self, offset: int, timeout: float) -> bool:
        """Read-your-writes: wait until the table holds what was written at ``offset``."""
        with self._changed:
            return self._changed.wait_for(lambda: self._position > offset, timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                msg = self._consumer.poll(self._poll)
            except Exception as e:  # a closed consumer at shutdown, or the client's own error
                log.warning("reading %s failed (%s); retrying", self.topic, e)
                self._stop.wait(1.0)
                continue
            if msg is None:
                self._skip_markers()
                continue
            if msg.error() is not None:
                log.warning("reading %s: %s", self.topic, msg.error())
                continue
            self._apply(msg.key(), msg.value(), msg.offset())

    def _skip_markers(self) -> None:
        """With nothing left to read, the consumer's position is past the transaction
        markers (never delivered) after the last record: the table holds everything below it,
        which catch_up, waiting on the high watermark, must see."""
        try:
            (tp,) = self._consumer.position([TopicPartition(self.topic, 0)])
        except Exception:  # a closing consumer
            return
        if tp.offset > self._position:
            with self._changed:
                self._position = tp.offset
                self._changed.notify_all()

    def _apply(self, raw_key: bytes | None, value: bytes | None, offset: int) -> None:
        doc: T | None = None
        key = None
        try:
            key = (raw_key or b"").decode()
            if value is not None:
                doc = self._decode(value)
                if getattr(doc, "id", key) != key:
                    raise DocumentError(f"document of {getattr(doc, 'id', '?')} under key {key}")
        except Exception as e:  # untrusted bytes: whatever they do, the reader carries on
            log.warning("skipping %s offset %d: %s", self.topic, offset, e)
            if key:
                # Neither the older document (the newer may have revoked what it grants) nor
                # a deletion: the key is unreadable until a readable record comes. Listeners
                # drop what they derived from the older one.
                with self._changed:
                    self._docs.pop(key, None)
                    self.unreadable.add(key)
                self._tell(key, None)
            key = None
        if key:
            with self._changed:
                self.unreadable.discard(key)
                if doc is None:
                    self._docs.pop(key, None)
                else:
                    self._docs[key] = doc
            self._tell(key, doc)
        # Only now may a writer waiting on this offset go on: what listeners derive from the
        # record (a token index) holds by then too.
        with self._changed:
            self._position = offset + 1
            self._changed.notify_all()

    def _tell(self, key: str, doc: T | None) -> None:
        for listener in self.listeners:
            try:
                listener(key, doc)
            except Exception:
                log.exception("a listener of %s failed on %s", self.topic, key)


def latest_by_key(
    bootstrap: str,
    topic: str,
    decode: Callable[[bytes], T],
    keys: set[str],
    timeout: float = 30.0,
    horizon_ms: int = 7 * 24 * 3_600_000,
) -> dict[str, T]:
    """The latest readable document of each of ``keys`` in a topic that is a log rather than
    a state (the usage ledger), read backwards from its end in growing chunks, no further back
    than ``horizon_ms``: what it costs follows how far back the oldest of them lies, not how
    long the log is. A key with nothing within the horizon is left out."""
    found: dict[str, T] = {}
    if not keys:
        return found
    conf = {
        "bootstrap.servers": bootstrap,
        "group.id": f"artesian-tail-{topic}",  # required by librdkafka; never commits
        "enable.auto.commit": False,
        "enable.partition.eof": True,
        "auto.offset.reset": "error",  # an offset gone meanwhile is an error, not "latest"
    }
    low, high = _stable_watermarks(conf, topic, timeout)
    oldest_ms = int(time.time() * 1000) - horizon_ms
    end, chunk = high, 1024
    while end > low and not keys <= found.keys():
        start = max(low, end - chunk)
        newest, latest_ms = _read_chunk(conf, topic, start, end, decode, keys, timeout)
        found.update({k: v for k, v in newest.items() if k not in found})
        if latest_ms is not None and latest_ms < oldest_ms:
            break  # even this chunk's newest record is past the horizon
        end, chunk = start, chunk * 2
    return found


def _stable_watermarks(conf: dict[str, object], topic: str, timeout: float) -> tuple[int, int]:
    """The log start and end once no transaction open now holds the end back: a
    read_committed reader stops at the last stable offset, so records committed after another
    writer's open transaction (an agent of another cell that died mid-write, until its
    transaction times out) would look absent, and a usage record missed that way would be
    metered again."""
    tp = TopicPartition(topic, 0)
    everything = Consumer({**conf, "isolation.level": "read_uncommitted"})
    committed = Consumer(conf)
    try:
        low, end = everything.get_watermark_offsets(tp, timeout=timeout, cached=False)
        deadline = time.monotonic() + max(timeout, OPEN_TRANSACTION_WAIT_S)
        while True:
            _, stable = committed.get_watermark_offsets(tp, timeout=timeout, cached=False)
            if stable >= end:
                return low, stable
            if time.monotonic() > deadline:
                raise StateTopicError(
                    f"{topic}: an open transaction holds offset {stable} back (end {end})"
                )
            time.sleep(0.2)
    finally:
        everything.close()
        committed.close()


def _read_chunk(
    conf: dict[str, object],
    topic: str,
    start: int,
    end: int,
    decode: Callable[[bytes], T],
    keys: set[str],
    timeout: float,
) -> tuple[dict[str, T], int | None]:
    """The latest document of each key in offsets [start, end), and the latest record time
    seen; a consumer of its own, so nothing fetched for another chunk can end this one."""
    newest: dict[str, T] = {}
    latest_ms: int | None = None
    consumer = Consumer(conf)
    try:
        consumer.assign([TopicPartition(topic, 0, start)])
        position = start
        deadline = time.monotonic() + timeout
        while position < end:
            # consume() waits its whole timeout unless the batch fills: poll in short steps.
            batch = consumer.consume(1000, 0.1)
            if not batch:
                if time.monotonic() > deadline:
                    raise StateTopicError(f"{topic} could not be read from offset {position}")
                continue
            for msg in batch:
                if msg.error() is not None:
                    if msg.error().code() == KafkaError._PARTITION_EOF:
                        return newest, latest_ms
                    raise StateTopicError(f"reading {topic}: {msg.error()}")
                position = msg.offset() + 1
                if msg.offset() >= end:
                    return newest, latest_ms
                _kind, ts = msg.timestamp()
                latest_ms = ts if latest_ms is None else max(latest_ms, ts)
                key = (msg.key() or b"").decode(errors="replace")
                if key not in keys or msg.value() is None:
                    continue
                try:
                    doc = decode(msg.value())
                    if getattr(doc, "id", key) != key:
                        raise DocumentError(f"document of {getattr(doc, 'id', '?')} under {key}")
                except Exception as e:  # an unreadable record: the one before it will do
                    log.warning("skipping %s offset %d: %s", topic, msg.offset(), e)
                    continue
                newest[key] = doc
    finally:
        consumer.close()
    return newest, latest_ms
