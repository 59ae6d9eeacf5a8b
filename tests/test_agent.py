"""The sandbox agent on a real cluster: execs through one connection per client
and sandbox with exact exit codes and byte-exact streams, a TTY, the whole
process tree killed on timeout and cancel, images without a shell and with a
read-only root, and what a hostile workload does to it: killing the agent (the
next exec still works) and impersonating it with malformed frames (a clear
error, or the Kubernetes path under `auto`)."""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import json
import os
import pty
import select
import struct
import subprocess
import sys
import termios
import time
from collections.abc import AsyncIterator, Callable

import pytest

import sandlot
from conftest import Kubectl, unique
from sandlot import _testing
from test_cli import SANDLOT as SANDLOT_BINARY
from test_cli import sandlot as sandlot_cli

BUSYBOX = "docker.io/library/busybox:1.36"
PYTHON = "docker.io/library/python:3.11-slim"
STATIC = "sandlot.local/static:1"  # /pause and /probe, static; no shell, no coreutils
MIB = 1024 * 1024
PROMPTLY = 60


@pytest.fixture(scope="module")
async def agent_client(sandlot_namespace: str) -> AsyncIterator[sandlot.AsyncClient]:
    async with sandlot.AsyncClient(sandlot_namespace, exec_path="agent") as client:
        yield client


@pytest.fixture(scope="module")
async def box(agent_client: sandlot.AsyncClient) -> AsyncIterator[sandlot.AsyncSandbox]:
    sb = await agent_client.sandboxes.create(BUSYBOX, resources={"cpu": "1", "memory": "512Mi"})
    await sb.wait("running", timeout=120)
    yield sb
    await sb.terminate()


async def processes(box: sandlot.AsyncSandbox, marker: str) -> list[str]:
    """The command lines of live (not zombie) processes in the sandbox that contain `marker`."""
    listing = await box.exec(
        'for p in /proc/[0-9]*; do s=$(cat $p/stat 2>/dev/null) || continue; case "$s" in *") Z "*) continue;; esac;'
        ' tr "\\0" " " < $p/cmdline 2>/dev/null; echo; done',
        check=True,
    )
    return [line.strip() for line in listing.stdout.splitlines() if marker in line]


async def test_exit_codes_are_exact(box: sandlot.AsyncSandbox) -> None:
    for code in (0, 1, 42):
        result = await box.exec(["sh", "-c", f"echo out; echo err >&2; exit {code}"], timeout=PROMPTLY)
        assert (result.exit_code, result.stdout, result.stderr, result.path) == (code, "out\n", "err\n", "agent")
    killed = await box.exec(["sh", "-c", "kill -9 $$"], timeout=PROMPTLY)
    assert killed.exit_code == 137
    missing = await box.exec(["no-such-program"], timeout=PROMPTLY)
    assert missing.exit_code == 127
    assert "no-such-program" in missing.stderr


async def test_streams_are_byte_exact_both_ways(box: sandlot.AsyncSandbox) -> None:
    made = await box.exec("head -c 104857600 /dev/urandom > /tmp/blob && sha256sum /tmp/blob", timeout=120, check=True)
    out = await box.exec(["cat", "/tmp/blob"], max_output=None, timeout=120)
    assert len(out.stdout_bytes) == 100 * MIB
    assert hashlib.sha256(out.stdout_bytes).hexdigest() == made.stdout.split()[0]
    # Ends that come while the connection is backed up are not left unsent
    # (each of these once waited for an event that never came).
    for _ in range(6):
        again = await box.exec(["head", "-c", str(20 * MIB), "/tmp/blob"], max_output=None, timeout=PROMPTLY)
        assert again.stdout_bytes == out.stdout_bytes[: 20 * MIB]
    await box.exec(["rm", "/tmp/blob"], check=True)
    data = os.urandom(10 * MIB)
    echoed = await box.exec(["cat"], stdin=data, max_output=None, timeout=120)
    assert echoed.stdout_bytes == data
    summed = await box.exec(["sha256sum"], stdin=data, timeout=120)
    assert summed.stdout.split()[0] == hashlib.sha256(data).hexdigest()
    assert {out.path, echoed.path, summed.path} == {"agent"}


