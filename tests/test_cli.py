"""The `sandlot` command line (the console script of the wheel), run as a
process against a real cluster: every command, output formats, documented exit
statuses, stdin and TTY passthrough, and bulk terminate."""

from __future__ import annotations

import json
import os
import pty
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import unique

SANDLOT = shutil.which("sandlot", path=str(Path(sys.executable).parent)) or "sandlot"
BUSYBOX = "docker.io/library/busybox:1.36"


def sandlot(namespace: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SANDLOT, "--namespace", namespace, *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=os.environ,
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
    )


def test_main_path_from_the_terminal(sandlot_namespace: str) -> None:
    name = unique("cli")
    created = sandlot(sandlot_namespace, "create", BUSYBOX, "--name", name, "--tag", "via=cli", "--wait")
    assert created.returncode == 0, created.stderr
    assert created.stdout.strip() == name

    ran = sandlot(sandlot_namespace, "exec", name, "--", "sh", "-c", "echo hi; echo oops >&2; exit 42")
    assert ran.returncode == 42
    assert ran.stdout == "hi\n"
    assert ran.stderr == "oops\n"

    listed = sandlot(sandlot_namespace, "list", "--phase", "running", "--tag", "via=cli")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines()[0].split() == "NAME PHASE EXIT REASON IMAGE NETWORK AGE TAGS".split()
    assert name in listed.stdout and "via=cli" in listed.stdout

    as_json = sandlot(sandlot_namespace, "list", "--phase", "running", "-o", "json")
    parsed = json.loads(as_json.stdout)
    assert [s["phase"] for s in parsed if s["name"] == name] == ["running"]
    assert {"name", "phase", "exit_code", "termination_reason", "image", "tags", "created_at"} <= set(parsed[0])

    names = sandlot(sandlot_namespace, "list", "-o", "name", "--tag", "via=cli")
    assert names.stdout.split() == [name]

    got = sandlot(sandlot_namespace, "get", name, "-o", "json")
    assert json.loads(got.stdout)["phase"] == "running"

    terminated = sandlot(sandlot_namespace, "terminate", name)
    assert terminated.returncode == 0, terminated.stderr
    assert terminated.stdout.split() == [name, "terminated"]
    assert json.loads(sandlot(sandlot_namespace, "get", name, "-o", "json").stdout)["phase"] == "terminated"
    assert name not in sandlot(sandlot_namespace, "list", "-o", "name").stdout, "list shows active sandboxes by default"
    assert name in sandlot(sandlot_namespace, "list", "--all-phases", "-o", "name").stdout


def test_logs_wait_and_follow(sandlot_namespace: str) -> None:
    name = unique("cli-logs")
    created = sandlot(
        sandlot_namespace, "create", BUSYBOX, "--name", name, "--", "sh", "-c", "sleep 1; echo one; echo two"
    )
    assert created.returncode == 0, created.stderr
    followed = sandlot(sandlot_namespace, "logs", name, "-f")
    assert followed.returncode == 0, followed.stderr
    assert followed.stdout == "one\ntwo\n", "a follow ends by itself when the sandbox ends"
    waited = sandlot(sandlot_namespace, "wait", name, "--phase", "succeeded", "-o", "json")
    assert json.loads(waited.stdout)["exit_code"] == 0
    assert sandlot(sandlot_namespace, "logs", name, "--tail", "1").stdout == "two\n"
    assert sandlot(sandlot_namespace, "logs", name, "--since", "10m").stdout == "one\ntwo\n"
    stamped = sandlot(sandlot_namespace, "logs", name, "--timestamps").stdout.splitlines()
    assert stamped[0].endswith(" one") and stamped[0][:4].isdigit()


def test_exec_passes_stdin_with_i(sandlot_namespace: str) -> None:
    name = unique("cli-stdin")
    assert sandlot(sandlot_namespace, "create", BUSYBOX, "--name", name, "--wait").returncode == 0
    piped = sandlot(sandlot_namespace, "exec", "-i", name, "--", "sh", "-c", "tr a-z A-Z; exit 3", stdin="shout\n")
    assert (piped.returncode, piped.stdout) == (3, "SHOUT\n")
    sandlot(sandlot_namespace, "terminate", name)


