"""Web preview: an agent writes a small web app into a sandbox, starts it as a
process that outlives the call, waits for its port, and opens it through a
port-forward; then exposes it to the other pods of the namespace.

Run it with `python examples/web_preview.py` with KUBECONFIG set.
"""

from __future__ import annotations

import asyncio
import urllib.request

import sandlot

IMAGE = "docker.io/library/python:3.11-slim"

# What an agent might have written: a tiny JSON API.
APP = """
import http.server, json

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"path": self.path, "answer": 42}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

http.server.ThreadingHTTPServer(("0.0.0.0", 8000), Handler).serve_forever()
"""


def fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=30) as response:
        body: bytes = response.read()
    return body.decode()


async def main() -> None:
    async with sandlot.AsyncClient() as client:
        async with await client.sandboxes.create(IMAGE, tags={"example": "web-preview"}, ttl_seconds=600) as sb:
            await sb.wait("running", timeout=120)
            await sb.files.write("/tmp/app.py", APP)
            server = await sb.spawn(["python3", "/tmp/app.py"], detach=True)
            print(f"started the app in {sb.name!r} as process {server.id}")

            await sb.wait_for_port(8000, timeout=60)
            async with sb.port_forward(8000) as fwd:
                print(f"preview at {fwd.url}")
                print(f"GET /hello -> {await asyncio.to_thread(fetch, fwd.url + '/hello')}")

            exposed = await sb.expose(8000)
            print(f"in the cluster: {exposed.url} (Service {exposed.service}, callers {exposed.allow_from})")
        print("terminated; the Service goes with the sandbox's record")


if __name__ == "__main__":
    asyncio.run(main())
