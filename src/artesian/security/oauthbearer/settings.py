"""Which OAUTHBEARER validator and login a listener uses, from Kafka's config names, each
read as ``listener.name.<listener>.oauthbearer.<name>`` first, then ``<name>``:

- ``sasl.server.callback.handler.class``: unset, or Kafka's unsecured validator class, for
  unsigned tokens (Kafka's default); Kafka's OAuthBearerValidatorCallbackHandler for signed
  ones, with ``sasl.oauthbearer.jwks.endpoint.url`` and the ``sasl.oauthbearer.*`` checks.
- ``sasl.login.callback.handler.class`` (the broker's own connections to other brokers):
  unset, or the unsecured login class, for an unsigned token from the JAAS options; Kafka's
  OAuthBearerLoginCallbackHandler for the client credentials grant against
  ``sasl.oauthbearer.token.endpoint.url`` with the JAAS clientId, clientSecret and scope.

Classes are named, not loaded: Artesian knows these and refuses others at start-up.
"""

from __future__ import annotations

import logging
import urllib.parse
from typing import TYPE_CHECKING

from artesian.config.broker import BrokerConfig
from artesian.security.jaas import parse_jaas_config
from artesian.security.oauthbearer.login import ClientCredentialsLogin, RefreshingToken
from artesian.security.oauthbearer.sasl_server import MECHANISM, TokenValidator
from artesian.security.oauthbearer.unsecured import UnsecuredLogin, UnsecuredValidator

if TYPE_CHECKING:  # PyJWT and cryptography load only for a listener that checks signatures
    from artesian.security.oauthbearer.jwks import JwksCache

__all__ = ["listener_login", "listener_validator"]

log = logging.getLogger("artesian.oauthbearer")

_PACKAGE = "org.apache.kafka.common.security.oauthbearer"
SECURED_VALIDATOR = f"{_PACKAGE}.OAuthBearerValidatorCallbackHandler"
UNSECURED_VALIDATOR = f"{_PACKAGE}.internals.unsecured.OAuthBearerUnsecuredValidatorCallbackHandler"
SECURED_LOGIN = f"{_PACKAGE}.OAuthBearerLoginCallbackHandler"
UNSECURED_LOGIN = f"{_PACKAGE}.internals.unsecured.OAuthBearerUnsecuredLoginCallbackHandler"
# Kafka 3.1-3.3 kept the secured handlers in a ``secured`` subpackage; both names work.
_SECURED_VALIDATORS = (SECURED_VALIDATOR, f"{_PACKAGE}.secured.OAuthBearerValidatorCallbackHandler")
_SECURED_LOGINS = (SECURED_LOGIN, f"{_PACKAGE}.secured.OAuthBearerLoginCallbackHandler")


def _get(config: BrokerConfig, listener: str, name: str) -> object:
    return config.for_listener(listener, name, MECHANISM)


def _jaas_options(config: BrokerConfig, listener: str) -> dict[str, str]:
    jaas = _get(config, listener, "sasl.jaas.config")
    if not jaas:
        return {}
    try:
        return dict(parse_jaas_config(str(jaas)).options)
    except ValueError as e:
        setting = f"listener.name.{listener.lower()}.oauthbearer.sasl.jaas.config"
        raise ValueError(f"{setting}: {e}") from e


def _url(config: BrokerConfig, listener: str, name: str) -> str | None:
    value = _get(config, listener, name)
    if not value:
        return None
    url = str(value)
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme not in ("http", "https", "file"):
        raise ValueError(
            f"The OAuth configuration option {name} contains a URL ({url}) that contains an "
            f'invalid protocol ({scheme}); only "http", "https", and "file" protocol are supported'
        )
    return url


