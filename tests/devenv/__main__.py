"""`python -m tests.devenv up [--state DIR]`: run the local control plane until Ctrl-C."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from tests.devenv.stack import Stack


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.devenv")
    parser.add_argument("command", choices=["up"])
    parser.add_argument("--state", type=Path, default=Path(".devenv"), help="state directory (default .devenv)")
    args = parser.parse_args(argv)
    stack = Stack(args.state.resolve())
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        info = stack.start()
        for name, seconds in stack.timings.items():
            print(f"devenv: {name} ready in {seconds:.1f}s", file=sys.stderr)
        print(f"devenv: export KUBECONFIG={info.kubeconfig}", file=sys.stderr)
        print(f"devenv: Vault at {info.vault_addr}, PostgreSQL at {info.pg_host}:{info.pg_port}", file=sys.stderr)
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
