"""The broker process: metadata, logs, listener and background work, started and stopped
in order."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import signal
import struct
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from prometheus_client import start_http_server

from artesian.broker.fetch_session import FetchSessionCache
from artesian.broker.handlers import HANDLERS, HandlerEntry
from artesian.broker.internal_topic import (
    OFFSETS_TOPIC,
    TRANSACTION_STATE_TOPIC,
    InternalTopic,
)
from artesian.broker.metrics import BrokerMetrics
from artesian.broker.producer_id_manager import ProducerIdManager
from artesian.broker.replica_manager import ReplicaManager
from artesian.broker.transaction_markers import TransactionMarkerWriter
from artesian.config.broker import BrokerConfig, parse_properties
from artesian.config.resolve import effective_topic_config
from artesian.coordinator.group.coordinator import GroupConfig, GroupCoordinator
from artesian.coordinator.transaction.coordinator import (
    TransactionConfig,
    TransactionCoordinator,
)
from artesian.metadata.controller import Controller
from artesian.metadata.image import MetadataImage, TopicImage
from artesian.metadata.records import (
    ClusterRecord,
    ConfigRecord,
    MetadataRecord,
    PartitionRecord,
    RegisterBrokerRecord,
    RemoveTopicRecord,
    TopicRecord,
)
from artesian.metadata.store import MetadataStore, SqliteMetadataStore, open_store
from artesian.storage.log_cleaner import CleanerConfig, LogCleaner
from artesian.storage.log_config import LogConfig
from artesian.storage.log_manager import LogManager, parse_partition_dir
from artesian.tiered.remote_log_manager import RemoteLogManager, RemoteLogManagerConfig
from artesian.tiered.remote_storage_manager import RemoteStorageManager

if TYPE_CHECKING:
    from artesian.broker.connection import KafkaConnection

log = logging.getLogger("artesian.broker")


class BrokerStartupError(Exception):
    """The broker cannot start as configured; the message says what to change."""


class InconsistentNodeId(BrokerStartupError):
    """The data directory was written by a broker with another node.id."""


def _without_password(url: str) -> str:
    """For logs: the URL with any password (user info or ``password=`` parameter) masked."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        netloc = netloc.replace(f":{parts.password}@", ":***@", 1)
    query = "&".join(
        "password=***" if q.split("=", 1)[0] == "password" else q
        for q in parts.query.split("&")
        if q
    )
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def parse_listener(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"expected HOST:PORT, got {listen!r}")
    return host.strip("[]"), int(port)


