#!/usr/bin/env bash
# Build the on-target self-test (src/bin/selftest.rs: every Wycheproof ECDSA
# P-256/SHA-256 vector, raw and DER, every Ed25519 vector (RFC 8032's among
# them) and ECDSA P-384/SHA-384 vector, and the provisioning-record known answer)
# for Cortex-M4 and run it on QEMU's mps2-an386; print its console, exit with
# its code (0: all passed).
#
#   firmware/qemu/selftest.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
target=thumbv7em-none-eabihf
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
export PROV_AUTHORITIES=$(openssl pkey -pubin -in "$root/tests/data/records/authority.pub.pem" -outform DER | tail -c 65 | od -An -tx1 | tr -d ' \n')
(cd "$here" && cargo build --quiet --release --target $target --bin selftest --features ed25519,p384)
exec timeout 900 qemu-system-arm -M mps2-an386 -nographic -monitor none -serial none \
    -semihosting-config enable=on,target=native -kernel "$CARGO_TARGET_DIR/$target/release/selftest"
