"""``certmint`` / ``kubectl certmint``: arguments, the commands, and exit codes (docs/cli.md).

Every failure ends as one line on stderr and an exit code from :class:`certmint.cli.errors.Exit`; a traceback only
with ``CERTMINT_CLI_DEBUG=1``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, NoReturn, TypeVar

from certmint import __version__
from certmint.cli import render
from certmint.cli.api import Cluster, connect
from certmint.cli.convert import convert
from certmint.cli.errors import CliError, Exit, Unreachable
from certmint.cli.kubeconfig import load_connection
from certmint.cli.sources import read_sources
from certmint.core.approval import APPROVED, APPROVED_BY_USER, DENIED, DENIED_BY_USER, decision_refused
from certmint.core.conditions import Condition, merge_conditions
from certmint.kube.client import JSON

T = TypeVar("T")
DEFAULT_OPERATOR_NAMESPACE = "certmint"


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and exit 2), like every other error of the tool."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: error: {message} (see {self.prog} --help)\n")
        raise SystemExit(Exit.USAGE)


def _connection_options(parser: argparse.ArgumentParser, *, default: Any) -> None:
    """The options every command takes, before or after the command's name (as kubectl allows)."""
    group = parser.add_argument_group("connection")
    group.add_argument("--kubeconfig", default=default, help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config)")
    group.add_argument("--context", default=default, help="kubeconfig context (default: its current-context)")
    group.add_argument("-n", "--namespace", default=default, help="namespace (default: the context's, else default)")
    group.add_argument(
        "--request-timeout",
        type=float,
        default=default,
        metavar="SECONDS",
        help="give up on an API request after this long (default: 15)",
    )


def _output_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--output", choices=render.OUTPUTS, default="text", help="output format (default: text)")


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = _Parser(
        prog=prog,
        description="Read certmint's certificates and Secrets, ask for renewals, approve or deny requests, check the "
        "installation, convert cert-manager manifests.",
        epilog="Exit codes: 0 ok, 1 not found or a problem found, 2 usage error, 3 kubeconfig or API server "
        "unusable (unreachable, unauthenticated, forbidden). See docs/cli.md.",
    )
    parser.add_argument("--version", action="version", version=f"certmint {__version__}")
    _connection_options(parser, default=None)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    def command(name: str, help_: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_, description=help_)
        _connection_options(sub, default=argparse.SUPPRESS)
        return sub

    status = command("status", "the whole story of one Certificate: conditions, certificate, requests, events")
    status.add_argument("kind", choices=("certificate", "cert"), help="what to show (certificate)")
    status.add_argument("name", help="the Certificate's name")
    _output_option(status)

    inspect = command("inspect", "decode a TLS Secret: chain, validity, key match, chain to ca.crt, issuer")
    inspect.add_argument("kind", choices=("secret",), help="what to decode (secret)")
    inspect.add_argument("name", help="the Secret's name")
    _output_option(inspect)

    renew = command(
        "renew",
        "ask certmint to re-issue Certificates now (sets the annotation certmint.dev/renew-request; spec untouched)",
    )
    renew.add_argument("name", nargs="?", help="the Certificate's name")
    renew.add_argument("--all", action="store_true", help="every Certificate of the namespace")
    renew.add_argument("-l", "--selector", help="the Certificates of the namespace with these labels (a=b,c!=d)")
    _output_option(renew)

    for verb, helps in DECISIONS.items():
        decide_parser = command(verb, helps[0])
        decide_parser.add_argument("name", help="the CertificateRequest's name")
        decide_parser.add_argument("--reason", help=f"the condition's reason, CamelCase (default: {helps[1]})")
        decide_parser.add_argument(
            "--message", help="the condition's message (default: approved|denied with certmint approve|deny)"
        )
        _output_option(decide_parser)

    check = command("check", "is the operator installed and running, its CRDs served, which version")
    check.add_argument(
        "--operator-namespace",
        help="where the operator runs (default: search every namespace for its Deployment; its Lease in 'certmint')",
    )
    _output_option(check)

    convert_ = command(
        "convert",
        "convert cert-manager manifests (files, directories, stdin, or the cluster's objects) to certmint manifests "
        "on stdout; a report of what certmint does not support or treats differently on stderr",
    )
    convert_.add_argument(
        "sources", nargs="*", metavar="FILE|DIR|-", help="manifests to read (a directory: its *.yaml, *.yml, *.json)"
    )
    convert_.add_argument(
        "--from-cluster",
        action="store_true",
        help="also read cert-manager's Issuers, Certificates and CertificateRequests of the namespace (-n, or -A) "
        "and the ClusterIssuers they use from the kubeconfig's cluster",
    )
    convert_.add_argument(
        "-A", "--all-namespaces", action="store_true", help="with --from-cluster: every namespace, every ClusterIssuer"
    )
    convert_.add_argument(
        "-o", "--output", choices=("yaml", "json"), default="yaml", help="the certmint manifests (default: yaml)"
    )
    convert_.add_argument(
        "--report", choices=("text", "json"), default="text", help="the report on stderr (default: text)"
    )
    return parser


