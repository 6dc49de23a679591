"""Broker configs Artesian honours, under Kafka's names and defaults, and ``BrokerConfig``.

Deliberate differences from Kafka, all documented on the key:
- ``node.id`` defaults to 1 (Kafka has no usable default); ``broker.id`` is accepted as its
  synonym and must agree with it when both are set.
- ``offsets.topic.replication.factor`` keeps Kafka's default of 3 but the broker clamps it to
  the number of live brokers, so a single node works out of the box.
- A few keys common in Kafka ``server.properties`` files are accepted but unused, so existing
  files load; their doc says so.
- ``artesian.metrics.port`` and ``artesian.metadata.store.url`` are ours (Kafka has no
  equivalent).
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable, Iterator, Mapping
from types import MappingProxyType
from typing import cast

from artesian.config.definitions import (
    INT_MAX,
    LONG_MAX,
    ConfigError,
    ConfigKey,
    ConfigSource,
    ConfigType,
    ConfigValue,
    DynamicConfigError,
    GzipLevel,
    InvalidConfigError,
    Range,
    UnknownConfigError,
    ValidList,
    ValidString,
    freeze,
    parse,
)
from artesian.config.topic import COMPRESSION_TYPES, TOPIC_CONFIG_SYNONYMS, TOPIC_CONFIGS

__all__ = [
    "BROKER_CONFIGS",
    "BROKER_CONFIG_NAMES",
    "BrokerConfig",
    "SynonymEntry",
    "broker_synonyms",
    "check_connection_limits",
    "load_properties",
    "parse_connection_overrides",
    "parse_properties",
]

_L, _I, _B, _S, _D, _LS, _SH = (
    ConfigType.LONG,
    ConfigType.INT,
    ConfigType.BOOLEAN,
    ConfigType.STRING,
    ConfigType.DOUBLE,
    ConfigType.LIST,
    ConfigType.SHORT,
)
_GE0 = Range.at_least(0)
_GE1 = Range.at_least(1)
# connections.max.reauth.ms at most: Kafka turns it into nanoseconds in a long.
MAX_REAUTH_MS = 9_223_372_036_854
_UNUSED = " Accepted for compatibility; Artesian does not use it."
# replica.selector.class values (KIP-392), by Kafka's class names.
RACK_AWARE_REPLICA_SELECTOR = "org.apache.kafka.common.replica.RackAwareReplicaSelector"
LEADER_SELECTOR = "org.apache.kafka.common.replica.LeaderSelector"
# group.consumer.migration.policy values (Kafka's ConsumerGroupMigrationPolicy).
MIGRATION_POLICIES = ("bidirectional", "upgrade", "downgrade", "disabled")


def _k(
    name: str,
    type_: ConfigType,
    default: ConfigValue,
    doc: str,
    validator: Range | ValidString | ValidList | GzipLevel | None = None,
    *,
    dynamic: bool = False,
) -> ConfigKey:
    # ``dynamic``: may change while the broker runs (AlterConfigs on a BROKER resource); the
    # rest are read-only, as in Kafka's DescribeConfigs. Kafka's dynamic listener and cleaner
    # pool settings are static here, and say so.
    return ConfigKey(name, type_, default, doc, validator, read_only=not dynamic)


BROKER_CONFIGS: Mapping[str, ConfigKey] = freeze(
    (
        # Identity and network.
        _k("node.id", _I, 1, "Id of this node. Artesian defaults to 1 (Kafka requires it).", _GE0),
        _k("broker.id", _I, -1, "Legacy synonym of node.id; must match it when both are set."),
        # KRaft's: Artesian keeps its metadata in its store, not in a controller quorum.
        _k(
            "process.roles",
            _LS,
            [],
            "KRaft roles of this node. Artesian nodes are brokers, and keep metadata in "
            "artesian.metadata.store.url: a node must have the broker role when it is set.",
            ValidList(("broker", "controller")),
        ),
        _k(
            "controller.listener.names",
            _S,
            None,
            "KRaft controller listeners: Artesian does not open them (it has no controller "
            "quorum).",
        ),
        _k("controller.quorum.bootstrap.servers", _LS, [], "KRaft quorum." + _UNUSED),
        _k("controller.quorum.voters", _LS, [], "KRaft quorum." + _UNUSED),
        _k("controller.quorum.election.timeout.ms", _I, 1000, "KRaft quorum." + _UNUSED),
        _k("metadata.log.dir", _S, None, "KRaft metadata log directory." + _UNUSED),
        _k("metadata.max.retention.bytes", _L, 104_857_600, "KRaft metadata log." + _UNUSED),
        _k(
            "listeners",
            _S,
            "PLAINTEXT://:9092",
            "Comma-separated listener URIs to bind. Static in Artesian (Kafka can add "
            "listeners dynamically).",
        ),
        _k(
            "advertised.listeners",
            _S,
            None,
            "Listeners published to clients; defaults to listeners. Static in Artesian.",
        ),
        _k(
            "authorizer.class.name",
            _S,
            "",
            "Empty: no authorization. org.apache.kafka.metadata.authorizer.StandardAuthorizer "
            "(or kafka.security.authorizer.AclAuthorizer): ACLs, kept in the metadata log.",
            ValidString(
                (
                    "",
                    "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
                    "kafka.security.authorizer.AclAuthorizer",
                )
            ),
        ),
        _k(
            "super.users",
            _S,
            None,
            "Principals allowed everything, separated by ';' (e.g. User:admin;User:ANONYMOUS). "
            "With a PLAINTEXT inter-broker listener, brokers are User:ANONYMOUS.",
        ),
        _k(
            "allow.everyone.if.no.acl.found",
            _B,
            False,
            "Allow every principal on resources that no ACL names.",
        ),
        _k(
            "listener.security.protocol.map",
            _S,
            "PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL",
            "Listener name to security protocol (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL).",
        ),
        _k(
            "inter.broker.listener.name",
            _S,
            None,
            "Listener other brokers use; defaults to the listener whose protocol is "
            "security.inter.broker.protocol.",
        ),
        _k(
            "security.inter.broker.protocol",
            _S,
            "PLAINTEXT",
            "Protocol of the inter-broker listener when inter.broker.listener.name is unset.",
            ValidString(("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")),
        ),
        _k(
            "sasl.mechanism.inter.broker.protocol",
            _S,
            "PLAIN",
            "SASL mechanism brokers log in to each other with; the credentials are the "
            "username and password of that mechanism's sasl.jaas.config on the inter-broker "
            "listener. Kafka's default is GSSAPI, which Artesian does not implement.",
            ValidString(("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER")),
        ),
        _k(
            "ssl.endpoint.identification.algorithm",
            _S,
            "https",
            "https: brokers check each other's certificates against the host names they "
            "connect to; empty: they do not.",
        ),
        _k(
            "sasl.enabled.mechanisms",
            _LS,
            ["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"],
            "SASL mechanisms offered on SASL listeners. Kafka's default is GSSAPI, which "
            "Artesian does not implement.",
            ValidList(("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER")),
        ),
        ConfigKey(
            "sasl.jaas.config",
            ConfigType.PASSWORD,
            None,
            "JAAS login module for a SASL listener, as listener.name.<listener>.<mechanism>."
            'sasl.jaas.config; PLAIN\'s users are its user_<name>="<password>" options.',
            read_only=True,
        ),
        _k(
            "connection.failed.authentication.delay.ms",
            _I,
            100,
            "Delay before closing a connection whose login failed (slows password guessing).",
            Range.at_least(0),
        ),
        _k(
            "sasl.server.max.receive.size",
            _I,
            524_288,
            "Largest SASL token accepted before authentication.",
            _GE1,
        ),
        # Delegation tokens (KIP-48).
        ConfigKey(
            "delegation.token.secret.key",
            ConfigType.PASSWORD,
            None,
            "Key the tokens' HMACs are made with; the same on every broker. Unset, delegation "
            "tokens are off (DELEGATION_TOKEN_AUTH_DISABLED).",
            read_only=True,
        ),
        _k(
            "delegation.token.max.lifetime.ms",
            _L,
            604_800_000,
            "Longest a token may live, renewals included.",
            _GE1,
        ),
        _k(
            "delegation.token.expiry.time.ms",
            _L,
            86_400_000,
            "How long a token lasts from its creation or last renewal, unless asked for less.",
            _GE1,
        ),
        _k(
            "delegation.token.expiry.check.interval.ms",
            _L,
            3_600_000,
            "How often expired tokens are removed.",
            _GE1,
        ),
        _k(
            "connections.max.reauth.ms",
            _L,
            0,
            "Longest SASL session (KIP-368): a login's session lifetime, told to clients in "
            "SaslAuthenticate v1+; a connection not re-authenticated in time is closed at its "
            "next request. 0: sessions never expire. Per listener and mechanism as "
            "listener.name.<listener>.[<mechanism>.]connections.max.reauth.ms. At most "
            "9223372036854 (Kafka's limit in effect: Long.MAX_VALUE nanoseconds).",
            Range(0, MAX_REAUTH_MS),
        ),
        _k(
            "telemetry.max.bytes",
            _I,
            1_048_576,
            "Largest client metrics push (KIP-714) accepted, compressed; larger ones are "
            "answered TELEMETRY_TOO_LARGE.",
            _GE1,
        ),
        _k(
            "artesian.client.metrics.enable",
            _B,
            False,
            "Receive client metrics (KIP-714) and serve them on the Prometheus endpoint; "
            "clients push only what a CLIENT_METRICS subscription asks for. Off by default, "
            "as a Kafka broker without a receiver plugin: the telemetry APIs are then not "
            "offered (and librdkafka does not log its telemetry instance id).",
        ),
        # OAUTHBEARER (KIP-255, KIP-768): security/oauthbearer/settings.py reads these, each
        # also as listener.name.<listener>.oauthbearer.<name>.
        _k(
            "sasl.server.callback.handler.class",
            _S,
            None,
            "OAUTHBEARER token validator: unset (or Kafka's OAuthBearerUnsecuredValidator"
            "CallbackHandler) for unsigned tokens, Kafka's org.apache.kafka.common.security."
            "oauthbearer.OAuthBearerValidatorCallbackHandler for tokens signed by the keys at "
            "sasl.oauthbearer.jwks.endpoint.url. Classes are named, not loaded.",
        ),
        _k(
            "sasl.login.callback.handler.class",
            _S,
            None,
            "The broker's own OAUTHBEARER login to other brokers: unset for an unsecured token "
            "from its JAAS options, Kafka's org.apache.kafka.common.security.oauthbearer."
            "OAuthBearerLoginCallbackHandler for the client credentials grant against "
            "sasl.oauthbearer.token.endpoint.url (JAAS clientId, clientSecret, scope).",
        ),
        _k(
            "sasl.oauthbearer.jwks.endpoint.url",
            _S,
            None,
            "The identity provider's JWKS (http, https or file URL): the keys OAUTHBEARER "
            "tokens must be signed with.",
        ),
        _k(
            "sasl.oauthbearer.jwks.endpoint.refresh.ms",
            _L,
            3_600_000,
            "How often the JWKS keys are fetched again; a token naming an unknown key id also "
            "asks for an early fetch.",
            _GE1,
        ),
        _k(
            "sasl.oauthbearer.jwks.endpoint.retry.backoff.ms",
            _L,
            100,
            "First wait before retrying a failed JWKS fetch; it doubles up to "
            "sasl.oauthbearer.jwks.endpoint.retry.backoff.max.ms.",
            Range.at_least(0),
        ),
        _k(
            "sasl.oauthbearer.jwks.endpoint.retry.backoff.max.ms",
            _L,
            10_000,
            "Longest wait between JWKS fetch retries.",
            Range.at_least(0),
        ),
        _k(
            "sasl.oauthbearer.expected.audience",
            _LS,
            None,
            "Audiences an OAUTHBEARER token's aud claim must name one of; unset: tokens with "
            "an aud claim are refused.",
        ),
        _k(
            "sasl.oauthbearer.expected.issuer",
            _S,
            None,
            "The iss claim OAUTHBEARER tokens must carry; unset: not checked.",
        ),
        _k(
            "sasl.oauthbearer.scope.claim.name",
            _S,
            "scope",
            "The claim holding an OAUTHBEARER token's scope.",
        ),
        _k(
            "sasl.oauthbearer.sub.claim.name",
            _S,
            "sub",
            "The claim naming an OAUTHBEARER token's principal (User:<value>).",
        ),
        _k(
            "sasl.oauthbearer.clock.skew.seconds",
            _I,
            30,
            "Leeway for the exp, iat and nbf claims of OAUTHBEARER tokens.",
            Range.at_least(0),
        ),
        _k(
            "sasl.oauthbearer.token.endpoint.url",
            _S,
            None,
            "The identity provider's token endpoint, for the broker's own OAUTHBEARER login "
            "with OAuthBearerLoginCallbackHandler.",
        ),
        _k(
            "ssl.keystore.type",
            _S,
            "JKS",
            "Key store format: JKS (a PKCS12 file is read too, as Java does), PKCS12 or PEM. "
            "Left unset, the file is read in whichever of the three it is.",
            ValidString(("jks", "pkcs12", "pem"), case_insensitive=True),
        ),
        ConfigKey(
            "ssl.keystore.location",
            _S,
            None,
            "The broker's certificate chain and private key: a JKS, PKCS12 or PEM key store.",
            read_only=True,
        ),
        ConfigKey(
            "ssl.keystore.password",
            ConfigType.PASSWORD,
            None,
            "The password of a JKS or PKCS12 key store (and of its key, without ssl.key.password).",
            read_only=True,
        ),
        ConfigKey(
            "ssl.truststore.password",
            ConfigType.PASSWORD,
            None,
            "The password of a JKS or PKCS12 trust store; unset, a JKS one is read without "
            "its integrity check, as in Java.",
            read_only=True,
        ),
        _k(
            "ssl.protocol",
            _S,
            "TLSv1.3",
            "The JSSE protocol name; the versions offered are ssl.enabled.protocols'." + _UNUSED,
        ),
        ConfigKey(
            "ssl.key.password",
            ConfigType.PASSWORD,
            None,
            "The password of the private key: a PEM key's, or a JKS entry's when it differs "
            "from ssl.keystore.password.",
            read_only=True,
        ),
        ConfigKey(
            "ssl.keystore.certificate.chain",
            ConfigType.PASSWORD,
            None,
            "The certificate chain in PEM, inline (with ssl.keystore.key instead of a file).",
            read_only=True,
        ),
        ConfigKey(
            "ssl.keystore.key",
            ConfigType.PASSWORD,
            None,
            "The private key in PEM, inline.",
            read_only=True,
        ),
        _k(
            "ssl.truststore.type",
            _S,
            "JKS",
            "Trust store format: JKS (a PKCS12 file is read too, as Java does), PKCS12 or "
            "PEM. Left unset, the file is read in whichever of the three it is.",
            ValidString(("jks", "pkcs12", "pem"), case_insensitive=True),
        ),
        _k(
            "ssl.truststore.location",
            _S,
            None,
            "The certificates to trust (a JKS, PKCS12 or PEM trust store): those client "
            "certificates must chain to (ssl.client.auth), and other brokers' for TLS between "
            "brokers.",
        ),
        ConfigKey(
            "ssl.truststore.certificates",
            ConfigType.PASSWORD,
            None,
            "CA certificates in PEM, inline.",
            read_only=True,
        ),
        _k(
            "ssl.client.auth",
            _S,
            "none",
            "Ask clients for a certificate: none, requested or required. A client "
            "authenticated by certificate gets the principal User:<subject DN>. On SASL_SSL "
            "listeners only the listener.name.<listener>.ssl.client.auth form applies, as in "
            "Kafka (KIP-684).",
            ValidString(("none", "requested", "required")),
        ),
        _k(
            "ssl.principal.mapping.rules",
            _S,
            "DEFAULT",
            "How a client certificate's subject DN becomes the principal's name on SSL "
            "listeners: rules like RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/L tried in order, "
            "DEFAULT keeping the DN; a client no rule applies to is disconnected.",
        ),
        _k(
            "ssl.enabled.protocols",
            _LS,
            ["TLSv1.2", "TLSv1.3"],
            "TLS versions accepted.",
            ValidList(("TLSv1.2", "TLSv1.3")),
        ),
        _k("ssl.cipher.suites", _LS, [], "OpenSSL cipher list for TLSv1.2 (empty: defaults)."),
        _k("socket.request.max.bytes", _I, 104_857_600, "Largest request accepted.", _GE1),
        _k("socket.send.buffer.bytes", _I, 102_400, "SO_SNDBUF for sockets (-1 = OS default)."),
        _k("socket.receive.buffer.bytes", _I, 102_400, "SO_RCVBUF for sockets (-1 = OS default)."),
        _k(
            "num.network.threads",
            _I,
            3,
            "Kafka network thread count." + _UNUSED,
            _GE1,
            dynamic=True,
        ),
        _k(
            "num.io.threads",
            _I,
            8,
            "Kafka request handler thread count." + _UNUSED,
            _GE1,
            dynamic=True,
        ),
        _k("background.threads", _I, 10, "Background task threads." + _UNUSED, _GE1, dynamic=True),
        _k(
            "num.replica.fetchers",
            _I,
            1,
            "Replica fetcher threads per source broker." + _UNUSED,
            _GE1,
            dynamic=True,
        ),
        _k("queued.max.request.bytes", _L, -1, "Queued request bytes." + _UNUSED),
        _k(
            "socket.listen.backlog.size",
            _I,
            1024,
            "Connections the kernel queues for a listener before they are accepted. Artesian's "
            "default is 1024 (Kafka's 50): its one event loop accepts between other work.",
            _GE1,
        ),
        _k("replica.socket.receive.buffer.bytes", _I, 65_536, "Follower SO_RCVBUF." + _UNUSED),
        _k(
            "replica.high.watermark.checkpoint.interval.ms",
            _L,
            5000,
            "High watermark checkpoints." + _UNUSED,
        ),
        _k(
            "log.flush.offset.checkpoint.interval.ms",
            _I,
            60_000,
            "How often each log's recovery point is checkpointed (a restart recovers from "
            "it); 0 with log.flush.start.offset.checkpoint.interval.ms 0: only at a clean stop.",
            _GE0,
        ),
        _k(
            "log.flush.start.offset.checkpoint.interval.ms",
            _I,
            60_000,
            "How often log start offsets are checkpointed (with the recovery points, at the "
            "shorter of the two intervals).",
            _GE0,
        ),
        _k(
            "producer.id.expiration.check.interval.ms",
            _I,
            600_000,
            "Producer id expiry checks (ids expire as their log is read or written)." + _UNUSED,
            _GE1,
        ),
        _k("offsets.load.buffer.size", _I, 5_242_880, "Offsets load buffer." + _UNUSED, _GE1),
        _k(
            "transaction.state.log.load.buffer.size",
            _I,
            5_242_880,
            "Transaction state load buffer." + _UNUSED,
            _GE1,
        ),
        _k(
            "fetch.purgatory.purge.interval.requests",
            _I,
            1000,
            "Fetch purgatory purges." + _UNUSED,
        ),
        _k(
            "producer.purgatory.purge.interval.requests",
            _I,
            1000,
            "Produce purgatory purges." + _UNUSED,
        ),
        _k("quota.window.num", _I, 11, "Quota sample windows." + _UNUSED, _GE1),
        _k("quota.window.size.seconds", _I, 1, "Quota sample window length." + _UNUSED, _GE1),
        _k("connections.max.idle.ms", _L, 600_000, "Close connections idle this long."),
        _k(
            "max.connections.per.ip",
            _I,
            2_147_483_647,
            "Connections taken from one address; more are closed at once. 0 only with "
            "max.connections.per.ip.overrides.",
            _GE0,
            dynamic=True,
        ),
        _k(
            "max.connections.per.ip.overrides",
            _S,
            "",
            "Per-address limits over max.connections.per.ip, as host:count,... (host names "
            "resolved when set).",
            dynamic=True,
        ),
        _k(
            "max.connections",
            _I,
            2_147_483_647,
            "Connections the broker takes in all; more are closed at once (the inter-broker "
            "listener is spared when the broker has others). listener.name.<listener>."
            "max.connections limits one listener.",
            _GE0,
            dynamic=True,
        ),
        _k(
            "max.connection.creation.rate",
            _I,
            2_147_483_647,
            "New connections a second the broker accepts in all (KIP-612); more are held "
            "until the rate allows them. listener.name.<listener>.max.connection.creation.rate "
            "limits one listener (by default at this value, in a bucket of its own); when "
            "the broker has other listeners, the inter-broker one is held by its own alone.",
            _GE0,
            dynamic=True,
        ),
        _k(
            "queued.max.requests",
            _I,
            500,
            "Requests queued per connection before reads stop.",
            _GE1,
        ),
        _k(
            "artesian.metrics.port",
            _I,
            0,
            "Artesian-specific: port of the Prometheus metrics endpoint (0 = disabled).",
            Range.between(0, 65535),
        ),
        ConfigKey(
            "artesian.metadata.store.url",
            _S,
            None,
            "Artesian-specific: where the cluster metadata log lives: "
            "postgresql://user:password@host:port/database for brokers sharing a store; "
            "default: sqlite in the broker's data directory.",
            read_only=True,
            sensitive=True,  # may carry a password
        ),
        # Topic creation.
        _k(
            "num.partitions",
            _I,
            1,
            "Partitions of auto-created topics and CreateTopics with -1.",
            _GE1,
        ),
        _k("default.replication.factor", _I, 1, "Replication factor of auto-created topics."),
        _k("auto.create.topics.enable", _B, True, "Create unknown topics on metadata requests."),
        _k("delete.topic.enable", _B, True, "Allow DeleteTopics."),
        # Log storage.
        _k("log.dirs", _LS, None, "Data directories; if unset, log.dir is used."),
        _k("log.dir", _LS, ["/tmp/kafka-logs"], "Data directories used when log.dirs is unset."),
        _k(
            "num.recovery.threads.per.data.dir",
            _I,
            2,
            "Recovery threads per data dir." + _UNUSED,
            _GE1,
            dynamic=True,
        ),
        _k(
            "message.max.bytes",
            _I,
            1_048_588,
            "Largest record batch accepted (topic default of max.message.bytes).",
            _GE0,
            dynamic=True,
        ),
        _k(
            "log.segment.bytes",
            _I,
            1_073_741_824,
            "Segment file size limit.",
            Range.at_least(1024 * 1024),
            dynamic=True,
        ),
        _k(
            "log.roll.ms",
            _L,
            None,
            "Roll segments after this long; overrides log.roll.hours.",
            dynamic=True,
        ),
        _k("log.roll.hours", _I, 168, "Roll segments after this many hours.", _GE1),
        _k(
            "log.roll.jitter.ms",
            _L,
            None,
            "Segment roll jitter; overrides log.roll.jitter.hours.",
            dynamic=True,
        ),
        _k("log.roll.jitter.hours", _I, 0, "Segment roll jitter in hours.", _GE0),
        _k(
            "log.retention.ms",
            _L,
            None,
            "Delete segments older than this (-1 = never); overrides minutes and hours.",
            dynamic=True,
        ),
        _k(
            "log.retention.minutes",
            _I,
            None,
            "Retention in minutes; overrides log.retention.hours.",
        ),
        _k("log.retention.hours", _I, 168, "Retention in hours."),
        _k("log.retention.bytes", _L, -1, "Partition size limit (-1 = none).", dynamic=True),
        _k(
            "log.retention.check.interval.ms", _L, 300_000, "How often retention is enforced.", _GE1
        ),
        _k(
            "log.segment.delete.delay.ms",
            _L,
            60_000,
            "Delay before deleted segments are removed from disk.",
            _GE0,
            dynamic=True,
        ),
        _k(
            "log.flush.interval.messages",
            _L,
            LONG_MAX,
            "Fsync after this many messages.",
            _GE1,
            dynamic=True,
        ),
        _k(
            "log.flush.interval.ms",
            _L,
            None,
            "Fsync after this long; if unset, log.flush.scheduler.interval.ms.",
            dynamic=True,
        ),
        _k("log.flush.scheduler.interval.ms", _L, LONG_MAX, "How often the flusher checks logs."),
        _k(
            "log.index.interval.bytes",
            _I,
            4096,
            "Bytes between offset index entries.",
            _GE0,
            dynamic=True,
        ),
        _k(
            "log.index.size.max.bytes",
            _I,
            10_485_760,
            "Offset index size limit.",
            Range.at_least(4),
            dynamic=True,
        ),
        _k(
            "log.cleanup.policy",
            _LS,
            ["delete"],
            "Default cleanup policy: delete, compact or both.",
            ValidList(("compact", "delete")),
            dynamic=True,
        ),
        _k("log.preallocate", _B, False, "Preallocate segment files.", dynamic=True),
        _k(
            "log.message.timestamp.type",
            _S,
            "CreateTime",
            "Default timestamp type.",
            ValidString(("CreateTime", "LogAppendTime")),
            dynamic=True,
        ),
        _k(
            "log.message.timestamp.before.max.ms",
            _L,
            LONG_MAX,
            "How far in the past a CreateTime timestamp may be.",
            _GE0,
            dynamic=True,
        ),
        _k(
            "log.message.timestamp.after.max.ms",
            _L,
            3_600_000,
            "How far in the future a CreateTime timestamp may be.",
            _GE0,
            dynamic=True,
        ),
        _k(
            "log.local.retention.ms",
            _L,
            -2,
            "Local retention of tiered topics (-2 = retention.ms).",
            Range.at_least(-2),
            dynamic=True,
        ),
        _k(
            "log.local.retention.bytes",
            _L,
            -2,
            "Local size limit of tiered topics (-2 = retention.bytes).",
            Range.at_least(-2),
            dynamic=True,
        ),
        # Compaction.
        _k("log.cleaner.enable", _B, True, "Run the log cleaner (needed for compacted topics)."),
        _k(
            "log.cleaner.threads",
            _I,
            1,
            "Log cleaner threads. Static in Artesian (Kafka resizes the pool dynamically).",
            _GE0,
        ),
        _k(
            "log.cleaner.dedupe.buffer.size",
            _L,
            134_217_728,
            "Memory for the offset map of one cleaning pass (all cleaner threads together), "
            "counted as Kafka counts it (24 bytes a key); Python's dict takes several times "
            "that.",
            _GE0,
        ),
        _k(
            "log.cleaner.io.buffer.size",
            _I,
            524_288,
            "Read and write buffer of the log cleaner.",
            _GE0,
        ),
        _k(
            "log.cleaner.io.buffer.load.factor",
            _D,
            0.9,
            "How full the cleaner's offset map may get.",
            Range.between(0.0, 1.0),
        ),
        _k(
            "log.cleaner.io.max.bytes.per.second",
            _D,
            1.7976931348623157e308,
            "The cleaner's I/O throttle: bytes read and written per second, across its threads.",
            Range.at_least(1),
            dynamic=True,
        ),
        _k(
            "log.cleaner.backoff.ms",
            _L,
            15_000,
            "Cleaner sleep when nothing is cleanable.",
            _GE0,
            dynamic=True,
        ),
        _k(
            "log.cleaner.delete.retention.ms",
            _L,
            86_400_000,
            "Tombstone retention on compacted topics.",
            _GE0,
            dynamic=True,
        ),
        _k(
            "log.cleaner.min.cleanable.ratio",
            _D,
            0.5,
            "Dirty ratio that triggers compaction.",
            Range.between(0, 1),
            dynamic=True,
        ),
        _k(
            "log.cleaner.min.compaction.lag.ms",
            _L,
            0,
            "Shortest a record stays uncompacted.",
            _GE0,
            dynamic=True,
        ),
        _k(
            "log.cleaner.max.compaction.lag.ms",
            _L,
            LONG_MAX,
            "Longest a record stays uncompacted.",
            _GE1,
            dynamic=True,
        ),
        # Topic defaults with the same name as the topic config.
        _k(
            "compression.type",
            _S,
            "producer",
            "Default topic compression codec.",
            ValidString(COMPRESSION_TYPES),
            dynamic=True,
        ),
        _k("compression.gzip.level", _I, -1, "Default gzip level.", GzipLevel(), dynamic=True),
        _k(
            "compression.lz4.level", _I, 9, "Default lz4 level.", Range.between(1, 17), dynamic=True
        ),
        _k(
            "compression.zstd.level",
            _I,
            3,
            "Default zstd level.",
            Range.between(-131072, 22),
            dynamic=True,
        ),
        _k(
            "min.insync.replicas",
            _I,
            1,
            "Default in-sync replicas needed for acks=all.",
            _GE1,
            dynamic=True,
        ),
        _k(
            "unclean.leader.election.enable",
            _B,
            False,
            "Allow out-of-sync leaders by default.",
            dynamic=True,
        ),
        # Group coordinator.
        _k("offsets.topic.num.partitions", _I, 50, "Partitions of __consumer_offsets.", _GE1),
        _k(
            "offsets.topic.replication.factor",
            _SH,
            3,
            "Replication of __consumer_offsets; Artesian clamps it to the broker count.",
            _GE1,
        ),
        _k(
            "offsets.topic.segment.bytes",
            _I,
            104857600,
            "Segment size of __consumer_offsets, kept small for faster loading and compaction.",
            _GE1,
        ),
        _k(
            "offset.metadata.max.bytes",
            _I,
            4096,
            "Largest metadata string a committed offset may carry.",
            _GE1,
        ),
        _k(
            "offsets.retention.minutes",
            _I,
            10_080,
            "Keep committed offsets of empty groups this long.",
            _GE1,
        ),
        _k(
            "offsets.retention.check.interval.ms",
            _L,
            600_000,
            "How often stale offsets are expired.",
            _GE1,
        ),
        _k(
            "group.initial.rebalance.delay.ms",
            _I,
            3000,
            "Wait for more members before the first rebalance.",
        ),
        _k(
            "group.min.session.timeout.ms",
            _I,
            6000,
            "Smallest session timeout a member may ask for.",
        ),
        _k(
            "group.max.session.timeout.ms",
            _I,
            1_800_000,
            "Largest session timeout a member may ask for.",
        ),
        _k("group.max.size", _I, INT_MAX, "Most members in one classic group.", _GE1),
        # The consumer group protocol (KIP-848).
        _k(
            "group.coordinator.rebalance.protocols",
            _LS,
            ["classic", "consumer"],
            "The group protocols the coordinator offers; without consumer, "
            "ConsumerGroupHeartbeat and ConsumerGroupDescribe are not advertised.",
            ValidList(("classic", "consumer")),
        ),
        _k(
            "group.consumer.session.timeout.ms",
            _I,
            45_000,
            "A consumer-protocol member is removed after this long without a heartbeat.",
            _GE1,
        ),
        _k(
            "group.consumer.min.session.timeout.ms",
            _I,
            45_000,
            "Lower bound of group.consumer.session.timeout.ms.",
            _GE1,
        ),
        _k(
            "group.consumer.max.session.timeout.ms",
            _I,
            60_000,
            "Upper bound of group.consumer.session.timeout.ms.",
            _GE1,
        ),
        _k(
            "group.consumer.heartbeat.interval.ms",
            _I,
            5_000,
            "How often consumer-protocol members heartbeat.",
            _GE1,
        ),
        _k(
            "group.consumer.min.heartbeat.interval.ms",
            _I,
            5_000,
            "Lower bound of group.consumer.heartbeat.interval.ms.",
            _GE1,
        ),
        _k(
            "group.consumer.max.heartbeat.interval.ms",
            _I,
            15_000,
            "Upper bound of group.consumer.heartbeat.interval.ms.",
            _GE1,
        ),
        _k("group.consumer.max.size", _I, INT_MAX, "Most members in one consumer group.", _GE1),
        _k(
            "group.consumer.migration.policy",
            _S,
            "bidirectional",
            "Whether a group with members changes protocol when a member of the other one "
            "joins (KIP-848's online migration): bidirectional, upgrade (classic to consumer), "
            "downgrade (consumer to classic) or disabled. Empty groups always may.",
            ValidString(MIGRATION_POLICIES, case_insensitive=True),
        ),
        _k(
            "group.consumer.assignors",
            _LS,
            ["uniform", "range"],
            "Server-side assignors, by name; the first is the default.",
            ValidList(("uniform", "range")),
        ),
        # Share groups (KIP-932).
        _k(
            "group.share.enable",
            _B,
            False,
            "Whether share groups (KIP-932: ShareGroupHeartbeat, ShareGroupDescribe, ShareFetch, "
            "ShareAcknowledge) are offered; Kafka turns them on with its share.version feature.",
        ),
        _k(
            "group.share.session.timeout.ms",
            _I,
            45_000,
            "A share group member is removed after this long without a heartbeat.",
            _GE1,
        ),
        _k(
            "group.share.min.session.timeout.ms",
            _I,
            45_000,
            "Lower bound of group.share.session.timeout.ms.",
            _GE1,
        ),
        _k(
            "group.share.max.session.timeout.ms",
            _I,
            60_000,
            "Upper bound of group.share.session.timeout.ms.",
            _GE1,
        ),
        _k(
            "group.share.heartbeat.interval.ms",
            _I,
            5_000,
            "How often share group members heartbeat.",
            _GE1,
        ),
        _k(
            "group.share.min.heartbeat.interval.ms",
            _I,
            5_000,
            "Lower bound of group.share.heartbeat.interval.ms.",
            _GE1,
        ),
        _k(
            "group.share.max.heartbeat.interval.ms",
            _I,
            15_000,
            "Upper bound of group.share.heartbeat.interval.ms.",
            _GE1,
        ),
        _k(
            "group.share.max.size",
            _I,
            200,
            "Most members in one share group.",
            Range(1, 1000),
        ),
        _k(
            "group.share.delivery.count.limit",
            _I,
            5,
            "A share group's record is archived after this many deliveries.",
            Range(2, 10),
        ),
        _k(
            "group.share.record.lock.duration.ms",
            _I,
            30_000,
            "How long a share group member holds the records it acquired before they are "
            "handed out again.",
            Range(1000, 3_600_000),
        ),
        _k(
            "group.share.min.record.lock.duration.ms",
            _I,
            15_000,
            "Lower bound of a share group's share.record.lock.duration.ms.",
            Range(1000, 3_600_000),
        ),
        _k(
            "group.share.max.record.lock.duration.ms",
            _I,
            60_000,
            "Upper bound of a share group's share.record.lock.duration.ms.",
            Range(1000, 3_600_000),
        ),
        _k(
            "group.share.partition.max.record.locks",
            _I,
            2000,
            "Most records of one share partition in flight (acquired or awaiting the SPSO).",
            Range(100, 10_000),
        ),
        _k(
            "group.share.max.share.sessions",
            _I,
            2000,
            "Most share sessions (one per member and broker) a broker keeps.",
            _GE1,
        ),
        _k(
            "share.coordinator.state.topic.num.partitions",
            _I,
            50,
            "Partitions of __share_group_state.",
            _GE1,
        ),
        _k(
            "share.coordinator.state.topic.replication.factor",
            _SH,
            3,
            "Replication factor of __share_group_state (at most the live brokers at creation).",
            _GE1,
        ),
        _k(
            "share.coordinator.state.topic.min.isr",
            _SH,
            2,
            "min.insync.replicas of __share_group_state.",
            _GE1,
        ),
        _k(
            "share.coordinator.state.topic.segment.bytes",
            _I,
            104_857_600,
            "Segment size of __share_group_state.",
            Range.at_least(1 << 14),
        ),
        _k(
            "offsets.commit.timeout.ms",
            _I,
            5000,
            "How long a coordinator's write may wait for the ISR of its internal topic.",
            _GE1,
        ),
        # Transactions and idempotence.
        _k(
            "transactional.id.expiration.ms",
            _I,
            604_800_000,
            "Expire idle transactional ids after this long.",
            _GE1,
        ),
        _k("transaction.max.timeout.ms", _I, 900_000, "Largest transaction timeout allowed.", _GE1),
        _k(
            "transaction.partition.verification.enable",
            _B,
            True,
            "Check that a transactional batch's partition is in its producer's open "
            "transaction (KIP-890) before it is written.",
            dynamic=True,
        ),
        _k(
            "transaction.state.log.num.partitions",
            _I,
            50,
            "Partitions of __transaction_state.",
            _GE1,
        ),
        _k(
            "transaction.state.log.replication.factor",
            _SH,
            3,
            "Replication of __transaction_state; clamped to the broker count.",
            _GE1,
        ),
        _k(
            "transaction.state.log.min.isr",
            _I,
            2,
            "min.insync.replicas of __transaction_state; clamped to the broker count.",
            _GE1,
        ),
        _k(
            "transaction.state.log.segment.bytes",
            _I,
            104857600,
            "Segment size of __transaction_state, kept small for faster loading.",
            _GE1,
        ),
        _k(
            "transaction.abort.timed.out.transaction.cleanup.interval.ms",
            _I,
            10_000,
            "How often transactions past their timeout are aborted.",
            _GE1,
        ),
        _k(
            "transaction.remove.expired.transaction.cleanup.interval.ms",
            _I,
            3_600_000,
            "How often transactional ids past transactional.id.expiration.ms are removed.",
            _GE1,
        ),
        _k(
            "producer.id.expiration.ms",
            _I,
            86_400_000,
            "Expire idle producer ids after this long.",
            _GE1,
            dynamic=True,
        ),
        # Tiered storage (KIP-405).
        _k(
            "remote.log.storage.system.enable",
            _B,
            False,
            "Enable tiered storage on this broker; topics opt in with remote.storage.enable.",
        ),
        _k(
            "remote.log.manager.task.interval.ms",
            _L,
            30_000,
            "How often rolled segments are copied to, and retention applied in, tiered storage.",
            _GE1,
        ),
        _k(
            "remote.log.manager.copy.max.bytes.per.second",
            _L,
            LONG_MAX,
            "Most bytes per second this broker copies to tiered storage (KIP-956).",
            _GE1,
        ),
        _k(
            "remote.log.manager.fetch.max.bytes.per.second",
            _L,
            LONG_MAX,
            "Most bytes per second this broker reads from tiered storage for fetches; past it "
            "remote reads are skipped (the fetch answers without them) until the rate drops.",
            _GE1,
        ),
        _k(
            "remote.fetch.max.wait.ms",
            _I,
            500,
            "Longest a fetch waits for a read from tiered storage; then it answers without it.",
            _GE1,
        ),
        _k(
            "remote.log.index.file.cache.total.size.bytes",
            _L,
            1_073_741_824,
            "Bytes of remote segment indexes kept in memory (Kafka keeps them on disk).",
            _GE1,
        ),
        _k(
            "rsm.config.store.url",
            _S,
            None,
            "Object store for tiered storage (Artesian's built-in remote storage manager): "
            "file:///dir, s3://bucket/prefix, gs://bucket/prefix, az://account/container or "
            "memory:///; S3 credentials and endpoint come from the AWS_* environment variables. "
            "Default: the remote-storage directory in the broker's data directory.",
        ),
        # Fetch.
        _k(
            "max.incremental.fetch.session.cache.slots",
            _I,
            1000,
            "Most cached incremental fetch sessions.",
            _GE0,
        ),
        _k("fetch.max.bytes", _I, 57_671_680, "Largest fetch response.", Range.at_least(1024)),
        _k(
            "max.request.partition.size.limit",
            _I,
            2000,
            "Most partitions one DescribeTopicPartitions response describes.",
            _GE1,
        ),
        _k(
            "replica.fetch.max.bytes",
            _I,
            1_048_576,
            "Bytes per partition a follower fetches.",
            _GE0,
        ),
        # Replication and cluster membership (KRaft's broker session names).
        _k(
            "replica.lag.time.max.ms",
            _I,
            30_000,
            "A follower that has not caught up for this long leaves the ISR.",
            _GE1,
        ),
        _k("replica.fetch.wait.max.ms", _I, 500, "Longest wait of a follower's fetch.", _GE0),
        _k("replica.fetch.min.bytes", _I, 1, "Bytes a follower's fetch waits for.", _GE1),
        _k(
            "replica.fetch.response.max.bytes",
            _I,
            10_485_760,
            "Bytes a follower's fetch asks for in all.",
            _GE0,
        ),
        _k(
            "replica.fetch.backoff.ms",
            _I,
            1000,
            "Wait after a follower's fetch fails.",
            _GE0,
        ),
        _k(
            "replica.socket.timeout.ms",
            _I,
            30_000,
            "Longest wait for an answer from another broker (a leader, for a follower's fetch "
            "or a coordinator's markers).",
            _GE1,
        ),
        _k(
            "leader.replication.throttled.rate",
            _L,
            LONG_MAX,
            "Bytes per second a leader sends to the out-of-sync replicas its topics list in "
            "leader.replication.throttled.replicas. Dynamic: set per broker (or as the cluster "
            "default) with AlterConfigs, as kafka-reassign-partitions --throttle does.",
            _GE1,
            dynamic=True,
        ),
        _k(
            "follower.replication.throttled.rate",
            _L,
            LONG_MAX,
            "Bytes per second a follower fetches for the out-of-sync replicas its topics list "
            "in follower.replication.throttled.replicas. Dynamic, as above.",
            _GE1,
            dynamic=True,
        ),
        _k(
            "broker.heartbeat.interval.ms",
            _I,
            2000,
            "How often a broker renews its session in the metadata store.",
            _GE1,
        ),
        _k(
            "broker.session.timeout.ms",
            _I,
            9000,
            "A broker whose session is not renewed for this long is fenced: its partitions "
            "get new leaders.",
            _GE1,
        ),
        _k(
            "auto.leader.rebalance.enable",
            _B,
            True,
            "Move leadership back to each partition's preferred replica when brokers' shares "
            "drift.",
        ),
        _k(
            "leader.imbalance.check.interval.seconds",
            _L,
            300,
            "How often the controller checks leader balance.",
            _GE1,
        ),
        _k(
            "leader.imbalance.per.broker.percentage",
            _I,
            10,
            "Share of a broker's preferred partitions led elsewhere that triggers a rebalance.",
            _GE0,
        ),
        _k("broker.rack", _S, None, "Rack of this broker: replicas spread across racks."),
        _k(
            "replica.selector.class",
            _S,
            None,
            "Where consumers read (KIP-392). Unset or "
            "org.apache.kafka.common.replica.LeaderSelector: the leader. "
            "org.apache.kafka.common.replica.RackAwareReplicaSelector: an in-sync replica in "
            "the consumer's client.rack.",
            ValidString((RACK_AWARE_REPLICA_SELECTOR, LEADER_SELECTOR)),
        ),
        # Self-Balancing (Confluent's confluent.balancer.* settings, under our prefix).
        _k(
            "artesian.balancer.enable",
            _B,
            True,
            "Artesian-specific: run the self-balancer on the active controller.",
        ),
        _k(
            "artesian.balancer.heal.uneven.load.trigger",
            _S,
            "EMPTY_BROKER",
            "Artesian-specific: when the self-balancer moves replicas on its own: EMPTY_BROKER "
            "(a broker with no replicas joined) or ANY_UNEVEN_LOAD (any balance goal is off). "
            "Broker removals and requested rebalances run either way.",
            ValidString(("EMPTY_BROKER", "ANY_UNEVEN_LOAD")),
        ),
        _k(
            "artesian.balancer.heal.broker.failure.threshold.ms",
            _L,
            3_600_000,
            "Artesian-specific: a broker dead this long has its replicas moved to the others "
            "(-1: never).",
            Range.at_least(-1),
        ),
        _k(
            "artesian.balancer.disk.max.load",
            _D,
            0.85,
            "Artesian-specific: share of a broker's disk capacity its logs may fill (a hard "
            "limit for the self-balancer).",
            Range.between(0, 1),
        ),
        _k(
            "artesian.balancer.disk.capacity.bytes",
            _L,
            -1,
            "Artesian-specific: disk capacity of this broker (-1: the size of the file system "
            "holding its logs).",
            Range.at_least(-1),
        ),
        _k(
            "artesian.balancer.network.in.max.bytes.per.second",
            _L,
            LONG_MAX,
            "Artesian-specific: inbound network capacity of this broker (produce and replication).",
            _GE1,
        ),
        _k(
            "artesian.balancer.network.out.max.bytes.per.second",
            _L,
            LONG_MAX,
            "Artesian-specific: outbound network capacity of this broker (consumers and "
            "followers).",
            _GE1,
        ),
        _k(
            "artesian.balancer.balance.threshold",
            _D,
            0.10,
            "Artesian-specific: a broker is balanced when its replicas, leaders, disk and "
            "network use are within this share of the cluster's average.",
            Range.between(0, 1),
        ),
        _k(
            "artesian.balancer.max.concurrent.moves.per.broker",
            _I,
            5,
            "Artesian-specific: partition moves in flight into or out of one broker.",
            _GE1,
        ),
        _k(
            "artesian.balancer.interval.ms",
            _I,
            10_000,
            "Artesian-specific: how often the active controller's self-balancer looks at the "
            "cluster.",
            _GE1,
        ),
        _k(
            "artesian.metadata.version.bootstrap",
            _I,
            None,
            "Artesian-specific: the artesian.metadata.version a new cluster starts at (Kafka's "
            "kafka-storage format --release-version); null for the newest this version "
            "supports. Only the broker that founds the cluster reads it.",
            Range.at_least(1),
        ),
        _k(
            "artesian.logical.cluster.max.connections",
            _I,
            1000,
            "Artesian-specific: the most connections the principals of one logical cluster "
            "may have open to this broker together; one more is answered, then closed after "
            "connection.failed.authentication.delay.ms, so that a tenant cannot take the "
            "connections its neighbours need.",
            _GE0,
            dynamic=True,
        ),
        _k(
            "artesian.logical.cluster.max.partitions",
            _I,
            4096,
            "Artesian-specific: the most partitions (leaders, not replicas) a logical cluster "
            "may have on this shared cluster; CreateTopics, CreatePartitions and Metadata's "
            "topic auto-creation past it are refused with POLICY_VIOLATION. Confluent Cloud's Basic and Standard clusters have "
            "the same limit.",
            _GE1,
            dynamic=True,
        ),
        _k(
            "artesian.balancer.load.sample.interval.ms",
            _I,
            10_000,
            "Artesian-specific: how often a broker publishes its partitions' sizes and byte "
            "rates for the self-balancer.",
            _GE1,
        ),
        ConfigKey(
            "artesian.metadata.poll.interval.ms",
            _I,
            200,
            "Artesian-specific: how often a broker reads new records from the metadata store "
            "(KRaft brokers fetch them from the controller quorum instead).",
            _GE1,
            read_only=True,
        ),
    )
)

# Broker configs that shadow each other (Kafka's DynamicBrokerConfig.brokerConfigSynonyms),
# highest precedence first. Note log.flush.scheduler.interval.ms alone has no synonym.
_SYNONYM_GROUPS: tuple[tuple[str, ...], ...] = (
    ("log.roll.ms", "log.roll.hours"),
    ("log.roll.jitter.ms", "log.roll.jitter.hours"),
    ("log.retention.ms", "log.retention.minutes", "log.retention.hours"),
)


def broker_synonyms(name: str) -> tuple[str, ...]:
    """Broker config names that may supply ``name``'s value, highest precedence first."""
    if name == "log.flush.interval.ms":
        return ("log.flush.interval.ms", "log.flush.scheduler.interval.ms")
    for group in _SYNONYM_GROUPS:
        if name in group:
            return group
    return (name,)


