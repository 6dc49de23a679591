"""Listeners: where the broker accepts connections, and how each one is secured.

Kafka's model and names: ``listeners=NAME://host:port,...``, each name mapped to a security
protocol by ``listener.security.protocol.map`` (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL);
``advertised.listeners`` is what clients are told, per listener name; a client is always
given the addresses of the listener it connected to. ``ssl.*`` and ``sasl.*`` settings may be
set per listener as ``listener.name.<name>.<config>``.

Key and trust stores are Kafka's formats, JKS, PKCS12 and PEM (security/key_store.py), and a
store whose type is left unset is read in whichever of them it is.
"""

from __future__ import annotations

import logging
import socket
import ssl
from dataclasses import dataclass

from artesian.config.broker import BrokerConfig
from artesian.security.client import ClientSecurity
from artesian.security.jaas import parse_jaas_config
from artesian.security.key_store import (
    PEM,
    KeyStoreError,
    load_cert_chain,
    load_key_store_file,
    read_trust_store,
)
from artesian.security.oauthbearer.settings import listener_login

__all__ = [
    "SECURITY_PROTOCOLS",
    "Listener",
    "ListenerError",
    "advertised_endpoints",
    "inter_broker_client_security",
    "inter_broker_listener",
    "parse_listeners",
    "server_ssl_context",
]

SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
log = logging.getLogger("artesian.listeners")

_DEFAULT = "PLAINTEXT"  # the --listen listener's name
_TLS_VERSIONS = {"TLSv1.2": ssl.TLSVersion.TLSv1_2, "TLSv1.3": ssl.TLSVersion.TLSv1_3}


class ListenerError(ValueError):
    """A listener setting that cannot work; the message says which and how to fix it."""