async def test_env_workdir_and_a_terminal(box: sandlot.AsyncSandbox) -> None:
    result = await box.exec(["sh", "-c", 'echo "$GREETING"; pwd'], env={"GREETING": "a b'c"}, workdir="/tmp")
    assert result.stdout == "a b'c\n/tmp\n"
    process = await box.spawn(["sh", "-c", "tty; read line; echo got $line; exit 5"], tty=True, stdin=True)
    await process.write(b"abc\n")
    output = await asyncio.wait_for(process.read_stdout(), PROMPTLY)
    assert b"/dev/pts/" in output
    assert b"got abc" in output
    assert await process.wait() == 5
    # More input than the terminal's buffer holds at once.
    typed = await box.spawn(["sh", "-c", "stty -echo; echo ready; head -n 300 | wc -l"], tty=True, stdin=True)
    # Typed once echo is off (input that comes first is echoed back).
    assert (await asyncio.wait_for(typed.stdout.__anext__(), PROMPTLY)).strip() == b"ready"
    await typed.write(b"".join(b"%079d\n" % i for i in range(300)))
    assert (await asyncio.wait_for(typed.read_stdout(), PROMPTLY)).strip() == b"300"
    assert await typed.wait() == 0


async def test_a_timeout_kills_the_whole_tree(box: sandlot.AsyncSandbox) -> None:
    tree = "sleep 301 & setsid sleep 302 & (sleep 303 &) ; sleep 304"
    with pytest.raises(sandlot.errors.TimeoutError):
        await box.exec(["sh", "-c", tree], timeout=2)
    assert await processes(box, "sleep 30") == [], "every process the command started is gone"
    # A cancelled call too.
    task = asyncio.ensure_future(box.exec(["sh", "-c", tree.replace("30", "31")]))
    await asyncio.sleep(1.5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    for _ in range(40):
        if not await processes(box, "sleep 31"):
            break
        await asyncio.sleep(0.25)
    assert await processes(box, "sleep 31") == []


async def test_a_shell_less_image_with_a_read_only_root(agent_client: sandlot.AsyncClient) -> None:
    sb = await agent_client.sandboxes.create(STATIC, command=["/pause"], read_only_root_filesystem=True)
    try:
        await sb.wait("running", timeout=120)
        hi = await sb.exec(["/probe", "echo", "hi"], timeout=PROMPTLY)
        assert (hi.stdout, hi.exit_code, hi.path) == ("hi\n", 0, "agent")
        assert (await sb.exec(["probe", "exit", "42"])).exit_code == 42, "looked up in $PATH"
        assert (await sb.exec(["probe", "env", "X"], env={"X": "1"})).stdout == "1\n"
        assert (await sb.exec(["probe", "pwd"], workdir="/tmp")).stdout == "/tmp\n"
        assert (await sb.exec(["probe", "cat"], stdin=b"\x00\xffdata")).stdout_bytes == b"\x00\xffdata"
        with pytest.raises(sandlot.errors.TimeoutError):
            await sb.exec(["probe", "spawn-sleepers", "3", "300"], timeout=2)
        listing = (await sb.exec(["probe", "ps"])).stdout.splitlines()
        probes = [line for line in listing if line.endswith(" probe")]
        assert len(probes) == 1, listing  # `probe ps` itself: the sleepers are gone
        assert any(line.endswith(" pause") for line in listing), listing
    finally:
        await sb.terminate()


async def test_a_workload_that_kills_the_agent_does_not_stop_the_next_exec(
    agent_client: sandlot.AsyncClient, sandlot_namespace: str
) -> None:
    sb = await agent_client.sandboxes.create(BUSYBOX)
    try:
        await sb.wait("running", timeout=120)
        assert (await sb.exec(["true"])).path == "agent"
        # The workload kills every agent process, the one carrying this exec included.
        with pytest.raises(sandlot.errors.ExecError):
            await sb.exec(["sh", "-c", KILL_THE_AGENT + "; sleep 5"], timeout=PROMPTLY)
        again = await sb.exec(["echo", "back"], timeout=PROMPTLY)
        assert (again.stdout, again.path) == ("back\n", "agent")
        # Through the Kubernetes path as well.
        async with sandlot.AsyncClient(sandlot_namespace, exec_path="kubernetes") as kube:
            direct = await (await kube.sandboxes.get(sb.name)).exec(["echo", "direct"])
            assert (direct.stdout, direct.path) == ("direct\n", "kubernetes")
    finally:
        await sb.terminate()


# Kills every process of the agent (busybox has no pkill).
KILL_THE_AGENT = (
    "for p in /proc/[0-9]*; do case $(cat $p/cmdline 2>/dev/null) in"
    " /.sandlot-agent/agent*) kill -9 ${p#/proc/};; esac; done"
)


# Run in the sandbox through Kubernetes exec: kills the agent, then serves its
# socket with a "frame" announcing 1 GiB to whoever connects.
IMPERSONATOR = """
import os, signal, socket, struct
for pid in os.listdir("/proc"):
    try:
        if pid.isdigit() and open(f"/proc/{pid}/cmdline", "rb").read().startswith(b"/.sandlot-agent/"):
            os.kill(int(pid), signal.SIGKILL)
    except OSError:
        pass
server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
server.bind("\\0sandlot-agent-1")
server.listen(8)
if os.fork():
    os._exit(0)
os.setsid()
devnull = os.open("/dev/null", os.O_RDWR)
for fd in (0, 1, 2):
    os.dup2(devnull, fd)
while True:
    conn, _ = server.accept()
    conn.sendall(struct.pack("<IBI", 1 << 30, 64, 1))
"""


def agentless_sandbox(namespace: str, image: str = BUSYBOX, command: list[str] | None = None) -> str:
    """A running sandbox without the agent, as an older sandlot (or a client that
    may not create ConfigMaps) made them: the pod written by hand."""
    name = unique("old")
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "sandlot"}},
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [
                {
                    "name": "sandbox",
                    "image": image,
                    "command": command or ["sleep", "3600"],
                    "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
                }
            ],
        },
    }
    kubectl = Kubectl(namespace)
    kubectl.apply(json.dumps(pod))
    kubectl.run("wait", "--for=condition=Ready", f"pod/{name}", "--timeout=120s")
    return name


