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

    import certmint.handlers  # noqa: F401, PLC0415  (importing it registers the handlers)
    from certmint import memdebug  # noqa: PLC0415
    from certmint.kopf_adapter import EventOnlyMemories, install_watch_backpressure  # noqa: PLC0415

    if args.namespace:
        os.environ["CERTMINT_WATCH_NAMESPACES"] = ",".join(args.namespace)
    settings = Settings.from_env()
    memdebug.install()  # SIGUSR2 → a memory report in the log, only with CERTMINT_MEMORY_DEBUG=1
    namespaces = list(settings.watch_namespaces)
    install_watch_backpressure()  # a restart's listing is not held in memory all at once (kopf_adapter)
    # An explicit identity: kopf's default asks getpass.getuser(), which fails for a UID without a passwd entry.
    kopf.run(
        standalone=True,
        clusterwide=not namespaces,
        namespaces=namespaces,
        identity=settings.identity,  # type: ignore[arg-type]  # kopf.Identity is a NewType of str
        memories=EventOnlyMemories(),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
