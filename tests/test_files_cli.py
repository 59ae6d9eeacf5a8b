"""The `sandlot cp`, `ls` and `cat` commands run as a process against a real
cluster: files and trees up and down byte for byte with their modes, stdin and
stdout as operands, listings, a volume no sandbox mounts, and the errors and
exit statuses of missing files and bad operands."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import unique
from test_cli import on_a_terminal

SANDLOT = shutil.which("sandlot", path=str(Path(sys.executable).parent)) or "sandlot"
BUSYBOX = "docker.io/library/busybox:1.36"
EVERY_BYTE = bytes(range(256)) * 4
MIB = 1024 * 1024


def sandlot(namespace: str, *args: str | bytes, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    """Runs the CLI with bytes in and out (stdin empty unless given)."""
    return subprocess.run(
        [SANDLOT, "--namespace", namespace, *args],  # bytes: names that are not UTF-8
        capture_output=True,
        timeout=300,
        env=os.environ,
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
    )


def ok(namespace: str, *args: str | bytes, stdin: bytes | None = None) -> bytes:
    """The stdout of a CLI run that must succeed quietly (no progress or notes
    on stderr, which is not a terminal here)."""
    ran = sandlot(namespace, *args, stdin=stdin)
    assert ran.returncode == 0, ran.stderr.decode()
    assert ran.stderr == b""
    return ran.stdout


def cli(namespace: str, *args: str) -> list[str]:
    """The command line of a CLI run in `namespace`."""
    return [SANDLOT, "--namespace", namespace, *args]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


@pytest.fixture(scope="module")
def box(sandlot_namespace: str) -> Iterator[str]:
    """A running busybox sandbox for the module; its name."""
    name = unique("files-cli")
    ok(sandlot_namespace, "create", BUSYBOX, "--name", name, "--wait")
    yield name
    sandlot(sandlot_namespace, "terminate", name)


def make_tree(root: Path) -> None:
    """Files with different modes, nested and empty directories, a symlink."""
    (root / "bin").mkdir(parents=True)
    (root / "deep" / "er").mkdir(parents=True)
    (root / "empty").mkdir()
    (root / "a.txt").write_bytes(b"alpha\n")
    (root / "bin" / "run.sh").write_bytes(b"#!/bin/sh\necho run\n")
    (root / "deep" / "er" / "all.bin").write_bytes(EVERY_BYTE)
    (root / "link").symlink_to("a.txt")
    (root / "a.txt").chmod(0o640)
    (root / "bin" / "run.sh").chmod(0o755)
    (root / "deep" / "er" / "all.bin").chmod(0o600)
    (root / "empty").chmod(0o700)


def check_tree(root: Path) -> None:
    """Fails unless `root` holds what make_tree made."""
    assert (root / "a.txt").read_bytes() == b"alpha\n"
    assert (root / "bin" / "run.sh").read_bytes() == b"#!/bin/sh\necho run\n"
    assert (root / "deep" / "er" / "all.bin").read_bytes() == EVERY_BYTE
    assert os.readlink(root / "link") == "a.txt"
    assert (root / "empty").is_dir() and not any((root / "empty").iterdir())
    modes = {name: mode(root / name) for name in ["a.txt", "bin/run.sh", "deep/er/all.bin", "empty"]}
    assert modes == {"a.txt": 0o640, "bin/run.sh": 0o755, "deep/er/all.bin": 0o600, "empty": 0o700}


def test_a_file_goes_up_and_back_byte_exact_with_its_mode(sandlot_namespace: str, box: str, tmp_path: Path) -> None:
    local = tmp_path / "all.bin"
    local.write_bytes(EVERY_BYTE)
    local.chmod(0o751)
    assert ok(sandlot_namespace, "cp", str(local), f"{box}:/tmp/up/all.bin") == b"", "cp prints nothing"
    seen = ok(sandlot_namespace, "exec", box, "--", "sh", "-c", "stat -c %a /tmp/up/all.bin; md5sum < /tmp/up/all.bin")
    assert seen.split()[0] == b"751"
    assert ok(sandlot_namespace, "cat", f"{box}:/tmp/up/all.bin") == EVERY_BYTE

    back = tmp_path / "back.bin"
    ok(sandlot_namespace, "cp", f"{box}:/tmp/up/all.bin", str(back))
    assert back.read_bytes() == EVERY_BYTE
    assert mode(back) == 0o751

    # Into an existing directory, either way, the file keeps its name.
    ok(sandlot_namespace, "cp", str(local), f"{box}:/tmp/up")
    ok(sandlot_namespace, "cp", str(local), f"{box}:/tmp/made/")
    listed = ok(sandlot_namespace, "ls", f"{box}:/tmp/made").split()
    assert listed == [b"all.bin"], "a DST ending in / is a directory, made if missing"
    into = tmp_path / "into"
    into.mkdir()
    ok(sandlot_namespace, "cp", f"{box}:/tmp/made/all.bin", str(into))
    assert (into / "all.bin").read_bytes() == EVERY_BYTE


def test_names_that_are_not_utf8_go_both_ways(sandlot_namespace: str, box: str, tmp_path: Path) -> None:
    local = os.fsencode(tmp_path) + b"/caf\xe9"
    with open(local, "wb") as file:
        file.write(EVERY_BYTE)
    remote = box.encode() + b":/tmp/latin/caf\xe9"
    ok(sandlot_namespace, "cp", local, remote)
    assert ok(sandlot_namespace, "ls", f"{box}:/tmp/latin").split() == [b"caf\xe9"]
    assert ok(sandlot_namespace, "cat", remote) == EVERY_BYTE
    back = os.fsencode(tmp_path) + b"/back\xff"
    ok(sandlot_namespace, "cp", remote, back)
    with open(back, "rb") as file:
        assert file.read() == EVERY_BYTE
    bad = sandlot(sandlot_namespace, "cat", b"bo\xffx:/etc/hosts")
    assert bad.returncode == 2 and b"UTF-8" in bad.stderr, bad.stderr


def test_stdin_and_stdout_as_operands(sandlot_namespace: str, box: str) -> None:
    data = EVERY_BYTE * 3 * 1024  # 3 MiB: several chunks
    ok(sandlot_namespace, "cp", "-", f"{box}:/tmp/piped.bin", stdin=data)
    assert ok(sandlot_namespace, "cp", f"{box}:/tmp/piped.bin", "-") == data
    assert ok(sandlot_namespace, "cat", f"{box}:/tmp/piped.bin") == data
    shown = ok(sandlot_namespace, "ls", "-l", f"{box}:/tmp/piped.bin").decode()
    assert shown.startswith("-rw-r--r-- 3145728 "), shown
    assert shown.endswith(" /tmp/piped.bin\n"), "a file is listed under the path given"
    ok(sandlot_namespace, "cp", "-", f"{box}:/tmp/empty.bin", stdin=b"")
    assert ok(sandlot_namespace, "cat", f"{box}:/tmp/empty.bin") == b""


def test_a_tree_goes_up_and_down(sandlot_namespace: str, box: str, tmp_path: Path) -> None:
    source = tmp_path / "src"
    make_tree(source)
    ok(sandlot_namespace, "cp", str(source), f"{box}:/tmp/tree")
    recursive = ok(sandlot_namespace, "ls", "-R", f"{box}:/tmp/tree").split(b"\n")
    assert set(recursive) >= {b"a.txt", b"bin", b"bin/run.sh", b"deep/er/all.bin", b"empty", b"link"}
    long = ok(sandlot_namespace, "ls", "-lR", f"{box}:/tmp/tree").decode().splitlines()
    by_name = {line.split(None, 3)[3]: line.split()[0] for line in long}
    assert by_name["link -> a.txt"] == "lrwxrwxrwx"
    assert by_name["bin"] == "drwxr-xr-x"
    assert by_name["bin/run.sh"] == "-rwxr-xr-x"
    assert by_name["deep/er/all.bin"] == "-rw-------"
    assert by_name["empty"] == "drwx------"

    down = tmp_path / "down"
    ok(sandlot_namespace, "cp", f"{box}:/tmp/tree", str(down))
    check_tree(down)
    # Into an existing directory, a tree lands under its own name, as cp -r does.
    ok(sandlot_namespace, "cp", f"{box}:/tmp/tree", str(down))
    check_tree(down / "tree")
    ok(sandlot_namespace, "cp", str(source), f"{box}:/tmp/tree")
    assert b"src/deep/er/all.bin" in ok(sandlot_namespace, "ls", "-R", f"{box}:/tmp/tree").split(b"\n")


def test_listings_as_names_long_and_json(sandlot_namespace: str, box: str) -> None:
    script = 'mkdir -p /tmp/ls/sub && echo hi > /tmp/ls/sub/f && ln -s sub /tmp/ls/ln && touch "$(printf "/tmp/ls/caf\\351")"'
    ok(sandlot_namespace, "exec", box, "--", "sh", "-c", script)
    names = ok(sandlot_namespace, "ls", f"{box}:/tmp/ls")
    assert sorted(names.split(b"\n")) == [b"", b"caf\xe9", b"ln", b"sub"], "names go out as their bytes"
    assert b"sub/f" not in names, "one level unless -R"
    assert b"sub/f" in ok(sandlot_namespace, "ls", "--recursive", f"{box}:/tmp/ls")
    long = ok(sandlot_namespace, "ls", "--long", f"{box}:/tmp/ls").decode(errors="replace")
    assert " ln -> sub\n" in long and "drwxr-xr-x" in long
    listed = json.loads(ok(sandlot_namespace, "ls", "-R", f"{box}:/tmp/ls", "-o", "json"))
    entries = {entry["path"]: entry for entry in listed}
    assert entries["sub/f"]["kind"] == "file" and entries["sub/f"]["size"] == 3
    assert entries["sub/f"]["mode"] == 0o644
    assert entries["ln"]["target"] == "sub" and entries["ln"]["kind"] == "symlink"
    assert entries["caf\ufffd"]["kind"] == "file"
    assert entries["sub"]["mtime"].endswith("Z")
    assert ok(sandlot_namespace, "cat", f"{box}:/tmp/ls/ln/f") == b"hi\n", "cat follows symlinks"
    ok(sandlot_namespace, "chmod", "0600", f"{box}:/tmp/ls/sub/f")
    listed = json.loads(ok(sandlot_namespace, "ls", f"{box}:/tmp/ls/sub", "-o", "json"))
    assert listed[0]["mode"] == 0o600
    refused = subprocess.run(
        [SANDLOT, "--namespace", sandlot_namespace, "chmod", "755", f"{box}:/tmp/ls/ln"], capture_output=True
    )
    assert refused.returncode != 0 and b"symbolic link" in refused.stderr.lower(), refused.stderr
    bad = subprocess.run([SANDLOT, "chmod", "9", f"{box}:/tmp/ls/sub/f"], capture_output=True)
    assert bad.returncode == 2 and b"octal" in bad.stderr


def test_progress_and_names_on_a_terminal(sandlot_namespace: str, box: str, tmp_path: Path) -> None:
    local = tmp_path / "big.bin"
    local.write_bytes(os.urandom(40 * MIB))
    shown = on_a_terminal(*cli(sandlot_namespace, "cp", str(local), f"{box}:/tmp/big.bin"), stream="stderr")
    assert b"/40.00 MiB " in shown and b"MiB/s" in shown, "bytes moved of the total, and the rate"
    assert shown.endswith(b"\r\x1b[2K"), "the line is cleared at the end"
    down = on_a_terminal(
        *cli(sandlot_namespace, "cp", f"{box}:/tmp/big.bin", str(tmp_path / "back.bin")), stream="stderr"
    )
    assert b"/40.00 MiB " in down
    assert (tmp_path / "back.bin").read_bytes() == local.read_bytes()
    # A name a sandbox chose cannot drive the terminal it is listed on.
    ok(sandlot_namespace, "exec", box, "--", "sh", "-c", 'mkdir -p /tmp/esc && touch "$(printf "/tmp/esc/a\\033[2Jb")"')
    listed = on_a_terminal(*cli(sandlot_namespace, "ls", f"{box}:/tmp/esc"))
    assert listed == b"a\\u{1b}[2Jb\r\n"
    assert ok(sandlot_namespace, "ls", f"{box}:/tmp/esc") == b"a\x1b[2Jb\n", "into a pipe, the name's own bytes"


def test_missing_files_are_clear_errors(sandlot_namespace: str, box: str, tmp_path: Path) -> None:
    for args in (
        ["cat", f"{box}:/no/such"],
        ["ls", f"{box}:/no/such"],
        ["cp", f"{box}:/no/such", str(tmp_path / "x")],
        ["cp", f"{box}:/no/such", "-"],
    ):
        ran = sandlot(sandlot_namespace, *args)
        assert ran.returncode == 4, (args, ran.stderr)
        assert ran.stderr.decode() == f'error: sandbox "{box}": "/no/such": no such file or directory\n', args
        assert ran.stdout == b""
    assert not (tmp_path / "x").exists()
    local = sandlot(sandlot_namespace, "cp", str(tmp_path / "absent"), f"{box}:/tmp/x")
    assert local.returncode == 4
    assert local.stderr.decode().startswith(f'error: this machine: "{tmp_path / "absent"}": No such file')
    no_sandbox = sandlot(sandlot_namespace, "cat", "no-such-sandbox:/etc/hosts")
    assert no_sandbox.returncode == 4
    assert b"no-such-sandbox" in no_sandbox.stderr and b"not found" in no_sandbox.stderr
    a_directory = sandlot(sandlot_namespace, "cat", f"{box}:/tmp")
    assert a_directory.returncode == 1
    assert a_directory.stderr.decode() == f'error: sandbox "{box}": "/tmp": is a directory\n'


def test_a_volume_no_sandbox_mounts(sandlot_namespace: str, tmp_path: Path) -> None:
    volume = unique("files-cli")
    ok(sandlot_namespace, "volume", "create", volume, "--size", "64Mi")
    try:
        local = tmp_path / "all.bin"
        local.write_bytes(EVERY_BYTE)
        local.chmod(0o640)
        ok(sandlot_namespace, "cp", str(local), f"volume:{volume}:/dir/all.bin")
        ok(sandlot_namespace, "cp", "-", f"volume:{volume}:piped.txt", stdin=b"piped\n")
        assert ok(sandlot_namespace, "cat", f"volume:{volume}:/dir/all.bin") == EVERY_BYTE
        assert ok(sandlot_namespace, "cp", f"volume:{volume}:/piped.txt", "-") == b"piped\n"
        root = ok(sandlot_namespace, "ls", f"volume:{volume}:/").split()
        assert set(root) >= {b"dir", b"piped.txt"}, "paths are from the volume's root"
        back = tmp_path / "back.bin"
        ok(sandlot_namespace, "cp", f"volume:{volume}:dir/all.bin", str(back))
        assert back.read_bytes() == EVERY_BYTE and mode(back) == 0o640

        source = tmp_path / "src"
        make_tree(source)
        ok(sandlot_namespace, "cp", str(source), f"volume:{volume}:/tree")
        ok(sandlot_namespace, "cp", f"volume:{volume}:/tree", str(tmp_path / "down"))
        check_tree(tmp_path / "down")
        escape = sandlot(sandlot_namespace, "ls", f"volume:{volume}:/../etc")
        assert escape.returncode == 2 and b'".."' in escape.stderr

        # --user: a helper as uid 1000 owns what it writes; uid 0 without capabilities
        # may not read that user's mode-0600 file.
        ok(sandlot_namespace, "cp", "--user", "1000", "-", f"volume:{volume}:owned.txt", stdin=b"owned\n")
        ok(sandlot_namespace, "chmod", "--user", "1000", "600", f"volume:{volume}:owned.txt")
        assert ok(sandlot_namespace, "cat", "--user", "1000", f"volume:{volume}:owned.txt") == b"owned\n"
        as_root = sandlot(sandlot_namespace, "cat", f"volume:{volume}:owned.txt")
        assert as_root.returncode != 0 and b"ermission" in as_root.stderr, as_root.stderr
        on_a_sandbox = sandlot(sandlot_namespace, "ls", "--user", "1000", "job:/tmp")
        assert on_a_sandbox.returncode == 2 and b"--user" in on_a_sandbox.stderr
    finally:
        sandlot(sandlot_namespace, "volume", "delete", volume, "--force")


@pytest.mark.unit
def test_operands_need_exactly_one_remote_side() -> None:
    both_local = sandlot("default", "cp", "a", "./b:c")
    assert both_local.returncode == 2
    assert both_local.stderr.decode().startswith(
        'error: invalid SRC and DST: "a" and "./b:c" are both on this machine; one must be SANDBOX:PATH or volume:NAME:PATH'
    )
    assert sandlot("default", "cp", "-", "-").returncode == 2
    both_remote = sandlot("default", "cp", "one:/a", "volume:v:/b")
    assert both_remote.returncode == 2 and b"both remote" in both_remote.stderr
    assert sandlot("default", "cp", "-", "box:/dir/").returncode == 2, "stdin needs a file name"
    assert sandlot("default", "cat", "./local").returncode == 2
    assert sandlot("default", "ls", "box:").returncode == 2


@pytest.mark.unit
def test_help_documents_the_file_commands() -> None:
    for command in ["cp", "ls", "cat", "chmod"]:
        shown = subprocess.run([SANDLOT, command, "--help"], capture_output=True, text=True)
        assert shown.returncode == 0
        assert "Example" in shown.stdout and "volume:NAME:PATH" in shown.stdout, command
    top = subprocess.run([SANDLOT, "--help"], capture_output=True, text=True).stdout
    assert all(f"\n  {command} " in top for command in ["cp", "ls", "cat", "chmod"])
