#!/usr/bin/env bash
# Build the boot stage with the given keys compiled in and boot it on QEMU's
# nRF51 (microbit), with images, a provisioning record and a preset rollback
# counter placed in flash as docs/boot.md lays it out. Prints the console
# (UART0) and exits 0 when the application started (the run ends at its
# `APP` line), 1 when the boot stage refused to start anything (or the
# application failed), 2 on bad arguments, 124 on a timeout. With --uart the
# run goes on after the `APP` line: the application serves device
# authentication on the UART until a client says `BYE` (docs/device-auth.md).
#
#   firmware/qemu/boot.sh [--release-key PUB.pem …] [--authority PUB.pem …] [--enc]
#       [--image SIGNED.bin] [--upgrade SIGNED.bin] [--min-counter N]
#       [--record REC.bin] [--flash FLASH.bin] [--blank] [--hw-id HEX16]
#       [--gdb PORT] [--uart PORT] [--icount]
#   firmware/qemu/boot.sh [--release-key PUB.pem …] [--authority PUB.pem …] [--enc] --build-only OUT.bin
#
#   --release-key  a key images are verified with (repeatable: rotation)
#   --authority    a provisioning-authority key records are verified with
#   --enc          a boot stage that decrypts encrypted upgrades with the
#                  chip's own P-256 key (the feature `enc`, docs/boot.md)
#   --image        signed image for the primary slot (0x8000)
#   --upgrade      signed image for the secondary slot (0x21000); pending
#                  when signed with `--pad`
#   --min-counter  preset the stored rollback counter (boot state, 0x3A000)
#   --record       provisioning record for the partition (0x3F000)
#   --flash        a whole 256 KiB flash image instead (a saved chip; the
#                  keys are those of the boot stage inside it)
#   --blank        a factory-fresh chip: everything erased, no boot stage
#                  (the factory station programs it over --gdb)
#   --build-only   write the boot stage as a raw binary for address 0 (for
#                  `factory provision --boot-stage`) and boot nothing
#   --hw-id        another chip: FICR DEVICEID reads as this hardware ID
#                  (16 hex digits, DEVICEID[1] then DEVICEID[0]; QEMU's own
#                  is 1234567800000003). QEMU keeps FICR in a constant table,
#                  so this runs a copy of qemu-system-arm with that table's
#                  two words patched (cached under $CARGO_TARGET_DIR).
#   --gdb          wait, halted, for a debugger on 127.0.0.1:PORT
#   --uart         the UART on a TCP server at 127.0.0.1:PORT (one client at
#                  a time; the console is still printed)
#   --icount       count instructions: one per nanosecond of virtual time
#
# BOOT_FEATURES=stack-probe|cost-probe builds the stage with a measurement
# (bench/boot.sh).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
usage() {
    sed -n '/^#   firmware/,/^#   --icount/p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

release=() authorities=()
enc="" image="" upgrade="" record="" flash="" gdb="" uart="" min_counter="" icount="" blank="" build_only="" hw_id=""
while (($#)); do
    case "$1" in
        --release-key) [ $# -ge 2 ] || usage; release+=("$2"); shift 2 ;;
        --authority) [ $# -ge 2 ] || usage; authorities+=("$2"); shift 2 ;;
        --image) [ $# -ge 2 ] || usage; image=$2; shift 2 ;;
        --upgrade) [ $# -ge 2 ] || usage; upgrade=$2; shift 2 ;;
        --record) [ $# -ge 2 ] || usage; record=$2; shift 2 ;;
        --flash) [ $# -ge 2 ] || usage; flash=$2; shift 2 ;;
        --min-counter) [ $# -ge 2 ] || usage; min_counter=$2; shift 2 ;;
        --gdb) [ $# -ge 2 ] || usage; gdb=$2; shift 2 ;;
        --uart) [ $# -ge 2 ] || usage; uart=$2; shift 2 ;;
        --icount) icount=1; shift ;;
        --enc) enc=1; shift ;;
        --blank) blank=1; shift ;;
        --hw-id) [ $# -ge 2 ] || usage; hw_id=$2; shift 2 ;;
        --build-only) [ $# -ge 2 ] || usage; build_only=$2; shift 2 ;;
        -h|--help) usage ;;
        *) echo "unknown argument: $1" >&2; usage ;;
    esac