def test_exec_t_drives_a_remote_shell_through_a_real_terminal(sandlot_namespace: str) -> None:
    name = unique("cli-tty")
    assert sandlot(sandlot_namespace, "create", BUSYBOX, "--name", name, "--wait").returncode == 0
    pid, fd = pty.fork()
    if pid == 0:
        os.execv(SANDLOT, [SANDLOT, "--namespace", sandlot_namespace, "exec", "-it", name, "--", "sh"])
    output = b""

    def read_until(marker: bytes, seconds: float) -> None:
        nonlocal output
        deadline = time.monotonic() + seconds
        while marker not in output and time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.2)
            if ready:
                try:
                    output += os.read(fd, 4096)
                except OSError:
                    return

    read_until(b"#", 60)
    os.write(fd, b"echo typed-$((40 + 2))\r")
    read_until(b"typed-42", 30)
    os.write(fd, b"exit 5\r")
    read_until(b"\x00never", 5)
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    assert b"typed-42" in output
    assert os.waitstatus_to_exitcode(status) == 5
    sandlot(sandlot_namespace, "terminate", name)


def test_terminate_twenty_by_tag(sandlot_namespace: str) -> None:
    tag = unique("batch")
    for _ in range(20):
        assert sandlot(sandlot_namespace, "create", BUSYBOX, "--tag", f"batch={tag}").returncode == 0
    dry = sandlot(sandlot_namespace, "terminate", "--tag", f"batch={tag}", "--dry-run")
    assert len(dry.stdout.splitlines()) == 20 and "would be terminated" in dry.stdout
    done = sandlot(sandlot_namespace, "terminate", "--tag", f"batch={tag}", "--yes")
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) == 20
    statuses = json.loads(
        sandlot(sandlot_namespace, "list", "--all-phases", "--tag", f"batch={tag}", "-o", "json").stdout
    )
    assert [s["phase"] for s in statuses] == ["terminated"] * 20
    purged = sandlot(sandlot_namespace, "purge", "--tag", f"batch={tag}", "--yes")
    assert purged.returncode == 0, purged.stderr
    assert len(purged.stdout.splitlines()) == 20
    # Purge is graceful: a record goes once its node confirms the workload stopped.
    for _ in range(120):
        left = sandlot(sandlot_namespace, "list", "--all-phases", "--tag", f"batch={tag}", "-o", "name").stdout
        if left == "":
            break
        time.sleep(0.5)
    assert left == ""


def test_bulk_operations_on_everything_need_confirmation(sandlot_namespace: str) -> None:
    refused = sandlot(sandlot_namespace, "terminate", "--all")
    assert refused.returncode == 2
    assert "--yes" in refused.stderr
    assert sandlot(sandlot_namespace, "purge").returncode == 2


def test_documented_exit_statuses_and_one_line_errors(sandlot_namespace: str) -> None:
    missing = sandlot(sandlot_namespace, "get", "no-such-sandbox")
    assert missing.returncode == 4
    assert (
        missing.stderr.splitlines()[0]
        == f'error: sandbox "no-such-sandbox" not found in namespace "{sandlot_namespace}"'
    )
    invalid = sandlot(sandlot_namespace, "create", BUSYBOX, "--name", "Bad_Name")
    assert invalid.returncode == 2
    assert invalid.stderr.startswith('error: invalid name: "Bad_Name"')
    malformed = sandlot(sandlot_namespace, "list", "--tag", "no-equals-sign")
    assert malformed.returncode == 2
    assert malformed.stderr.startswith("error: invalid --tag")
    assert sandlot(sandlot_namespace, "exec").returncode == 2

    done = unique("cli-done")
    sandlot(sandlot_namespace, "create", BUSYBOX, "--name", done, "--wait", "--", "true")
    sandlot(sandlot_namespace, "wait", done, "--phase", "succeeded")
    not_running = sandlot(sandlot_namespace, "exec", done, "--", "true")
    assert not_running.returncode == 3
    assert "not running" in not_running.stderr
    timed_out = sandlot(sandlot_namespace, "wait", done, "--phase", "running", "--timeout", "1")
    assert timed_out.returncode == 1, "a sandbox that ended cannot become running: an error at once"
    idle = unique("cli-idle")
    sandlot(sandlot_namespace, "create", BUSYBOX, "--name", idle)
    assert sandlot(sandlot_namespace, "wait", idle, "--phase", "succeeded", "--timeout", "1").returncode == 124
    sandlot(sandlot_namespace, "terminate", idle)


