"""Files in sandboxes and volumes on a real cluster: byte-exact round trips
(empty, every byte value, 100 MiB, non-UTF-8 names), listings with modes and
symlinks, trees up and down, the error classes, a shell-less image with a
read-only root, the Kubernetes exec path, a volume with no sandbox mounting it,
and what a hostile sandbox does to a download (links out of the target are
refused and nothing is written outside it)."""

from __future__ import annotations

import asyncio
import builtins
import gc
import hashlib
import os
import stat
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

import sandlot
from conftest import unique
from sandlot import _testing

BUSYBOX = "docker.io/library/busybox:1.36"
STATIC = "sandlot.local/static:1"  # /pause and /probe, static; no shell, no coreutils
MIB = 1024 * 1024
EVERY_BYTE = bytes(range(256)) * 4


@pytest.fixture(scope="module")
async def box(sandlot_namespace: str) -> AsyncIterator[sandlot.AsyncSandbox]:
    async with sandlot.AsyncClient(sandlot_namespace, exec_path="agent") as client:
        sb = await client.sandboxes.create(BUSYBOX, resources={"cpu": "1", "memory": "512Mi"})
        await sb.wait("running", timeout=120)
        yield sb
        await sb.terminate()


async def test_round_trips_are_byte_exact(box: sandlot.AsyncSandbox) -> None:
    files = box.files
    assert await files.write("/tmp/rt/empty", b"") == 0
    assert await files.read("/tmp/rt/empty") == b""
    assert await files.write("/tmp/rt/bytes", EVERY_BYTE) == len(EVERY_BYTE)
    assert await files.read("/tmp/rt/bytes") == EVERY_BYTE
    # What the sandbox itself sees.
    seen = await box.exec(["sha256sum", "/tmp/rt/bytes"], check=True)
    assert seen.stdout.split()[0] == hashlib.sha256(EVERY_BYTE).hexdigest()
    await files.write("/tmp/rt/text", "grüße\n")
    assert await files.read_text("/tmp/rt/text") == "grüße\n"
    # A name that is not UTF-8, as bytes and as the str os.fsdecode makes of it.
    await files.write(b"/tmp/rt/caf\xe9", b"latin-1 name")
    assert await files.read(os.fsdecode(b"/tmp/rt/caf\xe9")) == b"latin-1 name"
    names = {entry.path_bytes for entry in await files.list("/tmp/rt")}
    assert names == {b"empty", b"bytes", b"text", b"caf\xe9"}


async def test_a_large_file_streams_both_ways(box: sandlot.AsyncSandbox) -> None:
    block = os.urandom(MIB)
    total = 100 * MIB

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(100):
            yield block[i:] + block[:i]

    expected = hashlib.sha256()
    for i in range(100):
        expected.update(block[i:] + block[:i])
    assert await box.files.write("/tmp/big", chunks()) == total
    got = hashlib.sha256()
    size = 0
    async for chunk in box.files.open_read("/tmp/big"):
        got.update(chunk)
        size += len(chunk)
    assert (size, got.hexdigest()) == (total, expected.hexdigest())
    # A window of it.
    window = await box.files.open_read("/tmp/big", offset=MIB + 5, length=10).__anext__()
    assert window == (block[1:] + block[:1])[5:15]
    await box.files.remove("/tmp/big")


