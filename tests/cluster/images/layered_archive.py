"""Put one more layer on top of an image archive: a `FROM base` plus one `COPY`.

Reads a `docker save`-style archive (as oci_archive.py writes them), packs a
root filesystem directory into a new layer with oci_archive's deterministic
packer, and writes an archive that has the base's layers, then the new one,
under a new name; the environment is the base's, with `--env` overriding.
A sibling of oci_archive.py rather than an option of it, because build.sh
hashes oci_archive.py into the name of every stand-in it caches: changing that
file would rebuild them all.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import tarfile
from pathlib import Path
from typing import Any

from oci_archive import _layer_bytes  # type: ignore[import-not-found]  # run beside it, not as a package


def _read(base: Path) -> tuple[dict[str, Any], list[tuple[str, bytes]]]:
    """The config and the layers (digest, bytes) of an archive."""
    with tarfile.open(base) as tar:

        def member(name: str) -> bytes:
            file = tar.extractfile(name)
            if file is None:
                raise ValueError(f"{base}: {name} is not a file")
            return file.read()

        manifest = json.loads(member("manifest.json"))[0]
        config = json.loads(member(manifest["Config"]))
        layers = [(name.split("/")[0], member(name)) for name in manifest["Layers"]]
    return config, layers


def build(base: Path, rootfs: Path, ref: str, out: Path, cmd: list[str], env: list[str], user: str) -> str:
    base_config, layers = _read(base)
    layer = _layer_bytes(rootfs)
    layers.append((hashlib.sha256(layer).hexdigest(), layer))
    overridden = {item.split("=", 1)[0] for item in env}
    inherited = [item for item in base_config["config"].get("Env") or [] if item.split("=", 1)[0] not in overridden]
    config = {
        "architecture": base_config.get("architecture", "amd64"),
        "os": "linux",
        "created": "1970-01-01T00:00:00Z",
        "config": {"Cmd": cmd, "Env": inherited + env, "User": user, "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{digest}" for digest, _ in layers]},
        "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "sandlot local cluster"} for _ in layers],
    }
    config_bytes = json.dumps(config, sort_keys=True).encode()
    config_digest = hashlib.sha256(config_bytes).hexdigest()
    manifest = [
        {
            "Config": f"{config_digest}.json",
            "RepoTags": [ref],
            "Layers": [f"{digest}/layer.tar" for digest, _ in layers],
        }
    ]
    tmp = out.with_suffix(".partial")
    with tarfile.open(tmp, mode="w") as tar:
        for name, data in (
            *((f"{digest}/layer.tar", data) for digest, data in layers),
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
    parser.add_argument("--base", type=Path, required=True, help="the archive whose layers go below")
    parser.add_argument("--rootfs", type=Path, required=True, help="the files of the new layer")
    parser.add_argument("--ref", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--cmd", nargs="+", required=True)
    parser.add_argument("--env", action="append", default=[])
    parser.add_argument("--user", default="")
    args = parser.parse_args()
    digest = build(args.base, args.rootfs, args.ref, args.out, args.cmd, args.env, args.user)
    print(f"{args.ref} sha256:{digest} -> {args.out}")


if __name__ == "__main__":
    main()
