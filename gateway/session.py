"""Who is on the other end of a Kafka connection, for the code that serves its requests.

The connection sets `current` in its worker task, so a handler (and the tasks it
starts) sees its own connection's principal and listener without the handler
signature carrying them.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING

from flexlog.core.config import ListenerConfig

if TYPE_CHECKING:
    from flexlog.gateway.sasl import Authenticator

ANONYMOUS = "User:ANONYMOUS"
PLAINTEXT = ListenerConfig("PLAINTEXT", "PLAINTEXT", "", "")


@dataclass
class Session:
    listener: ListenerConfig
    peer_host: str
    # The client cert's subject on SSL listeners that asked for one.
    tls_principal: str = ANONYMOUS
    # On SASL listeners: its user is the principal once authentication completes.
    sasl: Authenticator | None = None
    # Set when the connection must close once the response being built is sent.
    close_reason: str | None = None
    # time.monotonic() until which a quota mutes the connection (KIP-219): no request is read.
    muted_until: float = 0.0

    @property
    def quota_user(self) -> str:
        """The user name quotas know this principal by (Kafka's: ANONYMOUS when unauthenticated)."""
        return self.principal.partition(":")[2]

    @property
    def principal(self) -> str:
        if self.sasl is None:
            return self.tls_principal
        return f"User:{self.sasl.user}" if self.sasl.state == self.sasl.DONE else ANONYMOUS

    @property
    def authenticating(self) -> bool:
        return self.sasl is not None and self.sasl.state != self.sasl.DONE


current: ContextVar[Session | None] = ContextVar("flexlog_session", default=None)


def get() -> Session:
    """This connection's session; outside one (tests driving handlers) an anonymous plaintext one."""
    return current.get() or Session(PLAINTEXT, "")
