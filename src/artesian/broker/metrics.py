"""Prometheus metrics, named after Kafka's JMX beans where one exists."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.core import GaugeMetricFamily

from artesian.tenancy import logical_cluster_id_of


class BrokerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "kafka_network_requests", "Requests handled, by API.", ["request"], registry=r
        )
        self.request_errors = Counter(
            "kafka_network_request_errors",
            "Requests that failed to decode or were rejected, by API and reason.",
            ["request", "reason"],
            registry=r,
        )
        # Kafka's successful-/failed-authentication-total, per listener.
        self.authentications = Counter(
            "kafka_server_socket_server_authentications",
            "SASL authentications, by listener and result (success or failure).",
            ["listener", "result"],
            registry=r,
        )
        # Kafka's successful-/failed-reauthentication-total (KIP-368), per listener.
        self.reauthentications = Counter(
            "kafka_server_socket_server_reauthentications",
            "SASL re-authentications, by listener and result (success or failure).",
            ["listener", "result"],
            registry=r,
        )
        # Kafka's expired-connections-killed-count (KIP-368).
        self.expired_connections_killed = Counter(
            "kafka_server_socket_server_expired_connections_killed",
            "Connections closed because their SASL session expired without re-authentication.",
            ["listener"],
            registry=r,
        )
        # Kafka's Throttler meter of the cleaner (kafka.utils:type=Throttler,name=cleaner-io),
        # and the time its throttle held the cleaner back (ours).
        self.cleaner_io_bytes = Counter(
            "kafka_utils_throttler_cleaner_io_bytes",
            "Bytes the log cleaner read and wrote (log.cleaner.io.max.bytes.per.second caps "
            "their rate).",
            registry=r,
        )
        self.cleaner_throttled_seconds = Counter(
            "artesian_log_cleaner_throttled_seconds",
            "Time the log cleaner slept to keep to log.cleaner.io.max.bytes.per.second.",
            registry=r,
        )
        # Kafka's DelayedFetchMetrics ExpiresPerSec: fetches answered because max_wait ran out.
        self.delayed_fetch_expires = Counter(
            "kafka_server_delayed_fetch_expires",
            "Parked fetches answered at their max wait rather than woken by data, by fetcher "
            "type (consumer or follower).",
            ["fetcher_type"],
            registry=r,
        )
        # Kafka's group-coordinator-metrics: group-count by protocol, consumer-group-count by
        # state (the consumer protocol's Empty, Assigning, Reconciling, Stable).
        self.group_count = Gauge(
            "kafka_server_group_coordinator_metrics_group_count",
            "Groups this broker coordinates, by protocol (classic or consumer).",
            ["protocol"],
            registry=r,
        )
        self.consumer_group_count = Gauge(
            "kafka_server_group_coordinator_metrics_consumer_group_count",
            "Groups on the consumer protocol (KIP-848) this broker coordinates, by state.",
            ["state"],
            registry=r,
        )
        # Kafka's throttle-time sensors of its Produce and Fetch quota managers.
        self.throttled = Counter(
            "kafka_server_client_quota_throttle_time_seconds",
            "Time clients were throttled for going over their quotas, by request kind.",
            ["kind"],
            registry=r,
        )
        # Kafka's exempt-request-time: brokers' own requests, while request quotas are set.
        self.exempt_request_time = Counter(
            "kafka_server_request_exempt_request_time_seconds",
            "Event-loop time spent on requests exempt from request_percentage (other brokers').",
            registry=r,
        )
        self.request_latency = Histogram(
            "kafka_network_request_total_time_seconds",
            "Time from a request's arrival to its response, by API.",
            ["request"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0),
            registry=r,
        )
        # Kafka's BytesInPerSec/BytesOutPerSec count clients only; replication has its own.
        self.bytes_in = Counter(
            "kafka_server_broker_topic_bytes_in",
            "Bytes produced by clients, by topic.",
            ["topic"],
            registry=r,
        )
        self.bytes_out = Counter(
            "kafka_server_broker_topic_bytes_out",
            "Bytes fetched by clients, by topic.",
            ["topic"],
            registry=r,
        )
        self.replication_bytes_in = Counter(
            "kafka_server_broker_topic_replication_bytes_in",
            "Bytes a follower here appended from its leaders.",
            registry=r,
        )
        self.replication_bytes_out = Counter(
            "kafka_server_broker_topic_replication_bytes_out",
            "Bytes followers fetched from the leaders here.",
            registry=r,
        )
        self.messages_in = Counter(
            "kafka_server_broker_topic_messages_in",
            "Records appended, by topic.",
            ["topic"],
            registry=r,
        )
        self.connections = Gauge(
            "kafka_server_socket_server_connection_count", "Open client connections.", registry=r
        )
        self.accept_throttle = Counter(
            "kafka_server_socket_server_connection_accept_throttle_seconds",
            "Time new connections were held before being served, by listener, for "
            "max.connection.creation.rate (the broker's or the listener's; KIP-612).",
            ["listener"],
            registry=r,
        )
        self.connections_refused = Counter(
            "kafka_server_socket_server_connections_refused",
            "Connections refused, by listener and limit: per_ip (max.connections.per.ip and "
            "its overrides), listener (listener.name.<l>.max.connections), total "
            "(max.connections), rate (connection_creation_rate) or logical_cluster "
            "(artesian.logical.cluster.max.connections).",
            ["listener", "limit"],
            registry=r,
        )
        self.partitions = Gauge(
            "kafka_server_replica_manager_partition_count", "Partitions on this broker.", registry=r
        )
        self.under_replicated = Gauge(
            "kafka_server_replica_manager_under_replicated_partitions",
            "Partitions whose ISR is smaller than their replica set.",
            registry=r,
        )
        # Kafka's broker-metadata-metrics last-applied-record-offset: how far this broker's
        # metadata image has read the log (the data plane waits on it after a change).
        self.metadata_last_applied_offset = Gauge(
            "kafka_server_broker_metadata_metrics_last_applied_record_offset",
            "Offset of the last metadata record this broker applied.",
            registry=r,
        )
        self.leader_count = Gauge(
            "kafka_server_replica_manager_leader_count",
            "Partitions led by this broker.",
            registry=r,
        )
        self.under_min_isr = Gauge(
            "kafka_server_replica_manager_under_min_isr_partition_count",
            "Partitions led here whose ISR is below min.insync.replicas (acks=all fails).",
            registry=r,
        )
        self.at_min_isr = Gauge(
            "kafka_server_replica_manager_at_min_isr_partition_count",
            "Partitions led here whose ISR is exactly min.insync.replicas.",
            registry=r,
        )
        # Kafka's kafka.controller:type=KafkaController gauges: on the active controller
        # the cluster's figures, 0 on the others (so a sum over brokers reads right).
        self.active_controller = Gauge(
            "kafka_controller_kafka_controller_active_controller_count",
            "1 on the active controller, 0 on the other brokers.",
            registry=r,
        )
        self.offline_partitions = Gauge(
            "kafka_controller_kafka_controller_offline_partitions_count",
            "Partitions without a live leader (on the active controller).",
            registry=r,
        )
        self.global_partitions = Gauge(
            "kafka_controller_kafka_controller_global_partition_count",
            "Partitions in the cluster (on the active controller).",
            registry=r,
        )
        self.global_topics = Gauge(
            "kafka_controller_kafka_controller_global_topic_count",
            "Topics in the cluster (on the active controller).",
            registry=r,
        )
        self.fenced_brokers = Gauge(
            "kafka_controller_kafka_controller_fenced_broker_count",
            "Registered brokers without a live session (on the active controller).",
            registry=r,
        )
        self.active_brokers = Gauge(
            "kafka_controller_kafka_controller_active_broker_count",
            "Registered brokers with a live session (on the active controller).",
            registry=r,
        )
        self.failed_produce_requests = Counter(
            "kafka_server_broker_topic_failed_produce_requests",
            "Produce requests' partitions answered with an error, by topic (Kafka's "
            "FailedProduceRequestsPerSec).",
            ["topic"],
            registry=r,
        )
        # Storage as usage metering counts it: each partition once, by its leader, remote
        # segments included (Kafka has only per-partition Size and RemoteLogSizeBytes); and
        # each logical cluster's part of it. The broker gives the sizes at start.
        self._leader_sizes: Callable[[], list[tuple[str, float]]] = list
        r.register(_LeaderSizes(lambda: self._leader_sizes()))
        # Each logical cluster's use of its limits (artesian.logical.cluster.max.*).
        self._logical_cluster_use: Callable[[], tuple[dict[str, int], dict[str, int]]] = _unused
        r.register(_LogicalClusterUse(lambda: self._logical_cluster_use()))
        # process_start_time_seconds tells a restarted broker (its counters reset) from one
        # whose counters merely grew back; also CPU and memory, as every Prometheus target.
        ProcessCollector(registry=r)
        # The self-balancer's progress, as every broker's metadata image shows it.
        self.balancer_moves_in_flight = Gauge(
            "artesian_balancer_partition_moves_in_flight",
            "Partition reassignments in progress.",
            registry=r,
        )
        self.balancer_removals = Gauge(
            "artesian_balancer_broker_removals_in_progress",
            "Brokers being drained for removal.",
            registry=r,
        )
        self.balancer_rebalancing = Gauge(
            "artesian_balancer_rebalance_in_progress",
            "1 while a rebalance runs.",
            registry=r,
        )
        self.isr_shrinks = Counter(
            "kafka_server_replica_manager_isr_shrinks",
            "Followers this broker, as leader, took out of an ISR.",
            registry=r,
        )
        self.isr_expands = Counter(
            "kafka_server_replica_manager_isr_expands",
            "Followers this broker, as leader, added to an ISR.",
            registry=r,
        )
        self.fetch_sessions = Gauge(
            "kafka_server_fetch_session_cache_num_incremental_fetch_sessions",
            "Incremental fetch sessions cached (KIP-227).",
            registry=r,
        )
        self.fetch_session_partitions = Gauge(
            "kafka_server_fetch_session_cache_num_incremental_fetch_partitions_cached",
            "Partitions held by all cached fetch sessions.",
            registry=r,
        )
        self.fetch_session_evictions = Counter(
            "kafka_server_fetch_session_cache_incremental_fetch_session_evictions",
            "Fetch sessions evicted to make room for new ones.",
            registry=r,
        )
        # Tiered storage (Kafka's RemoteCopy*/RemoteFetch*/RemoteDelete* topic metrics).
        self.remote_copy_bytes = Counter(
            "kafka_server_broker_topic_remote_copy_bytes",
            "Segment bytes copied to tiered storage, by topic.",
            ["topic"],
            registry=r,
        )
        self.remote_copy_requests = Counter(
            "kafka_server_broker_topic_remote_copy_requests",
            "Segments copied to tiered storage, by topic.",
            ["topic"],
            registry=r,
        )
        self.remote_copy_errors = Counter(
            "kafka_server_broker_topic_remote_copy_errors",
            "Segment copies to tiered storage that failed, by topic.",
            ["topic"],
            registry=r,
        )
        self.remote_fetch_bytes = Counter(
            "kafka_server_broker_topic_remote_fetch_bytes",
            "Record bytes read from tiered storage, by topic.",
            ["topic"],
            registry=r,
        )
        self.remote_fetch_requests = Counter(
            "kafka_server_broker_topic_remote_fetch_requests",
            "Fetches served from tiered storage, by topic.",
            ["topic"],
            registry=r,
        )
        self.remote_fetch_errors = Counter(
            "kafka_server_broker_topic_remote_fetch_errors",
            "Fetches from tiered storage that failed, by topic.",
            ["topic"],
            registry=r,
        )
        self.remote_delete_requests = Counter(
            "kafka_server_broker_topic_remote_delete_requests",
            "Remote segments deleted by retention, by topic.",
            ["topic"],
            registry=r,
        )
        self.remote_copy_throttle_seconds = Counter(
            "kafka_server_remote_log_manager_copy_throttle_seconds",
            "Time copies to tiered storage waited for remote.log.manager.copy.max.bytes.per.second.",
            registry=r,
        )
        self.remote_fetch_throttled = Counter(
            "kafka_server_remote_log_manager_fetch_throttled",
            "Remote reads skipped for remote.log.manager.fetch.max.bytes.per.second.",
            registry=r,
        )
        self.remote_log_size_bytes = Gauge(
            "kafka_server_broker_topic_remote_log_size_bytes",
            "Bytes of the remote segments of the partitions led here, by topic.",
            ["topic"],
            registry=r,
        )
        self._latency_children: dict[str, tuple[Histogram, Counter]] = {}
        self._bytes_out_children: dict[str, Counter] = {}

    def observe_request(self, name: str, seconds: float) -> None:
        child = self._latency_children.get(name)
        if child is None:
            child = self._latency_children[name] = (
                self.request_latency.labels(name),
                self.requests.labels(name),
            )
        latency, count = child
        latency.observe(seconds)
        count.inc()

    def watch_leader_sizes(self, sizes: Callable[[], list[tuple[str, float]]]) -> None:
        """``sizes``: (topic, bytes) of each partition led here, read on each scrape."""
        self._leader_sizes = sizes

    def watch_logical_cluster_use(
        self, use: Callable[[], tuple[dict[str, int], dict[str, int]]]
    ) -> None:
        """``use``: (partitions, connections to this broker) by logical cluster, read on
        each scrape."""
        self._logical_cluster_use = use

    def bytes_out_for(self, topic: str) -> Counter:
        # labels() takes a lock and builds a key on every call; fetches are frequent.
        child = self._bytes_out_children.get(topic)
        if child is None:
            child = self._bytes_out_children[topic] = self.bytes_out.labels(topic)
        return child


class _LeaderSizes:
    """artesian_log_leader_size_bytes, and artesian_logical_cluster_leader_size_bytes
    {logical_cluster}: the part of it in each logical cluster's topics. One walk of the
    partitions per scrape gives both."""

    def __init__(self, sizes: Callable[[], list[tuple[str, float]]]) -> None:
        self.sizes = sizes

    def collect(self) -> Iterator[GaugeMetricFamily]:
        by_topic: dict[str, float] = {}
        for topic, size in self.sizes():
            by_topic[topic] = by_topic.get(topic, 0.0) + size
        total = sum(by_topic.values())
        by_logical_cluster: dict[str, float] = {}
        for topic, size in by_topic.items():  # the namespace once per topic, not per partition
            lkc = logical_cluster_id_of(topic)
            if lkc is not None:
                by_logical_cluster[lkc] = by_logical_cluster.get(lkc, 0.0) + size
        yield GaugeMetricFamily(
            "artesian_log_leader_size_bytes",
            "Bytes retained in the partitions this broker leads, on local disk and in the "
            "object store (tiered), each byte counted once.",
            value=total,
        )
        family = GaugeMetricFamily(
            "artesian_logical_cluster_leader_size_bytes",
            "Bytes retained in the partitions this broker leads, of each logical cluster's "
            "topics (local and tiered, each byte once).",
            labels=["logical_cluster"],
        )
        for lkc, size in sorted(by_logical_cluster.items()):
            family.add_metric([lkc], size)
        yield family


def _unused() -> tuple[dict[str, int], dict[str, int]]:
    """No logical cluster uses anything before the broker says so."""
    return {}, {}


class _LogicalClusterUse:
    """artesian_logical_cluster_partitions and artesian_logical_cluster_connections
    {logical_cluster}: what each logical cluster uses of its limits."""

    def __init__(self, use: Callable[[], tuple[dict[str, int], dict[str, int]]]) -> None:
        self.use = use

    def collect(self) -> Iterator[GaugeMetricFamily]:
        partitions, connections = self.use()
        for name, doc, values in (
            (
                "artesian_logical_cluster_partitions",
                "Partitions of each logical cluster's topics, in the cluster's metadata "
                "(artesian.logical.cluster.max.partitions caps it).",
                partitions,
            ),
            (
                "artesian_logical_cluster_connections",
                "Connections to this broker of each logical cluster's principals "
                "(artesian.logical.cluster.max.connections caps it).",
                connections,
            ),
        ):
            family = GaugeMetricFamily(name, doc, labels=["logical_cluster"])
            for lkc, value in sorted(values.items()):
                family.add_metric([lkc], value)
            yield family
