#!/usr/bin/env bash
# Size and cost of the boot stage (issue 14), with one release key and one
# provisioning authority built in:
#  * flash (.vector_table + .text + .rodata + .data) of the boot stage for
#    thumbv6m (nRF51) and thumbv7em (nRF52), measured with arm-none-eabi-size;
#  * its peak stack on QEMU's nRF51, booting a ~96 KiB image with an upgrade
#    of the same size installed first (the deepest path), stack probe;
#  * instructions of one boot on QEMU's nRF51 under -icount shift=0 (TIMER0
#    calibrated against a loop of known length), reset to jump, for that image
#    without and with the upgrade;
#  * the same with the boot stage built with `enc` (issue 19): its flash, and
#    one boot that installs that upgrade encrypted for the chip's own key
#    (ECIES-P256, AES-128 and AES-256), against the same stage installing it
#    in the clear in the same run, with its peak stack;
#  * instructions of one verification of that image on Cortex-M4
#    (thumbv7em, QEMU mps2-an386, SysTick calibrated against a loop of known
#    length in the same run), hash alone and hash + signature, and the
#    verification's peak stack.
# usage: bench/boot.sh   (after scripts/setup.sh)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
key=$root/tests/data/images/dev-key.pem
pub=$root/tests/data/images/dev-key.pub.pem
authority=$root/tests/data/records/authority.pub.pem
sec1() { openssl pkey -pubin -in "$1" -outform DER | tail -c 65 | od -An -tx1 | tr -d ' \n'; }
export RELEASE_KEYS=$(sec1 $pub) PROV_AUTHORITIES=$(sec1 $authority)

echo "== boot stage flash, 1 release key + 1 authority (goal <= 16384 B; with enc: fits its 32 KiB)"
for target in thumbv6m-none-eabi thumbv7em-none-eabihf; do
    for features in "" enc; do
        (cd firmware/qemu && cargo build --quiet --release --target $target --bin boot-stage --features "$features")
        arm-none-eabi-size -A "$CARGO_TARGET_DIR/$target/release/boot-stage" | awk -v t=$target -v f="${features:-default}" '
            $1 == ".vector_table" || $1 == ".text" || $1 == ".rodata" || $1 == ".data" { n += $2 }
            END { printf "  %-24s %-8s flash %6d B\n", t, f, n }'
    done
done

firmware/qemu/build-app.sh "$out/app.bin"
python3 - "$out/app.bin" <<'PY'
import sys
p = sys.argv[1]
d = open(p, "rb").read()
open(p, "wb").write(d + bytes(0x18400 - len(d)))
PY
imgtool=.venv/bin/imgtool
sign() { "$imgtool" sign -H 0x200 --pad-header -S 0x19000 --align 4 -k $key "$@" >/dev/null; }
sign -v 1.0.0 -s 1 "$out/app.bin" "$out/v1.bin"
sign -v 2.0.0 -s 2 --pad "$out/app.bin" "$out/v2.bin"
# The same upgrade encrypted for a chip's own key (tests/data/boot), and that
# chip's provisioning partition: the test record, then its key block.
chip_key=$root/tests/data/boot/device-key
sign -v 2.0.0 -s 2 --pad -E $chip_key.pub.pem "$out/app.bin" "$out/v2-enc128.bin"
sign -v 2.0.0 -s 2 --pad -E $chip_key.pub.pem --encrypt-keylen 256 "$out/app.bin" "$out/v2-enc256.bin"
.venv/bin/python - $chip_key.pem tests/data/records/qemu-microbit.bin "$out/partition.bin" <<'PY'
import sys
from cryptography.hazmat.primitives.serialization import load_pem_private_key
key = load_pem_private_key(open(sys.argv[1], "rb").read(), None)
secret = key.private_numbers().private_value.to_bytes(32, "big")
part = bytearray(b"\xff" * 0x1000)
record = open(sys.argv[2], "rb").read()
part[:len(record)] = record
# docs/provisioning-record.md, the key block
part[0x100:0x148] = b"PKEY" + (1).to_bytes(2, "little") + b"\0\0" + secret + bytes(32)
open(sys.argv[3], "wb").write(part)
PY
echo "  image: $(stat -c %s "$out/v1.bin") bytes (header + payload + TLVs)"
unset RELEASE_KEYS PROV_AUTHORITIES

echo
echo "== boot stage on QEMU's nRF51 (thumbv6m)"
keys=(--release-key $pub --authority $authority --record tests/data/records/qemu-microbit.bin)
stack=$(BOOT_FEATURES=stack-probe firmware/qemu/boot.sh "${keys[@]}" --image "$out/v1.bin" --upgrade "$out/v2.bin" | sed -n 's/^STACK boot=//p')
echo "  peak stack, upgrade installed then boot: $stack B (goal <= 4096 B)"
for case in plain upgrade; do
    extra=(--image "$out/v1.bin")
    [ $case = plain ] || extra+=(--upgrade "$out/v2.bin")
    line=$(BOOT_FEATURES=cost-probe firmware/qemu/boot.sh --icount "${keys[@]}" "${extra[@]}" | grep '^COST ')
    python3 - "$line" "$case" <<'PY'