async def test_listing_modes_and_symlinks(box: sandlot.AsyncSandbox) -> None:
    files = box.files
    await files.mkdir("/tmp/ls/sub/deeper", parents=True)
    await files.write("/tmp/ls/secret", b"s", mode=0o600)
    await files.write("/tmp/ls/sub/run.sh", b"#!/bin/sh\necho ran\n", mode=0o755)
    await box.exec(["ln", "-s", "sub/run.sh", "/tmp/ls/link"], check=True)
    top = {entry.name: entry for entry in await files.list("/tmp/ls")}
    assert set(top) == {"secret", "sub", "link"}
    assert (top["secret"].type, top["secret"].mode, top["secret"].size) == ("file", 0o600, 1)
    assert top["sub"].is_dir and top["link"].is_symlink and top["link"].target == "sub/run.sh"
    every = {entry.path for entry in await files.list("/tmp/ls", recursive=True)}
    assert every == {"secret", "sub", "sub/deeper", "sub/run.sh", "link"}
    assert (await box.exec(["/tmp/ls/sub/run.sh"], check=True)).stdout == "ran\n"
    info = await files.stat("/tmp/ls/link")
    assert (info.type, info.target) == ("symlink", "sub/run.sh")
    assert await files.exists("/tmp/ls/secret") and not await files.exists("/tmp/ls/nothing")
    await files.rename("/tmp/ls/secret", "/tmp/ls/moved")
    assert await files.read("/tmp/ls/moved") == b"s"
    # chmod: a file, a directory, even one whose mode denies everything; never through a link.
    await files.chmod("/tmp/ls/moved", 0o000)
    await files.chmod("/tmp/ls/moved", 0o640)
    await files.chmod("/tmp/ls/sub", 0o700)
    modes = {entry.path: entry.mode for entry in await files.list("/tmp/ls", recursive=True)}
    assert (modes["moved"], modes["sub"], modes["sub/run.sh"]) == (0o640, 0o700, 0o755)
    with pytest.raises(sandlot.errors.SandboxFileError) as linked:
        await files.chmod("/tmp/ls/link", 0o777)
    assert linked.value.errno == 40
    assert (await files.stat("/tmp/ls/sub/run.sh")).mode == 0o755, "the link's target is untouched"
    with pytest.raises(sandlot.errors.FileNotFoundError):
        await files.chmod("/tmp/ls/nothing", 0o600)
    with pytest.raises(sandlot.InvalidSpecError, match="mode"):
        await files.chmod("/tmp/ls/moved", 0o10000)
    await files.remove("/tmp/ls", recursive=True)
    assert not await files.exists("/tmp/ls")


async def test_a_listing_reaches_below_the_kernels_path_limit(box: sandlot.AsyncSandbox) -> None:
    # 20 directories of 250-byte names: the deepest is 5,019 bytes below the
    # listed one, past the 4,096 bytes one system call takes as a path.
    # Two chains of 10 made apart, one moved below the other: no path the shell
    # hands the kernel is that long.
    script = (
        "n=$(head -c 250 /dev/zero | tr '\\0' n); p=$n; for i in $(seq 9); do p=$p/$n; done;"
        " mkdir -p /tmp/deep/$p /tmp/half/$p && mv /tmp/half/$n /tmp/deep/$p/"
    )
    await box.exec(["sh", "-c", script], check=True)
    paths = [entry.path for entry in await box.files.list("/tmp/deep", recursive=True)]
    assert paths == ["/".join(["n" * 250] * depth) for depth in range(1, 21)]
    assert len(paths[-1]) == 5019
    await box.files.remove("/tmp/deep", recursive=True)
    assert not await box.files.exists("/tmp/deep")


async def test_each_error_has_its_class(box: sandlot.AsyncSandbox) -> None:
    files = box.files
    await files.write("/tmp/err/file", b"x")
    with pytest.raises(sandlot.errors.FileNotFoundError) as missing:
        await files.read("/tmp/err/none")
    assert isinstance(missing.value, builtins.FileNotFoundError)
    assert isinstance(missing.value, sandlot.SandlotError)
    assert (missing.value.errno, missing.value.path) == (2, "/tmp/err/none")
    with pytest.raises(sandlot.errors.IsADirectoryError):
        await files.read("/tmp/err")
    with pytest.raises(sandlot.errors.NotADirectoryError):
        await files.list("/tmp/err/file")
    with pytest.raises(sandlot.errors.FileExistsError):
        await files.write("/tmp/err/file", b"y", exclusive=True)
    with pytest.raises(sandlot.errors.FileExistsError):
        await files.mkdir("/tmp/err")
    with pytest.raises(sandlot.errors.SandboxFileError) as not_empty:
        await files.remove("/tmp/err")
    assert not_empty.value.errno == 39
    # Root without capabilities is held to the owner's bits, like anyone.
    await files.write("/tmp/err/locked", b"z", mode=0o000)
    with pytest.raises(sandlot.errors.PermissionError) as denied:
        await files.read("/tmp/err/locked")
    assert isinstance(denied.value, builtins.PermissionError)
    with pytest.raises(sandlot.InvalidSpecError, match="mode"):
        await files.write("/tmp/err/bad", b"", mode=0o17777)
    with pytest.raises(sandlot.InvalidSpecError, match="path"):
        await files.read("")


