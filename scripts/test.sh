#!/usr/bin/env bash
# The whole test suite, as CI runs it: install what is needed, check format
# and lints, build the firmware crate for the nRF targets, run every test
# against the real parts (imgtool, openssl, ...).
set -euo pipefail
cd "$(dirname "$0")/.."
# Incremental caches only help edit-compile loops; on a clean CI checkout they
# cost gigabytes of disk and nothing else.
export CARGO_INCREMENTAL=0
log() { printf '==> %s\n' "$*" >&2; }

scripts/setup.sh

log "cargo fmt --check"
cargo fmt --all --check
# The firmware crate's optional image-key types are built and tested on the
# host with everything else.
features=firmware/capi,firmware/ed25519,firmware/p384,firmware/rsa,firmware/enc
log "cargo clippy"
cargo clippy --workspace --all-targets --features "$features" --quiet -- -D warnings
log "fmt and clippy: the QEMU boot stage (thumbv6m-none-eabi)"
(cd firmware/qemu && cargo fmt --check && CARGO_TARGET_DIR="$PWD/../../target" cargo clippy --quiet --release -- -D warnings)

for t in thumbv6m-none-eabi thumbv7em-none-eabihf thumbv8m.main-none-eabihf; do
    log "build firmware (and libfirmware.a with the C ABI) for $t"
    cargo build --quiet -p firmware --release --target "$t"
    cargo build --quiet -p firmware --release --features capi --target "$t"
    cargo build --quiet -p firmware --release --features ed25519,p384,enc --target "$t"
done
log "build libfirmware.a with the C ABI for the host"
cargo build --quiet -p firmware --release --features capi
export FIRMWARE_CAPI_LIB="$PWD/target/release/libfirmware.a"

export IMGTOOL="$PWD/.venv/bin/imgtool"
# Tests start moto_server (through scripts/moto_server.py) with this Python.
export VENV_PYTHON="$PWD/.venv/bin/python"
export PKCS11_MODULE=/usr/lib/softhsm/libsofthsm2.so
[ -f "$PKCS11_MODULE" ] || { echo "SoftHSM2 module missing at $PKCS11_MODULE" >&2; exit 1; }
# Tests give every token its own directory through SOFTHSM2_CONF; never the system one.
unset SOFTHSM2_CONF PKCS11_PIN
if cargo nextest --version >/dev/null 2>&1; then
    log "cargo nextest run"
    cargo nextest run --workspace --features "$features" --no-fail-fast
else
    log "cargo test (cargo-nextest not installed)"
    cargo test --workspace --features "$features" --no-fail-fast
fi
