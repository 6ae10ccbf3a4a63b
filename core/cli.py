"""The `flexlog` command: run a cluster, run one process, inspect a cluster."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

from flexlog.core import config as config_mod
from flexlog.core.config import ClusterConfig, ConfigError

DEFAULT_DATA_DIR = "data"


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )


def _up_config(args: argparse.Namespace) -> ClusterConfig:
    if args.config:
        cfg = config_mod.load(args.config)
        return cfg
    data_dir = Path(args.data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / "cluster.toml"
    if not path.exists():
        path.write_text(config_mod.default_toml(
            data_dir=str(data_dir), storage=args.storage, gateways=args.gateways,
            kafka_port=args.kafka_port, base_port=args.base_port,
        ))
    return config_mod.load(path)


async def _serve(server: object) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await server.start()  # type: ignore[attr-defined]
    await stop.wait()
    await server.stop()  # type: ignore[attr-defined]


def _run_role(args: argparse.Namespace, cfg: ClusterConfig) -> int:
    from flexlog.core import rpc

    rpc.install_uvloop()
    if args.role == "sequencer":
        from flexlog.core.sequencer import SequencerServer

        cfg.sequencer(args.id)
        if args.check_config:
            return 0
        asyncio.run(_serve(SequencerServer(cfg, args.id)))
    elif args.role == "replica":
        from flexlog.core.replica import ReplicaServer, open_engine

        cfg.replica(args.id)
        if args.check_config:
            return 0
        asyncio.run(_serve_replica(cfg, args.id, ReplicaServer, open_engine))
    else:
        from flexlog.gateway.server import GatewayServer

        cfg.gateway(args.id)
        if args.check_config:
            return 0
        asyncio.run(_serve(GatewayServer(cfg, args.id)))
    return 0


async def _serve_replica(cfg: ClusterConfig, name: str, server_cls: type, open_engine: object) -> None:
    engine = open_engine(cfg, name)  # type: ignore[operator]
    await _serve(server_cls(cfg, name, engine))


def _status(args: argparse.Namespace) -> int:
    from flexlog.core.status import cluster_status

    cfg = config_mod.load(args.config)
    statuses = asyncio.run(cluster_status(cfg))
    print("sequencer tree:")
    for node in sorted(cfg.nodes.values(), key=lambda n: len(cfg.ancestors(n.id))):
        depth = len(cfg.ancestors(node.id)) - 1
        print(f"  {'  ' * depth}node {node.id} (process {node.process})")
    for s in statuses:
        health = "ready" if s.ready else ("up, not ready" if s.up else "DOWN")
        extra = ""
        if s.role == "replica" and s.up:
            extra = f"  colors={len(s.detail.get('colors', {}))} prepared={s.detail.get('prepared')}"
        print(f"{s.role:<9} {s.name:<12} {s.address:<18} {health}{extra}")
    healthy = all(s.ready for s in statuses)
    print("cluster healthy" if healthy else "cluster NOT healthy")
    return 0 if healthy else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="flexlog", description=__doc__)
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING, ERROR")
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="start a whole local cluster and supervise it")
    up.add_argument("--config", help="cluster TOML (default: generate DATA_DIR/cluster.toml)")
    up.add_argument("--data-dir", default=DEFAULT_DATA_DIR, help="where every file of the cluster lives")
    up.add_argument("--storage", choices=["pm", "memory"], default="pm")
    up.add_argument("--gateways", type=int, default=1, help="number of Kafka gateways")
    up.add_argument("--kafka-port", type=int, default=9092, help="first gateway's Kafka port")
    up.add_argument("--base-port", type=int, default=7100,
                    help="sequencers listen from here, replicas from +100, metrics from +1000")

    for role in ("sequencer", "replica", "gateway"):
        p = sub.add_parser(role, help=f"run one {role} process")
        p.add_argument("--config", required=True)
        p.add_argument("--id", required=True, help=f"the {role}'s name in the config")
        p.add_argument("--check-config", action="store_true", help="validate and exit")

    st = sub.add_parser("status", help="print every process's health; exit 0 only if healthy")
    st.add_argument("--config", default=f"{DEFAULT_DATA_DIR}/cluster.toml")

    args = parser.parse_args(argv)
    _setup_logging(args.log_level)
    try:
        if args.command == "up":
            from flexlog.core import launcher

            return launcher.run(_up_config(args), args.log_level)
        if args.command == "status":
            return _status(args)
        args.role = args.command
        return _run_role(args, config_mod.load(args.config))
    except ConfigError as exc:
        print(f"flexlog: invalid config: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