async def test_a_write_that_fails_midway_leaves_nothing(box: sandlot.AsyncSandbox) -> None:
    files = box.files
    await files.write("/tmp/mid/keep", b"old content")

    async def breaks() -> AsyncIterator[bytes]:
        yield b"new " * 1000
        raise RuntimeError("the source broke")

    with pytest.raises(RuntimeError, match="the source broke"):
        await files.write("/tmp/mid/keep", breaks())
    with pytest.raises(RuntimeError, match="the source broke"):
        await files.write("/tmp/mid/fresh", breaks())
    upload = await files.open_write("/tmp/mid/aborted")
    await upload.write(b"partial")
    await upload.abort()
    assert await files.read("/tmp/mid/keep") == b"old content"
    assert sorted(e.name for e in await files.list("/tmp/mid")) == ["keep"], "no partial or temporary file"


async def test_an_abandoned_read_stops_in_the_sandbox(box: sandlot.AsyncSandbox) -> None:
    chunks = box.files.open_read("/dev/zero")  # without end
    assert set(await chunks.__anext__()) == {0}
    del chunks
    gc.collect()
    running = "?"
    for _ in range(50):
        running = (await box.exec(["sh", "-c", "ps -o args | grep '[a]gent file' || true"], check=True)).stdout
        if not running:
            break
        await asyncio.sleep(0.2)
    assert running == "", "the agent's read was killed"


# Stops (SIGSTOP) every run of the agent's file mode, as code in a sandbox can:
# the agent runs as the sandbox's user. The pattern is split so that this
# loop's own command line does not match it.
STOP_FILE_RUNS = (
    "a=agen; while :; do for p in /proc/[0-9]*; do "
    'case "$(tr "\\0" " " < $p/cmdline 2>/dev/null)" in *"${a}t file"*) kill -STOP ${p#/proc/} ;; esac; '
    "done; done"
)


async def test_an_agent_the_sandbox_stops_is_a_timeout_not_a_hang(box: sandlot.AsyncSandbox) -> None:
    started = await box.exec(["sh", "-c", f"({STOP_FILE_RUNS}) >/dev/null 2>&1 & echo $!"], check=True)
    stopper = started.stdout.strip()

    async def endless() -> AsyncIterator[bytes]:
        for _ in range(1024):
            yield bytes(MIB)

    async def read_all(path: str) -> None:
        async for _ in box.files.open_read(path):
            pass

    _testing.set_file_idle(2)
    try:
        with pytest.raises(sandlot.TimeoutError, match="no progress"):
            await asyncio.wait_for(read_all("/dev/zero"), 60)
        with pytest.raises(sandlot.TimeoutError, match="no progress"):
            await asyncio.wait_for(box.files.write("/tmp/stall/new", endless()), 60)
    finally:
        _testing.set_file_idle(120)
        await box.exec(["kill", stopper], check=True)
    assert not await box.files.exists("/tmp/stall/new"), "nothing under the final name"
    # The stopped runs were killed: none is left in the sandbox.
    left = "?"
    for _ in range(100):
        left = (await box.exec(["sh", "-c", "ps -o args | grep '[a]gent file' || true"], check=True)).stdout
        if not left:
            break
        await asyncio.sleep(0.3)
    assert left == "", "the stalled runs were killed"