class Broker:
    def __init__(self, config: BrokerConfig, data_dir: Path, host: str, port: int) -> None:
        self.config = config
        self.data_dir = data_dir
        self.host = host
        self.port = port
        self.node_id = config.node_id
        self.cluster_id = ""
        self.metrics = BrokerMetrics()
        self.handlers = HANDLERS
        self.connections: set[KafkaConnection] = set()
        self.stopping = False
        self._metrics_server: object | None = None
        self.image = MetadataImage()
        self.store: MetadataStore | None = None
        self.controller: Controller | None = None
        self.log_manager: LogManager | None = None
        self.replica_manager: ReplicaManager | None = None
        self.log_cleaner: LogCleaner | None = None
        self.remote_log_manager: RemoteLogManager | None = None
        self._cleaning: asyncio.Future[object] | None = None
        self.offsets_topic = InternalTopic(self, OFFSETS_TOPIC, "offsets.topic")
        self.transaction_state_topic = InternalTopic(
            self, TRANSACTION_STATE_TOPIC, "transaction.state.log"
        )
        self.producer_id_manager = ProducerIdManager(self)
        self.group_coordinator: GroupCoordinator | None = None
        self.transaction_coordinator: TransactionCoordinator | None = None
        self.fetch_sessions = FetchSessionCache(
            config.get_int("max.incremental.fetch.session.cache.slots"),
            on_evict=self.metrics.fetch_session_evictions.inc,
        )
        self.metrics.fetch_sessions.set_function(lambda: len(self.fetch_sessions.sessions))
        self.metrics.fetch_session_partitions.set_function(
            lambda: self.fetch_sessions.cached_partitions
        )
        self._server: asyncio.base_events.Server | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._stopped = asyncio.Event()
        self._api_versions_fallback = _api_versions_fallback_body(self.handlers)
        # Responses that only change with the metadata image, keyed by what they depend on.
        self.response_cache: dict[object, object] = {}

    # --- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.store = self._open_metadata_store()
        for offset, record in self.store.read():
            self.image.apply(offset, record)
        self._check_store_matches_logs()
        self.cluster_id = self._load_cluster_id()
        self.controller = Controller(self.store, self.image)
        if self.image.cluster_id is None:
            self.commit([ClusterRecord(self.cluster_id)])  # a new log, or one from before it
        elif self.image.cluster_id != self.cluster_id:
            raise BrokerStartupError(
                f"the metadata store belongs to cluster {self.image.cluster_id}, but "
                f"{self.data_dir} to cluster {self.cluster_id}: start the broker with the "
                "store of its own cluster (artesian.metadata.store.url) or another --data-dir"
            )
        advertised = self.config.get("advertised.listeners")
        adv_host, adv_port = self.host, self.port
        if advertised:
            first = str(advertised[0] if isinstance(advertised, list) else advertised).split(",")[0]
            adv_host, adv_port = parse_listener(first.split("://")[-1])
        current = self.image.brokers.get(self.node_id)
        if current is None or (current.host, current.port) != (adv_host, adv_port):
            self.commit([RegisterBrokerRecord(self.node_id, adv_host, adv_port)])

        self._check_tiered_topics()
        now = int(time.time() * 1000)
        self.log_manager = LogManager(
            self.data_dir / "logs",
            self.default_log_config(),
            producer_id_expiration_ms=self.config.get_int("producer.id.expiration.ms"),
        )
        self.log_manager.startup(
            now, {name: self.log_config(topic) for name, topic in self.image.topics.items()}
        )
        self.replica_manager = ReplicaManager(self.log_manager, self.metrics)
        cleaner_props = {
            k: self.config.get(k) for k in CleanerConfig.BROKER_KEYS if k in self.config.definitions
        }
        self.log_cleaner = LogCleaner(
            self.log_manager, CleanerConfig.from_properties(cleaner_props)
        )
        hosted: set[tuple[str, int]] = set()
        for topic in self.image.topics.values():
            for p in topic.partitions.values():
                if self.node_id in p.replicas:
                    self._become_leader(topic, p.partition)
                    hosted.add((topic.name, p.partition))
        for topic_name, index in [(lg.topic, lg.partition) for lg in self.log_manager.all_logs()]:
            if (topic_name, index) not in hosted:
                log.info("deleting stray log %s-%d: its topic no longer exists", topic_name, index)
                self.log_manager.delete_log(topic_name, index)
        if self.config.get_bool("remote.log.storage.system.enable"):
            self.remote_log_manager = self._remote_log_manager()
            await self.remote_log_manager.load()

        # After the image is loaded: the partition count of an existing __consumer_offsets
        # wins over offsets.topic.num.partitions, as in Kafka.
        self.group_coordinator = GroupCoordinator(self._group_config(), self.offsets_topic)
        if self.offsets_topic.exists():
            self.group_coordinator.load()
        # After the groups: completing a transaction caught between its two phases may
        # write markers to __consumer_offsets, which the group coordinator must see.
        self.transaction_coordinator = TransactionCoordinator(
            TransactionConfig(
                max_timeout_ms=self.config.get_int("transaction.max.timeout.ms"),
                transactional_id_expiration_ms=self.config.get_int(
                    "transactional.id.expiration.ms"
                ),
            ),
            self.transaction_state_topic,
            TransactionMarkerWriter(self),
            self.producer_id_manager.generate,
        )
        if self.transaction_state_topic.exists():
            self.transaction_coordinator.load()

        metrics_port = self.config.metrics_port
        if metrics_port:
            # prometheus-client serves from its own thread; scrapes never touch the loop.
            self._metrics_server = start_http_server(
                metrics_port, addr=self.host, registry=self.metrics.registry
            )
            log.info("Prometheus metrics on http://%s:%d/metrics", self.host, metrics_port)
        self._server = await asyncio.get_running_loop().create_server(
            self._new_connection, self.host, self.port, reuse_address=True, backlog=1024
        )
        self._tasks = [
            asyncio.create_task(self._every("log.retention.check.interval.ms", self._retention)),
            *(
                [asyncio.create_task(self.remote_log_manager.run())]
                if self.remote_log_manager is not None
                else []
            ),
            # Kafka's default scheduler interval is "never", which leaves a topic's flush.ms
            # unenforced once appends stop; checking every second costs microseconds.
            asyncio.create_task(
                self._every_ms(
                    min(self.config.get_int("log.flush.scheduler.interval.ms"), 1000), self._flush
                )
            ),
            asyncio.create_task(self._every_ms(30_000, self._checkpoint)),
            asyncio.create_task(
                self._every("offsets.retention.check.interval.ms", self._expire_offsets)
            ),
            asyncio.create_task(self._run_cleaner()),
            asyncio.create_task(
                self._every(
                    "transaction.abort.timed.out.transaction.cleanup.interval.ms",
                    self._abort_timed_out_transactions,
                )
            ),
            asyncio.create_task(
                self._every(
                    "transaction.remove.expired.transaction.cleanup.interval.ms",
                    self._expire_transactional_ids,
                )
            ),
            asyncio.create_task(
                self._every_ms(
                    min(30_000, max(100, self.config.get_int("connections.max.idle.ms") // 2)),
                    self._close_idle_connections,
                )
            ),
        ]
        log.info(
            "broker %d listening on %s:%d (cluster %s, %d partitions, data in %s)",
            self.node_id,
            self.host,
            self.port,
            self.cluster_id,
            len(self.replica_manager.partitions),
            self.data_dir,
        )

    def _open_metadata_store(self) -> MetadataStore:
        url = self.config.get("artesian.metadata.store.url")
        if not url:
            return SqliteMetadataStore(self.data_dir / "metadata.db")
        try:
            store = open_store(str(url))
        except ValueError as e:
            raise BrokerStartupError(str(e)) from None
        except Exception as e:  # the driver's own errors: unreachable server, bad credentials
            reason = str(e)
            password = urlsplit(str(url)).password
            if password:
                reason = reason.replace(password, "***")
            raise BrokerStartupError(
                "cannot open the metadata store named by artesian.metadata.store.url "
                f"({_without_password(str(url))}): {reason}"
            ) from None
        log.info("metadata log in %s", _without_password(str(url)))
        return store

    def _check_store_matches_logs(self) -> None:
        """An empty metadata store beside a data directory full of logs is a wrong store (a
        typo in artesian.metadata.store.url, a switch of store): starting would delete every
        log as a stray. Refuse instead."""
        logs_dir = self.data_dir / "logs"
        if self.image.offset >= 0 or not logs_dir.is_dir():
            return
        partitions = [
            e.name for e in os.scandir(logs_dir) if e.is_dir() and parse_partition_dir(e.name)
        ]
        if partitions:
            raise BrokerStartupError(
                f"the metadata store is empty, but {logs_dir} holds the logs of "
                f"{len(partitions)} partition(s) (e.g. {sorted(partitions)[0]}): start the "
                "broker with the metadata store this data directory was written with "
                "(artesian.metadata.store.url), or move the data directory away"
            )

    def _check_tiered_topics(self) -> None:
        """Kafka refuses to start with tiered storage off while topics use it: their data
        below the local logs would be unreadable."""
        if self.config.get_bool("remote.log.storage.system.enable"):
            return
        tiered = sorted(
            name
            for name, topic in self.image.topics.items()
            if effective_topic_config(topic.configs, self.config)["remote.storage.enable"]
        )
        if tiered:
            raise BrokerStartupError(
                "You have to delete all topics with the property remote.storage.enable=true "
                f"before disabling tiered storage cluster-wide ({', '.join(tiered)}). Start the "
                "broker with --set remote.log.storage.system.enable=true"
            )

    def _remote_log_manager(self) -> RemoteLogManager:
        """Tiered storage: the object store named by rsm.config.store.url, by default a
        directory beside the logs (the embedded setup has nothing else to install)."""
        url = self.config.get("rsm.config.store.url")
        if not url:
            url = (self.data_dir / "remote-storage").resolve().as_uri()
        rm = self.replica_manager
        assert rm is not None
        try:
            rsm = RemoteStorageManager.from_url(str(url))
        except Exception as e:  # obstore's own errors: a bad URL, a path that is a file
            raise BrokerStartupError(
                f"cannot use the object store named by rsm.config.store.url ({url}): {e}"
            ) from None
        rlm = RemoteLogManager(
            rsm,
            RemoteLogManagerConfig(
                broker_id=self.node_id,
                task_interval_ms=self.config.get_int("remote.log.manager.task.interval.ms"),
                copy_max_bytes_per_second=self.config.get_int(
                    "remote.log.manager.copy.max.bytes.per.second"
                ),
                fetch_max_bytes_per_second=self.config.get_int(
                    "remote.log.manager.fetch.max.bytes.per.second"
                ),
                index_cache_bytes=self.config.get_int(
                    "remote.log.index.file.cache.total.size.bytes"
                ),
            ),
            self.metrics,
            lambda: [(p.topic, p.index, p.topic_id, p.log) for p in rm.partitions.values()],
        )
        log.info("tiered storage on: remote segments in %s", url)
        return rlm

    def _group_config(self) -> GroupConfig:
        cfg = self.config
        return GroupConfig(
            num_partitions=self.offsets_topic.num_partitions,
            min_session_timeout_ms=cfg.get_int("group.min.session.timeout.ms"),
            max_session_timeout_ms=cfg.get_int("group.max.session.timeout.ms"),
            initial_rebalance_delay_ms=cfg.get_int("group.initial.rebalance.delay.ms"),
            max_size=cfg.get_int("group.max.size"),
            offsets_retention_ms=cfg.get_int("offsets.retention.minutes") * 60_000,
            offset_metadata_max_bytes=cfg.get_int("offset.metadata.max.bytes"),
        )

    def _load_cluster_id(self) -> str:
        """meta.properties names the cluster and the node this data directory belongs to; a
        different node.id would make every log look foreign, so it stops the start (Kafka)."""
        path = self.data_dir / "meta.properties"
        if path.exists():
            props = parse_properties(path.read_text())
            stored = props.get("node.id")
            if stored is not None and int(stored) != self.node_id:
                raise InconsistentNodeId(
                    f"{self.data_dir} belongs to node.id={stored}, but this broker has "
                    f"node.id={self.node_id}: start it with --set node.id={stored} or use "
                    "another --data-dir"
                )
            if "cluster.id" in props:
                return props["cluster.id"]
        # A new data directory joins the cluster its store names, or starts a new one.
        cluster_id = self.image.cluster_id or (
            base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        )
        path.write_text(f"version=1\ncluster.id={cluster_id}\nnode.id={self.node_id}\n")
        return cluster_id

    def _new_connection(self) -> KafkaConnection:
        from artesian.broker.connection import KafkaConnection

        return KafkaConnection(self)

    async def serve_forever(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self._request_stop, sig)
        await self._stopped.wait()
        await self.stop()

    def _request_stop(self, sig: signal.Signals) -> None:
        log.info("received %s: shutting down", sig.name)
        self._stopped.set()

    async def stop(self) -> None:
        """Stop accepting and dispatching, answer what is in flight, then flush and close
        every log (Kafka stops request processing before its replica manager)."""
        self.stopping = True
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections):
            conn.stop_reading()
        if self.replica_manager is not None:
            # Parked fetches answer now with what they have.
            self.replica_manager.purgatory.complete_all()
        if self.group_coordinator is not None:
            self.group_coordinator.shutdown()  # waiting joins and syncs answer now too
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline and any(c.busy for c in self.connections):
            await asyncio.sleep(0.01)
        for conn in list(self.connections):
            conn.close()
        if self.log_cleaner is not None:
            # The cleaner reads segment files: it must stop before the logs close.
            self.log_cleaner.shutdown()
            if self._cleaning is not None:
                with contextlib.suppress(Exception):
                    await self._cleaning
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.remote_log_manager is not None:
            await self.remote_log_manager.close()
        if self.log_manager is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.log_manager.shutdown)
        if self.store is not None:
            self.store.close()
        if isinstance(self._metrics_server, tuple):
            server, _thread = self._metrics_server
            server.shutdown()
        log.info("broker %d stopped cleanly", self.node_id)

    # --- metadata ---------------------------------------------------------------------------

    def commit(self, records: list[MetadataRecord]) -> None:
        """Persist records, apply them to the image, and act on them."""
        assert self.store is not None
        if not records:
            return
        try:
            last = self.store.append(records)
        except Exception:
            # The append may have landed even so (a connection lost at COMMIT): catch up with
            # the store, so the image never drifts from it, and let the request fail.
            self._catch_up_with_store()
            raise
        first = last - len(records) + 1
        for i, record in enumerate(records):
            self.image.apply(first + i, record)
        self._on_records(records)

    def _catch_up_with_store(self) -> None:
        assert self.store is not None
        try:
            newer = list(self.store.read(after=self.image.offset))
        except Exception as e:
            log.warning("could not re-read the metadata store after a failed append: %s", e)
            return
        for offset, record in newer:
            self.image.apply(offset, record)
        if newer:
            log.warning(
                "a failed metadata append had landed after all (%d record(s)); applied",
                len(newer),
            )
            self._on_records([r for _, r in newer])

    def _on_records(self, records: Iterable[MetadataRecord]) -> None:
        rm = self.replica_manager
        if rm is None:
            return
        touched: set[str] = set()
        for record in records:
            match record:
                case PartitionRecord():
                    topic = self.image.topics_by_id.get(uuid.UUID(record.topic_id))
                    if topic is not None and self.node_id in record.replicas:
                        self._become_leader(topic, record.partition)
                case RemoveTopicRecord():
                    # The topic is already gone from the image: find it among our partitions.
                    for (name, _i), part in list(rm.partitions.items()):
                        if str(part.topic_id) == record.topic_id:
                            self._stop_remote_partitions(name, part.topic_id)
                            rm.remove_topic(name)
                            break
                case ConfigRecord(resource_type=2, resource_name=name):
                    touched.add(name)
                case ConfigRecord():
                    touched.update(self.image.topics)
                case TopicRecord():
                    pass
        for name in touched:
            topic = self.image.topics.get(name)
            if topic is not None and any(k[0] == name for k in rm.partitions):
                rm.update_config(name, self.log_config(topic))

    def _stop_remote_partitions(self, topic: str, topic_id: uuid.UUID) -> None:
        """A deleted topic's remote segments go too (Kafka's stopPartitions with delete)."""
        rlm, rm = self.remote_log_manager, self.replica_manager
        if rlm is None or rm is None:
            return
        tiered = [
            i
            for (name, i), p in rm.partitions.items()
            if name == topic and (p.log.remote_log_enabled or rlm.partition(name, i) is not None)
        ]
        if tiered:
            rlm.stop_partitions(topic, topic_id, tiered)

    def _become_leader(self, topic: TopicImage, index: int) -> None:
        assert self.replica_manager is not None
        p = topic.partitions[index]
        self.replica_manager.become_leader(
            topic.name,
            index,
            topic.topic_id,
            p.leader_epoch,
            p.replicas,
            p.isr,
            self.log_config(topic),
        )

    def default_log_config(self) -> LogConfig:
        return LogConfig.from_properties(effective_topic_config({}, self.config))

    def log_config(self, topic: TopicImage) -> LogConfig:
        return LogConfig.from_properties(effective_topic_config(topic.configs, self.config))

    # --- background work --------------------------------------------------------------------

    async def _every(self, config_key: str, work: object) -> None:
        await self._every_ms(self.config.get_int(config_key), work)

    async def _every_ms(self, interval_ms: int, work: object) -> None:
        assert callable(work)
        while True:
            await asyncio.sleep(interval_ms / 1000.0)
            try:
                await work()
            except Exception:
                log.exception("background task %s failed; it will run again", work)

    async def _retention(self) -> None:
        assert self.log_manager is not None
        now = int(time.time() * 1000)
        deleted = self.log_manager.cleanup_logs(now)
        if deleted:
            log.info("retention deleted %d segment(s)", deleted)

    async def _flush(self) -> None:
        assert self.log_manager is not None
        now = int(time.time() * 1000)
        lm = self.log_manager
        await asyncio.get_running_loop().run_in_executor(None, lm.flush_dirty_logs, now)

    async def _run_cleaner(self) -> None:
        """Kafka's cleaner thread: clean the filthiest log, again at once if it found work,
        else back off for log.cleaner.backoff.ms. The work runs in a worker thread."""
        assert self.log_cleaner is not None
        cleaner = self.log_cleaner
        backoff = self.config.get_int("log.cleaner.backoff.ms") / 1000
        loop = asyncio.get_running_loop()
        while True:
            try:
                self._cleaning = loop.run_in_executor(None, cleaner.clean_once)
                stats = await self._cleaning
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("log cleaner failed; it will run again")
                stats = None
            finally:
                self._cleaning = None
            if stats is None or not getattr(stats, "cleaned", False):
                await asyncio.sleep(backoff)

    async def _close_idle_connections(self) -> None:
        """connections.max.idle.ms, as Kafka's selector enforces it."""
        limit = self.config.get_int("connections.max.idle.ms") / 1000
        if limit < 0:
            return
        now = time.monotonic()
        for conn in list(self.connections):
            if not conn.busy and now - conn.last_active > limit:
                log.info(
                    "closing connection from %s: idle for more than connections.max.idle.ms",
                    conn.peer,
                )
                conn.close()

    async def _expire_offsets(self) -> None:
        assert self.group_coordinator is not None
        expired = self.group_coordinator.expire_offsets()
        if expired:
            log.info("expired %d committed offset(s) of empty groups", expired)

    async def _abort_timed_out_transactions(self) -> None:
        assert self.transaction_coordinator is not None
        self.transaction_coordinator.retry_markers()
        self.transaction_coordinator.abort_timed_out_transactions()

    async def _expire_transactional_ids(self) -> None:
        assert self.transaction_coordinator is not None
        expired = self.transaction_coordinator.expire_transactional_ids()
        if expired:
            log.info("expired %d idle transactional id(s)", expired)

    async def _checkpoint(self) -> None:
        assert self.log_manager is not None
        await asyncio.get_running_loop().run_in_executor(None, self.log_manager.checkpoint)

    # --- ApiVersions fallback ---------------------------------------------------------------

    def api_versions_fallback(self, correlation_id: int) -> bytes:
        """ApiVersions v0 response with UNSUPPORTED_VERSION (35) and our ranges."""
        body = self._api_versions_fallback
        return struct.pack(">ii", len(body) + 4, correlation_id) + body


def _api_versions_fallback_body(handlers: dict[int, HandlerEntry]) -> bytes:
    body = bytearray(struct.pack(">hi", 35, len(handlers)))
    for key, h in sorted(handlers.items()):
        body += struct.pack(">hhh", key, h.min_version, h.max_version)
    return bytes(body)


async def run_broker(config: BrokerConfig, data_dir: Path, host: str, port: int) -> None:
    broker = Broker(config, data_dir, host, port)
    await broker.start()
    await broker.serve_forever()
