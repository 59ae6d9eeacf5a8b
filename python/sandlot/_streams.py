"""The waiting half of `LineStream.__anext__`."""

from __future__ import annotations

from sandlot._native import LineStream


async def next_line(stream: LineStream) -> str:
    """The next line of `stream` once it has arrived. It is taken here, on the event
    loop's thread, after the wait: a call cancelled while it waits takes none."""
    while (line := stream._line_now()) is None:
        await stream._arrival()
    return line