@dataclass(slots=True, frozen=True)
class Listener:
    name: str
    security_protocol: str
    host: str  # to bind; "" binds every interface, as in Kafka
    port: int

    @property
    def tls(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

    @property
    def sasl(self) -> bool:
        return self.security_protocol in ("SASL_PLAINTEXT", "SASL_SSL")

    def __str__(self) -> str:
        return f"{self.name}://{self.host}:{self.port}"


def _protocol_map(config: BrokerConfig) -> dict[str, str]:
    mapping: dict[str, str] = {}
    for entry in _items(config.get("listener.security.protocol.map")):
        name, sep, protocol = entry.partition(":")
        if not sep or protocol.strip().upper() not in SECURITY_PROTOCOLS:
            raise ListenerError(
                f"listener.security.protocol.map: {entry!r} is not NAME:PROTOCOL with PROTOCOL "
                f"one of {', '.join(SECURITY_PROTOCOLS)}"
            )
        mapping[name.strip().upper()] = protocol.strip().upper()
    return mapping


def _items(value: object) -> list[str]:
    return [s.strip() for s in str(value or "").split(",") if s.strip()]


def _split_uri(uri: str, setting: str) -> tuple[str, str, int]:
    name, sep, address = uri.partition("://")
    if not sep:
        name, address = "PLAINTEXT", uri
    host, colon, port = address.rpartition(":")
    if not colon or not port.isdigit() or not 0 < int(port) < 65536:
        raise ListenerError(
            f"{setting}: {uri!r} is not NAME://HOST:PORT (e.g. SASL_SSL://0.0.0.0:9093)"
        )
    return name.strip().upper(), host.strip("[]"), int(port)


def parse_listeners(config: BrokerConfig, host: str, port: int) -> list[Listener]:
    """The listeners to bind: ``listeners`` when set, else PLAINTEXT on ``host:port`` (the
    ``--listen`` address)."""
    if not config.is_set("listeners"):
        return [Listener(_DEFAULT, "PLAINTEXT", host, port)]
    protocols = _protocol_map(config)
    controllers = controller_listener_names(config)
    listeners: list[Listener] = []
    for uri in _items(config.get("listeners")):
        name, lhost, lport = _split_uri(uri, "listeners")
        if name in controllers:
            log.info(
                "listener %s is not opened: it is a KRaft controller listener "
                "(controller.listener.names), and Artesian keeps its metadata in its store, "
                "not in a controller quorum",
                name,
            )
            continue
        if name not in protocols:
            raise ListenerError(
                f"listeners: no security protocol for listener {name}; name it in "
                "listener.security.protocol.map (e.g. "
                f"listener.security.protocol.map={name}:SASL_SSL,...)"
            )
        if any(lst.name == name for lst in listeners):
            raise ListenerError(f"listeners: listener {name} is given twice")
        if any(lst.port == lport and lst.host == lhost for lst in listeners):
            raise ListenerError(f"listeners: two listeners bind {lhost}:{lport}")
        listeners.append(Listener(name, protocols[name], lhost, lport))
    if not listeners and controllers:
        raise ListenerError(
            "listeners names only KRaft controller listeners (controller.listener.names="
            f"{','.join(sorted(controllers))}), which Artesian does not open: add a listener "
            "for clients and brokers, e.g. PLAINTEXT://:9092"
        )
    if not listeners:
        raise ListenerError("listeners is set but names no listener")
    return listeners


def controller_listener_names(config: BrokerConfig) -> frozenset[str]:
    return frozenset(n.strip().upper() for n in _items(config.get("controller.listener.names")))


def inter_broker_listener(config: BrokerConfig, listeners: list[Listener]) -> Listener:
    """The listener other brokers (and Artesian's own tools) reach this one on."""
    wanted = config.get("inter.broker.listener.name")
    if wanted and config.is_set("security.inter.broker.protocol"):
        raise ListenerError(
            "only one of inter.broker.listener.name and security.inter.broker.protocol "
            "should be set"
        )
    if wanted and str(wanted).upper() in controller_listener_names(config):
        raise ListenerError(
            f"inter.broker.listener.name={wanted} is a KRaft controller listener "
            "(controller.listener.names), which Artesian does not open: brokers need a "
            "listener of their own"
        )
    if wanted:
        found = [lst for lst in listeners if lst.name == str(wanted).upper()]
        what = f"inter.broker.listener.name={wanted}"
    else:
        protocol = str(config.get("security.inter.broker.protocol"))
        found = [lst for lst in listeners if lst.name == protocol]
        what = f"listener named {protocol} (security.inter.broker.protocol)"
    if not found:
        raise ListenerError(
            f"the inter-broker listener must be one of the listeners, but there is no {what} "
            f"among {', '.join(lst.name for lst in listeners)}. Add one, e.g. "
            "listeners=INTERNAL://127.0.0.1:9091,... with inter.broker.listener.name=INTERNAL "
            "and INTERNAL:PLAINTEXT in listener.security.protocol.map"
        )
    return found[0]


def inter_broker_client_security(config: BrokerConfig, listener: Listener) -> ClientSecurity:
    """How this broker connects to the others' inter-broker listener: TLS trusting
    ``ssl.truststore.*`` (checking host names unless ssl.endpoint.identification.algorithm
    is empty) and presenting its own key store; SASL with
    ``sasl.mechanism.inter.broker.protocol`` and the username and password of that
    mechanism's JAAS config on the listener, as Kafka brokers do."""
    context = None
    if listener.tls:
        context = _client_ssl_context(config, listener.name)
    sasl = None
    if listener.sasl:
        mechanism = str(config.get("sasl.mechanism.inter.broker.protocol"))
        enabled = config.for_listener(listener.name, "sasl.enabled.mechanisms") or []
        assert isinstance(enabled, list)
        if mechanism not in enabled:
            raise ListenerError(
                f"sasl.mechanism.inter.broker.protocol={mechanism} must be included in "
                f"sasl.enabled.mechanisms of listener {listener.name} ({', '.join(enabled)}) "
                "when SASL is used for inter-broker communication"
            )
        if mechanism == "OAUTHBEARER":
            try:
                login = listener_login(config, listener.name)
            except ValueError as e:
                raise ListenerError(str(e)) from e
            return ClientSecurity(context, (mechanism, "", ""), login)
        setting = f"listener.name.{listener.name.lower()}.{mechanism.lower()}.sasl.jaas.config"
        jaas = config.for_listener(listener.name, "sasl.jaas.config", mechanism)
        options = parse_jaas_config(str(jaas)).options if jaas else {}
        if not options.get("username") or not options.get("password"):
            raise ListenerError(
                f"the inter-broker listener {listener.name} uses SASL: give {setting} with "
                'username="..." password="..." (this broker\'s own login, e.g. '
                'username="admin" password="admin-secret" user_admin="admin-secret" for PLAIN)'
            )
        sasl = (mechanism, options["username"], options["password"])
    return ClientSecurity(context, sasl)


def _client_ssl_context(config: BrokerConfig, listener: str) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = bool(_text(config, listener, "ssl.endpoint.identification.algorithm"))
    _versions_and_ciphers(context, config, listener)
    trust, inline = _trust_store(config, listener)
    try:
        if trust or inline:
            context.load_verify_locations(cafile=trust, cadata=inline)
        else:
            context.load_default_certs()
    except (OSError, ssl.SSLError) as e:
        raise ListenerError(f"listener {listener}: cannot set up TLS to other brokers: {e}") from e
    # Presented to brokers that ask for client certificates.
    _load_key_store(context, config, listener, required=False)
    return context


def advertised_endpoints(
    config: BrokerConfig, listeners: list[Listener]
) -> dict[str, tuple[str, int]]:
    """What clients of each listener are told: ``advertised.listeners`` where it names the
    listener, else the bound address (this host's name where it binds every interface)."""
    advertised: dict[str, tuple[str, int]] = {}
    controllers = controller_listener_names(config)
    for uri in _items(config.get("advertised.listeners")):
        name, host, port = _split_uri(uri, "advertised.listeners")
        if name in controllers and config.is_set("listeners"):
            continue  # not opened (see parse_listeners)
        if not config.is_set("listeners"):
            # The --listen address: its first advertised address, under any name, as before.
            advertised.setdefault(_DEFAULT, (host, port))
            continue
        if name not in {lst.name for lst in listeners}:
            raise ListenerError(
                f"advertised.listeners names {name}, which is not in listeners "
                f"({', '.join(lst.name for lst in listeners)})"
            )
        advertised[name] = (host, port)
    for lst in listeners:
        if lst.name not in advertised:
            host = lst.host if lst.host not in ("", "0.0.0.0", "::") else socket.getfqdn()
            advertised[lst.name] = (host, lst.port)
    return advertised


def server_ssl_context(config: BrokerConfig, listener: str, sasl: bool = False) -> ssl.SSLContext:
    """The TLS server context of one listener, from its ``ssl.*`` settings."""

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _versions_and_ciphers(context, config, listener)
    _load_key_store(context, config, listener, required=True)
    if sasl:
        # KIP-684: on SASL_SSL only a listener's own ssl.client.auth asks for certificates.
        own = config.explicit.get(f"listener.name.{listener.lower()}.ssl.client.auth")
        client_auth = own or "none"
    else:
        client_auth = str(config.for_listener(listener, "ssl.client.auth"))
    if client_auth != "none":
        trust, inline = _trust_store(config, listener)
        if not trust and not inline:
            raise ListenerError(
                f"listener {listener}: ssl.client.auth={client_auth} needs the CAs client "
                "certificates chain to: set ssl.truststore.location (PEM, PKCS12 or JKS)"
            )
        try:
            context.load_verify_locations(cafile=trust, cadata=inline)
        except (OSError, ssl.SSLError) as e:
            raise ListenerError(f"listener {listener}: cannot load its trust store: {e}") from e
        context.verify_mode = ssl.CERT_REQUIRED if client_auth == "required" else ssl.CERT_OPTIONAL
    return context


def _text(config: BrokerConfig, listener: str, name: str) -> str | None:
    """A listener's string setting, None when unset or empty."""
    value = config.for_listener(listener, name)
    return None if value is None or value == "" else str(value)


def _declared_type(config: BrokerConfig, listener: str, name: str) -> str | None:
    """A store's ``ssl.*.type`` when someone set it, else None: the file's own format is read
    (so PEM files keep working under Kafka's default, JKS)."""
    if config.is_set(name) or config.is_set(f"listener.name.{listener.lower()}.{name}"):
        return str(config.for_listener(listener, name)).upper()
    return None


def _trust_store(config: BrokerConfig, listener: str) -> tuple[str | None, str | None]:
    """(PEM CA file, inline PEM CA certificates) of a listener's trust store; a JKS or
    PKCS12 store comes inline, read from its file."""
    location = _text(config, listener, "ssl.truststore.location")
    inline = _text(config, listener, "ssl.truststore.certificates")
    declared = _declared_type(config, listener, "ssl.truststore.type")
    if inline and declared not in (None, PEM):
        raise ListenerError(
            f"listener {listener}: ssl.truststore.certificates is PEM, but "
            f"ssl.truststore.type={declared}: set it to PEM, or leave it unset"
        )
    if not location:
        return None, inline
    password = _text(config, listener, "ssl.truststore.password")
    try:
        with open(location, "rb") as f:
            certificates = read_trust_store(f.read(), declared, password, path=location)
    except OSError as e:
        raise ListenerError(f"listener {listener}: cannot read its trust store: {e}") from e
    except KeyStoreError as e:
        raise ListenerError(f"listener {listener}: {e}") from e
    if certificates is None:
        return location, inline
    return None, certificates.decode() + (inline or "")


def _versions_and_ciphers(context: ssl.SSLContext, config: BrokerConfig, listener: str) -> None:
    versions = config.for_listener(listener, "ssl.enabled.protocols") or []
    assert isinstance(versions, list)
    enabled = [v for name, v in _TLS_VERSIONS.items() if name in {str(x) for x in versions}]
    if not enabled:
        raise ListenerError(f"listener {listener}: ssl.enabled.protocols enables no TLS version")
    context.minimum_version, context.maximum_version = enabled[0], enabled[-1]
    ciphers = config.for_listener(listener, "ssl.cipher.suites") or []
    if ciphers:
        assert isinstance(ciphers, list)
        try:
            context.set_ciphers(":".join(ciphers))
        except ssl.SSLError as e:
            raise ListenerError(f"listener {listener}: ssl.cipher.suites: {e}") from e


def _load_key_store(
    context: ssl.SSLContext, config: BrokerConfig, listener: str, *, required: bool
) -> None:
    """This broker's certificate chain and key: a key store file (JKS, PKCS12 or PEM), or
    the two inline in PEM."""

    location = _text(config, listener, "ssl.keystore.location")
    chain, key = (
        _text(config, listener, "ssl.keystore.certificate.chain"),
        _text(config, listener, "ssl.keystore.key"),
    )
    declared = _declared_type(config, listener, "ssl.keystore.type")
    key_password = _text(config, listener, "ssl.key.password")
    store_password = _text(config, listener, "ssl.keystore.password")
    if location and (chain or key):
        raise ListenerError(
            f"listener {listener}: give ssl.keystore.location or ssl.keystore.certificate.chain "
            "with ssl.keystore.key, not both"
        )
    if (chain or key) and declared not in (None, PEM):
        raise ListenerError(
            f"listener {listener}: ssl.keystore.certificate.chain and ssl.keystore.key are "
            f"PEM, but ssl.keystore.type={declared}: set it to PEM, or leave it unset"
        )
    try:
        if location:
            others = load_key_store_file(context, location, declared, store_password, key_password)
            if others:
                log.warning(
                    "listener %s: the key store %s holds more private keys (%s) than the "
                    "one it serves: keep one key per key store",
                    listener,
                    location,
                    ", ".join(others),
                )
        elif chain and key:
            load_cert_chain(context, chain.encode(), key.encode(), key_password)
        elif required:
            raise ListenerError(
                f"listener {listener} uses TLS: set ssl.keystore.location (a JKS, PKCS12 or "
                "PEM key store with the certificate chain and private key) or "
                "ssl.keystore.certificate.chain with ssl.keystore.key"
            )
    except KeyStoreError as e:
        raise ListenerError(f"listener {listener}: {e}") from e
    except (OSError, ssl.SSLError, ValueError) as e:
        raise ListenerError(f"listener {listener}: cannot load its key store: {e}") from e