async def test_an_impersonating_agent_gets_a_clear_error_or_the_kubernetes_path(sandlot_namespace: str) -> None:
    async with sandlot.AsyncClient(sandlot_namespace, exec_path="agent") as agent:
        # A sandbox without the agent: an agent-only client says so, and so do files.
        plain = agentless_sandbox(sandlot_namespace)  # the client made the namespace
        with pytest.raises(sandlot.errors.ExecError, match="created without the agent"):
            await (await agent.sandboxes.get(plain)).exec(["true"])
        async with sandlot.AsyncClient(sandlot_namespace) as auto:
            old = await auto.sandboxes.get(plain)
            assert (await old.exec(["echo", "old"])).path == "kubernetes"
            # Files copy the program in with the image's shell, once.
            data = bytes(range(256)) * 1000
            assert await old.files.write("/tmp/in/data", data) == len(data)
            assert await old.files.read("/tmp/in/data") == data
            assert [e.path for e in await old.files.list("/tmp/in")] == ["data"]
            copies = await old.exec(["sh", "-c", "ls -a /tmp | grep -c '^.sandlot-agent-'"])
            assert copies.stdout.strip() == "1", copies
        await (await agent.sandboxes.get(plain)).terminate()
        # Without a shell it cannot be copied in: said so.
        bare = agentless_sandbox(sandlot_namespace, image=STATIC, command=["/pause"])
        async with sandlot.AsyncClient(sandlot_namespace) as auto:
            with pytest.raises(sandlot.errors.ExecError, match=r"created without it.*no /bin/sh"):
                await (await auto.sandboxes.get(bare)).files.read("/probe")
            await (await auto.sandboxes.get(bare)).terminate()
        # A client on the Kubernetes path still places the program (files need it),
        # and an agent client reaches it.
        async with sandlot.AsyncClient(sandlot_namespace, exec_path="kubernetes") as kube:
            placed = await kube.sandboxes.create(BUSYBOX)
            await placed.wait("running", timeout=120)
            assert (await placed.exec(["true"])).path == "kubernetes"
        assert (await (await agent.sandboxes.get(placed.name)).exec(["true"])).path == "agent"
        await placed.terminate()
        sb = await agent.sandboxes.create(PYTHON)
        try:
            await sb.wait("running", timeout=120)
            async with sandlot.AsyncClient(sandlot_namespace, exec_path="kubernetes") as kube:
                setup = await (await kube.sandboxes.get(sb.name)).exec(["python3", "-c", IMPERSONATOR])
                assert setup.exit_code == 0, setup.stderr
            with pytest.raises(sandlot.errors.ExecError) as refused:
                await sb.exec(["true"], timeout=PROMPTLY)
            assert "broke the protocol" in str(refused.value)
            assert str(1 << 30) in str(refused.value), "the announced size is named, not read"
            async with sandlot.AsyncClient(sandlot_namespace) as auto:
                result = await (await auto.sandboxes.get(sb.name)).exec(["echo", "fine"], timeout=PROMPTLY)
                assert (result.stdout, result.path) == ("fine\n", "kubernetes")
        finally:
            await sb.terminate()