def listener_validator(
    config: BrokerConfig, listener: str
) -> tuple[TokenValidator, JwksCache | None]:
    """The validator of the listener's OAUTHBEARER logins, and the key cache the broker must
    keep refreshed (None for unsigned tokens). Raises ValueError on a config that cannot work."""
    handler = _get(config, listener, "sasl.server.callback.handler.class")
    prefix = f"listener.name.{listener.lower()}.oauthbearer."
    if handler in _SECURED_VALIDATORS:
        from artesian.security.oauthbearer.jwks import JwksCache
        from artesian.security.oauthbearer.jwt_validator import JwtValidator

        url = _url(config, listener, "sasl.oauthbearer.jwks.endpoint.url")
        if url is None:
            raise ValueError(
                f"listener {listener} validates OAUTHBEARER tokens with {handler}, which "
                f"needs the provider's keys: set {prefix}sasl.oauthbearer.jwks.endpoint.url "
                "(e.g. https://idp.example.com/.well-known/jwks.json)"
            )
        refresh = int(str(_get(config, listener, "sasl.oauthbearer.jwks.endpoint.refresh.ms")))
        backoff = int(
            str(_get(config, listener, "sasl.oauthbearer.jwks.endpoint.retry.backoff.ms"))
        )
        backoff_max = int(
            str(_get(config, listener, "sasl.oauthbearer.jwks.endpoint.retry.backoff.max.ms"))
        )
        keys = JwksCache(url, refresh, backoff, backoff_max)
        audience = _get(config, listener, "sasl.oauthbearer.expected.audience")
        issuer = _get(config, listener, "sasl.oauthbearer.expected.issuer")
        validator = JwtValidator(
            keys,
            tuple(str(a) for a in audience) if isinstance(audience, list) and audience else None,
            str(issuer) if issuer else None,
            str(_get(config, listener, "sasl.oauthbearer.scope.claim.name")),
            str(_get(config, listener, "sasl.oauthbearer.sub.claim.name")),
            int(str(_get(config, listener, "sasl.oauthbearer.clock.skew.seconds"))),
        )
        return validator, keys
    if handler not in (None, "", UNSECURED_VALIDATOR):
        raise ValueError(
            f"{prefix}sasl.server.callback.handler.class={handler} is not a handler Artesian "
            f"has: use {SECURED_VALIDATOR} (signed tokens, with "
            f"sasl.oauthbearer.jwks.endpoint.url), or leave it unset for unsecured tokens"
        )
    own_keys = f"{prefix}sasl.oauthbearer.jwks.endpoint.url"
    if config.is_set(own_keys):
        # Kafka would quietly take unsigned tokens here; a listener given its own keys
        # surely meant to check them.
        raise ValueError(
            f"{own_keys} is set, but {prefix}sasl.server.callback.handler.class is not "
            f"{SECURED_VALIDATOR}, so the listener would accept unsigned tokens: set the "
            "handler class, or remove the URL"
        )
    try:
        validator_u = UnsecuredValidator.from_jaas(_jaas_options(config, listener))
    except ValueError as e:
        raise ValueError(f"{prefix}sasl.jaas.config: {e}") from e
    log.warning(
        'listener %s accepts unsecured OAUTHBEARER tokens (unsigned, "alg":"none"): anyone '
        "can log in as anyone. For production set %ssasl.server.callback.handler.class=%s and "
        "sasl.oauthbearer.jwks.endpoint.url to the identity provider's keys",
        listener,
        prefix,
        SECURED_VALIDATOR,
    )
    return validator_u, None


def listener_login(config: BrokerConfig, listener: str) -> RefreshingToken:
    """This broker's own OAUTHBEARER login to the others' ``listener``."""
    handler = _get(config, listener, "sasl.login.callback.handler.class")
    options = _jaas_options(config, listener)
    prefix = f"listener.name.{listener.lower()}.oauthbearer."
    if handler in _SECURED_LOGINS:
        url = _url(config, listener, "sasl.oauthbearer.token.endpoint.url")
        if url is None or not options.get("clientId") or not options.get("clientSecret"):
            raise ValueError(
                f"the inter-broker OAUTHBEARER login with {handler} needs "
                f"{prefix}sasl.oauthbearer.token.endpoint.url and, in {prefix}sasl.jaas.config, "
                'clientId="..." clientSecret="..." (and optionally scope="...")'
            )
        return RefreshingToken(
            ClientCredentialsLogin(
                url, options["clientId"], options["clientSecret"], options.get("scope")
            )
        )
    if handler not in (None, "", UNSECURED_LOGIN):
        raise ValueError(
            f"{prefix}sasl.login.callback.handler.class={handler} is not a handler Artesian "
            f"has: use {SECURED_LOGIN}, or leave it unset for an unsecured login"
        )
    try:
        return RefreshingToken(UnsecuredLogin.from_jaas(options))
    except ValueError as e:
        raise ValueError(f"{prefix}sasl.jaas.config: {e}") from e
