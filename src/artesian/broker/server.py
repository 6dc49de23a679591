"""The broker process: metadata, logs, listener and background work, started and stopped
in order."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import fcntl
import functools
import gc
import logging
import os
import re
import signal
import struct
import time
import uuid
from collections.abc import Callable, Coroutine, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast
from urllib.parse import urlsplit

from kio.schema.errors import ErrorCode
from prometheus_client import start_http_server

from artesian.balancer.load import LoadSampler
from artesian.balancer.self_balancer import SelfBalancer
from artesian.broker.authenticator import SaslSettings
from artesian.broker.client_metrics_manager import ClientMetricsManager
from artesian.broker.connection_quotas import ConnectionQuotas
from artesian.broker.fetch_session import FetchSessionCache
from artesian.broker.handlers import HANDLERS, HandlerEntry
from artesian.broker.internal_topic import (
    OFFSETS_TOPIC,
    SHARE_STATE_TOPIC,
    TRANSACTION_STATE_TOPIC,
    InternalTopic,
)
from artesian.broker.listeners import (
    Listener,
    ListenerError,
    advertised_endpoints,
    inter_broker_client_security,
    inter_broker_listener,
    parse_listeners,
    server_ssl_context,
)
from artesian.broker.metrics import BrokerMetrics
from artesian.broker.producer_id_manager import ProducerIdManager
from artesian.broker.quota_manager import ClientQuotaManager
from artesian.broker.replica_manager import Partition, ReplicaManager
from artesian.broker.transaction_markers import TransactionMarkerWriter
from artesian.config.broker import RACK_AWARE_REPLICA_SELECTOR, BrokerConfig, parse_properties
from artesian.config.client_metrics import Subscription, subscription_of
from artesian.config.definitions import ConfigError, ConfigSource, parse
from artesian.config.group import group_timeouts, share_group_config
from artesian.config.resolve import effective_topic_config
from artesian.config.topic import TOPIC_CONFIGS
from artesian.coordinator.group.consumer_coordinator import ConsumerGroupConfig
from artesian.coordinator.group.coordinator import GroupConfig, GroupCoordinator
from artesian.coordinator.group.share_group_coordinator import ShareGroupConfig
from artesian.coordinator.serde import partition_for
from artesian.coordinator.transaction.coordinator import (
    TransactionConfig,
    TransactionCoordinator,
)
from artesian.metadata.controller import Controller, ControllerError
from artesian.metadata.features import (
    LATEST,
    METADATA_VERSION,
    SUPPORTED_FEATURES,
    refused_records,
)
from artesian.metadata.image import BROKER_RESOURCE, MetadataImage, TopicImage
from artesian.metadata.records import (
    AccessControlEntryRecord,
    ClientQuotaRecord,
    ClusterRecord,
    ConfigRecord,
    FeatureLevelRecord,
    LogicalClusterBindingRecord,
    LogicalClusterQuotaRecord,
    MetadataRecord,
    PartitionRecord,
    RegisterBrokerRecord,
    RemoveAccessControlEntryRecord,
    RemoveDelegationTokenRecord,
    RemoveTopicRecord,
    TopicRecord,
    UnknownRecordError,
)
from artesian.metadata.store import (
    MetadataStore,
    SqliteMetadataStore,
    StaleMetadataError,
    open_store,
)
from artesian.protocol import api
from artesian.replication.replica_fetcher import FetcherConfig, ReplicaFetcherManager
from artesian.replication.throttle import ReplicationThrottle, replica_listed
from artesian.security.acl import Authorizer, acl_binding
from artesian.security.delegation_token import TokenCredentials, TokenLogin, expired
from artesian.security.scram import ScramCredential, ScramMechanism
from artesian.security.ssl_principal_mapper import SslPrincipalMapper
from artesian.share.share_coordinator import ShareCoordinator
from artesian.share.share_partition_manager import SharePartitionManager
from artesian.storage.log_cleaner import CleanerConfig, LogCleaner
from artesian.storage.log_config import LogConfig
from artesian.storage.log_manager import LogManager, StartupAborted, parse_partition_dir
from artesian.storage.throttler import Throttler
from artesian.tenancy import LogicalCluster, logical_cluster_id_of
from artesian.tiered.quota import ByteRateQuota
from artesian.tiered.remote_log_manager import (
    RemoteLogManager,
    RemoteLogManagerConfig,
    RemotePartition,
)
from artesian.tiered.remote_storage_manager import RemoteStorageManager

if TYPE_CHECKING:
    from artesian.broker.connection import KafkaConnection
    from artesian.security.oauthbearer.jwks import JwksCache

log = logging.getLogger("artesian.broker")
UNCLEAN = "unclean.leader.election.enable"
T = TypeVar("T")


def _scraped(count: Callable[[], int]) -> int:
    """A gauge counted on prometheus-client's thread over state the event loop changes: a
    dict resized mid-count raises, and one failing gauge would fail the whole scrape (HTTP
    500, every series gone). Counted again, then given up as 0."""
    for _ in range(3):
        try:
            return count()
        except RuntimeError:
            continue
    return 0


class BrokerStartupError(Exception):
    """The broker cannot start as configured; the message says what to change."""


class DuplicateNodeId(BrokerStartupError):
    """Another live broker process uses this node.id."""


class InconsistentNodeId(BrokerStartupError):
    """The data directory was written by a broker with another node.id."""


_PLANNED_ON_STALE_METADATA = (
    "The cluster metadata changed while this request was planned; retry it."
)


def _read_failure_format(error: Exception) -> str:
    """The log line for a metadata read that failed: a record of a newer version is not the
    store's fault, and retrying will not help."""
    if isinstance(error, UnknownRecordError):
        return "cannot follow the metadata log: %s"
    return "cannot read the metadata store (%s); retrying"


_SECRET_PARAMETER = re.compile(r"((?:^|&)[^=&]*(?:pass|secret|token)[^=&]*=)[^&]*", re.IGNORECASE)


