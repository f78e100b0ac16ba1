"""The command line itself, without an API server: usage errors, exit codes, one line on stderr, no traceback."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import yaml

from certmint.cli.errors import Exit
from certmint.cli.main import main, program_name, renew_value
from tests.unit.builders import NOW


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as e:  # argparse's --help/--version and usage errors
        code = int(e.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ((), "the following arguments are required: COMMAND"),
        (("frobnicate",), "invalid choice: 'frobnicate'"),
        (("status", "issuer", "x"), "argument kind: invalid choice: 'issuer'"),
        (("status", "certificate"), "the following arguments are required: name"),
        (("inspect", "secret", "x", "-o", "xml"), "argument -o/--output: invalid choice: 'xml'"),
        (("renew",), "renew: give exactly one of NAME, --all or -l SELECTOR"),
        (("renew", "web", "--all"), "renew: give exactly one of NAME, --all or -l SELECTOR"),
        (("check", "--request-timeout", "0"), "--request-timeout must be positive"),
        (("approve",), "the following arguments are required: name"),
        (("deny", "x", "--reason", "not valid"), "--reason 'not valid' must be CamelCase"),
        (("approve", "x", "-o", "xml"), "argument -o/--output: invalid choice: 'xml'"),
    ],
)
def test_usage_errors_exit_2_with_one_line(
    capsys: pytest.CaptureFixture[str], argv: tuple[str, ...], expected: str
) -> None:
    code, out, err = run(capsys, *argv)

    assert code == Exit.USAGE
    assert out == ""
    assert expected in err
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err


def test_help_lists_the_commands_and_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--help")

    assert code == 0
    for command in ("status", "inspect", "renew", "approve", "deny", "check"):
        assert command in out
    assert "Exit codes: 0 ok, 1 not found or a problem found, 2 usage error, 3 kubeconfig" in " ".join(out.split())


def test_a_missing_kubeconfig_exits_3(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, err = run(capsys, "--kubeconfig", str(tmp_path / "nope"), "check")

    assert (code, out) == (Exit.API, "")
    assert err == f"certmint: error: kubeconfig {tmp_path / 'nope'} does not exist\n"


def test_an_api_server_that_does_not_answer_exits_3_naming_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    server = f"https://127.0.0.1:{closed_port()}"
    kubeconfig = tmp_path / "c"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "clusters": [{"name": "c", "cluster": {"server": server}}],
                "users": [{"name": "u", "user": {"token": "x"}}],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "c",
            }
        )
    )
    code, out, err = run(capsys, "status", "certificate", "web", "--kubeconfig", str(kubeconfig), "-n", "shop")

    assert (code, out) == (Exit.API, "")
    assert err.startswith("certmint: error: API server unreachable: ")
    assert err.rstrip().endswith(f"(server {server})")
    assert len(err.strip().splitlines()) == 1


def test_connection_options_are_taken_before_or_after_the_command(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    for argv in (
        ("-n", "shop", "--kubeconfig", str(tmp_path / "x"), "check"),
        ("check", "--kubeconfig", str(tmp_path / "x")),
    ):
        code, _, err = run(capsys, *argv)
        assert code == Exit.API and "does not exist" in err


def test_as_a_kubectl_plugin_the_tool_names_itself_kubectl_certmint() -> None:
    assert program_name("/usr/local/bin/kubectl-certmint") == "kubectl certmint"
    assert program_name("/venv/bin/certmint") == "certmint"


def test_a_renew_value_is_the_moment_to_the_microsecond() -> None:
    assert renew_value(NOW) == "2030-01-01T12:00:00.000000Z"
