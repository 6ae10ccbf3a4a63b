"""The `flexlog` command: run a cluster, run one process, inspect a cluster."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import logging
import os
import signal
import sys
import time
import tomllib
from collections.abc import Callable
from pathlib import Path

from flexlog.core import config as config_mod
from flexlog.core import gc_settings, grpc_transport
from flexlog.core.config import ClusterConfig, ConfigError
from flexlog.core.storage import StorageEngine

DEFAULT_DATA_DIR = "data"
LOG_LEVEL_ENV = "FLEXLOG_LOG_LEVEL"
# `flexlog up`'s --listen and --advertise defaults: the image sets FLEXLOG_LISTEN=0.0.0.0, so a
# published port reaches the gateway, while outside a container it stays on the loopback.
LISTEN_ENV = "FLEXLOG_LISTEN"
ADVERTISE_ENV = "FLEXLOG_ADVERTISE"


class LogfmtFormatter(logging.Formatter):
    """One line per event, as key=value pairs (logfmt), so log shippers can parse it.

    Tracebacks are folded into the same line: a multi-line event would be split
    into unrelated records by line-based collectors (docker logs, journald).
    """

    def __init__(self, process: str) -> None:
        super().__init__()
        self.process = process

    @staticmethod
    def _quote(value: str) -> str:
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'

    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        line = (f"ts={ts}.{int(record.msecs):03d}Z level={record.levelname.lower()} "
                f"proc={self.process} logger={record.name} msg={self._quote(record.getMessage())}")
        if record.exc_info:
            line += f" exc={self._quote(self.formatException(record.exc_info))}"
        return line


def _setup_logging(level: str, process: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(LogfmtFormatter(process))
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO), handlers=[handler])


def _load(path: str | Path) -> ClusterConfig:
    """The config, with this process's gRPC switched to TLS when its [tls] table says grpc = true."""
    from flexlog.core import rpc

    cfg = config_mod.load(path)
    rpc.use_tls(cfg.tls)
    return cfg


def _address_clashes(cfg: ClusterConfig, one_machine: bool = False) -> list[str]:
    """host:port pairs that two listeners of the config would both bind.

    one_machine (`flexlog up`, every process here): a wildcard host takes its port on every
    interface and localhost is 127.0.0.1. Otherwise hosts are compared as written, since
    two of them may name different machines.
    """
    seen: dict[int, list[tuple[str, str]]] = {}
    clashes = []

    def same(a: str, b: str) -> bool:
        if not one_machine:
            return a == b
        if a in config_mod.WILDCARD_HOSTS or b in config_mod.WILDCARD_HOSTS:
            return True
        return (a if a != "localhost" else "127.0.0.1") == (b if b != "localhost" else "127.0.0.1")

    def claim(owner: str, address: str, port: int | None = None) -> None:
        host, _, listen_port = address.rpartition(":")
        port = int(listen_port) if port is None else port
        if port == 0:
            return
        for other_host, other in seen.get(port, []):
            if same(host, other_host):
                clashes.append(f"{host}:{port} is used by both {other} and {owner}")
        seen.setdefault(port, []).append((host, owner))

    for seq in cfg.sequencers:
        claim(f"sequencer {seq.name}", seq.address)
        claim(f"sequencer {seq.name} metrics", seq.address, seq.metrics_port)
    for shard in cfg.shards:
        for rep in shard.replicas:
            claim(f"replica {rep.name}", rep.address)
            claim(f"replica {rep.name} metrics", rep.address, rep.metrics_port)
    for gw in cfg.gateways:
        for listener in gw.extra_listeners:
            claim(f"gateway {gw.name} {listener.name} listener", listener.address)
        claim(f"gateway {gw.name}", gw.address)
        claim(f"gateway {gw.name} metrics", gw.address, gw.metrics_port)
    if cfg.launcher_metrics_port:
        claim("launcher metrics", "127.0.0.1:0", cfg.launcher_metrics_port)
    return clashes


def _report_clashes(cfg: ClusterConfig, one_machine: bool = False) -> bool:
    clashes = _address_clashes(cfg, one_machine)
    for clash in clashes:
        print(f"flexlog: invalid config: {clash}", file=sys.stderr)
    return bool(clashes)