def _without_password(url: str) -> str:
    """For logs: the URL with its secrets masked (a user-info password, and any parameter
    named for one: password, sslpassword, ...), and otherwise as it was written."""
    parts = urlsplit(url)
    masked = url
    if parts.password:
        masked = masked.replace(f":{parts.password}@", ":***@", 1)
    if parts.query:
        query = _SECRET_PARAMETER.sub(lambda m: m.group(1) + "***", parts.query)
        masked = masked.replace(parts.query, query, 1)
    return masked


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
        config.note_implied(_implied_settings(config, data_dir, host, port))
        self.cluster_id = ""
        self.metrics = BrokerMetrics()
        self.handlers = HANDLERS
        if "consumer" not in cast(list[str], config.get("group.coordinator.rebalance.protocols")):
            # Kafka's way of turning the consumer group protocol (KIP-848) off: its APIs are
            # neither advertised nor served.
            self.handlers = {k: h for k, h in HANDLERS.items() if k not in api.CONSUMER_GROUP_APIS}
        self.share_enabled = config.get_bool("group.share.enable")
        if not self.share_enabled:
            self.handlers = {
                k: h for k, h in self.handlers.items() if k not in api.SHARE_GROUP_APIS
            }
        # Client metrics (KIP-714), received here and served on the Prometheus endpoint.
        self.client_metrics: ClientMetricsManager | None = None
        if config.get_bool("artesian.client.metrics.enable"):
            self.client_metrics = ClientMetricsManager(
                self._client_metrics_subscriptions, config.get_int("telemetry.max.bytes")
            )
            self.metrics.registry.register(self.client_metrics)
        else:  # as Kafka without a telemetry receiver: the APIs are not offered
            self.handlers = {
                k: h for k, h in self.handlers.items() if k not in api.CLIENT_TELEMETRY_APIS
            }
        # (image offset read at, version, the raw configs, the subscriptions made of them)
        self._subscriptions: tuple[int, int, dict[str, dict[str, str]], list[Subscription]] = (
            -1,
            0,
            {},
            [],
        )
        self.connections: set[KafkaConnection] = set()
        self.stopping = False
        self._metrics_server: object | None = None
        self.image = MetadataImage()
        self.store: MetadataStore | None = None
        self._metadata_read: tuple[float, asyncio.Future[None]] | None = None  # (started, read)
        self.controller: Controller | None = None
        self.log_manager: LogManager | None = None
        self.replica_manager: ReplicaManager | None = None
        self.log_cleaner: LogCleaner | None = None
        self.remote_log_manager: RemoteLogManager | None = None
        # Per partition: the remote segments' shape last seen, and their bytes below the local
        # log (the storage gauge's cache).
        self._remote_sizes: dict[tuple[str, int], tuple[tuple[int, int, int, int], float]] = {}
        self.fetcher_manager: ReplicaFetcherManager | None = None
        self.leader_throttle: ReplicationThrottle | None = None
        # Brokers whose sessions in the metadata store are open (KRaft's unfenced brokers),
        # as of the last heartbeat round; the lowest id among them acts as the controller.
        self.live_brokers: frozenset[int] = frozenset()
        # KIP-392: the selector that points consumers to followers; None keeps them on the
        # leader (unset, or LeaderSelector, which does just that).
        selector = self.config.get("replica.selector.class")
        self.replica_selector: str | None = (
            RACK_AWARE_REPLICA_SELECTOR if selector == RACK_AWARE_REPLICA_SELECTOR else None
        )
        self._skipped_dynamic: list[str] = []  # dynamic configs last found unusable
        self._warned_unclean: set[tuple[str, str]] = set()
        # The data directory's id (meta.properties' directory.id, as KRaft's): a session in
        # the store held by another directory is another broker with this node.id; one held
        # by this directory is this broker's previous run (the .lock excludes two at once).
        self.directory_id = ""
        self._lock_file: int | None = None
        self._store_unreadable = False
        # After the store stalled (a held lock, a restart), every broker's session looks
        # lapsed until each renews it: until then (monotonic seconds) no broker is taken for
        # fenced, as KRaft's controller gives each broker a full session after taking over.
        self._fencing_grace_until = 0.0
        self._heartbeat_failed = False
        self._heartbeat_since: float | None = None  # monotonic start of a renewal under way
        # The periodic store calls' own connection and thread (see in_store_thread).
        self._background_store: MetadataStore | None = None
        self._store_thread = ThreadPoolExecutor(1, thread_name_prefix="metadata-store")
        self._elected_for: tuple[frozenset[int], int] | None = None
        self._cleaning: asyncio.Future[object] | None = None
        self.offsets_topic = InternalTopic(self, OFFSETS_TOPIC, "offsets.topic")
        self.transaction_state_topic = InternalTopic(
            self, TRANSACTION_STATE_TOPIC, "transaction.state.log"
        )
        # Share groups (KIP-932): their partitions' state, kept by the share coordinator.
        self.share_state_topic = InternalTopic(
            self, SHARE_STATE_TOPIC, "share.coordinator.state.topic"
        )
        self.share_coordinator = ShareCoordinator(self.share_state_topic)
        self.share_partition_manager = SharePartitionManager(self)
        self.producer_id_manager = ProducerIdManager(self)
        self.marker_writer = TransactionMarkerWriter(self)
        self.group_coordinator: GroupCoordinator | None = None
        self.transaction_coordinator: TransactionCoordinator | None = None
        self.fetch_sessions = FetchSessionCache(
            config.get_int("max.incremental.fetch.session.cache.slots"),
            on_evict=self.metrics.fetch_session_evictions.inc,
        )
        self.metrics.fetch_sessions.set_function(lambda: len(self.fetch_sessions.sessions))
        # Set once a batch of records has taken effect (its ACLs included), not as the image
        # applies them one by one: whoever waits on the metric may rely on them.
        self.applied_metadata_offset = -1
        self.metrics.metadata_last_applied_offset.set_function(lambda: self.applied_metadata_offset)
        self.metrics.fetch_session_partitions.set_function(
            lambda: self.fetch_sessions.cached_partitions
        )
        self._controller_gauges()
        self.load_sampler = LoadSampler()
        self.self_balancer = SelfBalancer(self)
        self._servers: list[asyncio.base_events.Server] = []
        self.quota_manager = ClientQuotaManager()
        # Checked before anything is opened: a listener that cannot work stops the start.
        roles = config.get("process.roles")
        assert isinstance(roles, list)
        if roles and "broker" not in roles:
            raise BrokerStartupError(
                f"process.roles={','.join(roles)}: an Artesian node is a broker, and keeps the "
                "cluster's metadata in artesian.metadata.store.url rather than a KRaft "
                "controller quorum; give it the broker role (or leave process.roles out)"
            )
        try:
            self.listeners = parse_listeners(config, host, port)
            self.inter_broker_listener = inter_broker_listener(config, self.listeners)
            # The inter-broker listener is spared max.connections only beside others, as in
            # Kafka: alone, it is the clients' too.
            self.connection_quotas = ConnectionQuotas(
                config,
                self.inter_broker_listener.name if len(self.listeners) > 1 else None,
                self.quota_manager,
            )
            self.inter_broker_security = inter_broker_client_security(
                config, self.inter_broker_listener
            )
            self._endpoints = advertised_endpoints(config, self.listeners)
            self._ssl_contexts = {
                lst: server_ssl_context(config, lst.name, lst.sasl) if lst.tls else None
                for lst in self.listeners
            }
            self.sasl_settings = {
                lst.name: SaslSettings.from_config(config, lst.name)
                for lst in self.listeners
                if lst.sasl
            }
            # A TLS client's certificate names its principal on SSL listeners (not SASL_SSL).
            self.ssl_principal_mappers = {
                lst.name: _principal_mapper(config, lst.name)
                for lst in self.listeners
                if lst.tls and not lst.sasl
            }
        except (ListenerError, ValueError) as e:
            raise BrokerStartupError(str(e)) from e
        # ACLs when authorizer.class.name names one; None lets every request through.
        self.authorizer: Authorizer | None = None
        self._token_credentials = TokenCredentials()
        super_users = [
            u for u in (u.strip() for u in str(config.get("super.users") or "").split(";")) if u
        ]
        if config.get("authorizer.class.name"):
            self.authorizer = Authorizer(
                super_users, config.get_bool("allow.everyone.if.no.acl.found")
            )
        # Principals that run the cluster itself (brokers, super users, anonymous ones, which
        # brokers are on a PLAINTEXT listener): never confined to a logical cluster.
        own = self.inter_broker_security.sasl
        self.platform_principals = frozenset(
            {"User:ANONYMOUS", *super_users} | ({f"User:{own[1]}"} if own else set())
        )
        # The address other brokers and Artesian's own tools use.
        self.host, self.port = self.inter_broker_listener.host, self.inter_broker_listener.port
        self._tasks: list[asyncio.Task[None]] = []
        self._stopped = asyncio.Event()
        self._stop_signal: signal.Signals | None = None  # one that came during start()
        self._api_versions_fallback = _api_versions_fallback_body(self.handlers)
        # Responses that only change with the metadata image, keyed by what they depend on.
        self.response_cache: dict[object, object] = {}
        # Principals confined to a logical cluster (the platform's never are).
        self._bindings: dict[str, LogicalCluster] = {}

    # --- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._lock_data_dir()
        # Bound before the broker registers, as Kafka's SocketServer binds before the broker
        # joins: a port in use stops it here, not once others count it live and clients are
        # sent to an address nobody answers. They accept connections once it is ready.
        await self._bind_listeners()
        self.store = self._open_metadata_store()
        try:
            for offset, record in self.store.read():
                self.image.apply(offset, record)
        except UnknownRecordError as e:
            raise BrokerStartupError(str(e)) from e
        # Removals from now on: the log's history is past (what its groups hold now belongs
        # to the topics of today).
        self.image.track_removed_topics()
        self._apply_dynamic_configs()
        self._update_authorizer()
        self._update_bindings_and_quotas()
        self.applied_metadata_offset = self.image.offset
        self._check_store_matches_logs()
        new_directory = not (self.data_dir / "meta.properties").exists()
        self.cluster_id = self._load_cluster_id()
        self.controller = Controller(self.store, self.image, self.current_live_brokers)
        if self.image.cluster_id is None:
            founding: list[MetadataRecord] = [ClusterRecord(self.cluster_id)]
            if self.image.offset == -1:  # a new log (not one from before ClusterRecord)
                level = self.config.get("artesian.metadata.version.bootstrap")
                level = level if isinstance(level, int) else LATEST
                if level > LATEST:
                    raise BrokerStartupError(
                        f"artesian.metadata.version.bootstrap={level}, but this version of "
                        f"Artesian supports up to {LATEST}"
                    )
                founding.append(FeatureLevelRecord(METADATA_VERSION, level))
            try:
                self.commit(founding)
            except ControllerError:
                # Brokers started together on a new store: another founded the cluster first.
                if self.image.cluster_id is None or not new_directory:
                    raise
                self.cluster_id = self._join_cluster(self.image.cluster_id)
        if self.image.cluster_id != self.cluster_id:
            raise BrokerStartupError(
                f"the metadata store belongs to cluster {self.image.cluster_id}, but "
                f"{self.data_dir} to cluster {self.cluster_id}: start the broker with the "
                "store of its own cluster (artesian.metadata.store.url) or another --data-dir"
            )
        endpoints = self._endpoints
        adv_host, adv_port = endpoints[self.inter_broker_listener.name]
        endpoint_list = tuple((name, h, p) for name, (h, p) in endpoints.items())
        self._check_feature_levels()  # before a session makes this broker count as live
        # The session opens first: brokers that read the registration find it live.
        self._refresh_live_brokers(self._renew_session())
        rack = self.config.get("broker.rack")
        rack = str(rack) if rack else None
        features = dict(SUPPORTED_FEATURES)
        registration = RegisterBrokerRecord(
            self.node_id,
            adv_host,
            adv_port,
            rack,
            endpoints=endpoint_list,
            features=tuple((name, lo, hi) for name, (lo, hi) in features.items()),
        )

        def register() -> list[MetadataRecord]:
            self._check_feature_levels()  # planned again if the log moves on meanwhile
            current = self.image.brokers.get(self.node_id)
            if current is not None and (
                current.host,
                current.port,
                current.rack,
                current.endpoints,
                current.features,
            ) == (adv_host, adv_port, rack, endpoints, features):
                return []
            return [registration]

        # Others may be registering at the same instant: plan again on a conflict.
        self.plan_and_commit(register, attempts=10)

        self._check_tiered_topics()
        now = int(time.time() * 1000)
        self.log_manager = LogManager(
            self.data_dir / "logs",
            self.default_log_config(),
            producer_id_expiration_ms=self.config.get_int("producer.id.expiration.ms"),
        )
        # Kafka's pair of lines: a start with many partitions, or a recovery, takes a while.
        log.info("loading the logs in %s", self.log_manager.data_dir)
        began = time.monotonic()
        try:
            self.log_manager.startup(
                now,
                {name: self.log_config(topic) for name, topic in self.image.topics.items()},
                should_stop=lambda: self._stop_signal is not None,
            )
        except StartupAborted as e:
            assert self._stop_signal is not None
            log.info(
                "received %s while loading the logs: broker %d stops after %d of %d; they "
                "load again at its next start",
                self._stop_signal.name,
                self.node_id,
                e.loaded,
                e.total,
            )
            self.log_manager = None  # nothing written: no flush, checkpoint or clean marker
            return
        log.info(
            "loaded %d log(s) in %.0f ms%s",
            len(self.log_manager.all_logs()),
            (time.monotonic() - began) * 1000,
            # Kafka's LogManager says which start this was; recovery read every log's tail.
            ", recovering each from its last checkpoint: no clean shutdown file was found "
            "(the broker was killed or crashed)"
            if self.log_manager.recovered and self.log_manager.all_logs()
            else "",
        )
        self.replica_manager = ReplicaManager(self.log_manager, self.metrics, self.node_id)
        self.replica_manager.live_changed(self.live_brokers)
        self.leader_throttle = self._replication_throttle("leader")
        self.fetcher_manager = ReplicaFetcherManager(
            self._fetcher_config(),
            self.replica_manager,
            self.inter_broker_address,
            self._replication_throttle("follower"),
        )
        self.replica_manager.on_stop_fetching = self.fetcher_manager.forget
        self.replica_manager.in_metadata = self._in_metadata
        cleaner_props = {
            k: self.config.get(k) for k in CleanerConfig.BROKER_KEYS if k in self.config.definitions
        }
        try:
            self.log_cleaner = LogCleaner(
                self.log_manager,
                CleanerConfig.from_properties(cleaner_props),
                throttler=Throttler(
                    self.config.get_float("log.cleaner.io.max.bytes.per.second"),
                    on_charged=self.metrics.cleaner_io_bytes.inc,
                    on_throttled=self.metrics.cleaner_throttled_seconds.inc,
                ),
            )
        except ValueError as e:
            raise BrokerStartupError(str(e)) from e
        # Partitions whose leaders died while this broker was down get new ones first. Then,
        # as KRaft fences a restarted broker's old incarnation, leaderships this broker still
        # holds move to live in-sync followers: its log may lack what they acknowledged (a
        # restart within broker.session.timeout.ms). It catches up as a follower.
        self._elect_leaders()
        self._move_off(
            "at start-up: followers in sync take over while it catches up", self.live_brokers
        )
        assert self.controller is not None
        self.commit(self.controller.plan_restarted_leader(self.node_id))
        hosted: set[tuple[str, int]] = set()
        for topic in self.image.topics.values():
            for p in topic.partitions.values():
                if self.node_id in p.replicas:
                    self._apply_partition(topic, p.partition)
                    hosted.add((topic.name, p.partition))
        for topic_name, index in [(lg.topic, lg.partition) for lg in self.log_manager.all_logs()]:
            if (topic_name, index) not in hosted:
                log.info(
                    "deleting stray log %s-%d: this broker no longer hosts it", topic_name, index
                )
                self.log_manager.delete_log(topic_name, index)
        if self.config.get_bool("remote.log.storage.system.enable"):
            self.remote_log_manager = self._remote_log_manager()
            await self.remote_log_manager.load()

        # After the image is loaded: the partition count of an existing __consumer_offsets
        # wins over offsets.topic.num.partitions, as in Kafka.
        self.group_coordinator = GroupCoordinator(
            self._group_config(),
            self.offsets_topic,
            consumer=self._consumer_group_config(),
            topic_id=self._topic_id,
            topic_name=self.topic_name,
            share=ShareGroupConfig(
                session_timeout_ms=self.config.get_int("group.share.session.timeout.ms"),
                heartbeat_interval_ms=self.config.get_int("group.share.heartbeat.interval.ms"),
                max_size=self.config.get_int("group.share.max.size"),
                timeouts=self._share_group_timeouts,
            ),
        )
        self.group_coordinator.load(self._led(OFFSETS_TOPIC))
        self._count_groups(self.group_coordinator)
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
            self.marker_writer,
            self.producer_id_manager.generate,
        )
        self.transaction_coordinator.load(self._led(TRANSACTION_STATE_TOPIC))
        self.share_coordinator.load(self._led(SHARE_STATE_TOPIC))

        self._update_balancer_gauges()
        self.metrics.watch_leader_sizes(self._leader_log_sizes)
        self.metrics.watch_logical_cluster_use(self._logical_cluster_use)
        metrics_port = self.config.metrics_port
        if metrics_port:
            # prometheus-client serves from its own thread; scrapes never touch the loop.
            self._metrics_server = start_http_server(
                metrics_port, addr=self.host, registry=self.metrics.registry
            )
            log.info("Prometheus metrics on http://%s:%d/metrics", self.host, metrics_port)
        await self._load_signing_keys()
        if self._stop_signal is not None:
            # Its port is freed for the next broker (an operator rolling it at once).
            for server in self._servers:
                server.close()
            log.info(
                "received %s while starting: broker %d stops before opening its listeners",
                self._stop_signal.name,
                self.node_id,
            )
            return
        # The store thread's own connection, opened once before anything uses it.
        self._background_store = await asyncio.get_running_loop().run_in_executor(
            self._store_thread, lambda: self._open_metadata_store(quiet=True)
        )
        for server in self._servers:
            await server.start_serving()
        self._tasks = [
            *(asyncio.create_task(keys.run()) for keys in self._jwks_caches()),
            asyncio.create_task(
                self._every("artesian.metadata.poll.interval.ms", self._follow_metadata)
            ),
            asyncio.create_task(self._every("broker.heartbeat.interval.ms", self._heartbeat)),
            # A first sample at once (sizes, no rates yet), so status shows the disk in use.
            asyncio.create_task(self._publish_load()),
            asyncio.create_task(
                self._every("artesian.balancer.load.sample.interval.ms", self._publish_load)
            ),
            asyncio.create_task(
                self._every("artesian.balancer.interval.ms", self.self_balancer.run_round)
            ),
            asyncio.create_task(
                self._every_ms(
                    self.config.get_int("leader.imbalance.check.interval.seconds") * 1000,
                    self._rebalance_leaders,
                )
            ),
            asyncio.create_task(
                self._every_ms(
                    max(1, self.config.get_int("replica.lag.time.max.ms") // 2), self._shrink_isr
                )
            ),
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
            # Recovery points and log start offsets are written together, as often as the
            # shorter of their two intervals asks (0: only at a clean stop).
            *(
                [asyncio.create_task(self._every_ms(min(intervals), self._checkpoint))]
                if (intervals := self._checkpoint_intervals())
                else []
            ),
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
                self._every(
                    "delegation.token.expiry.check.interval.ms", self._expire_delegation_tokens
                )
            ),
            asyncio.create_task(
                self._every_ms(
                    min(30_000, max(100, self.config.get_int("connections.max.idle.ms") // 2)),
                    self._close_idle_connections,
                )
            ),
        ]
        # What start-up made (the protocol's schema classes, the image, the loaded logs)
        # lives as long as the broker: out of the collector's sight, a full collection no
        # longer walks it. It took ~40 ms, and held every request that long (a 1000 msg/s
        # workload's p99 went from 1 to 20 ms when one fell in the window).
        gc.collect()
        gc.freeze()
        log.info(
            "broker %d listening on %s (cluster %s, %d partitions, data in %s)",
            self.node_id,
            ", ".join(f"{lst} ({lst.security_protocol})" for lst in self.listeners),
            self.cluster_id,
            len(self.replica_manager.partitions),
            self.data_dir,
        )

    def _lock_data_dir(self) -> None:
        """Kafka's .lock: one broker process per data directory."""
        fd = os.open(self.data_dir / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise BrokerStartupError(
                f"another broker process is using {self.data_dir}: stop it first, or start "
                "this one with another --data-dir"
            ) from None
        self._lock_file = fd

    def _open_metadata_store(self, quiet: bool = False) -> MetadataStore:
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
        if not quiet:
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
            # Leaders copy and expire; followers' logs are copies of theirs.
            lambda: [
                (p.topic, p.index, p.topic_id, p.log) for p in rm.partitions.values() if p.is_leader
            ],
            lambda: [
                (p.topic, p.index, p.topic_id, p.log)
                for p in rm.partitions.values()
                if not p.is_leader
            ],
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

    def _controller_gauges(self) -> None:
        """Kafka's KafkaController gauges, from the image on the active controller."""

        def on_controller(count: Callable[[], int]) -> Callable[[], int]:
            return lambda: _scraped(count) if self.active_controller == self.node_id else 0

        def offline() -> int:
            live = self.live_brokers
            return sum(
                1
                for t in list(self.image.topics.values())
                for p in list(t.partitions.values())
                if p.leader < 0 or p.leader not in live
            )

        m = self.metrics
        m.active_controller.set_function(on_controller(lambda: 1))
        m.offline_partitions.set_function(on_controller(offline))
        m.global_partitions.set_function(
            on_controller(lambda: sum(len(t.partitions) for t in list(self.image.topics.values())))
        )
        m.global_topics.set_function(on_controller(lambda: len(self.image.topics)))
        m.fenced_brokers.set_function(
            on_controller(lambda: len(set(self.image.brokers) - self.live_brokers))
        )
        m.active_brokers.set_function(
            on_controller(lambda: len(set(self.image.brokers) & self.live_brokers))
        )

    def _count_groups(self, coordinator: GroupCoordinator) -> None:
        """The group-coordinator gauges, counted when scraped (on prometheus-client's
        thread, while the event loop changes the groups: see _scraped)."""
        groups = coordinator.groups

        def of_protocol(protocol: str) -> Callable[[], int]:
            return lambda: _scraped(
                lambda: sum(1 for g in list(groups.values()) if g.group_type == protocol)
            )

        def in_state(state: str) -> Callable[[], int]:
            return lambda: _scraped(
                lambda: sum(
                    1
                    for g in list(groups.values())
                    if g.consumer is not None and g.consumer.state() == state
                )
            )

        for protocol in ("classic", "consumer"):
            self.metrics.group_count.labels(protocol=protocol).set_function(of_protocol(protocol))
        for state in ("Empty", "Assigning", "Reconciling", "Stable"):
            self.metrics.consumer_group_count.labels(state=state).set_function(in_state(state))

    def _topic_id(self, name: str) -> uuid.UUID | None:
        found = self.image.topics.get(name)
        return found.topic_id if found is not None else None

    def topic_name(self, topic_id: uuid.UUID) -> str | None:
        found = self.image.topics_by_id.get(topic_id)
        return found.name if found is not None else None

    def group_protocol_type(self, group_id: str) -> str | None:
        """A classic group's protocol type, None if unknown here (tenancy.Lookups)."""
        coordinator = self.group_coordinator
        group = coordinator.groups.get(group_id) if coordinator is not None else None
        return None if group is None else group.protocol_type

    def _consumer_group_config(self) -> ConsumerGroupConfig:
        cfg = self.config
        return ConsumerGroupConfig(
            session_timeout_ms=cfg.get_int("group.consumer.session.timeout.ms"),
            heartbeat_interval_ms=cfg.get_int("group.consumer.heartbeat.interval.ms"),
            max_size=cfg.get_int("group.consumer.max.size"),
            assignors=tuple(cast(list[str], cfg.get("group.consumer.assignors"))),
            migration_policy=str(cfg.get("group.consumer.migration.policy")).lower(),
            timeouts=lambda group_id: group_timeouts(
                self.image.group_configs.get(group_id, {}), self.config
            ),
        )

    def _share_group_timeouts(self, group_id: str) -> tuple[int, int]:
        values = share_group_config(self.image.group_configs.get(group_id, {}), self.config)
        return int(values["share.session.timeout.ms"]), int(values["share.heartbeat.interval.ms"])

    def _join_cluster(self, cluster_id: str) -> str:
        """A data directory created a moment ago takes the cluster id its store names."""
        path = self.data_dir / "meta.properties"
        _write_meta_properties(
            path, {**parse_properties(path.read_text()), "cluster.id": cluster_id}
        )
        return cluster_id

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
            self.directory_id = props.get("directory.id", "")
            if not self.directory_id:
                self.directory_id = uuid.uuid4().hex
                _write_meta_properties(path, {**props, "directory.id": self.directory_id})
            if "cluster.id" in props:
                return props["cluster.id"]
        # A new data directory joins the cluster its store names, or starts a new one.
        cluster_id = self.image.cluster_id or (
            base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        )
        self.directory_id = self.directory_id or uuid.uuid4().hex
        _write_meta_properties(
            path,
            {
                "version": "1",
                "cluster.id": cluster_id,
                "node.id": str(self.node_id),
                "directory.id": self.directory_id,
            },
        )
        return cluster_id

    def _new_connection(self, listener: Listener) -> KafkaConnection:
        from artesian.broker.connection import KafkaConnection

        return KafkaConnection(self, listener)

    def note_stop_signals(self) -> None:
        """Until serve_forever() takes them over, SIGTERM and SIGINT are only noted: start()
        runs mostly without yielding to the loop, so a loop handler would run too late. A
        signal noted before the listeners open keeps them shut; one noted after (a
        supervisor that stops the broker the moment its port answers) stops it cleanly
        instead of meeting Python's default action. A second one stops it at once."""

        def note(signum: int, _frame: object) -> None:
            if self._stop_signal is not None:
                # Asked twice (a second Ctrl-C while logs recover): stop now, as Python would.
                signal.signal(signum, signal.SIG_DFL)
                os.kill(os.getpid(), signum)
            self._stop_signal = signal.Signals(signum)

        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, note)

    async def serve_forever(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self._request_stop, sig)
        if self._stop_signal is not None:
            self._request_stop(self._stop_signal)
        await self._stopped.wait()
        await self.stop()

    def _request_stop(self, sig: signal.Signals) -> None:
        log.info("received %s: shutting down", sig.name)
        self._stopped.set()

    def _client_metrics_subscriptions(self) -> tuple[int, list[Subscription]]:
        """The CLIENT_METRICS subscriptions and their version, which moves only when they
        change (client instances made from an older version are made again)."""
        offset, version, raw, parsed = self._subscriptions
        if offset != self.image.offset:
            current = {name: dict(c) for name, c in self.image.client_metrics.items()}
            if current != raw:
                version += 1
                raw = current
                parsed = [subscription_of(n, c) for n, c in sorted(current.items())]
            self._subscriptions = (self.image.offset, version, raw, parsed)
        return version, parsed

    def _jwks_caches(self) -> list[JwksCache]:
        return [s.jwks for s in self.sasl_settings.values() if s.jwks is not None]

    async def _load_signing_keys(self) -> None:
        """OAUTHBEARER's signing keys before the listeners open, as Kafka fetches them at
        start-up, so the first logins find them. A provider that does not answer in time
        does not stop the broker: its keys are fetched again in the background, and other
        mechanisms work meanwhile."""
        from artesian.security.oauthbearer.jwks import FETCH_TIMEOUT_S

        async def load(keys: JwksCache) -> None:
            try:
                async with asyncio.timeout(FETCH_TIMEOUT_S):
                    await keys.refresh_once()
            except Exception as e:
                log.warning(
                    "cannot load OAUTHBEARER signing keys from %s at start-up: %s; OAUTHBEARER "
                    "logins are refused until it answers (retried in the background). Check "
                    "sasl.oauthbearer.jwks.endpoint.url",
                    keys.url,
                    e,
                )

        await asyncio.gather(*(load(keys) for keys in self._jwks_caches()))

    async def _bind_listeners(self) -> None:
        loop = asyncio.get_running_loop()
        for listener, ssl_context in self._ssl_contexts.items():
            self._servers.append(
                await loop.create_server(
                    functools.partial(self._new_connection, listener),
                    listener.host or None,
                    listener.port,
                    reuse_address=True,
                    backlog=self.config.get_int("socket.listen.backlog.size"),
                    ssl=ssl_context,
                    start_serving=False,
                )
            )

    async def stop(self) -> None:
        """Stop accepting and dispatching, answer what is in flight, then flush and close
        every log (Kafka stops request processing before its replica manager)."""
        self.stopping = True
        for server in self._servers:
            server.close()
        self._controlled_shutdown()
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
        if self.fetcher_manager is not None:
            await self.fetcher_manager.shutdown()
        await self.marker_writer.close()
        await self.share_partition_manager.close()
        if self.remote_log_manager is not None:
            await self.remote_log_manager.close()
        if self.log_manager is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.log_manager.shutdown)
        if self._background_store is not None:
            background = self._background_store
            await asyncio.get_running_loop().run_in_executor(self._store_thread, background.close)
        self._store_thread.shutdown(wait=False)
        if self.store is not None:
            with contextlib.suppress(Exception):
                self.store.end_session(self.node_id, self.directory_id)
            self.store.close()
        if isinstance(self._metrics_server, tuple):
            server, _thread = self._metrics_server
            server.shutdown()
        log.info("broker %d stopped cleanly", self.node_id)

    # --- metadata ---------------------------------------------------------------------------

    def commit(self, records: list[MetadataRecord]) -> None:
        """Persist records, apply them to the image, and act on them. A record kind the
        cluster's finalized metadata version does not have yet is UNSUPPORTED_VERSION: an
        older broker of the cluster could not read it."""
        assert self.store is not None
        if not records:
            return
        if refused_records(records, self.image.metadata_version):
            planned_at = self.image.offset
            self._catch_up_with_store()  # another broker may have finalized a newer level
            if problem := refused_records(records, self.image.metadata_version):
                raise ControllerError(ErrorCode.unsupported_version, problem)
            if self.image.offset != planned_at:  # planned from an older image: plan again
                raise ControllerError(ErrorCode.not_controller, _PLANNED_ON_STALE_METADATA)
        try:
            # Planned from this image: the store must not have moved on since (another broker
            # sharing it appended), or the plan may be wrong. Catch up; the caller retries.
            last = self.store.append(records, expected_last=self.image.offset)
        except StaleMetadataError:
            self._catch_up_with_store()
            raise ControllerError(ErrorCode.not_controller, _PLANNED_ON_STALE_METADATA) from None
        except Exception as e:
            # The append may have landed even so (a connection lost at COMMIT): catch up with
            # the store, so the image never drifts from it, and let the request fail, each of
            # its topics or resources with the error (as a KRaft controller that cannot
            # commit times requests out), not with an answer that names none of them.
            self._catch_up_with_store()
            self._store_trouble("the metadata store refused a write (%s)", e)
            raise ControllerError(
                ErrorCode.request_timed_out, f"the metadata store refused the write: {e}"
            ) from e
        first = last - len(records) + 1
        for i, record in enumerate(records):
            self.image.apply(first + i, record)
        self._on_records(records)

    def _check_feature_levels(self) -> None:
        """A broker joins only a cluster whose finalized levels it supports, as KRaft's
        controller refuses such a registration."""
        for name, level in self.image.features.items():
            lowest, highest = SUPPORTED_FEATURES.get(name, (0, 0))
            if not lowest <= level <= highest:
                raise BrokerStartupError(
                    f"this cluster's {name} is {level}, and this version of Artesian "
                    f"supports {lowest} to {highest}: run a version that supports it"
                )

    def plan_and_commit(
        self, plan: Callable[[], list[MetadataRecord]], attempts: int = 3
    ) -> list[MetadataRecord]:
        """Plan from the image and commit; when another broker appended first, catch up and
        plan again (a few times) before the caller sees NOT_CONTROLLER. Returns what was
        committed."""
        for attempt in range(attempts):
            try:
                records = plan()
                self.commit(records)
                return records
            except ControllerError as e:
                if e.code is not ErrorCode.not_controller or attempt == attempts - 1:
                    raise
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _catch_up_with_store(self) -> None:
        assert self.store is not None
        try:
            newer = list(self.store.read(after=self.image.offset))
        except Exception as e:
            self._store_trouble(_read_failure_format(e), e)
            return
        self._apply_newer(newer)

    def _apply_newer(self, newer: list[tuple[int, MetadataRecord]]) -> None:
        """Apply records read from the store, skipping what the image has meanwhile (a
        background read can race this broker's own commits)."""
        if self._store_unreadable:
            log.info("the metadata store answers again")
            self._store_unreadable = False
        fresh = [(o, r) for o, r in newer if o > self.image.offset]
        if not fresh or fresh[0][0] != self.image.offset + 1:
            return  # nothing new, or a gap: the next read starts from the image again
        for offset, record in fresh:
            self.image.apply(offset, record)
        self._on_records([r for _, r in fresh])

    def _store_trouble(self, message: str, error: Exception) -> None:
        """Once per outage: the store's errors repeat every poll while it is down."""
        if not self._store_unreadable:
            log.warning(message, error)
        self._store_unreadable = True

    def _on_records(self, records: Iterable[MetadataRecord]) -> None:
        records = list(records)
        # Taken first, whatever happens below: a name left for later could meanwhile name a
        # topic created again, whose offsets are not to go.
        removed = self.image.take_removed_topics()
        if removed and self.group_coordinator is not None:
            try:
                dropped = self.group_coordinator.delete_offsets_of_deleted_topics(set(removed))
            except Exception:  # the rest of the metadata must still be acted on
                log.exception("could not delete the offsets of deleted topics %s", removed)
                dropped = 0
            if dropped:
                log.info("deleted %d committed offset(s) of deleted topics %s", dropped, removed)
        mine = ("", str(self.node_id))  # the cluster default's resource, and this broker's
        broker_configs_changed = any(
            isinstance(r, ConfigRecord)
            and r.resource_type == BROKER_RESOURCE
            and r.resource_name in mine
            for r in records
        )
        if broker_configs_changed:
            self._apply_dynamic_configs()  # before topics re-read their defaults below
        if any(
            isinstance(r, AccessControlEntryRecord | RemoveAccessControlEntryRecord)
            for r in records
        ):
            self._update_authorizer()
        if any(
            isinstance(
                r, ClientQuotaRecord | LogicalClusterBindingRecord | LogicalClusterQuotaRecord
            )
            for r in records
        ):
            self._update_bindings_and_quotas()
        self.applied_metadata_offset = self.image.offset
        rm = self.replica_manager
        if rm is None:
            return
        touched: set[str] = set()
        for record in records:
            match record:
                case PartitionRecord():
                    topic = self.image.topics_by_id.get(uuid.UUID(record.topic_id))
                    if topic is None:
                        continue
                    if self.node_id in record.replicas:
                        self._apply_partition(topic, record.partition)
                    elif rm.get(topic.name, record.partition) is not None:
                        self._coordinator_election(topic.name, record.partition, False)
                        rm.stop_replica(topic.name, record.partition, delete=True)
                case RegisterBrokerRecord(node_id=node_id):
                    # A broker registers, then opens its session: it is live already.
                    with contextlib.suppress(Exception):
                        self._refresh_live_brokers()
                    if self.fetcher_manager is not None:
                        self.fetcher_manager.leader_moved(node_id)
                case RemoveTopicRecord():
                    # The topic is already gone from the image: find it among our partitions.
                    for (name, _i), part in list(rm.partitions.items()):
                        if str(part.topic_id) == record.topic_id:
                            self._stop_remote_partitions(name, part.topic_id)
                            rm.remove_topic(name)
                            break
                case ConfigRecord(resource_type=2, resource_name=name):
                    touched.add(name)
                case ConfigRecord() if broker_configs_changed:
                    touched.update(self.image.topics)  # their defaults may have changed
                case TopicRecord():
                    pass
        for name in touched:
            topic = self.image.topics.get(name)
            if topic is not None and any(k[0] == name for k in rm.partitions):
                rm.update_config(name, self.log_config(topic))
        self._update_balancer_gauges()

    def _logical_cluster_use(self) -> tuple[dict[str, int], dict[str, int]]:
        """(partitions, connections here) by logical cluster, for a scrape (on its thread:
        it reads copies)."""
        partitions: dict[str, int] = {}
        for name, topic in list(self.image.topics.items()):
            lkc = logical_cluster_id_of(name)
            if lkc is not None:
                partitions[lkc] = partitions.get(lkc, 0) + len(topic.partitions)
        return partitions, self.connection_quotas.logical_cluster_connections()

    def _leader_log_sizes(self) -> list[tuple[str, float]]:
        """Bytes retained in each partition led here (by its topic): the local log, and the
        remote segments below it (one that reaches into the local log, pro rata by offsets).
        Called on the scrape thread: it only reads, from copies (list() takes one in a single
        step under the GIL), and a partition changing meanwhile counts at the next scrape."""
        rm, rlm = self.replica_manager, self.remote_log_manager
        if rm is None:
            return []
        sizes = []
        led = [p for p in list(rm.partitions.values()) if p.is_leader]
        for p in led:
            try:
                size = float(p.log.size_in_bytes)
                remote = rlm.partition(p.topic, p.index) if rlm is not None else None
                if remote is not None and remote.segments:
                    size += self._remote_below(remote, p.log.local_log_start_offset)
            except Exception:  # truncated or deleted under us: counted at the next scrape
                continue
            sizes.append((p.topic, size))
        if len(self._remote_sizes) > 2 * len(led) + 16:  # forget partitions no longer led
            keep = {(p.topic, p.index) for p in led}
            # list(): another scrape thread may be adding to it meanwhile.
            self._remote_sizes = {k: v for k, v in list(self._remote_sizes.items()) if k in keep}
        return sizes

    def _remote_below(self, remote: RemotePartition, local_start: int) -> float:
        """Remote bytes below ``local_start``, remembered until the segments or the local start
        change: scrapes come every second, segments every few minutes."""
        segments = list(remote.segments)
        shape = (len(segments), segments[0].start_offset, segments[-1].end_offset, local_start)
        cached = self._remote_sizes.get((remote.topic, remote.partition))
        if cached is not None and cached[0] == shape:
            return cached[1]
        size = 0.0
        for m in segments:
            if m.end_offset < local_start:
                size += m.size_in_bytes
            elif m.start_offset < local_start:
                size += (
                    m.size_in_bytes
                    * (local_start - m.start_offset)
                    / (m.end_offset - m.start_offset + 1)
                )
        self._remote_sizes[(remote.topic, remote.partition)] = (shape, size)
        return size

    def _update_balancer_gauges(self) -> None:
        image, m = self.image, self.metrics
        m.balancer_moves_in_flight.set(len(image.reassigning()))
        m.balancer_removals.set(
            sum(r.state in ("PENDING", "IN_PROGRESS") for r in image.removals.values())
        )
        task = image.balancer_task
        m.balancer_rebalancing.set(
            int(task is not None and task.state in ("PENDING", "IN_PROGRESS"))
        )

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

    def _apply_partition(self, topic: TopicImage, index: int) -> None:
        """Lead or follow a partition as its latest record says."""
        rm, fetchers = self.replica_manager, self.fetcher_manager
        assert rm is not None and fetchers is not None
        p = topic.partitions[index]
        args = (topic.name, index, topic.topic_id)
        config = self.log_config(topic)
        if p.leader == self.node_id:
            rm.become_leader(*args, p.leader_epoch, p.replicas, p.isr, config, p.partition_epoch)
            self._coordinator_election(topic.name, index, True)
            return
        part, changed = rm.become_follower(
            *args, p.leader, p.leader_epoch, p.replicas, p.isr, config, p.partition_epoch
        )
        self._coordinator_election(topic.name, index, False)
        if changed:
            fetchers.follow(part)

    def _coordinator_election(self, topic: str, index: int, leader: bool) -> None:
        """Leading a partition of an internal topic makes this broker the coordinator of its
        groups or transactional ids (Kafka's onElection / onResignation)."""
        coordinator: GroupCoordinator | TransactionCoordinator | ShareCoordinator | None
        if topic == OFFSETS_TOPIC:
            coordinator = self.group_coordinator
        elif topic == TRANSACTION_STATE_TOPIC:
            coordinator = self.transaction_coordinator
        elif topic == SHARE_STATE_TOPIC:
            coordinator = self.share_coordinator
        else:
            return
        if coordinator is None:
            return  # start-up: the coordinators load what is led here once they exist
        if leader:
            coordinator.load([index])
        elif index in coordinator.owned:
            coordinator.unload(index)
            log.debug("%s-%d is led elsewhere now: its coordinator moved", topic, index)

    def _led(self, topic: str) -> list[int]:
        rm = self.replica_manager
        assert rm is not None
        return sorted(i for (name, i), p in rm.partitions.items() if name == topic and p.is_leader)

    def _update_authorizer(self) -> None:
        if self.authorizer is not None:
            self.authorizer.update(acl_binding(r) for r in self.image.acls.values())

    @property
    def delegation_token_secret_key(self) -> str | None:
        """delegation.token.secret.key; unset (or empty) turns delegation tokens off."""
        value = self.config.get("delegation.token.secret.key")
        return str(value) if value else None

    def delegation_token_login(self, token_id: str, mechanism: ScramMechanism) -> TokenLogin | None:
        return self._token_credentials.login(
            self.delegation_token_secret_key,
            self.image.delegation_tokens.get(token_id),
            mechanism,
            time.time_ns() // 1_000_000,
        )

    async def _expire_delegation_tokens(self) -> None:
        """The active controller removes tokens past their expiry (Kafka's controller sweeps
        them every delegation.token.expiry.check.interval.ms the same way); every broker
        forgets the SCRAM credentials of tokens that are gone."""
        self._token_credentials.forget_all_but(self.image.delegation_tokens)
        if self.active_controller != self.node_id or self.controller is None:
            return
        now = time.time_ns() // 1_000_000

        def plan() -> list[MetadataRecord]:
            tokens = self.image.delegation_tokens.values()
            return [RemoveDelegationTokenRecord(t.token_id) for t in tokens if expired(t, now)]

        try:
            removed = self.plan_and_commit(plan)
        except ControllerError as e:
            log.warning("expired delegation tokens stay until the next sweep: %s", e.message)
            return
        if removed:
            log.info("removed %d expired delegation token(s)", len(removed))

    def scram_credential(self, user: str, mechanism: ScramMechanism) -> ScramCredential | None:
        record = self.image.scram_credentials.get((user, mechanism.type_id))
        if record is None:
            return None
        return ScramCredential(
            bytes.fromhex(record.salt),
            bytes.fromhex(record.stored_key),
            bytes.fromhex(record.server_key),
            record.iterations,
        )

    def inter_broker_address(self, node_id: int) -> tuple[str, int] | None:
        """Where this broker reaches ``node_id``: on its own inter-broker listener's name, as
        Kafka looks it up (brokers may be mid-way through switching listeners)."""
        b = self.image.brokers.get(node_id)
        return b.endpoint(self.inter_broker_listener.name) if b is not None else None

    def _apply_dynamic_configs(self) -> None:
        """Kafka's DynamicBrokerConfig: this broker's and the cluster's dynamic configs, from
        the image, over the static ones. Most readers look values up each time; the ones that
        keep a copy are told here. Topics re-read their defaults in _on_records."""
        configs = self.image.broker_configs
        cfg = self.config

        def layers() -> tuple[dict[str, str], dict[str, str]]:
            return (
                dict(cfg.dynamic(ConfigSource.DYNAMIC_BROKER_CONFIG)),
                dict(cfg.dynamic(ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG)),
            )

        before = layers()
        skipped = sorted(
            set(cfg.update_dynamic(configs.get(str(self.node_id), {}), configs.get("", {})))
        )
        if skipped and skipped != self._skipped_dynamic:
            log.warning(
                "ignoring dynamic broker configs this version cannot apply: %s (remove them "
                "with `artesian cluster config [--broker ID] --delete-config NAME`)",
                ", ".join(skipped),
            )
        self._skipped_dynamic = skipped
        after = layers()
        if after == before:
            return
        log.info("dynamic broker configs: this broker %s, cluster default %s", *after)
        if self.leader_throttle is not None:
            self.leader_throttle.quota.set_rate(cfg.get_int("leader.replication.throttled.rate"))
        fetchers = self.fetcher_manager
        if fetchers is not None and fetchers.throttle is not None:
            fetchers.throttle.quota.set_rate(cfg.get_int("follower.replication.throttled.rate"))
        if self.log_cleaner is not None and self.log_cleaner.throttler is not None:
            rate = cfg.get_float("log.cleaner.io.max.bytes.per.second")
            self.log_cleaner.throttler.rate_per_sec = rate
        if self.log_manager is not None:
            self.log_manager.default_config = self.default_log_config()
            expiration = cfg.get_int("producer.id.expiration.ms")
            self.log_manager.producer_id_expiration_ms = expiration
            for plog in self.log_manager.all_logs():
                plog.producer_state.expiration_ms = expiration

    def _replication_throttle(self, side: str) -> ReplicationThrottle:
        """KIP-73's quota for one side: ``side`` is "leader" or "follower"."""
        listing = f"{side}.replication.throttled.replicas"

        def listed(topic: str, partition: int) -> bool:
            t = self.image.topics.get(topic)
            return t is not None and replica_listed(t.configs, listing, partition, self.node_id)

        rate = self.config.get_int(f"{side}.replication.throttled.rate")
        return ReplicationThrottle(ByteRateQuota(rate), listed)

    def _fetcher_config(self) -> FetcherConfig:
        cfg = self.config
        return FetcherConfig(
            node_id=self.node_id,
            max_wait_ms=cfg.get_int("replica.fetch.wait.max.ms"),
            min_bytes=cfg.get_int("replica.fetch.min.bytes"),
            partition_max_bytes=cfg.get_int("replica.fetch.max.bytes"),
            response_max_bytes=cfg.get_int("replica.fetch.response.max.bytes"),
            backoff_ms=cfg.get_int("replica.fetch.backoff.ms"),
            socket_timeout_ms=cfg.get_int("replica.socket.timeout.ms"),
            security=self.inter_broker_security,
        )

    # --- the cluster: sessions, leaders, ISR ------------------------------------------------

    @property
    def active_controller(self) -> int:
        """The broker that elects leaders: the lowest live id. Two brokers acting at once
        (their views of the sessions differ for a moment) cannot both win: appends are
        conditional on the log they planned from."""
        return min(self.live_brokers, default=self.node_id)

    def _renew_session(self, store: MetadataStore | None = None) -> frozenset[int]:
        """Renew this broker's session; returns the live brokers. Runs on the event loop at
        start-up and on the background store's thread afterwards (``store``)."""
        store = store or self.store
        assert store is not None
        timeout = self.config.get_int("broker.session.timeout.ms")
        if not store.heartbeat(self.node_id, self.directory_id, timeout):
            raise DuplicateNodeId(
                f"another broker with node.id={self.node_id} holds a live session in the "
                "metadata store: give each broker its own node.id (--set node.id=N)"
            )
        return frozenset(store.live_brokers() | {self.node_id})

    def rack_of(self, node: int) -> str | None:
        """The broker.rack a broker registered with (None: none, or unknown)."""
        b = self.image.brokers.get(node)
        return b.rack if b is not None else None

    def _update_bindings_and_quotas(self) -> None:
        """After records about bindings or quotas (and at start): the principals confined to
        a logical cluster, never the platform's own, as requests and quotas read them."""
        image = self.image
        self._bindings = {
            p: LogicalCluster(lkc)
            for p, lkc in image.logical_clusters.items()
            if p not in self.platform_principals
        }
        self.quota_manager.update(
            image.client_quotas,
            {p: lc.id for p, lc in self._bindings.items()},
            image.logical_cluster_quotas,
        )

    def logical_cluster_of(self, principal: str) -> LogicalCluster | None:
        """The logical cluster ``principal`` works in (None: it sees the whole cluster).
        One dict lookup on the request path, none while no principal is bound."""
        bindings = self._bindings
        return bindings.get(principal) if bindings else None

    def current_live_brokers(self) -> frozenset[int]:
        """Live brokers as the store has them now, not as of the last heartbeat round (for
        placing new replicas, and before unregistering one)."""
        with contextlib.suppress(Exception):
            self._refresh_live_brokers()
        return self.live_brokers

    def _refresh_live_brokers(self, live: frozenset[int] | None = None) -> None:
        assert self.store is not None
        if live is None:
            live = frozenset(self.store.live_brokers() | {self.node_id})
        if self._store_stalled() or time.monotonic() < self._fencing_grace_until:
            live |= self.live_brokers  # joins count, lapses wait (see _fencing_grace_until)
        if live != self.live_brokers:
            if self.live_brokers:
                gone = sorted(self.live_brokers - live)
                came = sorted(live - self.live_brokers)
                log.info(
                    "live brokers now %s%s%s",
                    sorted(live),
                    f" (fenced: {gone})" if gone else "",
                    f" (joined: {came})" if came else "",
                )
            self.live_brokers = live
            if self.replica_manager is not None:
                self.replica_manager.live_changed(live)

    async def in_store_thread(self, call: Callable[[MetadataStore], T]) -> T:
        """Run a periodic store call on its own thread and connection, so a slow store never
        holds the event loop: reads and session renewals there, appends on the loop. SQLite
        too: WAL readers never wait, but a session renewal is a write, and waits (up to the
        busy timeout, 10 s) while another process of a shared file holds the write lock; one
        frozen mid-write would otherwise stall every other broker's loop."""
        if self._background_store is None:
            self._background_store = await asyncio.get_running_loop().run_in_executor(
                self._store_thread, self._open_metadata_store
            )
        store = self._background_store
        return await asyncio.get_running_loop().run_in_executor(
            self._store_thread, lambda: call(store)
        )

    def _session_s(self) -> float:
        return self.config.get_int("broker.session.timeout.ms") / 1000

    def _store_stalled(self) -> bool:
        """This broker's session renewal failed, or has waited over half a session: the
        store is stalled, for the others too, and their lapsed sessions prove nothing."""
        since = self._heartbeat_since
        return self._heartbeat_failed or (
            since is not None and time.monotonic() - since > self._session_s() / 2
        )

    def _timed_renewal(self, store: MetadataStore) -> tuple[frozenset[int], float]:
        """A renewal and the seconds the store took for it (its wait for the thread is
        counted by the caller)."""
        started = time.monotonic()
        live = self._renew_session(store)
        return live, time.monotonic() - started

    async def _heartbeat(self) -> None:
        submitted = self._heartbeat_since = time.monotonic()
        try:
            live, took = await self.in_store_thread(self._timed_renewal)
        except DuplicateNodeId as e:
            log.error("%s; this broker is not renewing its session", e)
            return
        except Exception as e:
            self._heartbeat_failed = True
            self._store_trouble(
                "cannot renew this broker's session in the metadata store (%s); other brokers "
                "fence it after broker.session.timeout.ms unless the store answers",
                e,
            )
            return
        finally:
            self._heartbeat_since = None
        session_s = self._session_s()
        now = time.monotonic()
        # Its wait for the store's thread counts too: behind a read the store held up (a
        # paused PostgreSQL), the renewal itself is quick, but every broker's was as late.
        if self._heartbeat_failed or max(took, now - submitted) > session_s / 2:
            # The store stalled for everyone: the others renew as soon as it answers them.
            if now >= self._fencing_grace_until:
                log.info(
                    "the metadata store answers again after a stall; no broker is taken for fenced "
                    "for broker.session.timeout.ms (%d ms), while each renews its session",
                    session_s * 1000,
                )
            self._fencing_grace_until = now + session_s
        self._heartbeat_failed = False
        self._refresh_live_brokers(live)
        self._elect_leaders()

    async def _publish_load(self) -> None:
        """This broker's load sample, for the self-balancer on the active controller."""
        rm = self.replica_manager
        assert rm is not None
        cfg = self.config
        capacity = cfg.get_int("artesian.balancer.disk.capacity.bytes")
        if capacity < 0:
            stat = os.statvfs(self.data_dir / "logs")
            capacity = stat.f_blocks * stat.f_frsize
        sample = self.load_sampler.sample(
            self.node_id,
            list(rm.partitions.values()),
            int(time.time() * 1000),
            capacity * cfg.get_float("artesian.balancer.disk.max.load"),
            float(cfg.get_int("artesian.balancer.network.in.max.bytes.per.second")),
            float(cfg.get_int("artesian.balancer.network.out.max.bytes.per.second")),
        )
        document = sample.to_json()
        try:
            await self.in_store_thread(lambda store: store.publish_load(self.node_id, document))
        except Exception as e:
            self._store_trouble("cannot publish this broker's load sample (%s); retrying", e)

    async def catch_up_metadata(self) -> None:
        """Apply every record committed before this call. A client learns leaders from some
        broker's metadata, which may be newer than this broker's (each reads the shared log
        every ``artesian.metadata.poll.interval.ms``); a request naming a partition this
        broker does not know or lead yet waits for this instead of failing. Concurrent calls
        share one read, but never one that started before they were made."""
        if self.store is None:
            return
        called = time.monotonic()
        while True:
            if self._metadata_read is None or self._metadata_read[1].done():
                self._metadata_read = (
                    time.monotonic(),
                    asyncio.ensure_future(self._follow_metadata()),
                )
            started, read = self._metadata_read
            await asyncio.shield(read)
            if started >= called:
                return

    async def catch_up_metadata_within(self, seconds: float, before: str) -> None:
        """catch_up_metadata(), given up after ``seconds`` (the store may be slow, or down)
        with a warning naming what it was ``before``: the request is answered anyway."""
        try:
            async with asyncio.timeout(seconds):
                await self.catch_up_metadata()
        except Exception as e:
            log.warning("could not catch up with the metadata log before %s: %s", before, e)

    def _in_metadata(self, topic: str, partition: int) -> bool:
        image = self.image.topics.get(topic)
        return image is not None and partition in image.partitions

    async def _follow_metadata(self) -> None:
        """Apply what other brokers appended to the shared metadata log."""
        after = self.image.offset
        try:
            newer = await self.in_store_thread(lambda store: list(store.read(after=after)))
        except Exception as e:
            self._store_trouble(_read_failure_format(e), e)
            return
        self._apply_newer(newer)

    def _elect_leaders(self) -> None:
        """The active controller's duty: partitions whose leader is fenced get a new one from
        their ISR; fenced followers leave ISRs (KRaft does both when a session lapses)."""
        if self.active_controller != self.node_id or self.controller is None:
            return
        # Nothing to plan unless the sessions or the metadata changed since the last round.
        view = (self.live_brokers, self.image.offset)
        if view == self._elected_for:
            return

        # A topic's own unclean.leader.election.enable wins over the broker's, as in Kafka.
        def unclean(topic: TopicImage) -> bool:
            raw = topic.configs.get(UNCLEAN)
            if raw is not None:
                try:
                    return bool(parse(TOPIC_CONFIGS[UNCLEAN], raw))
                except ConfigError:
                    if (topic.name, raw) not in self._warned_unclean:
                        self._warned_unclean.add((topic.name, raw))
                        log.warning(
                            "topic %s: cannot read %s=%r; the broker's value applies",
                            topic.name,
                            UNCLEAN,
                            raw,
                        )
            return bool(self.config.topic_default(UNCLEAN))

        records = self.controller.plan_elections(self.live_brokers, unclean)
        if not records:
            records = self.controller.plan_completed_reassignments(self.live_brokers)
        if not records:
            self._elected_for = view
            return
        try:
            self.commit(records)
        except ControllerError:
            return  # the log moved on: the next round plans again from the new image
        log.info("new leaders, ISRs or replica sets for %d partition(s)", len(records))

    async def _rebalance_leaders(self) -> None:
        """The active controller's auto leader rebalance (auto.leader.rebalance.enable)."""
        if (
            self.active_controller != self.node_id
            or self.controller is None
            or not self.config.get_bool("auto.leader.rebalance.enable")
        ):
            return
        records = self.controller.plan_preferred_leaders(
            self.live_brokers, self.config.get_int("leader.imbalance.per.broker.percentage")
        )
        if records:
            with contextlib.suppress(ControllerError):  # the log moved on: next round
                self.commit(records)
                log.info("moved %d leadership(s) back to preferred replicas", len(records))

    def coordinator_write_replicated(
        self, topic: str, key: str
    ) -> Coroutine[Any, Any, ErrorCode] | None:
        """A coordinator answers only once its internal topic's ISR holds what it wrote for
        ``key`` (Kafka appends coordinator records with acks=all). None when nothing written
        to the key's partition is waiting; else the wait, whose result is Kafka's mapping of a
        failed coordinator append: NOT_COORDINATOR if the leadership moved,
        COORDINATOR_NOT_AVAILABLE if the ISR did not follow in offsets.commit.timeout.ms or
        shrank below min.insync.replicas meanwhile."""
        rm = self.replica_manager
        timg = self.image.topics.get(topic)
        if rm is None or timg is None or not timg.partitions:
            return None
        p = rm.get(topic, partition_for(key, len(timg.partitions)))
        if p is None or not p.is_leader or p.high_watermark >= p.log.log_end_offset:
            return None
        return self._replicated(p, p.log.log_end_offset, p.leader_epoch)

    async def _replicated(self, p: Partition, end: int, epoch: int) -> ErrorCode:
        assert self.replica_manager is not None
        timeout = self.config.get_int("offsets.commit.timeout.ms") / 1000
        code = await self.replica_manager.wait_for_high_watermark(p, end, timeout, epoch)
        if code is ErrorCode.none:
            if p.under_min_isr:
                # Kafka's NOT_ENOUGH_REPLICAS_AFTER_APPEND: the ISR shrank while it waited.
                return ErrorCode.coordinator_not_available
            return code
        if code is ErrorCode.not_leader_or_follower:
            return ErrorCode.not_coordinator
        return ErrorCode.coordinator_not_available

    def expand_isr(self, p: Partition, replica_id: int) -> None:
        """A follower caught up: it joins the ISR (Kafka's AlterPartition, here an append)."""
        self._alter_isr(p, tuple(r for r in p.replicas if r in p.isr or r == replica_id))

    async def _shrink_isr(self) -> None:
        rm = self.replica_manager
        assert rm is not None
        now = int(time.time() * 1000)
        lag = self.config.get_int("replica.lag.time.max.ms")
        for p in list(rm.partitions.values()):
            if not p.is_leader:
                continue
            out = p.out_of_sync(now, lag)
            if out:
                log.info(
                    "%s-%d: followers %s have not caught up for replica.lag.time.max.ms; "
                    "removing them from the ISR",
                    p.topic,
                    p.index,
                    list(out),
                )
                self._alter_isr(p, tuple(r for r in p.isr if r not in out))

    def _alter_isr(self, p: Partition, isr: tuple[int, ...]) -> None:
        if self.controller is None or isr == p.isr:
            return
        before = p.isr
        try:
            self.commit(self.controller.plan_alter_isr(p.topic_id, p.index, p.leader_epoch, isr))
        except ControllerError as e:
            log.debug("ISR change of %s-%d not applied: %s", p.topic, p.index, e.message)
            return
        except Exception as e:  # the store's own errors: the next fetch or round retries
            log.warning("ISR change of %s-%d not applied: %s", p.topic, p.index, e)
            return
        if len(isr) < len(before):
            self.metrics.isr_shrinks.inc(len(before) - len(isr))
        else:
            self.metrics.isr_expands.inc(len(isr) - len(before))
            log.info("%s-%d: ISR now %s", p.topic, p.index, list(isr))

    def _controlled_shutdown(self) -> None:
        """Hand this broker's leaderships to in-sync followers before stopping, so clients
        move on at once instead of after broker.session.timeout.ms (Kafka's controlled
        shutdown)."""
        if self.controller is None:
            return
        # The store's view, not the last heartbeat's: a broker that just rejoined must not be
        # taken for fenced (see Controller._elect).
        self._move_off("before stopping", self.current_live_brokers())

    def _move_off(self, why: str, live: frozenset[int]) -> None:
        """Hand leaderships to ``live`` in-sync followers and leave ISRs (see
        plan_elections); nothing when no other broker is live."""
        assert self.controller is not None
        if len(live) < 2:
            return
        for _ in range(3):
            records = self.controller.plan_elections(live, False, self.node_id)
            if not records:
                return
            try:
                self.commit(records)
                log.info("moved %d partition(s) off this broker %s", len(records), why)
                return
            except ControllerError:
                continue
            except Exception as e:
                log.warning("could not move leaderships before stopping: %s", e)
                return

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
                # Read each time: a dynamic config may change it.
                await asyncio.sleep(self.config.get_int("log.cleaner.backoff.ms") / 1000)

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

    def _checkpoint_intervals(self) -> list[int]:
        keys = (
            "log.flush.offset.checkpoint.interval.ms",
            "log.flush.start.offset.checkpoint.interval.ms",
        )
        return [ms for ms in map(self.config.get_int, keys) if ms > 0]

    async def _checkpoint(self) -> None:
        assert self.log_manager is not None
        await asyncio.get_running_loop().run_in_executor(None, self.log_manager.checkpoint)

    # --- ApiVersions fallback ---------------------------------------------------------------

    def api_versions_fallback(self, correlation_id: int) -> bytes:
        """ApiVersions v0 response with UNSUPPORTED_VERSION (35) and our ranges."""
        body = self._api_versions_fallback
        return struct.pack(">ii", len(body) + 4, correlation_id) + body


def _principal_mapper(config: BrokerConfig, listener: str) -> SslPrincipalMapper:
    rules = config.for_listener(listener, "ssl.principal.mapping.rules")
    try:
        return SslPrincipalMapper.from_rules(str(rules) if rules is not None else None)
    except ValueError as e:
        raise ValueError(f"listener {listener}: ssl.principal.mapping.rules: {e}") from e


def _write_meta_properties(path: Path, props: dict[str, str]) -> None:
    """Atomically: a crash leaves the old file or the new one."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        f.write("".join(f"{k}={v}\n" for k, v in props.items()))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _api_versions_fallback_body(handlers: dict[int, HandlerEntry]) -> bytes:
    public = {k: h for k, h in handlers.items() if not api.is_private(k)}
    body = bytearray(struct.pack(">hi", 35, len(public)))
    for key, h in sorted(public.items()):
        body += struct.pack(">hhh", key, h.min_version, h.max_version)
    return bytes(body)


def _implied_settings(config: BrokerConfig, data_dir: Path, host: str, port: int) -> dict[str, str]:
    """What --listen, --data-dir and node.id stand for, as DescribeConfigs should show them."""
    implied = {}
    if not config.is_set("listeners"):
        shown = f"[{host}]" if ":" in host else host
        implied["listeners"] = f"PLAINTEXT://{shown}:{port}"
    if not config.is_set("log.dirs") and not config.is_set("log.dir"):
        implied["log.dirs"] = str(data_dir.resolve())
    if not config.is_set("broker.id"):
        implied["broker.id"] = str(config.node_id)
    elif not config.is_set("node.id"):
        implied["node.id"] = str(config.node_id)
    return implied


async def run_broker(config: BrokerConfig, data_dir: Path, host: str, port: int) -> None:
    broker = Broker(config, data_dir, host, port)
    broker.note_stop_signals()
    try:
        await broker.start()
    except BaseException:
        for sig in (signal.SIGTERM, signal.SIGINT):  # the start failed: Python's own again
            signal.signal(
                sig, signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL
            )
        raise
    await broker.serve_forever()
