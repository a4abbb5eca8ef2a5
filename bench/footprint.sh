#!/usr/bin/env bash
# Footprint and cost of the device-side verifiers (issue 4):
#  * flash (.text + .rodata) and RAM (.data + .bss) of the record and image
#    verifiers, of the device signer, of one Ed25519 or P-384 verification
#    (the firmware crate's features, issue 18) and of unwrapping an encrypted
#    image's key and decrypting (issue 19), per target: a program that only
#    runs them, built with and without them, measured with arm-none-eabi-size;
#  * instructions of one record verification on the host (valgrind callgrind).
# The whole boot stage (flash, stack, instructions per boot): bench/boot.sh.
# usage: bench/footprint.sh   (after scripts/setup.sh)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
export CARGO_TARGET_DIR="$root/target"
authority=tests/data/records/authority.pub.pem
export PROV_AUTHORITIES=$(openssl pkey -pubin -in $authority -outform DER | tail -c 65 | od -An -tx1 | tr -d ' \n')

sizes() { # ELF -> "flash ram"
    arm-none-eabi-size -A "$1" | awk '
        $1 == ".text" || $1 == ".rodata" || $1 == ".vector_table" { flash += $2 }
        $1 == ".data" { flash += $2; ram += $2 }
        $1 == ".bss" || $1 == ".uninit" { ram += $2 }
        END { print flash, ram }'
}

# `verifiers` (src/bin/verifiers.rs) runs the verifiers and prints nothing, so
# its growth over the baseline is the verifiers' own code and tables.
for bin in verifiers; do
echo "== $bin"
printf '%-26s %-9s %10s %10s %12s %10s\n' target variant flash_B ram_B "flash-base" "ram-base"
for target in thumbv6m-none-eabi thumbv7em-none-eabihf thumbv8m.main-none-eabihf; do
    rustup target list --installed | grep -qx "$target" || rustup target add "$target" >/dev/null
    declare -A flash=() ram=()
    for variant in baseline record image both sign ed25519 p384 enc-x25519 enc-p256; do
        case $variant in
            baseline) feats=(--no-default-features) ;;
            record) feats=() ;;
            image) feats=(--no-default-features --features image) ;;
            both) feats=(--features image) ;;
            sign) feats=(--no-default-features --features sign) ;;
            ed25519) feats=(--no-default-features --features ed25519) ;;
            p384) feats=(--no-default-features --features p384) ;;
            enc-x25519) feats=(--no-default-features --features enc-x25519) ;;
            enc-p256) feats=(--no-default-features --features enc-p256) ;;
        esac
        (cd firmware/qemu && cargo build --quiet --release --target "$target" --bin $bin "${feats[@]}")
        cp "$CARGO_TARGET_DIR/$target/release/$bin" "$out/$bin-$target-$variant.elf"
        read -r f r < <(sizes "$out/$bin-$target-$variant.elf")
        flash[$variant]=$f; ram[$variant]=$r
        printf '%-26s %-9s %10d %10d %12d %10d\n' "$target" "$variant" "$f" "$r" \
            $((f - flash[baseline])) $((r - ram[baseline]))
    done
    unset flash ram
done
done

echo
cargo build --quiet --release -p firmware --example verify_record
valgrind --tool=callgrind --callgrind-out-file="$out/cg.out" --collect-atstart=no \
    --toggle-collect='*verify_provisioning*' \
    "$CARGO_TARGET_DIR/release/examples/verify_record" tests/data/records/qemu-microbit.bin $authority 1234567800000003 \
    >/dev/null 2>"$out/vg.log"
echo "instructions in one verify_provisioning (x86_64 host, callgrind): $(awk '/^summary:/ {print $2}' "$out/cg.out")"