def _check(cfg: ClusterConfig, role: str | None, one_machine: bool = False) -> int:
    """--check-config: the file parses (done by now), no two listeners clash, the role's code loads."""
    if _report_clashes(cfg, one_machine):
        return 2
    # A replica on PM needs the compiled PMDK binding; importing it here fails the
    # check in an image built without libpmemobj rather than at first start.
    if role in ("replica", None) and cfg.storage == "pm":
        importlib.import_module("flexlog.pm.engine")
    if role in ("gateway", None) and cfg.gateways:
        importlib.import_module("flexlog.gateway.server")
    print(f"config {cfg.path}: ok", file=sys.stderr)
    return 0


def _up_config(args: argparse.Namespace) -> ClusterConfig:
    if args.config:
        cfg = _load(args.config)
        return cfg
    data_dir = Path(args.data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / "cluster.toml"
    if not path.exists():
        text = config_mod.default_toml(
            data_dir=str(data_dir), storage=args.storage, gateways=args.gateways,
            kafka_port=args.kafka_port, base_port=args.base_port,
            listen_host=args.listen, advertise=args.advertise,
        )
        # Refused before the file is written, so the same command with other ports starts afresh.
        clashes = _address_clashes(config_mod.parse(tomllib.loads(text), path), one_machine=True)
        if clashes:
            raise ConfigError(f"--base-port {args.base_port} and --kafka-port {args.kafka_port}: "
                              + "; ".join(clashes))
        path.write_text(text)
    return _load(path)


STOP_GRACE_S = 5.0  # a SIGTERM'd process exits within this, cleanly or not


async def _serve(server: object, on_hangup: Callable[[], None]) -> None:
    """Run server until SIGINT or SIGTERM. SIGHUP, as with nginx or HAProxy: put rotated certificate
    files to use without a restart."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, on_hangup)
    gc_settings.tune_gc()  # before listening: its one full collection pauses the loop
    await server.start()  # type: ignore[attr-defined]
    await stop.wait()
    stopping = asyncio.ensure_future(server.stop())  # type: ignore[attr-defined]
    # Not wait_for: it would cancel a stuck stop and then wait for that, forever, if it hangs.
    done, _ = await asyncio.wait({stopping}, timeout=STOP_GRACE_S)
    if done:
        stopping.result()
    else:
        # A stop that hangs must not keep a stopped process alive (supervisors and tests wait
        # for the exit): name what was still running, once, and leave without the rest.
        stuck = [t.get_coro() for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        logging.getLogger("flexlog.cli").error(
            "did not stop within %.0f s, exiting anyway; still running: %s", STOP_GRACE_S, stuck)
        logging.shutdown()
        os._exit(1)


def _run_role(args: argparse.Namespace, cfg: ClusterConfig) -> int:
    from flexlog.core import allocator, rpc

    allocator.tune_malloc()
    rpc.install_uvloop()
    if args.role == "sequencer":
        from flexlog.core.sequencer import SequencerServer

        cfg.sequencer(args.id)
        if args.check_config:
            return _check(cfg, args.role)
        asyncio.run(_serve(SequencerServer(cfg, args.id), on_hangup=rpc.reload_tls))
    elif args.role == "replica":
        cfg.replica(args.id)
        if args.check_config:
            return _check(cfg, args.role)
        asyncio.run(_serve_replica(cfg, args.id))
    elif args.role == "controller":
        if args.check_config:
            return _check(cfg, args.role)
        asyncio.run(_run_controller(cfg))
    else:
        from flexlog.gateway.server import GatewayServer

        cfg.gateway(args.id)
        if args.check_config:
            return _check(cfg, args.role)
        gateway = GatewayServer(cfg, args.id)

        def hang_up() -> None:
            rpc.reload_tls()
            gateway.reload_certificates()

        asyncio.run(_serve(gateway, on_hangup=hang_up))
    return 0


async def _run_controller(cfg: ClusterConfig) -> None:
    from flexlog.core import rpc
    from flexlog.core.controller import Controller

    task = asyncio.create_task(Controller(cfg).run())
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    loop.add_signal_handler(signal.SIGHUP, rpc.reload_tls)
    with contextlib.suppress(asyncio.CancelledError):
        await task


def open_engine(config: ClusterConfig, name: str) -> StorageEngine:
    """The storage engine the config asks for; the replica gets it injected."""
    if config.storage == "memory":
        from flexlog.core.memory_engine import MemoryEngine

        return MemoryEngine(capacity_bytes=config.pool_size_bytes)
    from flexlog.pm.engine import PmEngine

    return PmEngine(
        config.pool_dir(name),
        pool_size_bytes=config.pool_size_bytes,
        cache_bytes=config.cache_bytes,
        ssd_dir=config.replica_dir(name) / "ssd",
    )


async def _serve_replica(cfg: ClusterConfig, name: str) -> None:
    from flexlog.core import rpc
    from flexlog.core.replica import ReplicaServer

    # Opening a PM store replays its pool and indexes its SSD segments, which takes
    # a while for a big pool: say so before and after, so a slow start is not a hang.
    log = logging.getLogger("flexlog.replica")
    where = cfg.pool_dir(name) if cfg.storage == "pm" else "memory"
    log.info("opening %s store of %s (%s); recovering its contents", cfg.storage, name, where)
    started = time.monotonic()
    engine = open_engine(cfg, name)
    stats = engine.stats()
    log.info("store of %s open after %.2fs: %s", name, time.monotonic() - started,
             " ".join(f"{k}={int(v)}" for k, v in stats.items() if k.endswith("bytes")) or "empty")
    await _serve(ReplicaServer(cfg, name, engine), on_hangup=rpc.reload_tls)


def _health(ready: bool, up: bool) -> str:
    return "ready" if ready else ("up, not ready" if up else "DOWN")


def _status_one(cfg: ClusterConfig, name: str) -> int:
    from flexlog.cli.status import process_status

    st = asyncio.run(process_status(cfg, name))
    print(f"{st.role} {st.name} {st.address} {_health(st.ready, st.up)}")
    return 0 if st.ready else 1


def _print_offsets(cfg: ClusterConfig) -> None:
    from flexlog.cli.status import log_offsets
    from flexlog.core.errors import FlexLogError

    try:
        colors, topics = asyncio.run(log_offsets(cfg))
    except FlexLogError as exc:
        print(f"colors and topics: unavailable ({exc})")
        return
    print("colors:                                   log start        tail")
    for c in colors:
        print(f"  {c.name:<36} {c.log_start:>11} {c.tail:>11}")
    print("topics:                        partition  log start  high watermark")
    if not topics:
        print("  (none)")
    for t in topics:
        for p, off in enumerate(t.partitions):
            print(f"  {t.name:<30} {p:>7} {off.log_start:>10} {off.tail:>15}")


def _print_groups(cfg: ClusterConfig) -> None:
    from flexlog.cli.status import consumer_lag

    lags, unreachable = consumer_lag(cfg)
    print("consumer groups:                topic                  partition      lag  gateway")
    if not lags:
        print("  (no committed offsets on any gateway)")
    for g in lags:
        print(f"  {g.group:<30} {g.topic:<22} {g.partition:>9} {g.lag:>8}  {g.gateway}")
    if unreachable:
        print(f"  (metrics unreachable: {', '.join(unreachable)})")


def _status(args: argparse.Namespace) -> int:
    from flexlog.cli.status import gateway_status
    from flexlog.core.status import ProcessStatus, cluster_status

    cfg = _load(args.config)
    if args.id:
        return _status_one(cfg, args.id)

    async def ask() -> tuple[list[ProcessStatus], list[ProcessStatus]]:
        return await asyncio.gather(cluster_status(cfg, detail=True), gateway_status(cfg))

    core, gateways = asyncio.run(ask())
    by_name = {s.name: s for s in core}
    print("sequencer tree:")
    for node in sorted(cfg.nodes.values(), key=lambda n: cfg.ancestors(n.id)[::-1]):
        depth = len(cfg.ancestors(node.id)) - 1
        seq = by_name[node.process]
        print(f"  {'  ' * depth}node {node.id:<3} {seq.role} {seq.name:<12} {seq.address:<18} "
              f"{_health(seq.ready, seq.up)}")
    print("shards:")
    for shard in cfg.shards:
        print(f"  shard {shard.id} (leaf node {shard.leaf})")
        for rep in shard.replicas:
            s = by_name[rep.name]
            extra = ""
            if s.up:
                extra = (f"  attached={s.detail.get('attached')} colors={s.detail.get('colors')}"
                         f" prepared={s.detail.get('prepared')}")
            print(f"    {s.role:<9} {s.name:<12} {s.address:<18} {_health(s.ready, s.up)}{extra}")
    print("gateways:")
    for gw, s in zip(cfg.gateways, gateways, strict=True):
        # Why an up gateway is not ready (a refused admin login, say) is what the operator needs.
        why = f"  ({s.detail['error']})" if s.up and not s.ready and "error" in s.detail else ""
        print(f"    {s.role:<9} {s.name:<12} {s.address:<18} {_health(s.ready, s.up)}"
              f"  {gw.protocol} advertised={gw.advertised}{why}")
    core_ready = all(s.ready for s in core)
    if core_ready:
        _print_offsets(cfg)
        _print_groups(cfg)
    healthy = core_ready and all(s.ready for s in gateways)
    print("cluster healthy" if healthy else "cluster NOT healthy")
    return 0 if healthy else 1


def flexlog_argv(cmdline: bytes) -> list[str]:
    """The flexlog arguments in a /proc/PID/cmdline: what follows the `flexlog` script or `-m flexlog.cli`."""
    argv = [arg.decode() for arg in cmdline.split(b"\0") if arg]
    for i, arg in enumerate(argv):
        if Path(arg).name == "flexlog" or (arg == "flexlog.cli" and i > 0 and argv[i - 1] == "-m"):
            return argv[i + 1:]
    raise ValueError(f"not a flexlog process: {' '.join(argv)!r}")


def _healthcheck(parser: argparse.ArgumentParser, pid: int) -> int:
    """The image's HEALTHCHECK: one command for every role, so it reads the role from the command
    line of the container's main process (PID 1) and checks what that role serves."""
    proc = Path(f"/proc/{pid}")
    try:
        target = parser.parse_args(flexlog_argv((proc / "cmdline").read_bytes()))
    except (OSError, ValueError) as exc:
        print(f"flexlog healthcheck: {exc}", file=sys.stderr)
        return 1
    # Relative --config and --data-dir are the process's, which `docker run -w` may have moved.
    with contextlib.suppress(OSError):
        os.chdir(proc / "cwd")
    if target.command == "up":
        config = target.config or str(Path(target.data_dir) / "cluster.toml")
        return _status(argparse.Namespace(config=config, id=None))
    if target.command in ("sequencer", "replica", "gateway"):
        return _status_one(_load(target.config), target.id)
    if target.command == "controller":
        # It serves nothing to ask; it is alive (PID 1 is), so what can break is its config.
        return _check(_load(target.config), "controller")
    print(f"flexlog healthcheck: `flexlog {target.command}` serves nothing to check")
    return 0


def _topics(args: argparse.Namespace) -> int:
    from flexlog.cli.status import log_offsets
    from flexlog.core.errors import FlexLogError

    if args.action == "create":
        return _topics_create(args)

    try:
        _, topics = asyncio.run(log_offsets(_load(args.config)))
    except FlexLogError as exc:
        print(f"flexlog: cluster unavailable: {exc}", file=sys.stderr)
        return 1
    print(f"{'topic':<30} {'partition':>9} {'log start':>10} {'high watermark':>15}")
    for t in topics:
        for p, off in enumerate(t.partitions):
            print(f"{t.name:<30} {p:>9} {off.log_start:>10} {off.tail:>15}")
    return 0


def _topics_create(args: argparse.Namespace) -> int:
    """`flexlog topics create NAME`: the checks and the effect of a Kafka CreateTopics."""
    from flexlog.core.client import FlexLogClient
    from flexlog.core.errors import FlexLogError
    from flexlog.gateway.topics import (
        MAX_PARTITIONS,
        TopicError,
        TopicStore,
        check_config,
        invalid_topic_name,
    )

    cfg = _load(args.config)
    partitions = cfg.default_partitions if args.partitions is None else args.partitions
    problem = invalid_topic_name(args.name)
    if problem is None and not 1 <= partitions <= MAX_PARTITIONS:
        problem = f"number of partitions must be in 1..{MAX_PARTITIONS}, got {partitions}"
    configs: dict[str, str] = {}
    for item in args.topic_config:
        key, sep, value = item.partition("=")
        problem = problem or (None if sep else f"--topic-config {item!r} is not KEY=VALUE")
        problem = problem or check_config(key, value, cfg)
        configs[key] = value
    if problem:
        print(f"flexlog: {problem}", file=sys.stderr)
        return 2

    async def create() -> str | None:
        async with FlexLogClient(cfg, timeout_ms=10_000) as client:
            store = TopicStore(client, cfg)
            await store.open()
            clash = store.ordering_clash(args.name, configs)
            if clash:
                return clash
            await store.create(args.name, partitions, configs)
            return None

    try:
        clash = asyncio.run(create())
    except TopicError as exc:
        print(f"flexlog: {exc}", file=sys.stderr)
        return 1
    except FlexLogError as exc:
        print(f"flexlog: cluster unavailable: {exc}", file=sys.stderr)
        return 1
    if clash:
        print(f"flexlog: {clash}", file=sys.stderr)
        return 2
    print(f"created topic {args.name} with {partitions} partitions")
    return 0


def _groups(args: argparse.Namespace) -> int:
    _print_groups(_load(args.config))
    return 0


def _read_password(args: argparse.Namespace) -> str:
    # Never from the command line: it would show in `ps` and shell history.
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    import getpass

    first = getpass.getpass(f"password for {args.name}: ")
    if getpass.getpass("again: ") != first:
        raise ValueError("the passwords differ")
    return first


def _users(args: argparse.Namespace) -> int:
    from flexlog.core.client import FlexLogClient
    from flexlog.core.errors import FlexLogError
    from flexlog.gateway.users import UserStore

    cfg = _load(args.config)
    password = _read_password(args) if args.action == "add" else ""
    if args.action == "add" and not password:
        print("flexlog: empty password", file=sys.stderr)
        return 2

    async def run() -> int:
        client = FlexLogClient(cfg)
        try:
            await client.wait_ready(timeout_s=10.0)
            store = UserStore(client, cfg)
            await store.open()
            if args.action == "add":
                await store.set(args.name, password, args.iterations)
                print(f"user {args.name} set (SCRAM-SHA-256, SCRAM-SHA-512; PLAIN checks against them)")
            elif args.action == "remove":
                if not await store.remove(args.name):
                    print(f"flexlog: no user {args.name}", file=sys.stderr)
                    return 1
                print(f"user {args.name} removed")
            else:
                for name in await store.names():
                    print(name)
            return 0
        finally:
            await client.close()

    try:
        return asyncio.run(run())
    except FlexLogError as exc:
        print(f"flexlog: cluster unavailable: {exc}", file=sys.stderr)
        return 1


def _certs(args: argparse.Namespace) -> int:
    from flexlog.core.tls import generate_dev_certs

    generate_dev_certs(Path(args.out), clients=tuple(args.client), days=args.days,
                       hosts=tuple(args.host))
    print(f"dev CA and certs written to {args.out}: ca.crt, server.crt/key, "
          + ", ".join(f"{c}.crt/key" for c in args.client))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flexlog", description=__doc__)
    parser.add_argument("--log-level", default=os.environ.get(LOG_LEVEL_ENV, "INFO"),
                        help=f"DEBUG, INFO, WARNING, ERROR (default: ${LOG_LEVEL_ENV} or INFO)")
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="start a whole local cluster and supervise it")
    up.add_argument("--config", help="cluster TOML (default: generate DATA_DIR/cluster.toml)")
    up.add_argument("--data-dir", default=DEFAULT_DATA_DIR, help="where every file of the cluster lives")
    up.add_argument("--storage", choices=["pm", "memory"], default="pm")
    up.add_argument("--gateways", type=int, default=1, help="number of Kafka gateways")
    up.add_argument("--kafka-port", type=int, default=9092, help="first gateway's Kafka port")
    up.add_argument("--base-port", type=int, default=7100,
                    help="sequencers listen from here, replicas from +100, metrics from +1000")
    up.add_argument("--listen", default=os.environ.get(LISTEN_ENV) or "127.0.0.1", metavar="HOST",
                    help=f"the host the gateways listen on; sequencers and replicas stay on 127.0.0.1 "
                         f"(default: ${LISTEN_ENV} or 127.0.0.1; 0.0.0.0 in a container)")
    up.add_argument("--advertise", default=os.environ.get(ADVERTISE_ENV) or None, metavar="HOST[:PORT]",
                    help=f"the address Kafka clients reach the first gateway at, the others at the "
                         f"next ports (default: ${ADVERTISE_ENV}, else the listen address, 127.0.0.1 "
                         f"for 0.0.0.0)")
    up.add_argument("--check-config", action="store_true", help="validate the config and exit")

    for role in ("sequencer", "replica", "gateway", "controller"):
        p = sub.add_parser(role, help=f"run one {role} process")
        p.add_argument("--config", required=True)
        p.add_argument("--id", required=True, help=f"the {role}'s name in the config")
        p.add_argument("--check-config", action="store_true", help="validate and exit")

    st = sub.add_parser("status", help="print the tree, shards, gateways, topics and groups; "
                                       "exit 0 only if every process is ready")
    st.add_argument("--config", default=f"{DEFAULT_DATA_DIR}/cluster.toml")
    st.add_argument("--id", help="only this process (exit 0 if it is ready): a container healthcheck")
    tp = sub.add_parser("topics", help="Kafka topics with each partition's log start and high "
                                       "watermark; `topics create NAME` creates one")
    tp.add_argument("action", nargs="?", choices=["list", "create"], default="list")
    tp.add_argument("name", nargs="?", help="the topic to create")
    tp.add_argument("--partitions", type=int, default=None,
                    help="partitions of a new topic (default: the cluster's default_partitions)")
    tp.add_argument("--topic-config", action="append", default=[], metavar="KEY=VALUE",
                    help="a topic config of a new topic, e.g. flexlog.ordering=topic (repeatable)")
    tp.add_argument("--config", default=f"{DEFAULT_DATA_DIR}/cluster.toml")
    gr = sub.add_parser("groups", help="consumer groups with their lag per partition")
    gr.add_argument("--config", default=f"{DEFAULT_DATA_DIR}/cluster.toml")

    us = sub.add_parser("users", help="SASL users (stored as SCRAM credentials in the __users color)")
    us.add_argument("action", choices=["add", "remove", "list"], help="add also replaces a password")
    us.add_argument("name", nargs="?", help="user name (add, remove)")
    us.add_argument("--config", default=f"{DEFAULT_DATA_DIR}/cluster.toml")
    us.add_argument("--password-stdin", action="store_true",
                    help="read the password from the first line of stdin instead of prompting")
    us.add_argument("--iterations", type=int, default=None,
                    help="SCRAM iterations (default: [security] scram_iterations)")
    ce = sub.add_parser("certs", help="write a development CA, a server cert and client certs (openssl)")
    ce.add_argument("--out", required=True, help="directory to write into")
    ce.add_argument("--client", action="append", default=None,
                    help="a client cert with this CN (repeatable; default: client)")
    ce.add_argument("--host", action="append", default=None,
                    help="a name or IP the server cert is valid for (repeatable; default: localhost, "
                         "127.0.0.1)")
    ce.add_argument("--days", type=int, default=365)
    hc = sub.add_parser("healthcheck", help="a container's health: check what the flexlog command of "
                                            "process PID (the container's main process) serves")
    hc.add_argument("--pid", type=int, default=1)
    return parser


