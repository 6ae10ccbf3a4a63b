"""SASL on a Kafka connection: the state machine, PLAIN and SCRAM, and what a failure costs.

A connection on a SASL listener may send ApiVersions and SaslHandshake, then
(handshake v1) SaslAuthenticate requests until the mechanism completes, or
(handshake v0) raw size-prefixed SASL tokens without Kafka headers. Anything
else before authentication completes is ILLEGAL_SASL_STATE and closes the
connection; a failed authentication is answered SASL_AUTHENTICATION_FAILED and
closes it too.

A failure is logged once (user name and peer, never what was sent as the
password), counted, and answered only after `connection_failed_authentication_delay_ms`,
as Kafka does: the failing connection pays, nobody else. Nothing is remembered
per user or per host, so a stranger's wrong passwords never slow a correct login.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets

from prometheus_client import Counter

from flexlog.core.config import SecurityConfig
from flexlog.gateway import scram
from flexlog.gateway.users import UserStore

log = logging.getLogger("flexlog.gateway.sasl")

AUTHENTICATIONS = Counter("flexlog_gateway_sasl_authentications",
                          "Successful SASL authentications, by mechanism", ["mechanism"])
AUTH_FAILURES = Counter("flexlog_gateway_sasl_authentication_failures",
                        "Failed SASL authentications, by mechanism", ["mechanism"])
# Every mechanism's series exists from the start at 0, so rates and alerts have data
# before the first login (and on a gateway with no SASL listener).
for _mechanism in ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"):
    AUTHENTICATIONS.labels(_mechanism)
    AUTH_FAILURES.labels(_mechanism)


class AuthFailed(Exception):
    """Authentication failed; the message is what the client is told."""


class Rejected(Exception):
    """Why a login failed, for the log (the client is told only that it failed)."""


class SaslServer:
    """Everything one gateway shares between its SASL connections."""

    def __init__(self, users: UserStore, security: SecurityConfig) -> None:
        self.users = users
        self.security = security
        self.failure_delay_s = security.connection_failed_authentication_delay_ms / 1000

    def credential(self, mechanism: str, user: str) -> tuple[scram.Credential, bool]:
        """The user's credential, or a decoy if there is no such user; and whether there is."""
        # The decoy is made for real users too, so both answers take the same work.
        decoy = self.decoy(mechanism, user)
        found = self.users.credential(user, mechanism)
        return (decoy, False) if found is None else (found, True)

    def decoy(self, mechanism: str, user: str) -> scram.Credential:
        """A credential no password matches, for a user that does not exist.

        Its salt comes from the cluster's decoy secret (in `__users`, the same on every gateway and
        across restarts) and its iteration count is the one `flexlog users add` uses, so SCRAM's
        first answer is what a real user's would look like, wherever and whenever it is asked.
        """
        secret = self.users.decoy_secret
        assert secret is not None, "Broker.open loads the decoy secret before logins are served"
        salt = hmac.new(secret, f"{mechanism}\0{user}".encode(), hashlib.sha256).digest()
        return scram.Credential(salt[:scram.SALT_BYTES], self.security.scram_iterations,
                                secrets.token_bytes(32), secrets.token_bytes(32))


def _shown(user: str) -> str:
    return repr(user[:64])


class Authenticator:
    """One connection's SASL state: handshake, then authenticate (or raw tokens), then done."""

    HANDSHAKE, AUTHENTICATE, RAW, DONE = "handshake", "authenticate", "raw", "done"

    def __init__(self, server: SaslServer, peer_host: str) -> None:
        self.server = server
        self.peer_host = peer_host
        self.state = self.HANDSHAKE
        self.mechanism = ""
        self.user: str | None = None
        self._scram: scram.ScramServer | None = None
        self._known = False

    @property
    def mechanisms(self) -> list[str]:
        return list(self.server.security.sasl_mechanisms)

    def handshake(self, mechanism: str, version: int) -> bool:
        """Pick the mechanism; False if it is not enabled."""
        if mechanism not in self.server.security.sasl_mechanisms:
            return False
        self.mechanism = mechanism
        self.state = self.RAW if version == 0 else self.AUTHENTICATE
        return True

    async def step(self, token: bytes) -> bytes:
        """The server's answer to one client token; raises AuthFailed (the connection must close)."""
        try:
            if self.mechanism == "PLAIN":
                return await self._plain(token)
            return await self._scram_step(token)
        except (Rejected, scram.ScramError) as exc:
            reason = str(exc)
        except (UnicodeDecodeError, ValueError):
            reason = "malformed SASL message"
        AUTH_FAILURES.labels(self.mechanism).inc()
        log.warning("SASL %s authentication failed for user %s from %s: %s", self.mechanism,
                    _shown(self.user) if self.user is not None else "(none)", self.peer_host, reason)
        # Kafka's connection.failed.authentication.delay.ms: the answer (and the close after it) waits,
        # so a client retrying in a loop is slowed; requests are answered in order per connection,
        # so this holds up this connection only.
        await asyncio.sleep(self.server.failure_delay_s)
        raise AuthFailed(f"Authentication failed during authentication due to invalid credentials "
                         f"with SASL mechanism {self.mechanism}")

    def _succeed(self) -> None:
        assert self.user is not None
        self.state = self.DONE
        AUTHENTICATIONS.labels(self.mechanism).inc()
        log.info("authenticated user %s with SASL %s from %s", _shown(self.user), self.mechanism,
                 self.peer_host)

    async def _plain(self, token: bytes) -> bytes:
        parts = token.split(b"\0")
        if len(parts) != 3:
            raise ValueError("PLAIN token needs authzid, user and password")
        authzid, user, password = (p.decode("utf-8") for p in parts)
        self.user = user
        if not user or (authzid and authzid != user):
            raise Rejected("authorization id differs from the user name" if user else "empty user name")
        # PLAIN is checked against the SCRAM-SHA-256 credential: no password is stored for it.
        mechanism = "SCRAM-SHA-256"
        credential, known = self.server.credential(mechanism, user)
        ok = await asyncio.to_thread(scram.check_password, mechanism, credential, password)
        if not (ok and known):
            raise Rejected("invalid credentials" if known else "unknown user or invalid credentials")
        self._succeed()
        return b""

    async def _scram_step(self, token: bytes) -> bytes:
        if self._scram is None:
            self._scram = scram.ScramServer(self.mechanism)
            self.user = self._scram.parse_first(token)
            credential, self._known = self.server.credential(self.mechanism, self.user)
            return self._scram.server_first(credential)
        final = self._scram.final(token, self._known)
        self._succeed()
        return final
