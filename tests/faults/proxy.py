"""A fault proxy between a client and the API server, on loopback.

It terminates TLS with a certificate of its own CA (made with openssl), forwards
each request to the API server with the client certificate of the admin
kubeconfig, and, at a chosen rate, answers in the API server's place:

- 429 Too Many Requests with Retry-After (header and Status details), before
  the request reaches the API server;
- 503 Service Unavailable after the API server has done the work (its answer
  is dropped), so a client that retries a create can make a duplicate; an
  upgrade (exec) gets its 503 before forwarding, as a real gateway would.

Every request is one connection (the proxy adds `Connection: close`), so every
request passes the injection point. The proxy records what it saw: each
request with its time and fate, and 410 (Expired) answers on watches.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import random
import ssl
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import yaml

RETRY_AFTER_SECONDS = 1
HEAD_LIMIT = 1 << 20


@dataclass
class Seen:
    """One request as the proxy saw it."""

    at: float  # time.monotonic() when its head arrived
    method: str
    target: str  # path and query
    fate: str  # "forwarded", "429", "503-before", "503-after"
    retry_after_violation: bool = False

    @property
    def is_watch(self) -> bool:
        return dict(parse_qsl(urlsplit(self.target).query)).get("watch") in ("true", "1")

    @property
    def key(self) -> str:
        """What a retry of this request looks like: method, path and whether it watches."""
        return f"{self.method} {urlsplit(self.target).path} watch={self.is_watch}"


@dataclass
class Stats:
    requests: list[Seen] = field(default_factory=list)
    expired: int = 0  # 410 answers passed back to the client (status line or watch event)


def make_ca_and_cert(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a serving certificate for 127.0.0.1 signed by it: (ca.crt, tls.crt, tls.key)."""
    ca_key, ca_crt = directory / "ca.key", directory / "ca.crt"
    key, csr, crt, ext = directory / "tls.key", directory / "tls.csr", directory / "tls.crt", directory / "ext.cnf"

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)

    openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(ca_key))
    openssl(
        "req", "-x509", "-new", "-key", str(ca_key), "-subj", "/CN=sandlot-fault-proxy-ca", "-days", "2",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        "-out", str(ca_crt),
    )  # fmt: skip
    openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(key))
    openssl("req", "-new", "-key", str(key), "-subj", "/CN=sandlot-fault-proxy", "-out", str(csr))
    ext.write_text(
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
        "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1\n"
    )
    openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(ca_crt), "-CAkey", str(ca_key), "-CAcreateserial",
        "-days", "2", "-extfile", str(ext), "-out", str(crt),
    )  # fmt: skip
    return ca_crt, crt, key


def injected_response(code: int) -> bytes:
    reason = {429: ("Too Many Requests", "TooManyRequests"), 503: ("Service Unavailable", "ServiceUnavailable")}[code]
    status: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": f"injected by the fault proxy ({code})",
        "reason": reason[1],
        "code": code,
    }
    headers = ""
    if code == 429:
        status["details"] = {"retryAfterSeconds": RETRY_AFTER_SECONDS}
        headers = f"Retry-After: {RETRY_AFTER_SECONDS}\r\n"
    body = json.dumps(status).encode()
    return (
        f"HTTP/1.1 {code} {reason[0]}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        f"{headers}Connection: close\r\n\r\n"
    ).encode() + body