# -- commands ----------------------------------------------------------------------------------------------------


async def _optional(errors: list[str], read: Awaitable[T], default: T) -> T:
    """A read that the report can do without (e.g. Events the user may not list): its refusal becomes a note.
    An API server that stopped answering still ends the command."""
    try:
        return await read
    except Unreachable:
        raise
    except CliError as e:
        errors.append(e.message)
        return default


def _not_found(what: str, namespace: str, args: argparse.Namespace) -> CliError:
    hint = "" if args.namespace_given else f" (namespace {namespace} from the kubeconfig context; pass -n NAMESPACE?)"
    return CliError(f"{what} not found{hint}")


async def status_certificate(cluster: Cluster, args: argparse.Namespace, now: datetime) -> tuple[JSON, int]:
    ns = args.namespace
    certificate = await cluster.certificate(ns, args.name)
    if certificate is None:
        raise _not_found(f"Certificate {ns}/{args.name}", ns, args)
    spec = certificate.get("spec") or {}
    ref = spec.get("issuerRef") or {}
    secret_errors: list[str] = []
    secret = await _optional(secret_errors, cluster.secret(ns, spec.get("secretName", "")), None)
    errors: list[str] = []
    requests = await _optional(errors, cluster.requests_of(ns, args.name), [])
    events = await _optional(errors, cluster.events_of(ns, "Certificate", args.name), [])
    issuer_errors: list[str] = []
    issuer = await _optional(issuer_errors, cluster.issuer(ref.get("kind") or "Issuer", ns, ref.get("name", "")), None)
    report = render.certificate_report(
        certificate,
        secret=secret,
        requests=requests,
        events=events,
        issuer=issuer,
        now=now,
        read_errors=errors + issuer_errors,
        secret_error=next(iter(secret_errors), None),
        issuer_readable=not issuer_errors,
    )
    return report, Exit.OK


async def inspect_secret(cluster: Cluster, args: argparse.Namespace, now: datetime) -> tuple[JSON, int]:
    ns = args.namespace
    secret = await cluster.secret(ns, args.name)
    if secret is None:
        raise _not_found(f"Secret {ns}/{args.name}", ns, args)
    report = render.secret_report(secret, now)
    return report, Exit.PROBLEM if report["problems"] else Exit.OK


def renew_value(now: datetime) -> str:
    """A value never used before for this annotation: the moment, to the microsecond (UTC)."""
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


async def renew(cluster: Cluster, args: argparse.Namespace, now: datetime) -> tuple[JSON, int]:
    ns = args.namespace
    if args.name:
        names = [args.name]
    else:
        listed = await cluster.certificates(ns, args.selector)
        names = sorted(c["metadata"]["name"] for c in listed)
        if not names:
            which = f"with labels {args.selector}" if args.selector else "at all"
            raise CliError(f"no Certificate in namespace {ns} {which}: nothing requested")
    value = renew_value(now)
    requested = []
    for name in names:
        patched = await cluster.request_renewal(ns, name, value)
        if patched is None:
            raise _not_found(f"Certificate {ns}/{name}", ns, args)
        is_ca = bool((patched.get("spec") or {}).get("isCA"))
        requested.append({"namespace": ns, "name": name, "value": value, "isCA": is_ca})
    return {"annotation": "certmint.dev/renew-request", "requested": requested}, Exit.OK


