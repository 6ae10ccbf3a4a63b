"""Cluster configuration: one TOML file describes the whole cluster.

Every process reads the same file and picks its own part by name, so the
tree, the shards and every address are stated once.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """The config is invalid; the message names the offending key."""


@dataclass(frozen=True)
class NodeConfig:
    id: int
    parent: int | None
    process: str


@dataclass(frozen=True)
class SequencerConfig:
    name: str
    address: str
    metrics_port: int
    nodes: tuple[int, ...]


@dataclass(frozen=True)
class ReplicaConfig:
    name: str
    shard: int
    index: int
    address: str
    metrics_port: int


@dataclass(frozen=True)
class ShardConfig:
    id: int
    leaf: int
    replicas: tuple[ReplicaConfig, ...]


LISTENER_PROTOCOLS = ("PLAINTEXT", "SASL_PLAINTEXT", "SSL", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
CLIENT_AUTH = ("none", "requested", "required")
MIN_SCRAM_ITERATIONS = 4096  # RFC 7677's floor


@dataclass(frozen=True)
class ListenerConfig:
    """One Kafka listener of a gateway; clients are told the addresses of the listener they came in by."""

    name: str
    protocol: str
    address: str
    advertised: str

    @property
    def sasl(self) -> bool:
        return self.protocol.startswith("SASL_")

    @property
    def tls(self) -> bool:
        return self.protocol.endswith("SSL")


@dataclass(frozen=True)
class GatewayConfig:
    name: str
    node_id: int
    address: str
    advertised: str
    metrics_port: int
    # Listeners besides the one at `address` (which status checks and the launcher use).
    extra_listeners: tuple[ListenerConfig, ...] = ()
    # The protocol of the listener at `address`, also its name: a cluster with SASL_SSL here and
    # no PLAINTEXT listener among the others has no plaintext Kafka port at all.
    protocol: str = "PLAINTEXT"

    @property
    def listeners(self) -> tuple[ListenerConfig, ...]:
        """The listener at `address` first, then the others."""
        main = ListenerConfig(self.protocol, self.protocol, self.address, self.advertised)
        return (main, *self.extra_listeners)


@dataclass(frozen=True)
class TlsConfig:
    """Certificates for the Kafka SSL listeners and, with grpc, for every gRPC channel and server."""

    ca_file: Path
    cert_file: Path
    key_file: Path
    client_auth: str
    grpc: bool


@dataclass(frozen=True)
class SecurityConfig:
    sasl_mechanisms: tuple[str, ...] = SASL_MECHANISMS
    scram_iterations: int = MIN_SCRAM_ITERATIONS
    # Off: every principal may do everything (the plaintext default), as Kafka without an authorizer.
    authorizer: bool = False
    super_users: tuple[str, ...] = ()
    # Kafka's connection.failed.authentication.delay.ms, with its default.
    connection_failed_authentication_delay_ms: int = 100
    # Whom the CLI and `flexlog up` log in as on a SASL listener at a gateway's `address`; `flexlog up`
    # creates the user on first start, since without it nothing could log in to create it.
    admin_user: str | None = None
    admin_password_file: Path | None = None
    admin_sasl_mechanism: str = "SCRAM-SHA-512"

    def admin_password(self) -> str:
        assert self.admin_password_file is not None, "the parser requires it with admin_user"
        return self.admin_password_file.read_text().rstrip("\n")


@dataclass(frozen=True)
class ClusterConfig:
    path: Path | None
    data_dir: Path
    pm_dir: Path | None  # where PM pools live if not under data_dir (e.g. /dev/shm for emulation)
    storage: str
    pool_size_bytes: int
    cache_bytes: int
    max_entry_bytes: int
    request_timeout_ms: int
    batch_interval_us: int
    auto_create_topics: bool
    default_partitions: int
    launcher_metrics_port: int
    group_initial_rebalance_delay_ms: int
    group_min_session_timeout_ms: int
    group_max_session_timeout_ms: int
    group_consumer_session_timeout_ms: int
    group_consumer_heartbeat_interval_ms: int
    offsets_retention_minutes: int
    log_retention_check_interval_ms: int
    view_store: str
    zookeeper_hosts: str
    zookeeper_path: str
    failure_timeout_ms: int
    nodes: dict[int, NodeConfig]
    sequencers: tuple[SequencerConfig, ...]
    shards: tuple[ShardConfig, ...]
    gateways: tuple[GatewayConfig, ...] = field(default=())
    tls: TlsConfig | None = None
    security: SecurityConfig = field(default_factory=SecurityConfig)

    @property
    def root(self) -> int:
        return next(n.id for n in self.nodes.values() if n.parent is None)

    def sequencer(self, name: str) -> SequencerConfig:
        for seq in self.sequencers:
            if seq.name == name:
                return seq
        raise ConfigError(f"no [[sequencer]] named {name!r}")

    def replica(self, name: str) -> ReplicaConfig:
        for shard in self.shards:
            for rep in shard.replicas:
                if rep.name == name:
                    return rep
        raise ConfigError(f"no replica named {name!r}")

    def gateway(self, name: str) -> GatewayConfig:
        for gw in self.gateways:
            if gw.name == name:
                return gw
        raise ConfigError(f"no [[gateway]] named {name!r}")

    def node_address(self, node_id: int) -> str:
        return self.sequencer(self.nodes[node_id].process).address

    def shard(self, shard_id: int) -> ShardConfig:
        for shard in self.shards:
            if shard.id == shard_id:
                return shard
        raise ConfigError(f"no [[shard]] with id {shard_id}")

    def region(self, node_id: int) -> tuple[int, ...]:
        """The shards whose leaf lies under node_id (node_id included)."""
        return tuple(s.id for s in self.shards if node_id in self.ancestors(s.leaf))

    def ancestors(self, node_id: int) -> list[int]:
        """node_id and every node above it, leaf first."""
        chain = []
        current: int | None = node_id
        while current is not None:
            chain.append(current)
            current = self.nodes[current].parent
        return chain

    def replica_dir(self, name: str) -> Path:
        return self.data_dir / "replicas" / name

    def pool_dir(self, name: str) -> Path:
        return (self.pm_dir / name) if self.pm_dir else self.replica_dir(name)


_TOP_KEYS = {
    "data_dir", "storage", "pool_size_bytes", "cache_bytes", "max_entry_bytes",
    "request_timeout_ms", "batch_interval_us", "auto_create_topics", "default_partitions",
    "launcher_metrics_port", "pm_dir", "group_initial_rebalance_delay_ms", "group_min_session_timeout_ms",
    "group_max_session_timeout_ms", "group_consumer_session_timeout_ms",
    "group_consumer_heartbeat_interval_ms", "offsets_retention_minutes", "log_retention_check_interval_ms",
    "view_store", "zookeeper_hosts", "zookeeper_path", "failure_timeout_ms",
    "sequencer", "shard", "gateway", "tls", "security",
}


def _take(table: dict[str, Any], key: str, kind: type, where: str, default: Any = ...) -> Any:
    if key not in table:
        if default is ...:
            raise ConfigError(f"{where}.{key}: required key missing")
        return default
    value = table[key]
    if (kind is int and isinstance(value, bool)) or not isinstance(value, kind):
        raise ConfigError(f"{where}.{key}: expected {kind.__name__}, got {value!r}")
    return value


def _check_keys(table: dict[str, Any], allowed: set[str], where: str) -> None:
    for key in table:
        if key not in allowed:
            raise ConfigError(f"{where}.{key}: unknown key (allowed: {', '.join(sorted(allowed))})")


# Listening on these binds every interface; no client can connect to them as given.
WILDCARD_HOSTS = ("0.0.0.0", "::", "[::]")


def _address(value: str, where: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{where}: {value!r} is not host:port")
    return value


def _advertised(value: str, where: str) -> str:
    """An address clients are told to connect to: a wildcard listen address cannot be one."""
    if _address(value, where).rpartition(":")[0] in WILDCARD_HOSTS:
        raise ConfigError(f"{where}: {value!r} listens on every interface; set `advertised` to an "
                          f"address clients can reach")
    return value


def _listeners(raw: list[Any], where: str, main: str) -> tuple[ListenerConfig, ...]:
    listeners = []
    for i, item in enumerate(raw):
        lwhere = f"{where}.listeners[{i}]"
        if not isinstance(item, dict):
            raise ConfigError(f"{lwhere}: expected a table")
        _check_keys(item, {"name", "protocol", "address", "advertised"}, lwhere)
        protocol = _take(item, "protocol", str, lwhere)
        if protocol not in LISTENER_PROTOCOLS:
            raise ConfigError(f"{lwhere}.protocol: expected one of {', '.join(LISTENER_PROTOCOLS)}, "
                              f"got {protocol!r}")
        address = _address(_take(item, "address", str, lwhere), f"{lwhere}.address")
        listeners.append(ListenerConfig(
            _take(item, "name", str, lwhere, protocol), protocol, address,
            _advertised(_take(item, "advertised", str, lwhere, address), f"{lwhere}.advertised")))
    names = [lis.name for lis in listeners]
    if main in names or len(set(names)) != len(names):
        raise ConfigError(f"{where}.listeners: names must be unique and not {main} "
                          f"(the listener at `address`, named after its protocol)")
    return tuple(listeners)


def _tls(raw: Any, base: Path) -> TlsConfig | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ConfigError("tls: expected a table")
    _check_keys(raw, {"ca_file", "cert_file", "key_file", "client_auth", "grpc"}, "tls")
    client_auth = _take(raw, "client_auth", str, "tls", "none")
    if client_auth not in CLIENT_AUTH:
        raise ConfigError(f"tls.client_auth: expected one of {', '.join(CLIENT_AUTH)}, got {client_auth!r}")
    return TlsConfig(*(base / _take(raw, key, str, "tls") for key in ("ca_file", "cert_file", "key_file")),
                     client_auth, _take(raw, "grpc", bool, "tls", False))


def _security(raw: Any, base: Path) -> SecurityConfig:
    if not isinstance(raw, dict):
        raise ConfigError("security: expected a table")
    _check_keys(raw, {"sasl_mechanisms", "scram_iterations", "authorizer", "super_users",
                      "connection_failed_authentication_delay_ms", "admin_user", "admin_password_file",
                      "admin_sasl_mechanism"}, "security")
    mechanisms = tuple(_take(raw, "sasl_mechanisms", list, "security", list(SASL_MECHANISMS)))
    for mechanism in mechanisms:
        if mechanism not in SASL_MECHANISMS:
            raise ConfigError(f"security.sasl_mechanisms: {mechanism!r} is not one of "
                              f"{', '.join(SASL_MECHANISMS)}")
    iterations = _take(raw, "scram_iterations", int, "security", MIN_SCRAM_ITERATIONS)
    if iterations < MIN_SCRAM_ITERATIONS:
        raise ConfigError(f"security.scram_iterations: at least {MIN_SCRAM_ITERATIONS}, got {iterations}")
    super_users = tuple(str(u) for u in _take(raw, "super_users", list, "security", []))
    failure_delay_ms = _take(raw, "connection_failed_authentication_delay_ms", int, "security",
                             SecurityConfig.connection_failed_authentication_delay_ms)
    if failure_delay_ms < 0:
        raise ConfigError(f"security.connection_failed_authentication_delay_ms: at least 0, "
                          f"got {failure_delay_ms}")
    admin_user = _take(raw, "admin_user", str, "security", None)
    password_file = _take(raw, "admin_password_file", str, "security", None)
    if (admin_user is None) != (password_file is None):
        raise ConfigError("security.admin_password_file: admin_user and admin_password_file go together")
    admin_mechanism = _take(raw, "admin_sasl_mechanism", str, "security", "SCRAM-SHA-512")
    if admin_mechanism not in mechanisms:
        raise ConfigError(f"security.admin_sasl_mechanism: {admin_mechanism!r} is not among "
                          f"sasl_mechanisms")
    return SecurityConfig(mechanisms, iterations, _take(raw, "authorizer", bool, "security", False),
                          super_users, failure_delay_ms, admin_user,
                          None if password_file is None else base / password_file, admin_mechanism)


def parse(doc: dict[str, Any], path: Path | None = None) -> ClusterConfig:
    _check_keys(doc, _TOP_KEYS, "config")
    base = path.parent if path else Path.cwd()
    storage = _take(doc, "storage", str, "config", "pm")
    if storage not in ("pm", "memory"):
        raise ConfigError(f"config.storage: expected 'pm' or 'memory', got {storage!r}")

    nodes: dict[int, NodeConfig] = {}
    sequencers = []
    for i, raw in enumerate(_take(doc, "sequencer", list, "config")):
        where = f"sequencer[{i}]"
        _check_keys(raw, {"name", "address", "metrics_port", "nodes"}, where)
        name = _take(raw, "name", str, where)
        node_ids = []
        for j, node in enumerate(_take(raw, "nodes", list, where)):
            nwhere = f"{where}.nodes[{j}]"
            _check_keys(node, {"id", "parent"}, nwhere)
            node_id = _take(node, "id", int, nwhere)
            if node_id in nodes:
                raise ConfigError(f"{nwhere}.id: node {node_id} defined twice")
            nodes[node_id] = NodeConfig(node_id, _take(node, "parent", int, nwhere, None), name)
            node_ids.append(node_id)
        sequencers.append(
            SequencerConfig(
                name,
                _address(_take(raw, "address", str, where), f"{where}.address"),
                _take(raw, "metrics_port", int, where, 0),
                tuple(node_ids),
            )
        )
    roots = [n.id for n in nodes.values() if n.parent is None]
    if len(roots) != 1:
        raise ConfigError(f"sequencer.nodes: need exactly one root node (no parent), found {roots}")
    for node in nodes.values():
        if node.parent is not None and node.parent not in nodes:
            raise ConfigError(f"sequencer.nodes: node {node.id} has unknown parent {node.parent}")

    shards = []
    for i, raw in enumerate(_take(doc, "shard", list, "config")):
        where = f"shard[{i}]"
        _check_keys(raw, {"id", "leaf", "replicas", "metrics_ports"}, where)
        shard_id = _take(raw, "id", int, where)
        leaf = _take(raw, "leaf", int, where)
        if leaf not in nodes:
            raise ConfigError(f"{where}.leaf: unknown sequencer node {leaf}")
        addresses = _take(raw, "replicas", list, where)
        ports = _take(raw, "metrics_ports", list, where, [0] * len(addresses))
        if not addresses:
            raise ConfigError(f"{where}.replicas: a shard needs at least one replica")
        if len(ports) != len(addresses):
            raise ConfigError(f"{where}.metrics_ports: one port per replica expected")
        replicas = tuple(
            ReplicaConfig(
                f"shard{shard_id}-r{k}", shard_id, k,
                _address(addr, f"{where}.replicas[{k}]"), int(ports[k]),
            )
            for k, addr in enumerate(addresses)
        )
        shards.append(ShardConfig(shard_id, leaf, replicas))
    if len({s.id for s in shards}) != len(shards):
        raise ConfigError("shard.id: shard ids must be unique")

    gateways = []
    for i, raw in enumerate(doc.get("gateway", [])):
        where = f"gateway[{i}]"
        _check_keys(raw, {"name", "node_id", "address", "advertised", "metrics_port", "listeners",
                          "protocol"}, where)
        address = _address(_take(raw, "address", str, where), f"{where}.address")
        protocol = _take(raw, "protocol", str, where, "PLAINTEXT")
        if protocol not in LISTENER_PROTOCOLS:
            raise ConfigError(f"{where}.protocol: expected one of {', '.join(LISTENER_PROTOCOLS)}, "
                              f"got {protocol!r}")
        gateways.append(
            GatewayConfig(
                _take(raw, "name", str, where),
                _take(raw, "node_id", int, where, i),
                address,
                _advertised(_take(raw, "advertised", str, where, address), f"{where}.advertised"),
                _take(raw, "metrics_port", int, where, 0),
                _listeners(_take(raw, "listeners", list, where, []), where, protocol),
                protocol,
            )
        )
    # Metadata names every gateway by the listener the client came in by, so all must have it.
    listener_sets = {tuple(sorted(lis.name for lis in gw.listeners)) for gw in gateways}
    if len(listener_sets) > 1:
        raise ConfigError("gateway.listeners: every gateway needs the same listener names")
    tls = _tls(doc.get("tls"), base)
    if tls is None and any(lis.tls for gw in gateways for lis in gw.listeners):
        raise ConfigError("tls: SSL and SASL_SSL listeners need a [tls] table")
    security = _security(doc.get("security", {}), base)
    if security.admin_user is None and any(gw.listeners[0].sasl for gw in gateways):
        raise ConfigError("security.admin_user: needed when a gateway's `protocol` is SASL_*: "
                          "the CLI and `flexlog up` log in as it")

    view_store = _take(doc, "view_store", str, "config", "file")
    if view_store not in ("file", "zookeeper"):
        raise ConfigError(f"config.view_store: expected 'file' or 'zookeeper', got {view_store!r}")
    # Kafka's group.min/max.session.timeout.ms; test setups lower the minimum for short sessions.
    min_session = _take(doc, "group_min_session_timeout_ms", int, "config", 6_000)
    max_session = _take(doc, "group_max_session_timeout_ms", int, "config", 1_800_000)
    if not 0 < min_session <= max_session:
        raise ConfigError("config.group_min_session_timeout_ms: must be positive and at most "
                          f"group_max_session_timeout_ms ({min_session} > {max_session})")
    # Kafka's log.retention.check.interval.ms is 5 min; a check here costs little, so 5 s.
    retention_check = _take(doc, "log_retention_check_interval_ms", int, "config", 5_000)
    if retention_check <= 0:
        raise ConfigError(f"config.log_retention_check_interval_ms: must be positive, got {retention_check}")
    data_dir = Path(_take(doc, "data_dir", str, "config", "data"))
    pm_dir = _take(doc, "pm_dir", str, "config", None)
    return ClusterConfig(
        path=path,
        data_dir=data_dir if data_dir.is_absolute() else (base / data_dir).resolve(),
        pm_dir=None if pm_dir is None else (base / pm_dir).resolve(),
        storage=storage,
        pool_size_bytes=_take(doc, "pool_size_bytes", int, "config", 256 << 20),
        cache_bytes=_take(doc, "cache_bytes", int, "config", 64 << 20),
        max_entry_bytes=_take(doc, "max_entry_bytes", int, "config", 16 << 20),
        request_timeout_ms=_take(doc, "request_timeout_ms", int, "config", 10_000),
        batch_interval_us=_take(doc, "batch_interval_us", int, "config", 0),
        auto_create_topics=_take(doc, "auto_create_topics", bool, "config", True),
        default_partitions=_take(doc, "default_partitions", int, "config", 1),
        launcher_metrics_port=_take(doc, "launcher_metrics_port", int, "config", 0),
        # Kafka's group.initial.rebalance.delay.ms and offsets.retention.minutes (7 days).
        group_initial_rebalance_delay_ms=_take(doc, "group_initial_rebalance_delay_ms", int, "config",
                                               3_000),
        group_min_session_timeout_ms=min_session,
        group_max_session_timeout_ms=max_session,
        # KIP-848 groups: the coordinator sets both (Kafka's group.consumer.* defaults).
        group_consumer_session_timeout_ms=_take(doc, "group_consumer_session_timeout_ms", int, "config",
                                                45_000),
        group_consumer_heartbeat_interval_ms=_take(doc, "group_consumer_heartbeat_interval_ms", int,
                                                   "config", 5_000),
        offsets_retention_minutes=_take(doc, "offsets_retention_minutes", int, "config", 10_080),
        log_retention_check_interval_ms=retention_check,
        view_store=view_store,
        zookeeper_hosts=_take(doc, "zookeeper_hosts", str, "config", "127.0.0.1:2181"),
        zookeeper_path=_take(doc, "zookeeper_path", str, "config", "/flexlog"),
        failure_timeout_ms=_take(doc, "failure_timeout_ms", int, "config", 2_000),
        nodes=nodes,
        sequencers=tuple(sequencers),
        shards=tuple(shards),
        gateways=tuple(gateways),
        tls=tls,
        security=security,
    )


def load(path: str | Path) -> ClusterConfig:
    path = Path(path).resolve()
    try:
        with path.open("rb") as f:
            doc = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return parse(doc, path)


def default_toml(
    data_dir: str = "data",
    base_port: int = 7100,
    kafka_port: int = 9092,
    storage: str = "pm",
    gateways: int = 1,
    listen_host: str = "127.0.0.1",
    advertise: str | None = None,
) -> str:
    """The single-machine default: 1 root + 1 leaf sequencer, 1 shard x 3 replicas.

    Only the gateways listen on `listen_host` (in a container, 0.0.0.0 so a published port reaches
    them); sequencers and replicas talk among themselves on 127.0.0.1. `advertise` is HOST or
    HOST:PORT, the address clients reach the first gateway at; the others count up from its port.
    """
    rep = ", ".join(f'"127.0.0.1:{base_port + 100 + k}"' for k in range(3))
    metrics = ", ".join(str(base_port + 1100 + k) for k in range(3))
    adv_host, adv_port = advertise, kafka_port
    if advertise is not None:
        host, sep, port = advertise.rpartition(":")
        if sep and port.isdigit():
            adv_host, adv_port = host, int(port)
    elif listen_host in WILDCARD_HOSTS:
        # A wildcard means nothing to a client; the published port on the machine's loopback does.
        adv_host = "127.0.0.1"
    gw = "".join(
        f'\n[[gateway]]\nname = "gateway{g}"\nnode_id = {g}\n'
        f'address = "{listen_host}:{kafka_port + g}"\n'
        + (f'advertised = "{adv_host}:{adv_port + g}"\n' if adv_host is not None else "")
        + f"metrics_port = {base_port + 1200 + g}\n"
        for g in range(gateways)
    )
    return f"""# FlexLog cluster: generated default (1 root + 1 leaf, 1 shard x 3 replicas)
data_dir = "{data_dir}"
storage = "{storage}"
launcher_metrics_port = {base_port + 1300}

[[sequencer]]
name = "root"
address = "127.0.0.1:{base_port}"
metrics_port = {base_port + 1000}
nodes = [{{ id = 0 }}]

[[sequencer]]
name = "leaf"
address = "127.0.0.1:{base_port + 1}"
metrics_port = {base_port + 1001}
nodes = [{{ id = 1, parent = 0 }}]

[[shard]]
id = 0
leaf = 1
replicas = [{rep}]
metrics_ports = [{metrics}]
{gw}"""
