#!/usr/bin/env bash
# Build the sample application (src/bin/app.rs) for QEMU's nRF51 and write it
# as a raw, unsigned binary that runs from the primary slot after a 0x200-byte
# header: sign it with `imgtool sign -H 0x200 --pad-header` or
# `keytool image sign -H 0x200 --pad-header`, then boot it with boot.sh.
#
#   firmware/qemu/build-app.sh OUT.bin
set -euo pipefail
[ $# -eq 1 ] && [ "$1" != -h ] && [ "$1" != --help ] || { echo "usage: $0 OUT.bin" >&2; exit 2; }
out=$1
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
mkdir -p "$CARGO_TARGET_DIR"
exec 9>"$CARGO_TARGET_DIR/boot-stage.lock"
flock 9
(cd "$here" && cargo build --quiet --release --bin app)
tmp=$(mktemp "$out.XXXXXX")
trap 'rm -f "$tmp"' EXIT
arm-none-eabi-objcopy -O binary "$CARGO_TARGET_DIR/thumbv6m-none-eabi/release/app" "$tmp"
mv "$tmp" "$out"
