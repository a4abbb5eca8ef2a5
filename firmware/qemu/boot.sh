#!/usr/bin/env bash
# Build the boot stage with the given provisioning-authority keys compiled in,
# boot it on QEMU's nRF51 (microbit) with REC.bin in the provisioning partition
# (0x3F000; none = erased flash), print its console, exit with its code
# (0 PROVISIONED, 1 NOT PROVISIONED). With --gdb PORT the chip waits, halted,
# for a debugger on 127.0.0.1:PORT (QEMU's GDB stub) to write it and continue:
# how the factory station provisions it.
#
#   firmware/qemu/boot.sh --authority PUB.pem [--authority PUB2.pem …] [--record REC.bin] [--gdb PORT]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
usage() { echo "usage: $0 --authority PUB.pem [--authority PUB.pem …] [--record REC.bin] [--gdb PORT]" >&2; exit 2; }

authorities=()
record=""
gdb=""
while (($#)); do
    case "$1" in
        --authority) [ $# -ge 2 ] || usage; authorities+=("$2"); shift 2 ;;
        --record) [ $# -ge 2 ] || usage; record=$2; shift 2 ;;
        --gdb) [ $# -ge 2 ] || usage; gdb=$2; shift 2 ;;
        -h|--help) usage ;;
        *) echo "unknown argument: $1" >&2; usage ;;
    esac
done
((${#authorities[@]})) || usage

keys=()
for pem in "${authorities[@]}"; do
    hex=$(openssl pkey -pubin -in "$pem" -outform DER 2>/dev/null | tail -c 65 | od -An -tx1 | tr -d ' \n') \
        || { echo "$pem: not a public key" >&2; exit 2; }
    [ ${#hex} -eq 130 ] || { echo "$pem: not a P-256 public key" >&2; exit 2; }
    keys+=("$hex")
done
[ -z "$record" ] || [ -f "$record" ] || { echo "$record: no such file" >&2; exit 2; }

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
# Several boots (tests) may build with different keys at once: build and take a
# private copy of the ELF under a lock.
elf=$(mktemp)
trap 'rm -f "$elf"' EXIT
exec 9>"$CARGO_TARGET_DIR/boot-stage.lock"
flock 9
(cd "$here" && PROV_AUTHORITIES=$(IFS=,; echo "${keys[*]}") cargo build --quiet --release)
cp "$CARGO_TARGET_DIR/thumbv6m-none-eabi/release/boot-stage" "$elf"
flock -u 9

args=(-M microbit -nographic -monitor none -serial none
      -semihosting-config enable=on,target=native -kernel "$elf")
[ -z "$record" ] || args+=(-device "loader,file=$record,addr=0x3f000")
[ -z "$gdb" ] || args+=(-S -gdb "tcp:127.0.0.1:$gdb")
set +e
timeout 120 qemu-system-arm "${args[@]}"
rc=$?
set -e
[ $rc -ne 124 ] || echo "NOT PROVISIONED reason=timeout"
exit $rc
