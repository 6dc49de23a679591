"""Listener settings, TLS contexts, the SASL state machine and certificate principals,
without a broker."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from artesian.broker.authenticator import SaslAuthenticator, SaslSettings, SaslState
from artesian.broker.connection import _certificate_subject
from artesian.broker.listeners import (
    Listener,
    ListenerError,
    advertised_endpoints,
    inter_broker_client_security,
    inter_broker_listener,
    parse_listeners,
    server_ssl_context,
)
from artesian.config.broker import BrokerConfig
from artesian.config.definitions import DynamicConfigError, UnknownConfigError
from artesian.metadata.records import RegisterBrokerRecord, decode_record, encode_record
from tests.tls_certs import make_certificates


def test_listeners_and_their_protocols() -> None:
    config = BrokerConfig(
        {
            "listeners": "INTERNAL://10.0.0.5:9091,SASL_SSL://:9093",
            "listener.security.protocol.map": "INTERNAL:PLAINTEXT,SASL_SSL:SASL_SSL",
            "inter.broker.listener.name": "INTERNAL",
            "advertised.listeners": "SASL_SSL://kafka.example.com:443",
        }
    )
    listeners = parse_listeners(config, "ignored", 1)
    assert listeners == [
        Listener("INTERNAL", "PLAINTEXT", "10.0.0.5", 9091),
        Listener("SASL_SSL", "SASL_SSL", "", 9093),
    ]
    assert inter_broker_listener(config, listeners).name == "INTERNAL"
    assert advertised_endpoints(config, listeners) == {
        "SASL_SSL": ("kafka.example.com", 443),
        "INTERNAL": ("10.0.0.5", 9091),
    }


def test_listen_flag_keeps_its_old_advertised_listeners() -> None:
    config = BrokerConfig({"advertised.listeners": "EXTERNAL://public.example.com:19092"})
    listeners = parse_listeners(config, "127.0.0.1", 9092)
    assert listeners == [Listener("PLAINTEXT", "PLAINTEXT", "127.0.0.1", 9092)]
    assert advertised_endpoints(config, listeners) == {"PLAINTEXT": ("public.example.com", 19092)}


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"listeners": "PLAINTEXT://:1,PLAINTEXT://:2"}, "listener PLAINTEXT is given twice"),
        ({"listeners": "PLAINTEXT://:1,SSL://:1"}, "two listeners bind :1"),
        ({"listeners": "PLAINTEXT://nohost"}, "is not NAME://HOST:PORT"),
        ({"listeners": "SSL://:1"}, "there is no listener named PLAINTEXT"),
        (
            {"listeners": "SASL_SSL://:1", "inter.broker.listener.name": "SASL_SSL"},
            "give listener.name.sasl_ssl.plain.sasl.jaas.config with",
        ),
        (
            {"listeners": "PLAINTEXT://:1", "advertised.listeners": "PLAINTEXT://a:1,SSL://b:2"},
            "advertised.listeners names SSL, which is not in listeners",
        ),
    ],
)
def test_listener_settings_that_cannot_work(settings: dict[str, str], message: str) -> None:
    config = BrokerConfig(settings)
    with pytest.raises(ListenerError) as refused:
        listeners = parse_listeners(config, "", 0)
        inter_broker_client_security(config, inter_broker_listener(config, listeners))
        advertised_endpoints(config, listeners)
    assert message in str(refused.value)


def test_client_auth_applies_to_sasl_ssl_only_per_listener(tmp_path: Path) -> None:
    certs = make_certificates(tmp_path)
    config = BrokerConfig(
        {
            "ssl.keystore.location": str(certs.server),
            "ssl.client.auth": "required",
            "ssl.truststore.location": str(certs.ca),
            "listener.name.other.ssl.client.auth": "requested",
        }
    )
    assert server_ssl_context(config, "SSL").verify_mode is ssl.CERT_REQUIRED
    assert server_ssl_context(config, "SASL_SSL", sasl=True).verify_mode is ssl.CERT_NONE
    assert server_ssl_context(config, "OTHER", sasl=True).verify_mode is ssl.CERT_OPTIONAL
    both = BrokerConfig({"ssl.keystore.location": str(certs.server), "ssl.keystore.key": "inline"})
    with pytest.raises(ListenerError, match="not both"):
        server_ssl_context(both, "SSL")
    with pytest.raises(ListenerError, match=r"set ssl\.keystore\.location"):
        server_ssl_context(BrokerConfig(), "SSL")


def test_listener_prefixes_are_for_security_settings_only() -> None:
    config = BrokerConfig({"listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config": "x;"})
    assert config.for_listener("SASL_SSL", "sasl.jaas.config", "SCRAM-SHA-256") == "x;"
    assert config.for_listener("SASL_SSL", "sasl.jaas.config", "PLAIN") is None
    with pytest.raises(UnknownConfigError):
        BrokerConfig({"listener.name.plaintext.log.retention.ms": "5"})
    with pytest.raises(DynamicConfigError):
        config.validate_dynamic({"listener.name.sasl_ssl.ssl.client.auth": "required"})
    with pytest.raises(UnknownConfigError):
        config.validate_dynamic({"listener.name.plaintext.log.retention.ms": "5"})


def test_the_sasl_state_machine() -> None:
    auth = SaslAuthenticator(SaslSettings(("PLAIN",), {"a": "b"}), lambda user, mech: None)
    assert auth.allows(18)  # ApiVersions, once
    assert not auth.allows(18)
    assert not auth.allows(36)  # SaslAuthenticate before SaslHandshake
    assert not auth.allows(3)
    assert auth.allows(17)
    assert auth.handshake("PLAIN", 1).name == "none"
    assert auth.state is SaslState.AUTHENTICATE
    assert auth.allows(36) and not auth.allows(17) and not auth.allows(18)
    assert auth.authenticate(b"\0a\0b", now_ns=0) == b""
    assert (auth.complete, auth.principal) == (True, "User:a")
    assert "'b'" not in repr(auth.settings)  # PLAIN passwords stay out of reprs


def test_certificate_principals_cannot_be_spoofed() -> None:
    real = {
        "subject": (
            (("countryName", "US"),),
            (("organizationName", "Example"),),
            (("commonName", "alice"),),
        )
    }
    fake = {"subject": ((("commonName", "alice,O=Example,C=US"),),)}
    assert _certificate_subject(real) == "CN=alice,O=Example,C=US"
    assert _certificate_subject(fake) == "CN=alice\\,O\\=Example\\,C\\=US"
    multi = {"subject": ((("commonName", "bob"), ("userId", "42")),)}
    assert _certificate_subject(multi) == "CN=bob+UID=42"
    # As Java's X500Principal: '#' and every leading or trailing space escaped, NUL as \00.
    for cn, written in (
        ("team#1", "CN=team\\#1"),
        ("  two  ", "CN=\\ \\ two\\ \\ "),
        (" ,a, ", "CN=\\ \\,a\\,\\ "),
        ("nul\0", "CN=nul\\00"),
    ):
        assert _certificate_subject({"subject": ((("commonName", cn),),)}) == written, cn
    # A certificate naming nobody is "" (Kafka's principal "User:"); none at all is None
    # (ANONYMOUS).
    assert _certificate_subject({"subject": ()}) == ""
    assert _certificate_subject(None) is None


def test_records_with_fields_from_a_later_version_still_decode() -> None:
    kind, payload = encode_record(RegisterBrokerRecord(1, "h", 9092, None, "inc"))
    later = payload[:-1] + ',"a_later_field":[1,2]}'
    assert decode_record(kind, later) == RegisterBrokerRecord(1, "h", 9092, None, "inc")


def test_inter_broker_settings_that_cannot_work() -> None:
    both = BrokerConfig(
        {
            "listeners": "PLAINTEXT://:1",
            "inter.broker.listener.name": "PLAINTEXT",
            "security.inter.broker.protocol": "PLAINTEXT",
        }
    )
    with pytest.raises(ListenerError, match=r"only one of inter\.broker\.listener\.name"):
        inter_broker_listener(both, parse_listeners(both, "", 0))
    scram_only = BrokerConfig(
        {
            "listeners": "SASL_PLAINTEXT://:1",
            "inter.broker.listener.name": "SASL_PLAINTEXT",
            "sasl.enabled.mechanisms": "SCRAM-SHA-512",
            "listener.name.sasl_plaintext.plain.sasl.jaas.config": (
                'org.apache.kafka.common.security.plain.PlainLoginModule required username="b" '
                'password="p";'
            ),
        }
    )
    listener = inter_broker_listener(scram_only, parse_listeners(scram_only, "", 0))
    with pytest.raises(ListenerError, match=r"must be included in sasl\.enabled\.mechanisms"):
        inter_broker_client_security(scram_only, listener)


def test_the_client_side_of_inter_broker_tls(tmp_path: Path) -> None:
    certs = make_certificates(tmp_path)
    chain, key = certs.server.read_text().split("-----BEGIN PRIVATE KEY-----")
    config = BrokerConfig(
        {
            "listeners": "SSL://127.0.0.1:1",
            "inter.broker.listener.name": "SSL",
            "ssl.truststore.location": str(certs.ca),
            "ssl.keystore.certificate.chain": chain,
            "ssl.keystore.key": "-----BEGIN PRIVATE KEY-----" + key,
        }
    )
    listener = inter_broker_listener(config, parse_listeners(config, "", 0))
    security = inter_broker_client_security(config, listener)
    assert security.sasl is None and security.ssl_context is not None
    assert security.ssl_context.check_hostname  # ssl.endpoint.identification.algorithm=https
    unchecked = BrokerConfig(
        {
            **{k: str(v) for k, v in config.explicit.items()},
            "ssl.endpoint.identification.algorithm": "",
        }
    )
    context = inter_broker_client_security(unchecked, listener).ssl_context
    assert context is not None and not context.check_hostname
    assert context.verify_mode is ssl.CERT_REQUIRED  # still verified against the CA