def main(argv: list[str] | None = None) -> int:
    grpc_transport.choose()  # before any command imports grpc, which reads it then
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command in ("users", "topics") and args.action not in ("list",) and not args.name:
        parser.error(f"{args.command} {args.action} needs a NAME")
    if args.command == "users" and args.iterations is not None and args.iterations < 4096:
        parser.error("--iterations must be at least 4096")
    if args.command == "certs":
        args.client = args.client or ["client"]
        args.host = args.host or ["localhost", "127.0.0.1"]
    _setup_logging(args.log_level, f"{args.command}/{args.id}" if getattr(args, "id", None) else args.command)
    try:
        if args.command == "up":
            from flexlog.cli import launcher

            cfg = _up_config(args)
            if args.check_config:
                return _check(cfg, None, one_machine=True)
            # Two processes on one port would leave the second failing to bind while the launcher
            # waits for it to become ready; refuse the layout before starting anything.
            if _report_clashes(cfg, one_machine=True):
                return 2
            return launcher.run(cfg, args.log_level)
        if args.command == "status":
            return _status(args)
        if args.command == "topics":
            return _topics(args)
        if args.command == "groups":
            return _groups(args)
        if args.command == "users":
            return _users(args)
        if args.command == "certs":
            return _certs(args)
        if args.command == "healthcheck":
            return _healthcheck(parser, args.pid)
        args.role = args.command
        return _run_role(args, _load(args.config))
    except ConfigError as exc:
        print(f"flexlog: invalid config: {exc}", file=sys.stderr)
        return 2