async def test_read_stops_at_max_size(box: sandlot.AsyncSandbox) -> None:
    files = box.files
    await files.write("/tmp/max/thousand", bytes(1000))
    assert len(await files.read("/tmp/max/thousand", max_size=1000)) == 1000
    with pytest.raises(sandlot.errors.SandboxFileError, match="max_size") as too_large:
        await files.read("/tmp/max/thousand", max_size=999)
    assert too_large.value.errno == 27
    with pytest.raises(sandlot.errors.SandboxFileError, match="max_size"):
        await files.read_text("/tmp/max/thousand", max_size=10)
    # A file the sandbox made huge (sparse: 8 GiB that take no disk) is
    # refused by default once 256 MiB came, instead of filling the caller.
    await box.exec(["truncate", "-s", "8G", "/tmp/max/huge"], check=True)
    with pytest.raises(sandlot.errors.SandboxFileError, match="max_size"):
        await files.read("/tmp/max/huge")


async def test_download_file_is_whole_or_absent(box: sandlot.AsyncSandbox, tmp_path: Path) -> None:
    files = box.files
    await files.write("/tmp/dl/every", EVERY_BYTE)
    local = tmp_path / "every"
    local.write_bytes(b"old")
    assert await files.download_file("/tmp/dl/every", local) == len(EVERY_BYTE)
    assert local.read_bytes() == EVERY_BYTE
    with pytest.raises(FileNotFoundError):
        await files.download_file("/tmp/dl/missing", tmp_path / "missing")
    # A download given up midway (1 GiB of a sparse file), once its
    # temporary file is there: nothing is left.
    await box.exec(["truncate", "-s", "1G", "/tmp/dl/huge"], check=True)
    download = asyncio.ensure_future(files.download_file("/tmp/dl/huge", tmp_path / "huge"))
    started: list[str] = []
    for _ in range(100):
        started = [n for n in await asyncio.to_thread(os.listdir, tmp_path) if n.startswith(".huge.sandlot-")]
        if started or download.done():
            break
        await asyncio.sleep(0.05)
    assert started and not download.done(), "the download was under way"
    download.cancel()
    with pytest.raises(asyncio.CancelledError):
        await download
    left: list[str] = []
    for _ in range(50):  # the cancel reaches the native task a moment later
        left = sorted(await asyncio.to_thread(os.listdir, tmp_path))
        if left == ["every"]:
            break
        await asyncio.sleep(0.1)
    assert left == ["every"], "no partial or temporary file"


async def test_trees_go_up_and_down_with_modes_and_links(box: sandlot.AsyncSandbox, tmp_path: Path) -> None:
    source = tmp_path / "source"
    (source / "bin").mkdir(parents=True)
    (source / "data" / "nested").mkdir(parents=True)
    (source / "bin" / "tool").write_bytes(b"#!/bin/sh\necho tool\n")
    (source / "bin" / "tool").chmod(0o750)
    (source / "data" / "nested" / "blob").write_bytes(EVERY_BYTE)
    (source / "data" / "empty").write_bytes(b"")
    (source / "data" / "frozen").mkdir()
    (source / "data" / "frozen" / "inside").write_bytes(b"in a read-only directory")
    (source / "data" / "frozen").chmod(0o555)
    (source / "latest").symlink_to("data/nested/blob")
    try:
        sent = await box.files.upload(source, "/tmp/tree")
        assert sent == len(EVERY_BYTE) + len(b"#!/bin/sh\necho tool\n") + len(b"in a read-only directory")
        assert (await box.exec(["/tmp/tree/bin/tool"], check=True)).stdout == "tool\n"
        assert await box.files.read("/tmp/tree/latest") == EVERY_BYTE

        back = tmp_path / "back"
        assert await box.files.download("/tmp/tree", back) == sent
        assert snapshot(back) == snapshot(source)
    finally:
        for root in (source, tmp_path / "back"):
            frozen = root / "data" / "frozen"
            if frozen.exists():
                frozen.chmod(0o755)