SynonymEntry = tuple[str, str | None, ConfigSource]


class BrokerConfig:
    """The broker's configuration: Kafka defaults, the static settings it started with, and
    the dynamic layers the cluster sets through (Incremental)AlterConfigs on a BROKER resource.

    A value comes from the first layer that has it: this broker's dynamic config
    (DYNAMIC_BROKER_CONFIG), the cluster-wide dynamic default (DYNAMIC_DEFAULT_BROKER_CONFIG),
    the static settings (STATIC_BROKER_CONFIG), the default (DEFAULT_CONFIG). The static part
    never changes; the broker replaces the dynamic layers whole as the metadata log changes
    them, so every holder of this object reads the new values on its next ``get``.
    """

    __slots__ = ("_definitions", "_explicit", "_implied", "_state", "_values")

    def __init__(
        self,
        props: Mapping[str, str] | None = None,
        *,
        definitions: Mapping[str, ConfigKey] = BROKER_CONFIGS,
    ) -> None:
        self._definitions = definitions
        explicit: dict[str, str] = {}
        values: dict[str, ConfigValue] = {}
        for name, raw in (props or {}).items():
            key = self._key(name)
            values[name] = parse(key, raw)
            explicit[name] = raw
        self._explicit: Mapping[str, str] = MappingProxyType(explicit)
        self._values: Mapping[str, ConfigValue] = MappingProxyType(values)
        self._implied: tuple[Mapping[str, str], Mapping[str, ConfigValue]] = ({}, {})
        # (this broker's dynamic layer, the cluster default's, every layer merged): replaced
        # whole in one assignment, and read once per lookup, so a reader on another thread
        # sees the old state or the new one.
        self._state: tuple[Mapping[str, str], Mapping[str, str], Mapping[str, ConfigValue]] = (
            {},
            {},
            self._values,
        )
        both = self.is_set("node.id") and self.is_set("broker.id")
        if both and self.get("node.id") != self.get("broker.id"):
            raise InvalidConfigError(
                "broker.id",
                self._explicit["broker.id"],
                f"must match node.id ({self._explicit['node.id']}) when both are set",
            )
        if "replica.fetch.wait.max.ms" in definitions:
            self._check_replica_fetch_wait()
        if "group.consumer.session.timeout.ms" in definitions:
            self._check_consumer_group_configs()
        if "max.connections.per.ip" in definitions:
            check_connection_limits(
                self.get_int("max.connections.per.ip"),
                str(self.get("max.connections.per.ip.overrides") or ""),
            )

    def _check_replica_fetch_wait(self) -> None:
        """Kafka's checks: a follower's long poll must end before its socket times out, and
        before the leader takes its silence for lag and drops it from the ISR."""
        fetch_wait = self.get_int("replica.fetch.wait.max.ms")
        for other, why in (
            ("replica.socket.timeout.ms", "or its fetches would time out while waiting"),
            ("replica.lag.time.max.ms", "or idle followers would keep leaving the ISR"),
        ):
            if fetch_wait > self.get_int(other):
                raise InvalidConfigError(
                    "replica.fetch.wait.max.ms",
                    str(fetch_wait),
                    f"must not exceed {other} ({self.get_int(other)}), {why}",
                )

    def _check_consumer_group_configs(self) -> None:
        """Kafka's GroupCoordinatorConfig checks: each timing within its bounds, a heartbeat
        more often than the session times out, and at least one assignor."""
        if not self.get("group.consumer.assignors"):
            raise InvalidConfigError("group.consumer.assignors", "", "must name an assignor")
        protocols = cast(list[str], self.get("group.coordinator.rebalance.protocols"))
        if "classic" not in protocols:
            raise InvalidConfigError(
                "group.coordinator.rebalance.protocols",
                ",".join(protocols),
                "must include classic",
            )
        for name in ("session.timeout.ms", "heartbeat.interval.ms"):
            value = self.get_int(f"group.consumer.{name}")
            low = self.get_int(f"group.consumer.min.{name}")
            high = self.get_int(f"group.consumer.max.{name}")
            if not low <= value <= high:
                raise InvalidConfigError(
                    f"group.consumer.{name}",
                    str(value),
                    f"must be between group.consumer.min.{name} ({low}) and "
                    f"group.consumer.max.{name} ({high})",
                )
        heartbeat = self.get_int("group.consumer.heartbeat.interval.ms")
        session = self.get_int("group.consumer.session.timeout.ms")
        if heartbeat >= session:
            raise InvalidConfigError(
                "group.consumer.heartbeat.interval.ms",
                str(heartbeat),
                f"must be less than group.consumer.session.timeout.ms ({session})",
            )

    @classmethod
    def load(
        cls,
        properties_file: str | os.PathLike[str] | None = None,
        overrides: Iterable[str] | Mapping[str, str] = (),
    ) -> BrokerConfig:
        """Build from an optional .properties file, then ``key=value`` overrides (win)."""
        props: dict[str, str] = {}
        if properties_file is not None:
            props.update(load_properties(properties_file))
        if isinstance(overrides, Mapping):
            props.update(overrides)
        else:
            for item in overrides:
                name, sep, value = item.partition("=")
                if not sep or not name.strip():
                    raise InvalidConfigError(name, item, "expected key=value")
                props[name.strip()] = value
        return cls(props)

    def _key(self, name: str) -> ConfigKey:
        try:
            return self._definitions[name]
        except KeyError:
            base = _listener_base(name)
            if base is not None and base in self._definitions:
                return self._definitions[base]
            close = difflib.get_close_matches(name, self._definitions, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise UnknownConfigError(name, f"Unknown broker config name: {name}{hint}") from None

    @property
    def definitions(self) -> Mapping[str, ConfigKey]:
        return self._definitions

    def listener_overrides(self) -> list[str]:
        """The ``listener.name.`` settings in force (static or dynamic), sorted."""
        return sorted(n for n in self._state[2] if n.startswith("listener.name."))

    @property
    def explicit(self) -> Mapping[str, str]:
        """Settings given by the operator, as written (STATIC_BROKER_CONFIG)."""
        return self._explicit

    def validate_dynamic(self, props: Mapping[str, str]) -> None:
        """Raise ConfigError unless every entry names a config that may change while the
        broker runs and holds a valid value for it (UnknownConfigError for unknown names,
        DynamicConfigError for the others)."""
        static = sorted(name for name in props if self._key(name).read_only)
        if static:
            raise DynamicConfigError(
                static[0],
                f"Cannot update these configs dynamically: {', '.join(static)}. Set them with "
                "'artesian broker --set key=value' and restart the broker.",
            )
        for name, raw in props.items():
            parse(self._key(name), raw)
            if name == "max.connections.per.ip.overrides":
                _check_overrides(raw)

    def update_dynamic(
        self, per_broker: Mapping[str, str], cluster_default: Mapping[str, str]
    ) -> list[str]:
        """Replace the dynamic layers (from the metadata log). Entries this version cannot
        apply (unknown, static, invalid: written by another version) are skipped and named
        in the result, for the caller to log."""
        skipped: list[str] = []
        layers: list[dict[str, str]] = []
        for layer in (per_broker, cluster_default):
            kept: dict[str, str] = {}
            for name, raw in layer.items():
                try:
                    self.validate_dynamic({name: raw})
                except ConfigError:
                    skipped.append(name)
                else:
                    kept[name] = raw
            layers.append(kept)
        merged = dict(self._values)
        for layer in reversed(layers):  # the per-broker layer wins
            merged.update({n: parse(self._key(n), raw) for n, raw in layer.items()})
        per_ip = "max.connections.per.ip"
        try:
            check_connection_limits(
                int(str(merged.get(per_ip, 0))),
                str(merged.get("max.connections.per.ip.overrides") or ""),
            )
        except ConfigError:
            # Checked where it was set, against that broker's settings; here it would let
            # nobody in: this broker keeps its own, as a Kafka broker keeps its old values.
            for layer in layers:
                if layer.pop(per_ip, None) is not None:
                    skipped.append(per_ip)
            merged[per_ip] = self._values.get(per_ip, self._key(per_ip).default)
        self._state = (
            MappingProxyType(layers[0]),
            MappingProxyType(layers[1]),
            MappingProxyType(merged),
        )
        return skipped

    def dynamic(self, source: ConfigSource) -> Mapping[str, str]:
        """One dynamic layer as written: DYNAMIC_BROKER_CONFIG or DYNAMIC_DEFAULT_BROKER_CONFIG."""
        if source is ConfigSource.DYNAMIC_BROKER_CONFIG:
            return self._state[0]
        if source is ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG:
            return self._state[1]
        raise ValueError(f"not a dynamic source: {source!r}")

    def key(self, name: str) -> ConfigKey:
        return self._key(name)

    def for_listener(self, listener: str, name: str, mechanism: str | None = None) -> ConfigValue:
        """Kafka's listener overrides: ``listener.name.<listener>.[<mechanism>.]<name>``
        (listener and mechanism in lower case) wins over ``name``."""
        prefix = f"listener.name.{listener.lower()}."
        candidates = [f"{prefix}{mechanism.lower()}.{name}"] if mechanism else []
        for full in (*candidates, prefix + name):
            if full in self._state[2]:
                return self._state[2][full]
        return self.get(name)

    def is_set(self, name: str) -> bool:
        """Set by someone: statically or dynamically (not left at its default)."""
        return name in self._state[2]

    def get(self, name: str) -> ConfigValue:
        """Typed value from the first layer that sets it, else the default (None for null
        defaults)."""
        merged = self._state[2]
        if name in merged:
            return merged[name]
        implied = self._implied[1]
        if name in implied:
            return implied[name]
        return self._key(name).default

    def get_int(self, name: str) -> int:
        v = self.get(name)
        assert isinstance(v, int) and not isinstance(v, bool), name
        return v

    def get_bool(self, name: str) -> bool:
        v = self.get(name)
        assert isinstance(v, bool), name
        return v

    def get_float(self, name: str) -> float:
        v = self.get(name)
        assert isinstance(v, int | float) and not isinstance(v, bool), name
        return float(v)

    def note_implied(self, settings: Mapping[str, str]) -> None:
        """Static settings given another way: --listen (listeners), --data-dir (log.dirs), and
        node.id for broker.id (Kafka's populateSynonyms). They read and describe as static
        settings, as Kafka's command-line overrides do, but do not count as set (is_set), so
        the choices made from the files and --set stay as they were."""
        raw = {k: v for k, v in settings.items() if k not in self._explicit}
        self._implied = (
            MappingProxyType(raw),
            MappingProxyType({k: parse(self._key(k), v) for k, v in raw.items()}),
        )

    def _layers(self) -> tuple[tuple[Mapping[str, str], ConfigSource], ...]:
        per_broker, cluster_default, _ = self._state
        return (
            (per_broker, ConfigSource.DYNAMIC_BROKER_CONFIG),
            (cluster_default, ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG),
            (self._explicit, ConfigSource.STATIC_BROKER_CONFIG),
            (self._implied[0], ConfigSource.STATIC_BROKER_CONFIG),
        )

    def source(self, name: str) -> ConfigSource:
        self._key(name)
        for layer, source in self._layers():
            if name in layer:
                return source
        return ConfigSource.DEFAULT_CONFIG

    def config_synonyms(self, name: str, synonyms: Iterable[str]) -> list[SynonymEntry]:
        """Kafka's configSynonyms: each layer in turn (this broker's dynamic configs, the
        cluster's dynamic defaults, static settings, defaults), each synonym within a layer in
        precedence order; then everything before the first entry named ``name`` dropped."""
        syns = tuple(synonyms)
        out: list[SynonymEntry] = []
        for layer, source in self._layers():
            for s in syns:
                if s in layer:
                    hidden = self._key(s).sensitive
                    out.append((s, None if hidden else layer[s], source))
        for s in syns:
            key = self._definitions.get(s)
            if key is not None and key.default is not None:
                out.append(
                    (s, None if key.sensitive else key.default_str, ConfigSource.DEFAULT_CONFIG)
                )
        while out and out[0][0] != name:
            out.pop(0)
        return out

    def topic_default(self, topic_name: str) -> ConfigValue:
        """The value a topic without an override gets (Kafka's extractLogConfigMap)."""
        key = TOPIC_CONFIGS[topic_name]
        syns = TOPIC_CONFIG_SYNONYMS.get(topic_name, ())
        chosen: ConfigValue = None
        picked = False
        merged = self._state[2]  # one state for the whole lookup
        # A synonym set in any layer wins in precedence order; otherwise the first synonym
        # with a non-null default; otherwise the topic's own default.
        for only_explicit in (True, False):
            for syn in syns:
                if syn.name not in self._definitions:
                    continue
                if only_explicit and syn.name not in merged:
                    continue
                v = merged.get(syn.name, self._definitions[syn.name].default)
                if v is None:
                    continue
                chosen = v * syn.multiplier if isinstance(v, int) and syn.multiplier != 1 else v
                picked = True
                break
            if picked:
                break
        if not picked:
            return key.default
        # Kafka maps any negative broker retention time to -1 ("forever").
        if topic_name == "retention.ms" and isinstance(chosen, int) and chosen < 0:
            chosen = -1
        return chosen

    def __repr__(self) -> str:
        shown = {
            k: ("[hidden]" if self._key(k).sensitive else v) for k, v in self._explicit.items()
        }
        if self._state[0] or self._state[1]:
            dynamic = [dict(d) for d in self._state[:2]]
            return f"BrokerConfig({shown!r}, dynamic={dynamic!r})"
        return f"BrokerConfig({shown!r})"

    # Typed accessors for what the broker uses.
    @property
    def node_id(self) -> int:
        if not self.is_set("node.id") and self.is_set("broker.id"):
            return self.get_int("broker.id")
        return self.get_int("node.id")

    @property
    def log_dirs(self) -> list[str]:
        dirs = self.get("log.dirs")
        if dirs is None:
            dirs = self.get("log.dir")
        assert isinstance(dirs, list)
        return list(dirs)

    @property
    def listeners(self) -> list[str]:
        return _split(self.get("listeners"))

    @property
    def advertised_listeners(self) -> list[str]:
        adv = self.get("advertised.listeners")
        return _split(adv) if adv is not None else self.listeners

    @property
    def retention_ms(self) -> int:
        return self._topic_int("retention.ms")

    @property
    def retention_bytes(self) -> int:
        return self._topic_int("retention.bytes")

    @property
    def segment_ms(self) -> int:
        return self._topic_int("segment.ms")

    @property
    def segment_jitter_ms(self) -> int:
        return self._topic_int("segment.jitter.ms")

    @property
    def segment_bytes(self) -> int:
        return self._topic_int("segment.bytes")

    @property
    def flush_ms(self) -> int:
        return self._topic_int("flush.ms")

    @property
    def num_partitions(self) -> int:
        return self.get_int("num.partitions")

    @property
    def default_replication_factor(self) -> int:
        return self.get_int("default.replication.factor")

    @property
    def message_max_bytes(self) -> int:
        return self.get_int("message.max.bytes")

    @property
    def offsets_retention_ms(self) -> int:
        return self.get_int("offsets.retention.minutes") * 60_000

    @property
    def metrics_port(self) -> int:
        return self.get_int("artesian.metrics.port")

    def _topic_int(self, topic_name: str) -> int:
        v = self.topic_default(topic_name)
        assert isinstance(v, int)
        return v


def _listener_base(name: str) -> str | None:
    """The config a ``listener.name.<listener>.[<mechanism>.]<config>`` override sets."""
    if not name.startswith("listener.name."):
        return None
    rest = name[len("listener.name.") :].split(".", 1)
    if len(rest) < 2:
        return None
    base = rest[1]
    if base in ("max.connections", "max.connection.creation.rate"):
        # per listener (named in lower case), not per mechanism
        return base if rest[0] == rest[0].lower() else None
    if base.startswith(("plain.", "scram-sha-256.", "scram-sha-512.", "oauthbearer.")):
        base = base.split(".", 1)[1]
    # Only the security settings, and the connection limit, may be set per listener.
    if base.startswith(("ssl.", "sasl.")) or base == "connections.max.reauth.ms":
        return base
    return None


def _split(value: ConfigValue) -> list[str]:
    return [p for p in (s.strip() for s in str(value).split(",")) if p] if value else []


_ESCAPES = MappingProxyType({"t": "\t", "n": "\n", "r": "\r", "f": "\f"})
_WS = " \t\f"


def _logical_lines(text: str) -> Iterable[str]:
    """Join backslash-continued lines; drop comments and blanks (java.util.Properties)."""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i].lstrip(_WS)
        i += 1
        if not line or line[0] in "#!":
            continue
        # An odd number of trailing backslashes continues the line.
        while (len(line) - len(line.rstrip("\\"))) % 2 == 1:
            line = line[:-1]
            if i >= len(lines):
                break
            line += lines[i].lstrip(_WS)
            i += 1
        yield line