#: approve/deny: help, default reason.
DECISIONS = {
    "approve": (
        "approve a CertificateRequest waiting for approval (an issuer with policy.approval Manual)",
        APPROVED_BY_USER,
    ),
    "deny": ("deny a CertificateRequest: it is never signed (final)", DENIED_BY_USER),
}
#: The CRD's pattern for a condition reason.
REASON = re.compile(r"[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?")


async def decide(cluster: Cluster, args: argparse.Namespace, now: datetime) -> tuple[JSON, int]:
    """Write Approved=True or Denied=True on a request's status, over the version whose stage allowed it."""
    ns, name, approve = args.namespace, args.name, args.command == "approve"
    decided = APPROVED if approve else DENIED
    for _ in range(3):  # another writer between our read and our write (409): read and judge again
        request = await cluster.certificate_request(ns, name)
        if request is None:
            raise _not_found(f"CertificateRequest {ns}/{name}", ns, args)
        current = (request.get("status") or {}).get("conditions") or []
        refused = decision_refused(current, approve)
        if refused is not None:
            raise CliError(f"cannot {args.command} CertificateRequest {ns}/{name}: {refused}")
        reason = args.reason or DECISIONS[args.command][1]
        message = args.message or f"{decided.lower()} with certmint {args.command}"
        conditions = merge_conditions(current, [Condition(decided, "True", reason, message)], now=now)
        written = await cluster.write_request_conditions(ns, name, request["metadata"]["resourceVersion"], conditions)
        if written is not None:
            return render.decision_report(written, decided), Exit.OK
    raise CliError(f"CertificateRequest {ns}/{name} kept changing while it was {decided.lower()}; try again")


async def check(cluster: Cluster, args: argparse.Namespace, now: datetime) -> tuple[JSON, int]:
    served = await cluster.served_resources()
    deployments = await cluster.operator_deployments(args.operator_namespace)
    lease_ns = args.operator_namespace or (
        deployments[0]["metadata"]["namespace"] if deployments else DEFAULT_OPERATOR_NAMESPACE
    )
    errors: list[str] = []
    lease = await _optional(errors, cluster.lease(lease_ns), None)
    report = render.check_report(
        served=served,
        deployments=deployments,
        lease=lease,
        lease_namespace=lease_ns,
        cli_version=__version__,
        now=now,
        read_errors=errors,
    )
    return report, Exit.PROBLEM if report["problems"] else Exit.OK


Command = Callable[[Cluster, argparse.Namespace, datetime], Awaitable[tuple[JSON, int]]]
COMMANDS: dict[str, tuple[Command, Callable[[JSON, datetime], str]]] = {
    "status": (status_certificate, render.certificate_text),
    "inspect": (inspect_secret, render.secret_text),
    "renew": (renew, lambda report, _: render.renew_text(report)),
    "check": (check, render.check_text),
    "approve": (decide, lambda report, _: render.decision_text(report)),
    "deny": (decide, lambda report, _: render.decision_text(report)),
}


def _validate(args: argparse.Namespace) -> None:
    if args.command == "convert":
        if not args.sources and not args.from_cluster:
            raise CliError("convert: give FILE, DIR, - (stdin) or --from-cluster", Exit.USAGE)
        if args.all_namespaces and not args.from_cluster:
            raise CliError("convert: -A/--all-namespaces needs --from-cluster", Exit.USAGE)
        if args.sources.count("-") > 1:
            raise CliError("convert: stdin (-) can be read only once", Exit.USAGE)
    if args.command == "renew":
        chosen = [bool(args.name), args.all, args.selector is not None]
        if sum(chosen) != 1:
            raise CliError("renew: give exactly one of NAME, --all or -l SELECTOR", Exit.USAGE)
    if getattr(args, "reason", None) is not None and not REASON.fullmatch(args.reason):
        raise CliError(
            f"--reason {args.reason!r} must be CamelCase: letters, digits, _ , : (e.g. ApprovedByUser)", Exit.USAGE
        )
    if args.request_timeout is not None and args.request_timeout <= 0:
        raise CliError("--request-timeout must be positive", Exit.USAGE)