def snapshot(root: Path) -> dict[str, tuple[str, int, bytes]]:
    """Every entry below `root`: its kind, permission bits and content (a link's target)."""
    entries = {}
    for path in sorted(root.rglob("*")):
        info = path.lstat()
        if stat.S_ISLNK(info.st_mode):
            entries[str(path.relative_to(root))] = ("link", 0, os.readlink(path).encode())
        elif stat.S_ISDIR(info.st_mode):
            entries[str(path.relative_to(root))] = ("dir", stat.S_IMODE(info.st_mode), b"")
        else:
            entries[str(path.relative_to(root))] = ("file", stat.S_IMODE(info.st_mode), path.read_bytes())
    return entries


async def test_a_hostile_sandbox_cannot_write_outside_the_download(box: sandlot.AsyncSandbox, tmp_path: Path) -> None:
    # Links the workload planted: out by an absolute target, and out by "..".
    for target, link in (("/etc", "esc"), ("../../../outside", "sub/up")):
        await box.exec(
            [
                "sh",
                "-c",
                f"rm -rf /tmp/evil && mkdir -p /tmp/evil/sub && echo f > /tmp/evil/a && ln -s {target} /tmp/evil/{link}",
            ],
            check=True,
        )
        target_dir = tmp_path / f"into-{link.replace('/', '-')}"
        with pytest.raises(sandlot.errors.PermissionError, match="outside"):
            await box.files.download("/tmp/evil", target_dir)
        assert not (tmp_path / "outside").exists()
        written = {str(p.relative_to(target_dir)) for p in target_dir.rglob("*")}
        assert link not in written, "the link itself is never made"
    assert sorted(os.listdir(tmp_path)) == ["into-esc", "into-sub-up"]


async def test_a_shell_less_image_with_a_read_only_root(sandlot_namespace: str) -> None:
    async with sandlot.AsyncClient(sandlot_namespace) as client:
        sb = await client.sandboxes.create(STATIC, command=["/pause"], read_only_root_filesystem=True)
        try:
            await sb.wait("running", timeout=120)
            await sb.files.write("/tmp/note", EVERY_BYTE)
            assert await sb.files.read("/tmp/note") == EVERY_BYTE
            assert {"pause", "probe", "tmp"} <= {e.name for e in await sb.files.list("/")}
            with pytest.raises(sandlot.errors.ReadOnlyFileSystemError):
                await sb.files.write("/etc-note", b"no")
        finally:
            await sb.terminate()


async def test_files_over_the_kubernetes_exec_path(box: sandlot.AsyncSandbox, sandlot_namespace: str) -> None:
    async with sandlot.AsyncClient(sandlot_namespace, exec_path="kubernetes") as kube:
        sb = await kube.sandboxes.get(box.name)
        await sb.files.write("/tmp/kube/file", EVERY_BYTE * 64)
        assert await sb.files.read("/tmp/kube/file") == EVERY_BYTE * 64
        assert [e.name for e in await sb.files.list("/tmp/kube")] == ["file"]
        with pytest.raises(sandlot.errors.FileNotFoundError):
            await sb.files.read("/tmp/kube/none")
    assert await box.files.read("/tmp/kube/file") == EVERY_BYTE * 64