def _unescape(s: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(s):
        c = s[i]
        if c != "\\" or i + 1 >= len(s):
            out.append(c)
            i += 1
            continue
        n = s[i + 1]
        if n == "u":
            hexd = s[i + 2 : i + 6]
            try:
                out.append(chr(int(hexd, 16)))
            except ValueError:
                raise ValueError(f"Malformed \\uxxxx encoding: \\u{hexd}") from None
            i += 6
            continue
        out.append(_ESCAPES.get(n, n))
        i += 2
    return "".join(out)


def parse_properties(text: str) -> dict[str, str]:
    """Parse Java ``.properties`` text: ``k=v``, ``k: v``, ``k v``, comments, continuations."""
    props: dict[str, str] = {}
    for line in _logical_lines(text):
        i, n = 0, len(line)
        while i < n:
            c = line[i]
            if c == "\\":
                i += 2
                continue
            if c in "=:" or c in _WS:
                break
            i += 1
        key = line[:i]
        j = i
        while j < n and line[j] in _WS:
            j += 1
        if j < n and line[j] in "=:":
            j += 1
            while j < n and line[j] in _WS:
                j += 1
        props[_unescape(key)] = _unescape(line[j:])
    return props


def load_properties(path: str | os.PathLike[str]) -> dict[str, str]:
    # Java reads .properties as ISO-8859-1 by default, but Kafka tooling writes UTF-8;
    # UTF-8 is the useful choice and \\u escapes still work.
    with open(path, encoding="utf-8") as f:
        return parse_properties(f.read())


def parse_connection_overrides(raw: str) -> dict[str, int]:
    """``host:count,...`` as written (an address or a host name, lowercased); host names are
    resolved where they are used, off the request path. ValueError names what is wrong."""
    out: dict[str, int] = {}
    for item in (i.strip() for i in raw.split(",")):
        if not item:
            continue
        host, sep, count = item.rpartition(":")
        host = host.strip().strip("[]").lower()
        if not sep or not host or not count.strip().isdigit():
            raise ValueError(f"{item!r} is not host:count")
        out[host] = int(count)
    return out


def _check_overrides(raw: str) -> None:
    try:
        parse_connection_overrides(raw)
    except ValueError as e:
        raise InvalidConfigError("max.connections.per.ip.overrides", raw, str(e)) from None


def check_connection_limits(per_ip: int, overrides: str) -> None:
    """Kafka's check on the values a broker would run with: the overrides read as
    host:count, and a per-address limit of 0 needs overrides to let anyone in."""
    _check_overrides(overrides)
    if per_ip == 0 and not overrides.strip():
        raise InvalidConfigError(
            "max.connections.per.ip",
            "0",
            "can be set to zero only if max.connections.per.ip.overrides is set",
        )


class _ListenerAwareConfigs(Mapping[str, ConfigKey]):
    """BROKER_CONFIGS, where a ``listener.name.<listener>.<config>`` override has its
    config's key (what AlterConfigs on a broker checks a name against)."""

    def __getitem__(self, name: str) -> ConfigKey:
        key = BROKER_CONFIGS.get(name)
        if key is None:
            base = _listener_base(name)
            key = BROKER_CONFIGS.get(base) if base is not None else None
        if key is None:
            raise KeyError(name)
        return key

    def __iter__(self) -> Iterator[str]:
        return iter(BROKER_CONFIGS)

    def __len__(self) -> int:
        return len(BROKER_CONFIGS)


BROKER_CONFIG_NAMES: Mapping[str, ConfigKey] = _ListenerAwareConfigs()
