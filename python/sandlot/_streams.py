"""The waiting halves of `LineStream.__anext__`, and of `ByteStream.__anext__` and
`FileChunks.__anext__`: the wait happens here, and what arrived is taken after it on
the event loop's thread, so a call cancelled while it waits takes nothing and loses
nothing."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Protocol

from sandlot._native import LineStream


class _Chunks(Protocol):
    def _chunk_now(self) -> bytes | None: ...
    def _arrival(self) -> Awaitable[None]: ...


async def next_line(stream: LineStream) -> str:
    """The next line of `stream` once it has arrived."""
    while (line := stream._line_now()) is None:
        await stream._arrival()
    return line


async def next_chunk(chunks: _Chunks) -> bytes:
    """The next chunk of `chunks` (a `ByteStream` or `FileChunks`) once it has arrived."""
    while (chunk := chunks._chunk_now()) is None:
        await chunks._arrival()
    return chunk