async def test_volume_files_with_and_without_a_sandbox(sandlot_async_client: sandlot.AsyncClient) -> None:
    volume = await sandlot_async_client.volumes.create(unique("files"), size="64Mi")
    try:
        # Nothing mounts it: a helper does the work.
        await volume.files.write("/in/data.bin", EVERY_BYTE)
        await volume.files.write("notes.txt", "written with no sandbox\n")
        await volume.files.chmod("notes.txt", 0o600)
        assert (await volume.files.stat("notes.txt")).mode == 0o600
        assert {e.path for e in await volume.files.list("/", recursive=True)} == {"in", "in/data.bin", "notes.txt"}
        with pytest.raises(sandlot.InvalidSpecError, match="volume"):
            await volume.files.read("../escape")
        # The helpers are not sandboxes.
        listed = [s.name for s in await sandlot_async_client.sandboxes.list()]
        assert not [name for name in listed if name.startswith("sandlot-files-")]
        sb = await sandlot_async_client.sandboxes.create(BUSYBOX, volume_mounts={"/data": volume.name})
        try:
            await sb.wait("running", timeout=120)
            seen = await sb.exec(["sha256sum", "/data/in/data.bin"], check=True)
            assert seen.stdout.split()[0] == hashlib.sha256(EVERY_BYTE).hexdigest()
            await sb.exec(["sh", "-c", "echo from the sandbox > /data/back.txt"], check=True)
            # While it is mounted.
            assert await volume.files.read_text("back.txt") == "from the sandbox\n"
        finally:
            await sb.terminate()
    finally:
        await volume.delete(force=True)


async def test_volume_files_as_a_sandboxs_own_user(sandlot_async_client: sandlot.AsyncClient) -> None:
    volume = await sandlot_async_client.volumes.create(unique("files-as"), size="64Mi")
    try:
        with pytest.raises(sandlot.InvalidSpecError, match="run_as_user"):
            volume.files_as(0)
        mine = volume.files_as(run_as_user=1000)
        assert "run_as_user=1000" in repr(mine)
        await mine.write("mine.txt", b"by 1000\n", mode=0o600)
        await volume.files.write("root.txt", b"by root\n")
        sb = await sandlot_async_client.sandboxes.create(
            BUSYBOX, run_as_user=1000, volume_mounts={"/data": volume.name}
        )
        try:
            await sb.wait("running", timeout=120)
            owners = await sb.exec(["stat", "-c", "%u:%g", "/data/mine.txt", "/data/root.txt"], check=True)
            mine_owner, root_owner = owners.stdout.split()
            assert (mine_owner, root_owner.split(":")[0]) == ("1000:1000", "0")
            appended = await sb.exec(["sh", "-c", "echo more >> /data/mine.txt && cat /data/mine.txt"], check=True)
            assert appended.stdout == "by 1000\nmore\n"
            await sb.exec(["sh", "-c", "umask 077 && echo secret > /data/theirs.txt"], check=True)
        finally:
            await sb.terminate()
        # The sandbox's own file, mode 0600: its user reads it, uid 0 without capabilities may not.
        assert await mine.read("theirs.txt") == b"secret\n"
        with pytest.raises(sandlot.errors.PermissionError):
            await volume.files.read("theirs.txt")
    finally:
        await volume.delete(force=True)


def test_the_sync_client_has_files_too(sandlot_client: sandlot.Client, tmp_path: Path) -> None:
    with sandlot_client.sandboxes.create(BUSYBOX) as sb:
        sb.wait("running", timeout=120)
        local = tmp_path / "up.bin"
        local.write_bytes(EVERY_BYTE)
        assert sb.files.write("/tmp/up.bin", local) == len(EVERY_BYTE)

        def pieces() -> Iterator[bytes]:
            yield b"one "
            yield b"two"

        sb.files.write("/tmp/pieces", pieces())
        assert sb.files.read("/tmp/pieces") == b"one two"
        assert b"".join(sb.files.open_read("/tmp/up.bin")) == EVERY_BYTE
        with sb.files.open_write("/tmp/ctx") as upload:
            upload.write(b"in a with block")
        assert sb.files.read_text("/tmp/ctx") == "in a with block"
        sb.files.chmod("/tmp/ctx", 0o604)
        assert sb.files.stat("/tmp/ctx").mode == 0o604
        with pytest.raises(sandlot.errors.FileNotFoundError):
            sb.files.stat("/tmp/none")
