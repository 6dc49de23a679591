"""ssl.principal.mapping.rules: the rules' grammar and mapping as Kafka's SslPrincipalMapper
has them (its unit test's cases), then a real broker whose SSL listeners map a client
certificate's DN to a principal that ACLs name, or disconnect a client no rule applies to."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    AdminClient,
    NewTopic,
    ResourcePatternType,
    ResourceType,
)

from artesian.security.ssl_principal_mapper import NoMatchingRule, SslPrincipalMapper
from tests.broker_process import BrokerProcess, free_port
from tests.tls_certs import Certificates, make_certificates

# --- the rules ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "rules",
    [
        "DEFAULT",
        "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/L, DEFAULT",
        "RULE:^CN=([^,ADEFLTU,]+)(,.*|$)/$1/",  # commas inside a pattern
        "RULE:^CN=(.*?),OU=(.*?)$/$1@$2/U,\n  DEFAULT",  # a newline after the comma
    ],
)
def test_valid_rules(rules: str) -> None:
    SslPrincipalMapper.from_rules(rules)


def test_rules_split_as_kafkas_do() -> None:
    # Kafka's testRulesSplitting, by what the rules make of a DN.
    dn = "CN=alice,O=Example"
    for text in ("  RULE:// ,  DEFAULT  ", ",,RULE://,,,DEFAULT,,"):
        assert SslPrincipalMapper.from_rules(text).name(dn) == dn
    # An empty setting is no rule at all: every certificate is refused.
    for text in ("", ",   , , ,"):
        mapper = SslPrincipalMapper.from_rules(text)
        with pytest.raises(NoMatchingRule):
            mapper.name("O=nobody")
    # Rules are separated by commas; a newline alone leaves a piece that is no rule.
    with pytest.raises(ValueError, match="Invalid rule"):
        SslPrincipalMapper.from_rules("RULE:^CN=(.*?),.*$/$1/\nDEFAULT")


@pytest.mark.parametrize(
    "rules",
    [
        "default",
        "DEFAUL",
        "DEFAULT/L",
        "DEFAULT/U",
        "RULE:CN=(.*?),OU=ServiceUsers.*/$1",
        "rule:^CN=(.*?),OU=ServiceUsers.*$/$1/",
        "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/L/U",
        "RULE:^CN=(.*?),OU=ServiceUsers.*$/L",
        "RULE:^CN=(.*?),OU=ServiceUsers.*$/U",
        "RULE:^CN=(.*?),OU=ServiceUsers.*$/LU",
        "RULE:^CN=(.*?/$1/",  # not a regular expression
    ],
)
def test_invalid_rules(rules: str) -> None:
    with pytest.raises(ValueError, match="Invalid rule"):
        SslPrincipalMapper.from_rules(rules)


def test_rules_map_dns_as_kafkas_do() -> None:
    mapper = SslPrincipalMapper.from_rules(
        "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/L, "
        "RULE:^CN=(.*?),OU=(.*?),O=(.*?),L=(.*?),ST=(.*?),C=(.*?)$/$1@$2/L, "
        "RULE:^cn=(.*?),ou=(.*?),dc=(.*?),dc=(.*?)$/$1@$2/U, "
        "RULE:^.*[Cc][Nn]=([a-zA-Z0-9.]*).*$/$1/U, "
        "DEFAULT"
    )
    assert mapper.name("CN=Duke,OU=ServiceUsers,O=Org,C=US") == "duke"
    assert mapper.name("CN=Duke,OU=SME,O=mycp,L=Fulton,ST=MD,C=US") == "duke@sme"
    assert mapper.name("cn=duke,ou=sme,dc=mycp,dc=com") == "DUKE@SME"
    assert mapper.name("cN=duke,OU=JavaSoft,O=Sun Microsystems") == "DUKE"
    assert (
        mapper.name("OU=JavaSoft,O=Sun Microsystems,C=US") == "OU=JavaSoft,O=Sun Microsystems,C=US"
    )


def test_escaped_slashes_commas_and_literal_dollars() -> None:
    # "\/" is a slash in a pattern and in a replacement; "\," a comma escaped in the DN.
    slashes = SslPrincipalMapper.from_rules(r"RULE:^CN=(.*?)\/(.*?),.*$/$1\/$2/")
    assert slashes.name("CN=team/alice,O=Example") == "team/alice"
    comma = SslPrincipalMapper.from_rules(r"RULE:^CN=((\\, *|\w)+)(,.*|$)/$1/,DEFAULT")
    assert comma.name(r"CN=Tkac\, Adam,OU=ITZ,DC=geodis,DC=cz") == r"Tkac\, Adam"
    # A reference to a group the pattern lacks stays literal, as Kafka escapes it.
    dollars = SslPrincipalMapper.from_rules("RULE:^CN=(.*?),.*$/$1-$2/")
    assert dollars.name("CN=alice,O=Example") == "alice-$2"
    # Java's \w is ASCII; a $ naming no group is refused as Java's replaceAll refuses it.
    ascii_only = SslPrincipalMapper.from_rules(r"RULE:^CN=(\w+)$/$1/")
    with pytest.raises(NoMatchingRule):
        ascii_only.name("CN=J\u00fcrgen")
    assert ascii_only.name("CN=Jurgen") == "Jurgen"
    for replacement in ("$x", "$", "${name}"):
        refused = SslPrincipalMapper.from_rules(f"RULE:^CN=(.*)$/{replacement}/")
        with pytest.raises(NoMatchingRule, match="names no group"):
            refused.name("CN=alice")


def test_no_matching_rule_names_the_dn_and_the_rules() -> None:
    mapper = SslPrincipalMapper.from_rules("RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/L")
    with pytest.raises(NoMatchingRule, match=r"No rules apply to CN=x,O=y, rules \[RULE:"):
        mapper.name("CN=x,O=y")


# --- a broker -------------------------------------------------------------------------------

ALICE_DN = "CN=alice,O=Artesian tests,C=NZ"  # tests/tls_certs.py's client certificate


class MappingBroker:
    def __init__(self, proc: BrokerProcess, ports: dict[str, int], certs: Certificates) -> None:
        self.proc, self.ports, self.certs = proc, ports, certs

    def client(self, listener: str) -> dict[str, str]:
        return {
            "bootstrap.servers": f"127.0.0.1:{self.ports[listener]}",
            "security.protocol": "SSL",
            "ssl.ca.location": str(self.certs.ca),
            "ssl.certificate.location": str(self.certs.client_cert),
            "ssl.key.location": str(self.certs.client_key),
        }


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MappingBroker]:
    root = tmp_path_factory.mktemp("mapping")
    certs = make_certificates(root / "certs")
    proc = BrokerProcess(root / "broker")
    ports = {"MAPPED": free_port(), "UNMAPPED": free_port(), "RAW": free_port()}
    proc.settings = {
        "listeners": f"PLAINTEXT://127.0.0.1:{proc.port},"
        + ",".join(f"{name}://127.0.0.1:{port}" for name, port in ports.items()),
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,MAPPED:SSL,UNMAPPED:SSL,RAW:SSL",
        "ssl.keystore.location": str(certs.server),
        "ssl.truststore.location": str(certs.ca),
        "ssl.client.auth": "required",
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "super.users": "User:ANONYMOUS",
        # Per listener, as in Kafka: the broker-wide value is Kafka's DEFAULT.
        "listener.name.mapped.ssl.principal.mapping.rules": (
            "RULE:^CN=([^,]+),O=Artesian tests,C=NZ$/$1/U, DEFAULT"
        ),
        "listener.name.unmapped.ssl.principal.mapping.rules": "RULE:^CN=bob,.*$/bob/",
    }
    proc.start()
    try:
        yield MappingBroker(proc, ports, certs)
    finally:
        code = proc.stop()
    assert code == 0, proc.log_tail()


def _allow_write(broker: MappingBroker, principal: str, topic: str) -> None:
    admin = AdminClient({"bootstrap.servers": broker.proc.bootstrap})
    for future in admin.create_topics([NewTopic(topic, 1, 1)]).values():
        try:
            future.result(10)
        except KafkaException as e:  # another test of the module made it
            assert e.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS, e
    binding = AclBinding(
        ResourceType.TOPIC,
        topic,
        ResourcePatternType.LITERAL,
        principal,
        "*",
        AclOperation.WRITE,
        AclPermissionType.ALLOW,
    )
    for future in admin.create_acls([binding]).values():
        assert future.result(10) is None


def _delivered(conf: dict[str, str], topic: str) -> object:
    """None once the record is written, else the delivery error."""
    reports: list[object] = []
    producer = Producer({**conf, "message.timeout.ms": 8000})
    producer.produce(topic, b"by certificate", on_delivery=lambda err, _: reports.append(err))
    producer.flush(15)
    assert len(reports) == 1
    return reports[0]


def test_the_rules_name_the_principal_acls_see(broker: MappingBroker) -> None:
    # Only the mapped name may write: on MAPPED the certificate is User:ALICE.
    _allow_write(broker, "User:ALICE", "mapped-topic")
    assert _delivered(broker.client("MAPPED"), "mapped-topic") is None
    # On RAW (Kafka's DEFAULT) the same certificate is the DN, which may not.
    refused = _delivered(broker.client("RAW"), "mapped-topic")
    assert refused is not None and "TOPIC_AUTHORIZATION_FAILED" in str(refused)
    _allow_write(broker, f"User:{ALICE_DN}", "raw-topic")
    assert _delivered(broker.client("RAW"), "raw-topic") is None


def test_a_certificate_no_rule_applies_to_is_disconnected(broker: MappingBroker) -> None:
    mark = broker.proc.log_mark()
    errors: list[object] = []
    admin = AdminClient({**broker.client("UNMAPPED"), "error_cb": errors.append})
    with pytest.raises(KafkaException):
        admin.list_topics(timeout=3)
    deadline = time.monotonic() + 10
    while "names no principal" not in broker.proc.log_tail(since=mark):
        assert time.monotonic() < deadline, broker.proc.log_tail(since=mark)
        time.sleep(0.1)
    tail = broker.proc.log_tail(since=mark)
    assert f"No rules apply to {ALICE_DN}" in tail and "ssl.principal.mapping.rules" in tail
    assert broker.proc.alive()  # and the others carry on
    _allow_write(broker, "User:ALICE", "mapped-topic")
    assert _delivered(broker.client("MAPPED"), "mapped-topic") is None


def test_a_certificate_with_an_empty_subject_is_not_anonymous(broker: MappingBroker) -> None:
    """Kafka maps the empty DN like any other (DEFAULT: "User:"); ANONYMOUS is only for a
    client with no certificate. Here ANONYMOUS is a super user: a nameless certificate from
    the trusted CA must not be one."""
    _allow_write(broker, "User:ALICE", "nameless-topic")
    nameless = {
        **broker.client("RAW"),
        "ssl.certificate.location": str(broker.certs.nameless_cert),
        "ssl.key.location": str(broker.certs.nameless_key),
    }
    refused = _delivered(nameless, "nameless-topic")
    assert refused is not None and "TOPIC_AUTHORIZATION_FAILED" in str(refused)
    _allow_write(broker, "User:", "nameless-topic")  # the principal Kafka gives it
    assert _delivered(nameless, "nameless-topic") is None


def test_invalid_rules_stop_the_start(tmp_path: Path) -> None:
    certs = make_certificates(tmp_path / "certs")
    plain, port = free_port(), free_port()
    result = subprocess.run(
        [
            *(sys.executable, "-m", "artesian.cli.main", "broker"),
            *("--data-dir", str(tmp_path / "d")),
            *("--set", f"listeners=PLAINTEXT://127.0.0.1:{plain},SSL://127.0.0.1:{port}"),
            *("--set", f"ssl.keystore.location={certs.server}"),
            *("--set", "ssl.principal.mapping.rules=RULE:^CN=(.*?)$/$1/X"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert "ssl.principal.mapping.rules" in result.stderr and "Invalid rule" in result.stderr
    assert "Traceback" not in result.stderr
