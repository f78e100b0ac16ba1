"""Watch streams arrive in arbitrary chunks; lines can be longer than any read buffer."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

from certmint.kube.client import json_lines


async def _chunks(data: bytes, size: int) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


async def _collect(data: bytes, size: int) -> list[dict[str, object]]:
    return [event async for event in json_lines(_chunks(data, size))]


async def test_events_split_anywhere_come_out_whole() -> None:
    events = [{"type": "ADDED", "object": {"n": i, "pad": "x" * (i * 37)}} for i in range(20)]
    data = b"".join(json.dumps(e).encode() + b"\n" for e in events)
    for size in (1, 7, 64, 4096, len(data)):
        assert await _collect(data, size) == events


async def test_a_line_of_several_mebibytes_and_a_last_line_without_newline() -> None:
    big = {"type": "MODIFIED", "object": {"data": "y" * (3 * 1024 * 1024)}}
    tail = {"type": "BOOKMARK", "object": {}}
    data = json.dumps(big).encode() + b"\n\n" + json.dumps(tail).encode()
    assert await _collect(data, 65536) == [big, tail]
