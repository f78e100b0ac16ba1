"""The input of ``certmint convert``: files, directories (recursively) and stdin, as parsed documents.

Each document comes with a label saying where it is (``certs/web.yaml#2``: the second document of that file), for
the report. A file that cannot be read or parsed ends the command with one line naming it and where it broke:
half a directory converted would be a worse surprise than none.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

import yaml

from certmint.cli.errors import CliError

#: What a directory contributes: the manifests kubectl and GitOps tools read.
SUFFIXES = (".yaml", ".yml", ".json")
STDIN = "-"


def read_sources(sources: Sequence[str], stdin: TextIO | None = None) -> list[tuple[str, Any]]:
    """Every document of every source, in order; a directory's files sorted by path."""
    documents: list[tuple[str, Any]] = []
    for source in sources:
        if source == STDIN:
            documents.extend(parse("stdin", (stdin or sys.stdin).read(), json_only=False))
            continue
        path = Path(source)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in SUFFIXES)
            for file in files:
                documents.extend(_read_file(file))
        else:
            documents.extend(_read_file(path))
    return documents


def _read_file(path: Path) -> Iterator[tuple[str, Any]]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CliError(f"cannot read {path}: no such file or directory") from None
    except (OSError, UnicodeDecodeError) as e:
        raise CliError(f"cannot read {path}: {getattr(e, 'strerror', None) or e}") from None
    return parse(str(path), text, json_only=path.suffix == ".json")


def parse(label: str, text: str, *, json_only: bool) -> Iterator[tuple[str, Any]]:
    """The documents of one text (YAML with ``---`` separators, or JSON), labelled ``label#N`` from 1."""
    if json_only:
        try:
            return iter([(f"{label}#1", json.loads(text))])
        except json.JSONDecodeError as e:
            raise CliError(f"{label}: not valid JSON: {e.msg} at line {e.lineno}") from None
    try:
        documents = list(yaml.safe_load_all(text))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise CliError(f"{label}: not valid YAML: {problem}{where}") from None
    return iter([(f"{label}#{i}", doc) for i, doc in enumerate(documents, 1)])