done
for f in "$image" "$upgrade" "$record" "$flash"; do
    [ -z "$f" ] || [ -f "$f" ] || { echo "$f: no such file" >&2; exit 2; }
done
[ -z "$min_counter" ] || [[ "$min_counter" =~ ^[0-9]+$ && "$min_counter" -lt 4294967295 ]] \
    || { echo "--min-counter: $min_counter is not a counter (0 to 4294967294)" >&2; exit 2; }
if [ -n "$flash$blank" ] && { [ -n "$image$upgrade$record$min_counter$build_only$enc" ] || ((${#release[@]} + ${#authorities[@]})); }; then
    echo "--flash and --blank bring the whole chip: no keys, images, record or counter with them" >&2
    exit 2
fi
[ -z "$build_only" ] || [ -z "$gdb$icount$uart" ] || { echo "--build-only boots nothing" >&2; exit 2; }
[ -z "$hw_id" ] || [[ "$hw_id" =~ ^[0-9a-fA-F]{16}$ ]] \
    || { echo "--hw-id: $hw_id is not 16 hex digits" >&2; exit 2; }
for p in "$gdb" "$uart"; do
    [ -z "$p" ] || [[ "$p" =~ ^[0-9]+$ && "$p" -gt 0 && "$p" -lt 65536 ]] || { echo "$p: not a TCP port" >&2; exit 2; }
done
check_size() { # FILE MAX WHAT
    local n; n=$(stat -c %s "$1")
    [ "$n" -le "$2" ] || { echo "$1: $n bytes, larger than the $3 ($2)" >&2; exit 2; }
}
[ -z "$image" ] || check_size "$image" $((0x19000)) "primary slot"
[ -z "$upgrade" ] || check_size "$upgrade" $((0x19000)) "secondary slot"
[ -z "$record" ] || check_size "$record" $((0x1000)) "provisioning partition"
[ -z "$flash" ] || check_size "$flash" $((0x40000)) "flash"

sec1() { # PEM -> the 65-byte SEC1 point in hex
    local hex
    hex=$(openssl pkey -pubin -in "$1" -outform DER 2>/dev/null | tail -c 65 | od -An -tx1 | tr -d ' \n') \
        || { echo "$1: not a public key" >&2; exit 2; }
    [ ${#hex} -eq 130 ] && [ "${hex:0:2}" = 04 ] || { echo "$1: not a P-256 public key" >&2; exit 2; }
    echo "$hex"
}
release_hex=() authority_hex=()
for pem in "${release[@]}"; do release_hex+=("$(sec1 "$pem")"); done
for pem in "${authorities[@]}"; do authority_hex+=("$(sec1 "$pem")"); done

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
mkdir -p "$CARGO_TARGET_DIR"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The chip's whole flash as one file: erased (0xff), with each part laid in
# where docs/boot.md puts it.
place() { # FILE ADDR
    dd if="$1" of="$work/flash.bin" bs=4096 seek="$(($2))" oflag=seek_bytes conv=notrunc status=none
}
if [ -z "$flash$blank" ]; then
    # Several boots (tests) may build with different keys at once: build and
    # take a private copy of the program under a lock.
    exec 9>"$CARGO_TARGET_DIR/boot-stage.lock"
    flock 9
    (cd "$here" && RELEASE_KEYS=$(IFS=,; echo "${release_hex[*]}") \
        PROV_AUTHORITIES=$(IFS=,; echo "${authority_hex[*]}") \
        cargo build --quiet --release --bin boot-stage --features "${BOOT_FEATURES:-}${enc:+,enc}")
    arm-none-eabi-objcopy -O binary "$CARGO_TARGET_DIR/thumbv6m-none-eabi/release/boot-stage" "$work/boot-stage.bin"
    flock -u 9
    if [ -n "$build_only" ]; then
        tmp=$(mktemp "$build_only.XXXXXX")
        cp "$work/boot-stage.bin" "$tmp" && mv "$tmp" "$build_only"
        exit 0
    fi
fi
if [ -n "$flash" ]; then
    cp "$flash" "$work/flash.bin"
else
    head -c $((0x40000)) /dev/zero | tr '\0' '\377' > "$work/flash.bin"
fi
if [ -z "$flash$blank" ]; then
    place "$work/boot-stage.bin" 0
    [ -z "$image" ] || place "$image" 0x8000
    [ -z "$upgrade" ] || place "$upgrade" 0x21000
    [ -z "$record" ] || place "$record" 0x3f000
    if [ -n "$min_counter" ]; then
        (cd "$root" && cargo run --quiet -p firmware --example boot_state -- "$min_counter" "$work/state.bin")
        place "$work/state.bin" 0x3a000
    fi
fi
# The console: UART0 into a FIFO this script reads (and, with --uart, a TCP
# server for a client that talks to the application).
mkfifo "$work/console"
if [ -n "$uart" ]; then
    serial=(-chardev "socket,id=uart,host=127.0.0.1,port=$uart,server=on,wait=off,logfile=$work/console,logappend=on")
else
    serial=(-chardev "file,id=uart,path=$work/console")
fi
args=(-M microbit -nographic -monitor none "${serial[@]}" -serial chardev:uart
      -semihosting-config enable=on,target=native
      -device "loader,file=$work/flash.bin,addr=0")
[ -z "$gdb" ] || args+=(-S -gdb "tcp:127.0.0.1:$gdb")
qemu_bin=qemu-system-arm
if [ -n "$hw_id" ]; then
    hw_id=${hw_id,,}
    qemu_bin="$CARGO_TARGET_DIR/qemu-chips/qemu-system-arm-$hw_id"
    if [ ! -x "$qemu_bin" ]; then
        mkdir -p "$CARGO_TARGET_DIR/qemu-chips"
        python3 - "$(command -v qemu-system-arm)" "$qemu_bin" "$hw_id" <<'PY'
import os, struct, sys
src, dst, hw = sys.argv[1], sys.argv[2], sys.argv[3]
data = bytearray(open(src, "rb").read())
# QEMU's nRF51 FICR table: DEVICEID[0] = 3, DEVICEID[1] = 0x12345678, then
# ER[0]'s 0x9abcdef1; the three words together occur once in the binary.
pattern = struct.pack("<3I", 3, 0x12345678, 0x9ABCDEF1)
if data.count(pattern) != 1:
    sys.exit(f"{src}: the nRF51 FICR table is not where this QEMU version keeps it")
at = data.find(pattern)
data[at:at + 8] = struct.pack("<2I", int(hw[8:], 16), int(hw[:8], 16))
tmp = dst + ".tmp"
open(tmp, "wb").write(data)
os.chmod(tmp, 0o755)
os.replace(tmp, dst)
PY
    fi
fi
[ -z "$icount" ] || args+=(-icount shift=0)
timeout 120 "$qemu_bin" "${args[@]}" &
qemu=$!
trap 'kill $qemu 2>/dev/null || true; rm -rf "$work"' EXIT
# Both ends open here, so that neither QEMU nor this loop blocks on the FIFO;
# the loop ends when QEMU has ended and the FIFO is drained.
exec 3<>"$work/console"
app="" partial="" rc=0
# bash's own stderr is quiet here: it would report QEMU, killed below, as
# "Killed" whenever it reaps it. QEMU's stderr is untouched.
{
    # A short timeout on a read that has begun can cut a line in two (and
    # bash may then hand a byte over twice): wait for input first (`-t 0`
    # reads nothing), then read the line with a long timeout.
    while :; do
        line=""
        if ! IFS= read -r -t 0 <&3; then
            kill -0 $qemu 2>/dev/null || break
            sleep 0.05
            continue
        fi
        if IFS= read -r -t 10 line <&3; then
            line=$partial$line partial=""
            printf '%s\n' "$line"
            case $line in
                "APP fault"*) app=1 ;;
                "APP "*) app=0 ;;
                *) continue ;;
            esac
            # Without --uart nobody can talk to the application: its line ends
            # the run (QEMU itself is killed: a signal through `timeout` makes it
            # complain).
            [ -n "$uart" ] || { pkill -KILL -P $qemu || true; break; }
        else
            partial=$partial$line
            kill -0 $qemu || break
        fi
    done
    [ -z "$partial" ] || printf '%s\n' "$partial"
    wait $qemu || rc=$?
} 2>/dev/null
[ $rc -ne 124 ] || echo "BOOT timeout"
# Without --uart the application's line is the verdict (its run was ended
# here); otherwise QEMU's exit code is (BYE ends it with 0).
[ -n "$uart" ] || [ -z "$app" ] || rc=$app
exit $rc
