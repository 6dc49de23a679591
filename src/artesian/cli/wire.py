"""A small synchronous Kafka client for what librdkafka's admin API cannot ask: ListOffsets for
tiered storage's offsets (-4 earliest local, -5 latest tiered) and DescribeTransactions /
ListTransactions. Requests are kio schema entities written with Artesian's own codec, responses
read with it. Any listener: TLS and a PLAIN or SCRAM login come from the command's client
properties (--command-config, -X) under librdkafka's names, as its other commands take them.
A login whose session has a lifetime (KIP-368) is re-authenticated on the same connection
before the request that would come after 85-95% of it, as Kafka's clients do, so a command
that polls for minutes (``--wait``) is not cut off."""

from __future__ import annotations

import functools
import random
import socket
import ssl
import struct
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from artesian.cli.common import ClientOptions, CliError, fail, unreachable

if TYPE_CHECKING:  # PyJWT and cryptography load only for a command that logs in with tokens
    from artesian.security.oauthbearer.login import TokenSource

__all__ = ["WireClient", "broker_addresses", "check_answer", "coordinator_of"]

_I32 = struct.Struct(">i")
_CLIENT_ID = b"artesian-cli"


class WireClient:
    def __init__(
        self,
        bootstrap: str,
        timeout: float,
        sasl: tuple[str, str, str] | None = None,
        tls: ssl.SSLContext | None = None,
        tokens: TokenSource | None = None,
    ) -> None:
        """``sasl``: (mechanism, username, password) to log in with before any request;
        ``tls``: the context to speak TLS with; ``tokens``: OAUTHBEARER's, a fresh one for
        each login and re-authentication."""
        self.bootstrap = bootstrap
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._correlation = 0
        self._sasl = sasl
        self._tokens = tokens
        self._reauthenticate_at: float | None = None  # monotonic seconds
        last: OSError | None = None
        tls_failure: ssl.SSLError | None = None
        for hp in bootstrap.split(","):
            host, _, port = hp.strip().split("://")[-1].rpartition(":")
            sock = None
            try:
                sock = socket.create_connection((host.strip("[]"), int(port)), timeout)
                if tls is not None:
                    sock = tls.wrap_socket(sock, server_hostname=host.strip("[]"))
                self._sock, sock = sock, None
                break
            except ssl.SSLError as e:  # the next server may have a certificate we trust
                tls_failure = e
            except (OSError, ValueError) as e:
                last = e if isinstance(e, OSError) else None
            finally:
                if sock is not None:
                    sock.close()
        if self._sock is None:
            if tls_failure is not None:
                raise CliError(
                    f"TLS with {bootstrap} failed: {tls_failure.reason or tls_failure}",
                    "Check ssl.ca.location (and the certificate's host names).",
                ) from tls_failure
            raise unreachable(bootstrap) from last
        if sasl is not None:
            try:
                self._log_in(*sasl)
            except BaseException:
                self.close()
                raise

    def _log_in(self, mechanism: str, username: str, password: str, again: bool = False) -> None:
        """A login, or with ``again`` on the logged-in connection a re-authentication."""
        from artesian.security.client import LoginFailed, reauthentication_delay_ms, sasl_login
        from artesian.security.oauthbearer.login import LoginError

        what = "re-authentication" if again else "login"
        self._reauthenticate_at = None
        if mechanism == "OAUTHBEARER":
            assert self._tokens is not None
            try:
                password, _ = self._tokens.token()
            except LoginError as e:
                raise CliError(f"OAUTHBEARER {what} to {self.bootstrap} failed: {e}") from e
        login = sasl_login(mechanism, username, password)
        try:
            api_key, version, fields = next(login)
            while True:
                answer = self._request(api_key, version, fields)
                api_key, version, fields = login.send(answer)
        except StopIteration as done:
            lifetime_ms: int = done.value
        except LoginFailed as e:
            raise CliError(f"SASL {what} to {self.bootstrap} failed: {e}") from e
        if lifetime_ms > 0:
            delay = reauthentication_delay_ms(lifetime_ms, random.random())
            self._reauthenticate_at = time.monotonic() + delay / 1000

    def _maybe_reauthenticate(self) -> None:
        at = self._reauthenticate_at
        if at is not None and time.monotonic() >= at:
            assert self._sasl is not None
            self._log_in(*self._sasl, again=True)

    @classmethod
    def for_options(cls, opts: ClientOptions, bootstrap: str | None = None) -> WireClient:
        """A client that connects as the command's client properties say
        (security.protocol, ssl.*, sasl.*), to ``bootstrap`` or the command's own."""
        tls, sasl, tokens = security_from(opts.config())
        if bootstrap is None:
            opts.check_reachable()  # a malformed address or a broker that is down, at once
        return cls(bootstrap or opts.bootstrap, opts.timeout, sasl, tls, tokens)

    def __enter__(self) -> WireClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def request(self, api_key: int, version: int, **fields: Any) -> Any:
        """Send one request built from ``fields`` and return the decoded response."""
        self._maybe_reauthenticate()
        return self._request(api_key, version, fields)

    def _request(self, api_key: int, version: int, fields: dict[str, Any]) -> Any:
        # Here, not at the top: the schemas take a third of a second to import, and most
        # commands never speak the protocol themselves.
        from artesian.protocol.client import decode_response, encode_request

        self._correlation += 1
        frame = self._exchange(
            encode_request(api_key, version, self._correlation, _CLIENT_ID, **fields)
        )
        correlation, entity = decode_response(api_key, version, frame)
        if correlation != self._correlation:
            raise CliError(f"{self.bootstrap} answered out of order")
        return entity

    def request_raw(self, api_key: int, version: int, body: bytes) -> memoryview:
        """One request of an API without a kio schema (Artesian's private ones, header v1
        and response header v0): its body in, the response body out."""
        self._maybe_reauthenticate()
        self._correlation += 1
        head = struct.pack(">hhih", api_key, version, self._correlation, len(_CLIENT_ID))
        payload = head + _CLIENT_ID + body
        frame = self._exchange(_I32.pack(len(payload)) + payload)
        if len(frame) < 4 or _I32.unpack_from(frame, 0)[0] != self._correlation:
            raise CliError(f"{self.bootstrap} answered out of order")
        return frame[4:]

    def _exchange(self, frame_out: bytes) -> memoryview:
        from artesian.protocol.client import MAX_RESPONSE_SIZE

        sock = self._sock
        assert sock is not None
        try:
            sock.sendall(frame_out)
            (size,) = _I32.unpack(self._read(4))
            if not 4 <= size <= MAX_RESPONSE_SIZE:
                raise CliError(f"{self.bootstrap} sent a response of {size} bytes")
            return memoryview(self._read(size))
        except TimeoutError as e:
            raise CliError(
                f"no answer from {self.bootstrap} in time", "Retry with a larger --request-timeout."
            ) from e
        except OSError as e:
            raise unreachable(self.bootstrap) from e

    def _read(self, n: int) -> bytes:
        assert self._sock is not None
        buf = bytearray()
        while len(buf) < n:
            chunk = self._sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("the broker closed the connection")
            buf += chunk
        return bytes(buf)


