"""The Python halves of file transfers: `write` from a binary file object or an
iterable of chunks.

A write's iteration runs here, on the caller's side (a native future never
touches Python), and each chunk goes into a native upload. An exception while
iterating aborts the upload (nothing appears under the file's name) and goes on.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterable, Iterable

from sandlot._native import AsyncFileUpload, FileUpload

# How much one read of a file object asks for (the size of a chunk on the wire).
CHUNK = 1 << 20


async def write_async(upload: AsyncFileUpload, data: object) -> int:
    """Writes `data` (an object with `read`, sync or async, an async iterable or an
    iterable of chunks) into `upload` and commits it; its size."""
    async with upload:
        read = getattr(data, "read", None)
        if read is not None:
            while True:
                chunk = read(CHUNK)
                if inspect.isawaitable(chunk):
                    chunk = await chunk
                if not chunk:
                    break
                await upload.write(chunk)
        elif isinstance(data, AsyncIterable):
            async for chunk in data:
                await upload.write(chunk)
        elif isinstance(data, Iterable):
            for chunk in data:
                await upload.write(chunk)
        else:
            raise TypeError(f"cannot write {type(data).__name__!r} data")
    return upload.sent


def write_sync(upload: FileUpload, data: object) -> int:
    """Writes `data` (an object with `read` or an iterable of chunks) into `upload`
    and commits it; its size."""
    with upload:
        read = getattr(data, "read", None)
        if read is not None:
            while chunk := read(CHUNK):
                upload.write(chunk)
        elif isinstance(data, Iterable):
            for chunk in data:
                upload.write(chunk)
        else:
            raise TypeError(f"cannot write {type(data).__name__!r} data")
    return upload.sent
