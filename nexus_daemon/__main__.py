"""`python -m nexus_daemon [daemon|worker]`: what `nexus daemon` and `nexus worker` run."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nexus daemon", description="Run the Nexus daemon in the foreground.")
    parser.add_argument("role", nargs="?", choices=("daemon", "worker"), default="daemon")
    parser.add_argument("--background", action="store_true", help="started on demand by a nexus command")
    parser.add_argument("--no-workers", action="store_true", help="serve RPC and schedule, run no Dramatiq workers")
    parser.add_argument("--config", help="read this nexus.toml instead of the usual files")
    args = parser.parse_args(argv)

    from nexus_core.config import load_settings
    from nexus_core.errors import NexusError

    try:
        settings = load_settings(args.config)
    except NexusError as exc:
        print(f"nexus daemon: {exc.message}", file=sys.stderr)
        return exc.exit_code
    from nexus_daemon.daemon import Daemon

    daemon = Daemon(settings, workers=not args.no_workers, rpc=args.role == "daemon")
    return daemon.run()


if __name__ == "__main__":
    sys.exit(main())