def security_from(
    conf: dict[str, Any],
) -> tuple[ssl.SSLContext | None, tuple[str, str, str] | None, TokenSource | None]:
    """TLS context, SASL login and OAUTHBEARER tokens from librdkafka-named properties."""
    protocol = str(conf.get("security.protocol", "plaintext")).upper()
    if protocol not in ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"):
        fail(f"security.protocol {protocol!r} is not PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL")
    tls = _tls_from(conf) if protocol in ("SSL", "SASL_SSL") else None
    sasl = None
    if protocol.startswith("SASL_"):
        mechanism = str(conf.get("sasl.mechanism") or conf.get("sasl.mechanisms") or "GSSAPI")
        if mechanism.upper() == "OAUTHBEARER":
            return tls, ("OAUTHBEARER", "", ""), _oauthbearer_tokens(conf)
        if mechanism.upper() not in ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"):
            fail(
                f"sasl.mechanism {mechanism} is not PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or "
                "OAUTHBEARER"
            )
        sasl = (
            mechanism.upper(),
            str(conf.get("sasl.username", "")),
            str(conf.get("sasl.password", "")),
        )
    return tls, sasl, None


def _tls_from(conf: dict[str, Any]) -> ssl.SSLContext:
    """librdkafka's ssl.* properties: CAs from ssl.ca.location or ssl.ca.pem; this client's
    certificate from ssl.certificate.location with ssl.key.location, the same inline
    (ssl.certificate.pem, ssl.key.pem), or a PKCS12 ssl.keystore.location."""
    from artesian.security.key_store import (
        PKCS12,
        KeyStoreError,
        load_cert_chain,
        load_key_store_file,
    )

    ca, ca_pem = conf.get("ssl.ca.location"), conf.get("ssl.ca.pem")
    key_password = conf.get("ssl.key.password") or None
    try:
        tls = ssl.create_default_context(
            cafile=ca if ca and not Path(ca).is_dir() else None,
            capath=ca if ca and Path(ca).is_dir() else None,
            cadata=ca_pem or None,
        )
        if conf.get("ssl.keystore.location"):
            load_key_store_file(  # PKCS12 only, as in librdkafka
                tls,
                str(conf["ssl.keystore.location"]),
                PKCS12,
                conf.get("ssl.keystore.password"),
                key_password,
            )
        elif conf.get("ssl.certificate.pem") or conf.get("ssl.key.pem"):
            load_cert_chain(
                tls,
                str(conf.get("ssl.certificate.pem", "")).encode(),
                str(conf.get("ssl.key.pem", "")).encode(),
                key_password,
            )
        elif conf.get("ssl.certificate.location"):
            tls.load_cert_chain(
                conf["ssl.certificate.location"], conf.get("ssl.key.location"), key_password
            )
    except KeyStoreError as e:
        fail(f"cannot set up TLS: {e}")
    except (OSError, ssl.SSLError) as e:
        fail(f"cannot set up TLS from the ssl.* properties: {e}")
    if str(conf.get("ssl.endpoint.identification.algorithm", "https")).lower() == "none":
        tls.check_hostname = False
    if str(conf.get("enable.ssl.certificate.verification", "true")).lower() == "false":
        tls.check_hostname = False
        tls.verify_mode = ssl.CERT_NONE
    return tls