async def test_no_exec_runs_after_terminate(agent_client: sandlot.AsyncClient, sandlot_namespace: str) -> None:
    sb = await agent_client.sandboxes.create(BUSYBOX)
    await sb.wait("running", timeout=120)
    assert (await sb.exec(["true"])).path == "agent"
    await sb.terminate()
    with pytest.raises(sandlot.errors.SandboxNotRunningError):
        await sb.exec(["true"])
    # Terminated by another client: the connection this one holds is not used.
    other = await agent_client.sandboxes.create(BUSYBOX)
    await other.wait("running", timeout=120)
    assert (await other.exec(["true"])).path == "agent"
    async with sandlot.AsyncClient(sandlot_namespace) as second:
        await (await second.sandboxes.get(other.name)).terminate()
    await asyncio.sleep(1)
    with pytest.raises(sandlot.errors.SandboxNotRunningError):
        await other.exec(["true"])


def test_the_sync_client_and_the_setting(sandlot_namespace: str) -> None:
    with pytest.raises(sandlot.errors.InvalidSpecError, match="exec_path"):
        sandlot.Client(sandlot_namespace, exec_path="fast")  # type: ignore[arg-type]
    with sandlot.Client(sandlot_namespace, exec_path="agent") as client:
        sb = client.sandboxes.create(BUSYBOX)
        try:
            sb.wait("running", timeout=120)
            result = sb.exec(["sh", "-c", "exit 3"])
            assert (result.exit_code, result.path) == (3, "agent")
            listed = sandlot_cli(sandlot_namespace, "--exec-path", "agent", "exec", sb.name, "--", "echo", "cli")
            assert (listed.returncode, listed.stdout) == (0, "cli\n"), listed.stderr
            bad = sandlot_cli(sandlot_namespace, "--exec-path", "fast", "exec", sb.name, "--", "true")
            assert bad.returncode == 2
            assert "--exec-path" in bad.stderr
        finally:
            sb.terminate()


# Run by another Python process: starts a detached command and exits at once.
DETACH = """
import asyncio, sys, sandlot
async def main():
    async with sandlot.AsyncClient(sys.argv[1], exec_path="agent") as client:
        sb = await client.sandboxes.get(sys.argv[2])
        command = "for i in 1 2 3; do echo line $i; sleep 1; done; echo err >&2; exit 7"
        process = await sb.spawn(["sh", "-c", command], detach=True)
        print(process.id)
asyncio.run(main())
"""


async def test_a_detached_process_outlives_its_client(box: sandlot.AsyncSandbox, sandlot_namespace: str) -> None:
    started = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", DETACH, sandlot_namespace, box.name],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert started.returncode == 0, started.stderr
    pid = int(started.stdout)
    listed = {p.id: p for p in await box.processes()}
    assert listed[pid].detached
    assert listed[pid].command[:2] == ["sh", "-c"]
    process = await box.process(pid)
    assert await asyncio.wait_for(process.read_stdout(), PROMPTLY) == b"line 1\nline 2\nline 3\n"
    assert await process.read_stderr() == b"err\n"
    assert await process.wait() == 7
    assert process.dropped == 0
    ended = {p.id: p for p in await box.processes()}[pid]
    assert (ended.running, ended.exit_code, ended.stdout_size) == (False, 7, 21)
    again = await box.process(pid, stdout_offset=5)
    assert await again.read_stdout() == b"1\nline 2\nline 3\n", "read again, from an offset"
    assert await again.wait() == 7


