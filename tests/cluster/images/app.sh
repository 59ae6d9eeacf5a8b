#!/usr/bin/env bash
# Builds the example application's image: the python stand-in plus the wheel
# users install and examples/in_cluster_worker.py, as one more layer (what a
# Dockerfile `FROM python:3.11-slim`, `pip install sandlot`, `COPY` would give).
# Usage: app.sh WHEEL. Prints "REF ARCHIVE"; the tag is a hash of the inputs,
# so a new wheel or worker is a new image and an unchanged one is cached.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../../.." && pwd)
cache=${SANDLOT_CACHE:-$HOME/.cache/sandlot}/images
python=${PYTHON:-python3}
wheel=${1:?usage: app.sh WHEEL}
worker=$repo/examples/in_cluster_worker.py

# The base is the python stand-in that build.sh made (and prints).
base=$(bash "$here/build.sh" | awk '$1 == "docker.io/library/python:3.11-slim" {print $2}')
[ -f "$base" ] || { echo "app.sh: no python stand-in archive; run make cluster" >&2; exit 1; }

hash=$(cat "$here/app.sh" "$here/layered_archive.py" "$wheel" "$worker" <(basename "$base") | sha256sum | cut -c1-12)
ref=localhost/sandlot-worker:$hash
out=$cache/sandlot-worker-$hash.tar
if [ ! -f "$out" ]; then
  echo "  images: building $ref" >&2
  root=$(mktemp -d)
  trap 'rm -rf "$root"' EXIT
  # Debian's python3 searches /usr/local/lib/python3.11/dist-packages (for
  # packages not from apt) before /usr/lib/python3/dist-packages.
  "$python" -m pip install -q --no-deps --no-compile --disable-pip-version-check \
    --target "$root/usr/local/lib/python3.11/dist-packages" "$wheel" >&2
  rm -rf "$root/usr/local/lib/python3.11/dist-packages/bin"
  install -D -m 0644 "$worker" "$root/app/in_cluster_worker.py"
  chmod -R a+rX "$root"
  PYTHONPATH=$here "$python" "$here/layered_archive.py" --base "$base" --rootfs "$root" --ref "$ref" --out "$out" \
    --cmd python3 /app/in_cluster_worker.py --user 10001:10001 --env PYTHONUNBUFFERED=1 >&2
  # Every wheel is a new image (~150 MB archive, mostly the shared base layer):
  # keep the three newest archives. containerd keeps the imported images until
  # the kubelet's image garbage collection needs the space.
  ls -t "$cache"/sandlot-worker-*.tar | tail -n +4 | xargs -r rm -f
fi
echo "$ref $out"
