"""The CLI's exit codes and the one exception that carries a message for stderr (no traceback)."""

from __future__ import annotations

from enum import IntEnum


class Exit(IntEnum):
    """Exit codes, documented in docs/cli.md."""

    OK = 0
    PROBLEM = 1  # the object is not there, or it was read and something is wrong with it
    USAGE = 2  # the command line is wrong (argparse uses 2 as well)
    API = 3  # no usable kubeconfig, or the API server is unreachable, refuses our credentials or forbids the call


class CliError(Exception):
    """A failure the user can act on: ``message`` goes to stderr as one line, then the tool exits with ``code``."""

    def __init__(self, message: str, code: Exit = Exit.PROBLEM) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class Unreachable(CliError):
    """The API server did not answer (or its certificate is not trusted): nothing more can be read."""

    def __init__(self, message: str) -> None:
        super().__init__(message, Exit.API)