async def test_a_terminal_process_is_attached_again_with_its_terminal(box: sandlot.AsyncSandbox) -> None:
    script = "stty -echo; read go; stty size; read a; stty size; read b; echo got $a $b; exit 3"
    first = await box.spawn(["sh", "-c", script], tty=True, stdin=True, detach=True)
    pid = first.id
    assert pid is not None
    first.resize(80, 24)
    await first.write(b"go\n")
    seen = b""
    while b"24 80" not in seen:
        seen += await asyncio.wait_for(first.stdout.__anext__(), PROMPTLY)
    del first  # let go without closing its stdin: the next client types on
    assert {p.id: p for p in await box.processes()}[pid].tty
    again = await box.process(pid)
    again.resize(100, 30)
    await again.write(b"one\n")
    await again.write(b"two\n")
    output = await asyncio.wait_for(again.read_stdout(), PROMPTLY)
    lines = [line for line in output.replace(b"\r", b"").split(b"\n") if line]
    assert lines[-3:] == [b"24 80", b"30 100", b"got one two"], output
    assert await again.read_stderr() == b"", "a terminal's output is all on stdout"
    assert await again.wait() == 3


async def test_letting_go_of_an_attached_process_leaves_its_stdin_open(box: sandlot.AsyncSandbox) -> None:
    cat = await box.spawn(["cat"], stdin=True, detach=True)
    assert cat.id is not None
    for closed in (True, False, False):
        attached = await box.process(cat.id)
        await attached.write(b"x\n")
        if closed:
            attached.close()
        # Its output stream object outlives it: the connection goes on.
        output = attached.stdout
        del attached
        await asyncio.sleep(0.2)
        del output
    # The first attach took the process over from the object of its spawn.
    with pytest.raises(sandlot.errors.ExecError, match="later attach"):
        await asyncio.wait_for(cat.wait(), PROMPTLY)
    cat.close()
    await asyncio.sleep(0.5)
    state = {p.id: p for p in await box.processes()}[cat.id]
    assert state.running, "its stdin was not closed by a client letting go"
    last = await box.process(cat.id)
    await last.close_stdin()
    assert await asyncio.wait_for(last.read_stdout(), PROMPTLY) == b"x\n" * 3
    assert await last.wait() == 0


async def test_an_attach_from_another_client_ends_the_earlier_reader(
    box: sandlot.AsyncSandbox, sandlot_namespace: str
) -> None:
    first = await box.spawn(["cat"], stdin=True, detach=True)
    assert first.id is not None
    async with sandlot.AsyncClient(sandlot_namespace, exec_path="agent") as other:
        theirs = await (await other.sandboxes.get(box.name)).process(first.id)
        # Told, not left waiting for output that goes elsewhere now.
        with pytest.raises(sandlot.errors.ExecError, match="later attach"):
            await asyncio.wait_for(first.wait(), PROMPTLY)
        await theirs.write(b"still here\n")
        await theirs.close_stdin()
        assert await asyncio.wait_for(theirs.read_stdout(), PROMPTLY) == b"still here\n"
        assert await theirs.wait() == 0


async def test_output_nobody_reads_is_kept_up_to_a_bound_and_the_drop_reported(box: sandlot.AsyncSandbox) -> None:
    process = await box.spawn(["sh", "-c", "head -c 6291456 /dev/zero | tr '\\0' a; echo end"], detach=True)
    assert process.id is not None
    process.close()  # nobody reads it now: the agent keeps the newest output
    for _ in range(100):
        if not {p.id: p for p in await box.processes()}[process.id].running:
            break
        await asyncio.sleep(0.2)
    reread = await box.process(process.id)
    output = await asyncio.wait_for(reread.read_stdout(), PROMPTLY)
    assert await reread.wait() == 0
    assert len(output) == 4 * MIB
    assert output.endswith(b"aaaend\n")
    assert reread.dropped == 6 * MIB + 4 - 4 * MIB