import sys
f = dict(kv.split("=") for kv in sys.argv[1].split()[1:])
per_tick = int(f["calibration_insns"]) / int(f["calibration_ticks"])
print(f"  one boot ({sys.argv[2]}), reset to jump: {int(f['ticks']) * per_tick / 1e6:.2f} M instructions"
      f" (TIMER0 {per_tick:.1f} instructions a tick, calibrated)")
PY
done

echo
echo "== the boot stage built with enc on QEMU's nRF51: the same upgrade in the clear and encrypted"
keys=(--enc --release-key $pub --authority $authority --record "$out/partition.bin")
for upgrade in v2 v2-enc128 v2-enc256; do
    line=$(BOOT_FEATURES=cost-probe firmware/qemu/boot.sh --icount "${keys[@]}" --image "$out/v1.bin" --upgrade "$out/$upgrade.bin" | grep -E '^(COST|UPGRADE) ' | tr '\n' ' ')
    python3 - "$line" "$upgrade" <<'PY'
import sys
line, name = sys.argv[1], sys.argv[2]
assert "UPGRADE installed" in line, line
cost = line[line.index("COST "):]
f = dict(kv.split("=") for kv in cost.split()[1:])
per_tick = int(f["calibration_insns"]) / int(f["calibration_ticks"])
print(f"  {name:10} installed, then boot: {int(f['ticks']) * per_tick / 1e6:.2f} M instructions")
PY
done
stack=$(BOOT_FEATURES=stack-probe firmware/qemu/boot.sh "${keys[@]}" --image "$out/v1.bin" --upgrade "$out/v2-enc256.bin" | sed -n 's/^STACK boot=//p')
echo "  peak stack, AES-256 upgrade decrypted and installed, then boot: $stack B"
# Leave the default boot stage built, as boot.sh builds it.
(cd firmware/qemu && cargo build --quiet --release --bin boot-stage)

echo
echo "== one verification of the image on Cortex-M4 (thumbv7em, mps2-an386; goal <= 8 M instructions)"
(cd firmware/qemu && RELEASE_KEYS=$(sec1 $pub) cargo build --quiet --release --target thumbv7em-none-eabihf --bin cost)
line=$(timeout 120 qemu-system-arm -M mps2-an386 -nographic -monitor none -serial none \
    -semihosting-config enable=on,target=native -icount shift=0 \
    -kernel "$CARGO_TARGET_DIR/thumbv7em-none-eabihf/release/cost" \
    -device "loader,file=$out/v1.bin,addr=0x100000")
python3 - "$line" <<'PY'
import sys
f = dict(kv.split("=") for kv in sys.argv[1].split()[1:])
per_tick = int(f["calibration_insns"]) / int(f["calibration_ticks"])
assert f["ok"] == "1", "the image did not verify"
print(f"  SysTick: {per_tick:.1f} instructions a tick (calibration loop)")
print(f"  SHA-256 alone:          {int(f['hash_ticks']) * per_tick / 1e6:.2f} M instructions")
print(f"  whole verification:     {int(f['verify_ticks']) * per_tick / 1e6:.2f} M instructions")
print(f"  peak stack of the verification: {f['stack']} B")
PY

echo
echo "== decrypting an encrypted upgrade on Cortex-M4 (issue 19: unwrap with X25519 or the chip's P-256 key, AES-128-CTR over 100 KiB)"
for scheme in x25519 p256; do
(cd firmware/qemu && RELEASE_KEYS=$(sec1 $pub) cargo build --quiet --release --target thumbv7em-none-eabihf --bin cost --features enc-$scheme)
lines=$(timeout 300 qemu-system-arm -M mps2-an386 -nographic -monitor none -serial none \
    -semihosting-config enable=on,target=native -icount shift=0 \
    -kernel "$CARGO_TARGET_DIR/thumbv7em-none-eabihf/release/cost" \
    -device "loader,file=$out/v1.bin,addr=0x100000")
python3 - "$lines" $scheme <<'PY'
import sys
rows = {l.split()[0]: dict(kv.split("=") for kv in l.split()[1:]) for l in sys.argv[1].splitlines()}
per_tick = int(rows["COST"]["calibration_insns"]) / int(rows["COST"]["calibration_ticks"])
d = rows["COST_DECRYPT"]
name = {"x25519": "X25519", "p256": "P-256 ladder"}[sys.argv[2]]
print(f"  unwrap the AES key ({name}, HKDF, HMAC): {int(d['unwrap_ticks']) * per_tick / 1e6:.2f} M instructions")
if sys.argv[2] == "x25519":
    print(f"  AES-128-CTR over {int(d['bytes']) // 1024} KiB:           {int(d['ctr_ticks']) * per_tick / 1e6:.2f} M instructions")
    print(f"  for scale, verifying the image:          {int(rows['COST']['verify_ticks']) * per_tick / 1e6:.2f} M instructions")
PY
done
(cd firmware/qemu && RELEASE_KEYS=$(sec1 $pub) cargo build --quiet --release --target thumbv7em-none-eabihf --bin cost)
