#!/usr/bin/env bash
# Builds the local stand-ins for public images (no registry is reachable here)
# into $SANDLOT_CACHE/images/, one `docker save`-style archive each, and prints
# "REF ARCHIVE" per image. Archives are cached by a hash of their inputs.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${SANDLOT_CACHE:-$HOME/.cache/sandlot}/images
mkdir -p "$cache"

inputs_hash() { cat "$here/build.sh" "$here/oci_archive.py" "$@" | sha256sum | cut -c1-12; }
pack() { python3 "$here/oci_archive.py" "$@" >&2; }
log() { echo "  images: $*" >&2; }

base_files() { # ROOT: the few files every image needs
  mkdir -p "$1/etc" "$1/tmp" "$1/root"
  chmod 1777 "$1/tmp"
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$1/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$1/etc/group"
}

# pause: the pod sandbox, from our C source.
ref=registry.k8s.io/pause:3.10.1
out="$cache/pause-$(inputs_hash "$here/pause.c").tar"
if [ ! -f "$out" ]; then
  log "building $ref"
  root=$(mktemp -d)
  gcc -Os -static -s -o "$root/pause" "$here/pause.c"
  pack --rootfs "$root" --ref "$ref" --out "$out" --cmd /pause --user 65535:65535
  rm -rf "$root"
fi
echo "$ref $out"

# busybox: Debian's static busybox with a link per applet.
ref=docker.io/library/busybox:1.36
out="$cache/busybox-$(inputs_hash /bin/busybox).tar"
if [ ! -f "$out" ]; then
  log "building $ref"
  root=$(mktemp -d)
  base_files "$root"
  mkdir -p "$root/bin" "$root/sbin" "$root/usr/bin" "$root/usr/sbin"
  cp /bin/busybox "$root/bin/busybox"
  for applet in $(/bin/busybox --list-full); do
    [ -e "$root/$applet" ] || ln -s /bin/busybox "$root/$applet"
  done
  pack --rootfs "$root" --ref "$ref" --out "$out" --cmd sh \
    --env PATH=/usr/sbin:/usr/bin:/sbin:/bin
  rm -rf "$root"
fi
echo "$ref $out"

# python:3.11-slim: a minimal Debian bookworm root with python3 (3.11).
ref=docker.io/library/python:3.11-slim
out="$cache/python-$(inputs_hash).tar"
if [ ! -f "$out" ]; then
  log "building $ref (debootstrap, a few minutes)"
  root=$(mktemp -d)
  debootstrap --variant=minbase --include=python3 bookworm "$root" http://deb.debian.org/debian >"$cache/debootstrap.log" 2>&1 \
    || { tail -20 "$cache/debootstrap.log" >&2; exit 1; }
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/usr/share/{doc,man,info,locale} "$root"/var/log/*
  mkdir -p "$root/usr/local/bin"
  ln -sf /usr/bin/python3 "$root/usr/local/bin/python3"
  ln -sf /usr/bin/python3 "$root/usr/local/bin/python"
  pack --rootfs "$root" --ref "$ref" --out "$out" --cmd python3 \
    --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --env LANG=C.UTF-8
  rm -rf "$root"
fi
echo "$ref $out"

# static: distroless-like, for sandboxes on images without a shell: no sh, no
# coreutils, only static binaries (/pause to idle on, /probe for the tests).
ref=sandlot.local/static:1
out="$cache/static-$(inputs_hash "$here/pause.c" "$here/probe.c").tar"
if [ ! -f "$out" ]; then
  log "building $ref"
  root=$(mktemp -d)
  base_files "$root"
  gcc -Os -static -s -o "$root/pause" "$here/pause.c"
  gcc -Os -static -s -o "$root/probe" "$here/probe.c"
  pack --rootfs "$root" --ref "$ref" --out "$out" --cmd /pause --env PATH=/
  rm -rf "$root"
fi
echo "$ref $out"