async def test_signals_reach_the_process_tree(box: sandlot.AsyncSandbox) -> None:
    process = await box.spawn(["sh", "-c", "sleep 300 & wait"], detach=True)
    await process.signal(15)
    assert await asyncio.wait_for(process.wait(), PROMPTLY) == 143
    assert await processes(box, "sleep 300") == []
    other = await box.spawn(["sleep", "301"])
    await other.kill()
    assert await asyncio.wait_for(other.wait(), PROMPTLY) == 137


async def test_processes_need_the_agent(sandlot_namespace: str) -> None:
    async with sandlot.AsyncClient(sandlot_namespace, exec_path="kubernetes") as kube:
        sb = await kube.sandboxes.create(BUSYBOX)
        try:
            await sb.wait("running", timeout=120)
            with pytest.raises(sandlot.errors.InvalidSpecError, match="detach"):
                await sb.spawn(["true"], detach=True)
            with pytest.raises(sandlot.errors.ExecError, match="needs the sandbox's agent"):
                await sb.processes()
        finally:
            await sb.terminate()


def test_ps_attach_and_kill_from_the_command_line(sandlot_namespace: str) -> None:
    with sandlot.Client(sandlot_namespace) as client:
        sb = client.sandboxes.create(BUSYBOX)
        try:
            sb.wait("running", timeout=120)
            started = sandlot_cli(sandlot_namespace, "exec", "--detach", sb.name, "--", "sh", "-c", "echo hi; exit 4")
            assert started.returncode == 0, started.stderr
            pid = int(started.stdout)
            attached = sandlot_cli(sandlot_namespace, "attach", sb.name, str(pid))
            assert (attached.returncode, attached.stdout) == (4, "hi\n"), attached.stderr
            sleeper = int(sandlot_cli(sandlot_namespace, "exec", "-d", sb.name, "--", "sleep", "300").stdout)
            table = sandlot_cli(sandlot_namespace, "ps", sb.name)
            assert "sleep 300" in table.stdout and "running" in table.stdout, table.stdout
            assert sandlot_cli(sandlot_namespace, "kill", sb.name, str(sleeper)).returncode == 0
            listed = json.loads(sandlot_cli(sandlot_namespace, "ps", sb.name, "-o", "json").stdout)
            states = {p["id"]: p["exit_code"] for p in listed}
            assert states[sleeper] == 137
            assert states[pid] == 4
            missing = sandlot_cli(sandlot_namespace, "attach", sb.name, "999999")
            assert missing.returncode == 4, missing.stderr  # not found
        finally:
            sb.terminate()


def test_attach_t_gives_a_detached_terminal_process_this_terminal(sandlot_namespace: str) -> None:
    with sandlot.Client(sandlot_namespace) as client:
        sb = client.sandboxes.create(BUSYBOX)
        try:
            sb.wait("running", timeout=120)
            script = "stty -echo; read go; stty size; read line; echo got $line; exit 6"
            started = sandlot_cli(sandlot_namespace, "exec", "-d", "-t", sb.name, "--", "sh", "-c", script)
            assert started.returncode == 0, started.stderr
            pid = int(started.stdout)
            # Without -i the attach leaves the process's stdin as it is: the
            # end of this (empty) stdin does not close it.
            peek = [SANDLOT_BINARY, "--namespace", sandlot_namespace, "attach", sb.name, str(pid)]
            with pytest.raises(subprocess.TimeoutExpired):
                subprocess.run(peek, stdin=subprocess.DEVNULL, capture_output=True, timeout=5, check=False)
            listed = json.loads(sandlot_cli(sandlot_namespace, "ps", sb.name, "-o", "json").stdout)
            assert {p["id"]: p["exit_code"] for p in listed}[pid] is None, "still waiting for its input"
            leader, follower = pty.openpty()
            fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 111, 0, 0))
            attach = [SANDLOT_BINARY, "--namespace", sandlot_namespace, "attach", "-t", sb.name, str(pid)]
            cli = subprocess.Popen(attach, stdin=follower, stdout=follower, stderr=follower)
            os.close(follower)
            os.write(leader, b"go\r")
            output = b""
            deadline = time.monotonic() + PROMPTLY
            while time.monotonic() < deadline:
                if b"33 111" in output and b"line" not in output:
                    os.write(leader, b"line\r")
                    output += b"line"  # typed once
                ready, _, _ = select.select([leader], [], [], 0.2)
                if ready:
                    try:
                        output += os.read(leader, 4096)
                    except OSError:  # the terminal closed with the process
                        break
                elif cli.poll() is not None:
                    break
            assert cli.wait(timeout=30) == 6, output
            os.close(leader)
            assert b"33 111" in output, "the remote terminal took this one's size"
            assert b"got line" in output
        finally:
            sb.terminate()


