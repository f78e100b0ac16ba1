"""``python -m certmint`` / ``certmint-operator``: run the operator against the current kubeconfig or in-cluster."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from certmint import __version__
from certmint.settings import Settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="certmint-operator", description="certmint certificate operator")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    parser.add_argument("--verbose", action="store_true", help="debug logging")
    parser.add_argument(
        "--namespace",
        action="append",
        default=[],
        help="watch only this namespace (repeatable); default: the whole cluster",
    )
    args = parser.parse_args(argv)
    if args.version:
        print(f"certmint {__version__}")
        return 0
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)  # per-event chatter from kopf
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    # Imported late so that --version and --help work without touching kopf.
    import kopf  # noqa: PLC0415

    import certmint.handlers  # noqa: F401, PLC0415  (registers the handlers)

    if args.namespace:
        os.environ["CERTMINT_WATCH_NAMESPACES"] = ",".join(args.namespace)
    namespaces = list(Settings.from_env().watch_namespaces)
    kopf.run(standalone=True, clusterwide=not namespaces, namespaces=namespaces)
    return 0


if __name__ == "__main__":
    sys.exit(main())
