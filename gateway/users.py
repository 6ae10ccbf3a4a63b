"""SASL users: SCRAM credentials (never passwords) as events in the ``__users`` color.

`flexlog users add|remove|list` appends events; every gateway follows the color,
so a user added anywhere can log in everywhere. The color also holds the cluster's
decoy secret, from which every gateway derives the same SCRAM salt for an unknown user.
"""

from __future__ import annotations

import base64
import secrets
from typing import Any

from flexlog.core.client import FlexLogClient
from flexlog.core.config import ClusterConfig
from flexlog.core.event_log import EventLog, JsonEvents, json_record
from flexlog.gateway import scram

USERS_COLOR = "__users"


class UserStore:
    def __init__(self, client: FlexLogClient, config: ClusterConfig) -> None:
        self.config = config
        self.users: dict[str, dict[str, scram.Credential]] = {}  # name -> mechanism -> credential
        # The first secret appended wins, so gateways that appended one each at once still agree.
        self.decoy_secret: bytes | None = None
        self.log = EventLog(client, JsonEvents(self._apply, USERS_COLOR), USERS_COLOR)

    def _apply(self, event: dict[str, Any]) -> None:
        if event["op"] == "decoy_secret":
            if self.decoy_secret is None:
                self.decoy_secret = base64.b64decode(event["secret"], validate=True)
            return
        name = str(event["name"])
        if event["op"] == "set":
            self.users[name] = {str(m): scram.Credential.from_json(c)
                                for m, c in event["credentials"].items() if m in scram.HASHES}
        elif event["op"] == "remove":
            self.users.pop(name, None)

    async def open(self) -> None:
        await self.log.open()

    async def ensure_decoy_secret(self) -> None:
        """Load the cluster's decoy secret, appending one if the color holds none yet (first start)."""
        await self.log.sync()
        if self.decoy_secret is None:
            secret = base64.b64encode(secrets.token_bytes(32)).decode()
            await self.log.append(json_record({"op": "decoy_secret", "secret": secret}))
        assert self.decoy_secret is not None  # append waited until the color was applied up to it

    def credential(self, name: str, mechanism: str) -> scram.Credential | None:
        """The user's credential as the gateway's watch of the color has it (a long poll, so a user
        added elsewhere is here within milliseconds). Deliberately no re-read on a miss: it made an
        unknown name answer measurably later than a known one, telling which names exist."""
        return self.users.get(name, {}).get(mechanism)

    async def set(self, name: str, password: str, iterations: int | None = None) -> None:
        iterations = iterations or self.config.security.scram_iterations
        credentials = {m: scram.derive(m, password, iterations).to_json() for m in scram.HASHES}
        await self.log.append(json_record({"op": "set", "name": name, "credentials": credentials}))

    async def remove(self, name: str) -> bool:
        await self.log.sync()
        if name not in self.users:
            return False
        await self.log.append(json_record({"op": "remove", "name": name}))
        return True

    async def names(self) -> list[str]:
        await self.log.sync()
        return sorted(self.users)