def _referenced_cluster_issuers(objects: list[JSON]) -> set[str]:
    refs = ((o.get("spec") or {}).get("issuerRef") or {} for o in objects if o.get("kind") != "ClusterIssuer")
    return {r.get("name", "") for r in refs if r.get("kind") == "ClusterIssuer"}


async def from_cluster(args: argparse.Namespace) -> tuple[list[tuple[str, Any]], list[str]]:
    """The cluster's cert-manager objects: a namespace's (and the ClusterIssuers they use), or all with -A; and what
    could not be read (ClusterIssuers a namespace's user may not list)."""
    connection = load_connection(kubeconfig=args.kubeconfig, context=args.context, namespace=args.namespace)
    namespace = None if args.all_namespaces else connection.namespace
    async with connect(connection, request_timeout=args.request_timeout or 15.0) as cluster:
        objects, read_errors = await cluster.cert_manager_objects(namespace)
    if namespace is not None:
        used = _referenced_cluster_issuers(objects)
        objects = [o for o in objects if o["kind"] != "ClusterIssuer" or o["metadata"]["name"] in used]
    labelled = [
        (f"cluster {o['kind']} {o['metadata'].get('namespace', '')}/{o['metadata']['name']}", o) for o in objects
    ]
    return labelled, read_errors


async def run_convert(args: argparse.Namespace) -> int:
    """Convert, print the certmint manifests on stdout and the report on stderr; exit 1 unless all was faithful."""
    documents = read_sources(args.sources)
    read_errors: list[str] = []
    if args.from_cluster:
        listed, read_errors = await from_cluster(args)
        documents += listed
    conversion = convert(documents)
    report = render.convert_report(conversion, read_errors)
    sys.stdout.write(render.convert_output(conversion.objects, args.output))
    sys.stdout.flush()
    text = json.dumps(report, indent=2) if args.report == "json" else render.convert_text(report)
    sys.stderr.write(text + "\n")
    return Exit.OK if conversion.faithful else Exit.PROBLEM


async def run(args: argparse.Namespace) -> int:
    _validate(args)
    if args.command == "convert":
        return await run_convert(args)
    connection = load_connection(kubeconfig=args.kubeconfig, context=args.context, namespace=args.namespace)
    args.namespace_given = args.namespace is not None
    args.namespace = connection.namespace
    action, text = COMMANDS[args.command]
    now = datetime.now(UTC)
    async with connect(connection, request_timeout=args.request_timeout or 15.0) as cluster:
        report, code = await action(cluster, args, now)
    print(render.dump(report, args.output, lambda r: text(r, now)))
    return code


def program_name(argv0: str) -> str:
    """``kubectl certmint`` when run as the kubectl plugin (kubectl runs ``kubectl-certmint``), else ``certmint``."""
    return "kubectl certmint" if os.path.basename(argv0).startswith("kubectl-") else "certmint"


def main(argv: Sequence[str] | None = None) -> int:
    prog = program_name(sys.argv[0])
    try:
        args = build_parser(prog).parse_args(argv)
        return asyncio.run(run(args))
    except CliError as e:
        sys.stderr.write(f"{prog}: error: {e.message}\n")
        return int(e.code)
    except KeyboardInterrupt:
        sys.stderr.write(f"{prog}: interrupted\n")
        return 130
    except Exception as e:  # a bug, not the user's input: still one line, the traceback on request
        if os.environ.get("CERTMINT_CLI_DEBUG"):
            raise
        sys.stderr.write(
            f"{prog}: unexpected error (a bug; CERTMINT_CLI_DEBUG=1 shows where): {type(e).__name__}: {e}\n"
        )
        return int(Exit.PROBLEM)
