"""SCRAM-SHA-256/512 (RFC 5802, RFC 7677): stored credentials and the server side of one exchange.

Only what RFC 5802 calls StoredKey and ServerKey (with salt and iteration count)
is ever stored; the password itself never leaves `derive`. PLAIN logins are
checked against the same credentials by deriving them again from the password
given. Sans-IO: the SASL layer feeds client messages in and sends what comes out.
The client side (`ScramClient`) is what the CLI logs in to a gateway with.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any

from flexlog.core.config import MIN_SCRAM_ITERATIONS

HASHES = {"SCRAM-SHA-256": "sha256", "SCRAM-SHA-512": "sha512"}
SALT_BYTES = 16
NONCE_BYTES = 24


class ScramError(Exception):
    """The exchange failed; the message says why without revealing anything secret."""


@dataclass(frozen=True)
class Credential:
    salt: bytes
    iterations: int
    stored_key: bytes
    server_key: bytes

    def to_json(self) -> dict[str, Any]:
        return {"salt": _b64(self.salt), "iterations": self.iterations,
                "stored_key": _b64(self.stored_key), "server_key": _b64(self.server_key)}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Credential:
        return cls(_unb64(raw["salt"]), int(raw["iterations"]), _unb64(raw["stored_key"]),
                   _unb64(raw["server_key"]))


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode(), validate=True)


def _hmac(hash_name: str, key: bytes, msg: bytes) -> bytes:
    return hmac.new(key, msg, hash_name).digest()


def derive(mechanism: str, password: str, iterations: int, salt: bytes | None = None) -> Credential:
    hash_name = HASHES[mechanism]
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    salted = hashlib.pbkdf2_hmac(hash_name, password.encode(), salt, iterations)
    client_key = _hmac(hash_name, salted, b"Client Key")
    return Credential(salt, iterations, hashlib.new(hash_name, client_key).digest(),
                      _hmac(hash_name, salted, b"Server Key"))


def check_password(mechanism: str, credential: Credential, password: str) -> bool:
    again = derive(mechanism, password, credential.iterations, credential.salt)
    return hmac.compare_digest(again.stored_key, credential.stored_key)


def _attributes(message: str) -> dict[str, str]:
    out = {}
    for part in message.split(","):
        key, sep, value = part.partition("=")
        if not sep or len(key) != 1:
            raise ScramError("malformed SCRAM message")
        out[key] = value
    return out


def _unescape_name(name: str) -> str:
    if "=" in name.replace("=2C", "").replace("=3D", ""):
        raise ScramError("malformed user name")
    return name.replace("=2C", ",").replace("=3D", "=")


class ScramServer:
    """One SCRAM exchange: first() takes client-first, final() client-final."""

    def __init__(self, mechanism: str) -> None:
        self.mechanism = mechanism
        self.hash_name = HASHES[mechanism]
        self.user = ""
        self._gs2_header = ""
        self._client_first_bare = ""
        self._server_first = ""
        self._nonce = ""
        self._credential: Credential | None = None

    def parse_first(self, message: bytes) -> str:
        """The user name the client-first message asks for."""
        text = message.decode("utf-8", errors="strict") if message else ""
        cbind, _, rest = text.partition(",")
        authzid, _, bare = rest.partition(",")
        if cbind not in ("n", "y"):
            raise ScramError("channel binding is not supported")
        attrs = _attributes(bare)
        if "n" not in attrs or "r" not in attrs or not attrs["r"]:
            raise ScramError("client-first message lacks n= or r=")
        if attrs.get("tokenauth") == "true":
            raise ScramError("delegation tokens are not supported")
        self.user = _unescape_name(attrs["n"])
        if authzid and _unescape_name(authzid.removeprefix("a=")) != self.user:
            raise ScramError("authorization id differs from the user name")
        self._gs2_header = f"{cbind},{authzid},"
        self._client_first_bare = bare
        # Letters and digits only: some clients mis-parse nonces holding "+", "/" or "=".
        self._nonce = attrs["r"] + secrets.token_hex(NONCE_BYTES)
        return self.user

    def server_first(self, credential: Credential) -> bytes:
        """Answer to client-first; for an unknown user pass a decoy so the reply does not tell."""
        self._credential = credential
        self._server_first = f"r={self._nonce},s={_b64(credential.salt)},i={credential.iterations}"
        return self._server_first.encode()

    def final(self, message: bytes, known_user: bool) -> bytes:
        """server-final for a correct client proof; ScramError otherwise."""
        assert self._credential is not None, "server_first() first"
        text = message.decode("utf-8", errors="strict")
        without_proof, sep, proof_part = text.rpartition(",p=")
        if not sep:
            raise ScramError("client-final message lacks a proof")
        attrs = _attributes(without_proof)
        if attrs.get("c") != _b64(self._gs2_header.encode()):
            raise ScramError("channel binding differs from the client-first message")
        # endswith, as Kafka checks: librdkafka before 2.1 sends its own nonce before the combined one.
        if not attrs.get("r", "").endswith(self._nonce):
            raise ScramError("nonce mismatch")
        try:
            proof = _unb64(proof_part)
        except ValueError:
            raise ScramError("malformed proof") from None
        auth_message = f"{self._client_first_bare},{self._server_first},{without_proof}".encode()
        signature = _hmac(self.hash_name, self._credential.stored_key, auth_message)
        if len(proof) != len(signature):
            raise ScramError("malformed proof")
        client_key = bytes(a ^ b for a, b in zip(proof, signature, strict=True))
        valid = hmac.compare_digest(hashlib.new(self.hash_name, client_key).digest(),
                                    self._credential.stored_key)
        if not (valid and known_user):
            raise ScramError("invalid credentials")
        verifier = _hmac(self.hash_name, self._credential.server_key, auth_message)
        return f"v={_b64(verifier)}".encode()


def _escape_name(name: str) -> str:
    return name.replace("=", "=3D").replace(",", "=2C")


class ScramClient:
    """The client side of one exchange, for the CLI logging in to a gateway: first(), final(the
    server's first message), then verify(the server's final message)."""

    def __init__(self, mechanism: str, user: str, password: str) -> None:
        self.hash_name = HASHES[mechanism]
        self._password = password
        self._nonce = secrets.token_hex(NONCE_BYTES)
        self._client_first_bare = f"n={_escape_name(user)},r={self._nonce}"
        self._server_signature = b""

    def first(self) -> bytes:
        return f"n,,{self._client_first_bare}".encode()

    def final(self, server_first: bytes) -> bytes:
        text = server_first.decode("utf-8", errors="strict")
        attrs = _attributes(text)
        if not attrs.get("r", "").startswith(self._nonce) or "s" not in attrs or "i" not in attrs:
            raise ScramError("malformed server-first message")
        iterations = int(attrs["i"])
        # A server (or someone in between) asking for fewer rounds would make the proof cheap to crack.
        if iterations < MIN_SCRAM_ITERATIONS:
            raise ScramError(f"the server asks for {iterations} iterations, "
                             f"fewer than {MIN_SCRAM_ITERATIONS}")
        salted = hashlib.pbkdf2_hmac(self.hash_name, self._password.encode(), _unb64(attrs["s"]),
                                     iterations)
        client_key = _hmac(self.hash_name, salted, b"Client Key")
        without_proof = f"c={_b64(b'n,,')},r={attrs['r']}"
        auth_message = f"{self._client_first_bare},{text},{without_proof}".encode()
        signature = _hmac(self.hash_name, hashlib.new(self.hash_name, client_key).digest(), auth_message)
        proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
        self._server_signature = _hmac(self.hash_name, _hmac(self.hash_name, salted, b"Server Key"),
                                       auth_message)
        return f"{without_proof},p={_b64(proof)}".encode()

    def verify(self, server_final: bytes) -> None:
        """ScramError unless the server proved it holds the credential too."""
        attrs = _attributes(server_final.decode("utf-8", errors="strict"))
        if not hmac.compare_digest(_unb64(attrs.get("v", "")), self._server_signature):
            raise ScramError("the server's signature is wrong")