def test_kubeconfig_flag_and_unreachable_cluster(sandlot_namespace: str, tmp_path: Path) -> None:
    kubeconfig = os.environ["KUBECONFIG"]
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    env["HOME"] = str(tmp_path)
    with_flag = subprocess.run(
        [SANDLOT, "--kubeconfig", kubeconfig, "-n", sandlot_namespace, "list"], capture_output=True, text=True, env=env
    )
    assert with_flag.returncode == 0, with_flag.stderr
    without = subprocess.run([SANDLOT, "-n", sandlot_namespace, "list"], capture_output=True, text=True, env=env)
    assert without.returncode == 1
    assert without.stderr.startswith("error: cluster unreachable")
    assert "hint:" in without.stderr


@pytest.mark.unit
def test_help_documents_every_command_with_examples() -> None:
    top = subprocess.run([SANDLOT, "--help"], capture_output=True, text=True)
    for command in ["create", "list", "get", "logs", "exec", "wait", "terminate", "purge", "volume"]:
        assert command in top.stdout
        sub = subprocess.run([SANDLOT, command, "--help"], capture_output=True, text=True)
        assert sub.returncode == 0
        assert "Example" in sub.stdout, f"`sandlot {command} --help` shows an example"
    assert "124 timeout" in top.stdout


def on_a_terminal(*argv: str, stream: str = "stdout") -> bytes:
    """What `argv` writes to `stream` ("stdout" or "stderr") when that is a
    pseudo-terminal (the other goes nowhere)."""
    leader, follower = pty.openpty()
    into = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, stream: follower}
    proc = subprocess.Popen(argv, stdout=into["stdout"], stderr=into["stderr"], stdin=subprocess.DEVNULL)
    os.close(follower)
    output = b""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 1)
        if not ready:
            if proc.poll() is not None:
                break
            continue
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the terminal closed with the process
            break
        if not chunk:
            break
        output += chunk
    proc.wait(timeout=30)
    os.close(leader)
    return output


def test_text_a_sandbox_wrote_cannot_drive_the_terminal(sandlot_namespace: str) -> None:
    name = unique("ansi")
    script = r"printf 'title\033]0;owned\007 clear\033[2J\n'; printf 'end\033[31m' > /dev/termination-log; exit 1"
    created = sandlot(sandlot_namespace, "create", BUSYBOX, "--name", name, "--", "sh", "-c", script)
    assert created.returncode == 0, created.stderr
    assert sandlot(sandlot_namespace, "wait", name, "--phase", "failed", "--timeout", "120").returncode == 0
    shown_log = on_a_terminal(SANDLOT, "--namespace", sandlot_namespace, "logs", name)
    assert b"\x1b" not in shown_log and b"\x07" not in shown_log
    assert b"title\\u{1b}]0;owned\\u{7} clear\\u{1b}[2J" in shown_log
    shown_status = on_a_terminal(SANDLOT, "--namespace", sandlot_namespace, "get", name)
    assert b"\x1b[31m" not in shown_status
    assert b"end\\u{1b}[31m" in shown_status
    # Into a pipe or a file, the log is what the sandbox wrote, byte for byte.
    piped = subprocess.run(
        [SANDLOT, "--namespace", sandlot_namespace, "logs", name], capture_output=True, timeout=120, env=os.environ
    )
    assert piped.stdout == b"title\x1b]0;owned\x07 clear\x1b[2J\n"


def test_user_namespace_flags_and_what_get_shows(sandlot_namespace: str) -> None:
    default, off = unique("userns"), unique("no-userns")
    assert sandlot(sandlot_namespace, "create", BUSYBOX, "--name", default).returncode == 0
    made = sandlot(sandlot_namespace, "create", BUSYBOX, "--name", off, "--no-user-namespace", "-o", "json")
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["user_namespace"] is False
    shown = sandlot(sandlot_namespace, "get", default)
    assert "user ns    yes" in shown.stdout.splitlines()
    both = sandlot(sandlot_namespace, "create", BUSYBOX, "--user-namespace", "--no-user-namespace")
    assert both.returncode == 2 and "cannot be used with" in both.stderr
    for name in (default, off):
        assert sandlot(sandlot_namespace, "terminate", name).returncode == 0