class FaultProxy:
    """The proxy, serving on its own thread and event loop until `close()`."""

    def __init__(self, admin_kubeconfig: str, directory: Path, upstream: tuple[str, int] = ("127.0.0.1", 6443)):
        self.directory = directory
        self.upstream = upstream
        self.rate = 0.0
        self.stats = Stats()
        self._lock = threading.Lock()
        self._random = random.Random(14)
        self._last_429: dict[str, float] = {}
        self.ca, cert, key = make_ca_and_cert(directory)
        self._server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._server_tls.load_cert_chain(cert, key)
        self._server_tls.set_alpn_protocols(["http/1.1"])
        self._client_tls = self._upstream_tls(admin_kubeconfig)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fault-proxy", daemon=True)
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(self._serve(), self._loop).result(timeout=30)
        self.port: int = self._server.sockets[0].getsockname()[1]

    def _upstream_tls(self, admin_kubeconfig: str) -> ssl.SSLContext:
        config = yaml.safe_load(Path(admin_kubeconfig).read_text())
        cluster = config["clusters"][0]["cluster"]
        user = config["users"][0]["user"]
        for name, data in (
            ("upstream-ca.crt", cluster["certificate-authority-data"]),
            ("client.crt", user["client-certificate-data"]),
            ("client.key", user["client-key-data"]),
        ):
            (self.directory / name).write_bytes(base64.b64decode(data))
        context = ssl.create_default_context(cafile=self.directory / "upstream-ca.crt")
        context.load_cert_chain(self.directory / "client.crt", self.directory / "client.key")
        context.set_alpn_protocols(["http/1.1"])
        return context

    def write_kubeconfig(self, path: Path) -> Path:
        """A kubeconfig for the proxy: its own CA and a placeholder token (the
        proxy drops it and authenticates with its client certificate)."""
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "fault-proxy",
                    "cluster": {
                        "server": f"https://127.0.0.1:{self.port}",
                        "certificate-authority-data": base64.b64encode(self.ca.read_bytes()).decode(),
                    },
                }
            ],
            "users": [{"name": "fault-proxy", "user": {"token": "placeholder"}}],
            "contexts": [{"name": "fault-proxy", "context": {"cluster": "fault-proxy", "user": "fault-proxy"}}],
            "current-context": "fault-proxy",
        }
        path.write_text(yaml.safe_dump(config))
        path.chmod(0o600)
        return path

    def set_rate(self, rate: float) -> None:
        """Answer this fraction of requests (0 to 1) with 429 or 503, half each."""
        with self._lock:
            self.rate = rate

    def snapshot(self) -> list[Seen]:
        with self._lock:
            return list(self.stats.requests)

    def expired_answers(self) -> int:
        with self._lock:
            return self.stats.expired

    def close(self) -> None:
        async def stop() -> None:
            self._server.close()
            for _ in range(10):  # connections accepted meanwhile start handlers too
                handlers = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
                if not handlers:
                    break
                for task in handlers:
                    task.cancel()
                await asyncio.gather(*handlers, return_exceptions=True)
            await self._server.wait_closed()

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(stop(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    async def _serve(self) -> asyncio.Server:
        return await asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=self._server_tls, limit=HEAD_LIMIT)

    def _decide(self, seen: Seen, upgrade: bool) -> str:
        with self._lock:
            last = self._last_429.get(seen.key)
            if last is not None and seen.at < last + RETRY_AFTER_SECONDS - 0.05:
                seen.retry_after_violation = True
            self._last_429.pop(seen.key, None)
            fate = "forwarded"
            if self._random.random() < self.rate:
                fate = "429" if self._random.random() < 0.5 else ("503-before" if upgrade else "503-after")
            if fate == "429":
                self._last_429[seen.key] = seen.at
            seen.fate = fate
            self.stats.requests.append(seen)
            return fate

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_writer: asyncio.StreamWriter | None = None
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 60)
            lines = head.decode("latin-1").split("\r\n")
            method, target, _version = lines[0].split(" ", 2)
            headers = [line for line in lines[1:] if line]
            names = {h.split(":", 1)[0].strip().lower(): h.split(":", 1)[1].strip() for h in headers}
            upgrade = "upgrade" in names.get("connection", "").lower()
            length = int(names.get("content-length", "0") or 0)
            body = await reader.readexactly(length) if length else b""
            fate = self._decide(Seen(time.monotonic(), method, target, "forwarded"), upgrade)
            if fate in ("429", "503-before"):
                writer.write(injected_response(int(fate[:3])))
                await writer.drain()
                return
            dropped = {"authorization"} if upgrade else {"authorization", "connection"}
            headers = [h for h in headers if h.split(":", 1)[0].strip().lower() not in dropped]
            if not upgrade:
                headers.append("Connection: close")
            out = "\r\n".join([lines[0], *headers, "", ""]).encode("latin-1") + body
            upstream_reader, upstream = await asyncio.wait_for(
                asyncio.open_connection(*self.upstream, ssl=self._client_tls, server_hostname="127.0.0.1"), 30
            )
            upstream_writer = upstream
            upstream.write(out)
            await upstream.drain()
            if fate == "503-after":
                await asyncio.wait_for(upstream_reader.readuntil(b"\r\n\r\n"), 60)
                writer.write(injected_response(503))
                await writer.drain()
                return
            await asyncio.gather(
                self._pipe(reader, upstream, scan=False),
                self._pipe(upstream_reader, writer, scan=True),
            )
        except (OSError, EOFError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ValueError):
            pass
        except asyncio.CancelledError:
            pass  # the proxy is closing
        finally:
            for w in (writer, upstream_writer):
                if w is not None:
                    w.close()

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, *, scan: bool) -> None:
        first = True
        try:
            while data := await source.read(65536):
                if scan and ((first and data.startswith(b"HTTP/1.1 410")) or b'"code":410' in data):
                    with self._lock:
                        self.stats.expired += 1
                first = False
                sink.write(data)
                await sink.drain()
        except (OSError, ssl.SSLError):
            pass
        finally:
            with contextlib.suppress(OSError, RuntimeError):
                if sink.can_write_eof():
                    sink.write_eof()
                else:
                    sink.close()