def _oauthbearer_tokens(conf: dict[str, Any]) -> TokenSource:
    """Tokens as librdkafka would get them: from the token endpoint with
    sasl.oauthbearer.method=oidc, or unsigned with enable.sasl.oauthbearer.unsecure.jwt."""
    from artesian.security.oauthbearer.login import ClientCredentialsLogin, RefreshingToken
    from artesian.security.oauthbearer.unsecured import UnsecuredLogin

    if str(conf.get("sasl.oauthbearer.method", "default")).lower() == "oidc":
        url = conf.get("sasl.oauthbearer.token.endpoint.url")
        client_id = conf.get("sasl.oauthbearer.client.id")
        if not url or not client_id:
            fail(
                "sasl.oauthbearer.method=oidc needs sasl.oauthbearer.token.endpoint.url and "
                "sasl.oauthbearer.client.id (and sasl.oauthbearer.client.secret)"
            )
        return RefreshingToken(
            ClientCredentialsLogin(
                str(url),
                str(client_id),
                str(conf.get("sasl.oauthbearer.client.secret", "")),
                conf.get("sasl.oauthbearer.scope") or None,
            )
        )
    if str(conf.get("enable.sasl.oauthbearer.unsecure.jwt", "false")).lower() == "true":
        fields = dict(
            item.split("=", 1)
            for item in str(conf.get("sasl.oauthbearer.config", "")).split()
            if "=" in item
        )
        if not fields.get("principal"):
            fail("Invalid sasl.oauthbearer.config: no principal=<value>")
        principal_claim = fields.get("principalClaimName", "sub")
        claims: dict[str, Any] = {principal_claim: fields["principal"]}
        if fields.get("scope"):
            claims[fields.get("scopeClaimName", "scope")] = fields["scope"].split(",")
        lifetime = fields.get("lifeSeconds", "3600")
        if not lifetime.isdigit() or int(lifetime) < 1:
            fail(
                f"Invalid sasl.oauthbearer.config: lifeSeconds={lifetime} is not a positive integer"
            )
        return RefreshingToken(UnsecuredLogin(claims, principal_claim, int(lifetime)))
    fail(
        "sasl.mechanism=OAUTHBEARER needs a token: sasl.oauthbearer.method=oidc with "
        "sasl.oauthbearer.token.endpoint.url, sasl.oauthbearer.client.id and "
        "sasl.oauthbearer.client.secret, or enable.sasl.oauthbearer.unsecure.jwt=true with "
        "sasl.oauthbearer.config=principal=<name> (development only)"
    )


# --- configs of a resource (DescribeConfigs, IncrementalAlterConfigs) ---------------------------
# librdkafka's config resource types stop at BROKER, so GROUP resources (KIP-848) and
# broker configs alike are asked for here.

_DESCRIBE_CONFIGS, _INCREMENTAL_ALTER_CONFIGS = 32, 44


def check_answer(
    code: Any, message: str | None, what: str, hints: Mapping[str, str] | None = None
) -> None:
    """A CliError for an error code in a broker's answer: ``what`` failed, with the code's
    name, the broker's message, and the next step ``hints`` gives for that code."""
    if code != 0:
        detail = f": {message}" if message else ""
        hint = (hints or {}).get(code.name, "")
        raise CliError(f"{what}: {code.name.upper()}{detail}", hint)