async def test_metrics_come_from_the_sandbox_itself(agent_client: sandlot.AsyncClient, sandlot_namespace: str) -> None:
    sb = await agent_client.sandboxes.create(BUSYBOX, resources={"cpu": "1", "memory": "256Mi"})
    try:
        await sb.wait("running", timeout=120)
        idle = await sb.metrics()
        assert idle.memory_limit_bytes == 256 * MIB
        assert idle.memory_bytes is not None and 0 < idle.memory_bytes < 256 * MIB
        assert idle.processes is not None and idle.processes >= 2
        assert idle.network_rx_bytes is not None and idle.network_tx_bytes is not None
        burner = await sb.spawn(["sh", "-c", "while :; do :; done"], detach=True)
        busy = await sb.metrics(interval=1.0)
        assert busy.cpu_cores is not None and busy.cpu_cores > 0.3, busy
        assert idle.cpu_seconds is not None and busy.cpu_seconds is not None
        assert busy.cpu_seconds > idle.cpu_seconds
        assert busy.processes is not None and busy.processes > idle.processes
        await burner.kill()
        shown = await asyncio.to_thread(sandlot_cli, sandlot_namespace, "top", sb.name, "-o", "json")
        assert shown.returncode == 0, shown.stderr
        assert json.loads(shown.stdout)["memory_limit_bytes"] == 256 * MIB
        assert json.loads(shown.stdout)["disk_limit_bytes"] == 2048 * MIB
        with pytest.raises(sandlot.errors.InvalidSpecError, match="interval"):
            await sb.metrics(interval=-1)
    finally:
        await sb.terminate()


async def test_disk_use_counts_what_the_sandbox_wrote_and_not_its_image(agent_client: sandlot.AsyncClient) -> None:
    volume = await agent_client.volumes.create(unique("disk"), size="64Mi")
    sb = await agent_client.sandboxes.create(BUSYBOX, resources={"disk": "1Gi"}, volume_mounts={"/data": volume.name})
    scratch = await agent_client.sandboxes.create(BUSYBOX, read_only_root_filesystem=True)
    try:
        await sb.wait("running", timeout=120)
        fresh = await sb.metrics()
        assert fresh.disk_limit_bytes == 1024 * MIB
        # The image's files (busybox: about 4 MiB) are not the sandbox's.
        assert fresh.disk_used_bytes is not None and fresh.disk_used_bytes < MIB, fresh
        made = await sb.exec("head -c 30000000 /dev/urandom > /big && ln /big /big2")
        assert made.exit_code == 0, made
        # Past the walk's depth, a symlink loop, an unreadable directory, a volume: no hang, no error.
        await sb.exec(
            "d=/deep; for i in $(seq 300); do d=$d/d; done; mkdir -p $d; ln -s / /loop;"
            " mkdir /hidden; chmod 000 /hidden; head -c 10000000 /dev/urandom > /data/kept",
            check=True,
        )
        wrote = await asyncio.wait_for(sb.metrics(), PROMPTLY)
        assert wrote.disk_used_bytes is not None
        grown = wrote.disk_used_bytes - fresh.disk_used_bytes
        # Counted once for its two names, and the volume's 10 MB not at all.
        assert 30_000_000 <= grown < 30_000_000 + 2 * MIB, wrote
        await sb.exec("rm /big /big2", check=True)
        assert (await sb.metrics()).disk_used_bytes < fresh.disk_used_bytes + 2 * MIB  # type: ignore[operator]
        # A read-only root's scratch directory (/tmp, an emptyDir) counts whole.
        await scratch.wait("running", timeout=120)
        await scratch.exec("head -c 20000000 /dev/zero > /tmp/zeros", check=True)
        tmp = (await scratch.metrics()).disk_used_bytes
        assert tmp is not None and 20_000_000 <= tmp < 20_000_000 + MIB
    finally:
        await sb.terminate()
        await scratch.terminate()
        await volume.delete(force=True)


