#!/usr/bin/env bash
# run-demo.sh — the main job end to end on the embedded default (a dir:// origin):
# make a test image, import it, list it and verify it.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
bin=$top/bin
work=${BASEFS_DEMO_DIR:-$top/.cache/demo}
rm -rf "$work"
mkdir -p "$work"

echo "== making a 64 MiB test image (16 MiB of data, the rest zeros) as qcow2"
head -c 16M /dev/urandom > "$work/image.raw"
truncate -s 64M "$work/image.raw"
qemu-img convert -f raw -O qcow2 "$work/image.raw" "$work/image.qcow2"

echo "== importing it into the origin ($work/origin)"
digest=$("$bin/basefs" import --state "$work/origin" "$work/image.qcow2" | tail -n 1)
echo "image digest: $digest"

echo "== the origin's images"
"$bin/basefs" ls --state "$work/origin"

echo "== verifying every stored chunk"
"$bin/basefs" verify --state "$work/origin"