def alter_configs(
    client: WireClient,
    resource_type: int,
    name: str,
    changes: dict[str, str],
    deletions: list[str],
    hint: str = "",
) -> None:
    """Set ``changes`` and remove ``deletions`` on one resource; a refusal is a CliError."""
    from kio.schema.incremental_alter_configs.v1 import request as iac
    from kio.static.primitive import i8

    from artesian.config.resolve import AlterConfigOp

    configs = [
        iac.AlterableConfig(name=k, config_operation=i8(AlterConfigOp.SET), value=v)
        for k, v in changes.items()
    ]
    configs += [
        iac.AlterableConfig(name=k, config_operation=i8(AlterConfigOp.DELETE), value=None)
        for k in deletions
    ]
    resource = iac.AlterConfigsResource(
        resource_type=i8(resource_type), resource_name=name, configs=tuple(configs)
    )
    response = client.request(
        _INCREMENTAL_ALTER_CONFIGS, 1, resources=(resource,), validate_only=False
    )
    (result,) = response.responses
    if result.error_code != 0:
        raise CliError(f"{result.error_code.name.upper()}: {result.error_message}", hint)


def _source_name(code: int) -> str:
    from artesian.config.definitions import ConfigSource

    try:
        return ConfigSource(code).name
    except ValueError:
        return "UNKNOWN"  # a source newer than this client


def describe_configs(client: WireClient, resource_type: int, name: str) -> list[dict[str, Any]]:
    """Every config of one resource: name, value, source and whether it is read-only."""
    from kio.schema.describe_configs.v4 import request as dc
    from kio.static.primitive import i8

    resource = dc.DescribeConfigsResource(
        resource_type=i8(resource_type), resource_name=name, configuration_keys=None
    )
    response = client.request(
        _DESCRIBE_CONFIGS,
        4,
        resources=(resource,),
        include_synonyms=False,
        include_documentation=False,
    )
    (result,) = response.results
    if result.error_code != 0:
        raise CliError(f"{result.error_code.name.upper()}: {result.error_message}")
    return [
        {
            "name": c.name,
            "value": c.value,
            "source": _source_name(int(c.config_source)),
            "read_only": c.read_only,
        }
        for c in sorted(result.configs, key=lambda c: c.name)
    ]


def broker_addresses(opts: ClientOptions, metadata: Any = None) -> dict[int, str]:
    """host:port of each live broker, by id, from ``metadata`` (librdkafka's) or asked."""
    md = metadata or opts.admin().list_topics(timeout=opts.timeout)
    return {b.id: f"{b.host}:{b.port}" for b in md.brokers.values()}


def coordinator_of(opts: ClientOptions, key_type: int, key: str) -> str:
    """host:port of the coordinator of a group (key type 0) or transactional id (1)."""
    from kio.schema.errors import ErrorCode  # here: the schemas are slow to import

    with WireClient.for_options(opts) as client:
        resp = client.request(10, 4, key_type=key_type, coordinator_keys=(key,))
    (c,) = resp.coordinators
    if c.error_code != ErrorCode.none:
        kind = "group" if key_type == 0 else "transaction"
        fail(f"no {kind} coordinator for {key!r}: {c.error_code.name}")
    return f"{c.host}:{c.port}"


def api_versions(client: WireClient, software: str) -> Any:
    """ApiVersions v3: the broker's APIs, its supported features and the cluster's
    finalized ones (KIP-584)."""
    response = client.request(
        18, 3, client_software_name=software, client_software_version=_artesian_version()
    )
    if response.error_code != 0:
        raise CliError(f"ApiVersions failed: {response.error_code.name.upper()}")
    return response


def update_features(
    client: WireClient, levels: dict[str, int], validate_only: bool = False
) -> None:
    """UpdateFeatures v1 (an upgrade of each feature to its level); a refusal is a CliError."""
    from kio.schema.update_features.v1 import request as uf
    from kio.static.primitive import i16

    response = client.request(
        57,
        1,
        feature_updates=tuple(
            uf.FeatureUpdateKey(feature=name, max_version_level=i16(level))
            for name, level in levels.items()
        ),
        validate_only=validate_only,
    )
    if response.error_code != 0:
        raise CliError(f"{response.error_code.name.upper()}: {response.error_message}")


@functools.cache
def _artesian_version() -> str:
    """This install's version (read once: the operator asks on every pass)."""
    from importlib.metadata import version

    return version("artesian")