async def test_metrics_follow_until_the_sandbox_ends(agent_client: sandlot.AsyncClient) -> None:
    # Busy for about 3 s, then the sandbox ends by itself.
    burn = "end=$(($(date +%s) + 3)); while [ $(date +%s) -lt $end ]; do :; done"
    sb = await agent_client.sandboxes.create(BUSYBOX, command=["sh", "-c", burn], resources={"cpu": "1"})
    try:
        await sb.wait("running", timeout=120)

        async def follow() -> list[sandlot.Metrics]:
            return [reading async for reading in sb.stream_metrics(interval=0.5)]

        readings = await asyncio.wait_for(follow(), 60)
        assert len(readings) >= 2, readings
        assert max(r.cpu_cores or 0 for r in readings) > 0.3, readings
        assert (await sb.refresh()).phase == "succeeded", "it ended because the sandbox did"
        with pytest.raises(sandlot.errors.SandboxNotRunningError):
            await sb.stream_metrics().__anext__()
        with pytest.raises(sandlot.errors.InvalidSpecError, match="interval"):
            sb.stream_metrics(interval=0)
    finally:
        await sb.terminate()


def test_metrics_follow_from_the_sync_client(sandlot_namespace: str) -> None:
    with sandlot.Client(sandlot_namespace, exec_path="agent") as client:
        sb = client.sandboxes.create(BUSYBOX, command=["sleep", "2"])
        try:
            sb.wait("running", timeout=120)
            readings = list(sb.stream_metrics(interval=0.25))
            assert readings, "at least one reading while it ran"
            assert all(r.memory_bytes is not None for r in readings)
        finally:
            sb.terminate()


async def test_purge_removes_configmaps_of_earlier_agent_builds_no_pod_mounts(
    sandlot_delete_namespace: Callable[[str], None],
) -> None:
    namespace = unique("builds")
    kubectl = Kubectl(namespace)
    managed = {"app.kubernetes.io/managed-by": "sandlot"}

    def config_map(name: str, labels: dict[str, str]) -> str:
        return json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": labels}})

    def maps() -> set[str]:
        return {item["metadata"]["name"] for item in kubectl.json("get", "configmaps")["items"]}

    try:
        async with sandlot.AsyncClient(namespace, exec_path="agent") as client:
            await client.connect()  # makes the namespace
            # What an earlier sandlot left, before this build's map exists: an
            # agent build no pod mounts, a gate build a pod still mounts; and
            # maps that are not builds of a program.
            unused, mounted = "sandlot-agent-00000000aa", "sandlot-network-gate-00000000bb"
            others = ["sandlot-agent-notabuild", "mine"]
            for name in (unused, mounted, others[0]):
                kubectl.apply(config_map(name, managed))
            kubectl.apply(config_map(others[1], {}))
            holder = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "holder"},
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": False,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": 1000,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [
                        {
                            "name": "c",
                            "image": BUSYBOX,
                            "command": ["sleep", "3600"],
                            "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
                            "volumeMounts": [{"name": "gate", "mountPath": "/gate"}],
                        }
                    ],
                    "volumes": [{"name": "gate", "configMap": {"name": mounted, "optional": True}}],
                },
            }
            kubectl.apply(json.dumps(holder))
            await asyncio.sleep(1.1)  # creation times have whole seconds
            sb = await client.sandboxes.create(BUSYBOX)  # this build's maps
            await sb.wait("running", timeout=120)
            current = {name for name in maps() if name.startswith("sandlot-")} - {unused, mounted, others[0]}
            assert current, "this build's maps"
            # This build's map is younger than an hour: nothing goes yet.
            await client.sandboxes.purge(tags={"suite": "none"})
            assert {unused, mounted} <= maps()
            _testing.set_stale_program_age(0)
            try:
                await client.sandboxes.purge(tags={"suite": "none"})
            finally:
                _testing.set_stale_program_age(3600)
            left = maps()
            assert unused not in left, "an earlier build no pod mounts is removed"
            assert {mounted, *current, *others} <= left, "mounted, current and other maps stay"
            assert (await sb.exec(["true"])).path == "agent", "the running sandbox keeps its agent"
            await sb.terminate()
    finally:
        sandlot_delete_namespace(namespace)
