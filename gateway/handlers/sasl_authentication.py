"""SaslHandshake (17) and SaslAuthenticate (36); the state machine is gateway/sasl.py.

On a listener without SASL, or out of turn, both answer ILLEGAL_SASL_STATE and
close the connection, as Kafka does.
"""

from __future__ import annotations

from flexlog.gateway import session
from flexlog.gateway.broker import Broker
from flexlog.gateway.handlers.registry import Body, serves
from flexlog.gateway.protocol import ApiKey, ErrorCode, Request
from flexlog.gateway.sasl import Authenticator, AuthFailed


def _expecting(state: str, what: str) -> Authenticator | None:
    """The connection's SASL state machine if `what` is its turn now; else None, and the
    connection closes once the refusal is sent."""
    s = session.get()
    if s.sasl is None or s.sasl.state != state:
        s.close_reason = f"{what} out of turn"
        return None
    return s.sasl


@serves(ApiKey.SASL_HANDSHAKE, 0, 1)
async def handle_sasl_handshake(broker: Broker, request: Request) -> Body:
    auth = _expecting(Authenticator.HANDSHAKE, "SaslHandshake")
    if auth is None:
        sasl = session.get().sasl
        return {"error_code": ErrorCode.ILLEGAL_SASL_STATE,
                "mechanisms": sasl.mechanisms if sasl else []}
    if not auth.handshake(request.body["mechanism"], request.api_version):
        session.get().close_reason = "unsupported SASL mechanism"
        return {"error_code": ErrorCode.UNSUPPORTED_SASL_MECHANISM, "mechanisms": auth.mechanisms}
    return {"error_code": ErrorCode.NONE, "mechanisms": auth.mechanisms}


@serves(ApiKey.SASL_AUTHENTICATE, 0, 2)
async def handle_sasl_authenticate(broker: Broker, request: Request) -> Body:
    auth = _expecting(Authenticator.AUTHENTICATE, "SaslAuthenticate")
    if auth is None:
        return {"error_code": ErrorCode.ILLEGAL_SASL_STATE,
                "error_message": "SaslAuthenticate before SaslHandshake v1 or after authentication",
                "auth_bytes": b"", "session_lifetime_ms": 0}
    try:
        reply = await auth.step(request.body["auth_bytes"])
    except AuthFailed as exc:
        session.get().close_reason = "SASL authentication failed"
        return {"error_code": ErrorCode.SASL_AUTHENTICATION_FAILED, "error_message": str(exc),
                "auth_bytes": b"", "session_lifetime_ms": 0}
    # Lifetime 0: the session never expires, so clients do not re-authenticate (KIP-368).
    return {"error_code": ErrorCode.NONE, "error_message": None, "auth_bytes": reply,
            "session_lifetime_ms": 0}
