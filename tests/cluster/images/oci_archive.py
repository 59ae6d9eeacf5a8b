"""Pack a root filesystem directory into an image archive that `ctr images import` reads.

The archive is in the `docker save` layout (manifest.json naming the image, one
config, one uncompressed layer). The layer tar is deterministic: entries sorted,
owners and times normalised, so the same root gives the same image digest.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import tarfile
from pathlib import Path


def _layer_bytes(rootfs: Path) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(rootfs.rglob("*")):
            rel = path.relative_to(rootfs).as_posix()
            info = tar.gettarinfo(str(path), arcname=rel)
            info.mtime = 0
            info.uname = info.gname = ""
            if not (info.isreg() or info.isdir() or info.issym() or info.islnk()):
                continue  # device nodes, fifos and sockets are the runtime's business
            if info.isreg():
                with path.open("rb") as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)
    return buf.getvalue()


def build(rootfs: Path, ref: str, out: Path, cmd: list[str], env: list[str], user: str) -> str:
    layer = _layer_bytes(rootfs)
    layer_digest = hashlib.sha256(layer).hexdigest()
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": "1970-01-01T00:00:00Z",
        "config": {"Cmd": cmd, "Env": env, "User": user, "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{layer_digest}"]},
        "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "sandlot local cluster"}],
    }
    config_bytes = json.dumps(config, sort_keys=True).encode()
    config_digest = hashlib.sha256(config_bytes).hexdigest()
    manifest = [
        {
            "Config": f"{config_digest}.json",
            "RepoTags": [ref],
            "Layers": [f"{layer_digest}/layer.tar"],
        }
    ]
    tmp = out.with_suffix(".partial")
    with tarfile.open(tmp, mode="w") as tar:
        for name, data in (
            (f"{layer_digest}/layer.tar", layer),
            (f"{config_digest}.json", config_bytes),
            ("manifest.json", json.dumps(manifest).encode()),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    os.replace(tmp, out)
    return config_digest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rootfs", type=Path, required=True)
    parser.add_argument("--ref", required=True, help="image reference, e.g. docker.io/library/busybox:1.36")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--cmd", nargs="+", required=True)
    parser.add_argument("--env", action="append", default=[])
    parser.add_argument("--user", default="")
    args = parser.parse_args()
    digest = build(args.rootfs, args.ref, args.out, args.cmd, args.env, args.user)
    print(f"{args.ref} sha256:{digest} -> {args.out}")


if __name__ == "__main__":
    main()
