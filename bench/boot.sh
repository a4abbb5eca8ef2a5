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

echo "== boot stage flash, 1 release key + 1 authority (goal <= 16384 B)"
for target in thumbv6m-none-eabi thumbv7em-none-eabihf; do
    (cd firmware/qemu && cargo build --quiet --release --target $target --bin boot-stage)
    arm-none-eabi-size -A "$CARGO_TARGET_DIR/$target/release/boot-stage" | awk -v t=$target '
        $1 == ".vector_table" || $1 == ".text" || $1 == ".rodata" || $1 == ".data" { f += $2 }
        END { printf "  %-24s flash %6d B\n", t, f }'
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
echo "== decrypting an encrypted upgrade on Cortex-M4 (issue 19: X25519 unwrap, AES-128-CTR over 100 KiB)"
(cd firmware/qemu && RELEASE_KEYS=$(sec1 $pub) cargo build --quiet --release --target thumbv7em-none-eabihf --bin cost --features enc-x25519)
lines=$(timeout 300 qemu-system-arm -M mps2-an386 -nographic -monitor none -serial none \
    -semihosting-config enable=on,target=native -icount shift=0 \
    -kernel "$CARGO_TARGET_DIR/thumbv7em-none-eabihf/release/cost" \
    -device "loader,file=$out/v1.bin,addr=0x100000")
python3 - "$lines" <<'PY'
import sys
rows = {l.split()[0]: dict(kv.split("=") for kv in l.split()[1:]) for l in sys.argv[1].splitlines()}
per_tick = int(rows["COST"]["calibration_insns"]) / int(rows["COST"]["calibration_ticks"])
d = rows["COST_DECRYPT"]
print(f"  unwrap the AES key (X25519, HKDF, HMAC): {int(d['unwrap_ticks']) * per_tick / 1e6:.2f} M instructions")
print(f"  AES-128-CTR over {int(d['bytes']) // 1024} KiB:           {int(d['ctr_ticks']) * per_tick / 1e6:.2f} M instructions")
print(f"  for scale, verifying the image:          {int(rows['COST']['verify_ticks']) * per_tick / 1e6:.2f} M instructions")
PY
(cd firmware/qemu && RELEASE_KEYS=$(sec1 $pub) cargo build --quiet --release --target thumbv7em-none-eabihf --bin cost)
