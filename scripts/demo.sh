#!/usr/bin/env bash
# The main job on embedded defaults: create a development signing key, sign a
# sample nRF52840 application image, and verify it with keytool and with
# MCUboot's own imgtool. Everything goes to .work/demo/.
set -euo pipefail
cd "$(dirname "$0")/.."
step() { printf '\n==> %s\n' "$*"; }

scripts/setup.sh
step "build keytool (release)"
cargo build --quiet --release -p keytool
keytool=target/release/keytool
imgtool=.venv/bin/imgtool
out=.work/demo
mkdir -p "$out"

step "development key: $out/release-dev.pem"
[ -f "$out/release-dev.pem" ] || $keytool key generate -t ecdsa-p256 -k "$out/release-dev.pem"
$keytool key getpub -e pem -k "$out/release-dev.pem" -o "$out/release-dev.pub.pem"
$keytool key getpubhash -e raw -k "$out/release-dev.pem" | od -An -tx1 | tr -d ' \n' | sed 's/^/key hash (KEYHASH): /'; echo

step "sample application: $out/app.bin (192 KiB)"
head -c 196608 /dev/urandom > "$out/app.bin"

step "sign for an nRF52840 MCUboot slot (header 0x200, slot 0x76000, align 4)"
$keytool image sign -k "$out/release-dev.pem" -v 1.0.0+1 -s auto \
    -H 0x200 --pad-header -S 0x76000 --align 4 --confirm \
    "$out/app.bin" "$out/app.signed.bin"
$keytool image sign -k "$out/release-dev.pem" -v 1.0.0+1 -s auto \
    -H 0x200 --pad-header -S 0x76000 --align 4 -x 0xc000 \
    "$out/app.bin" "$out/app.signed.hex"

step "verify with keytool"
$keytool image verify -k "$out/release-dev.pub.pem" "$out/app.signed.bin"

step "verify with imgtool $($imgtool version)"
$imgtool verify -k "$out/release-dev.pem" "$out/app.signed.bin"
$imgtool verify -k "$out/release-dev.pem" "$out/app.signed.hex"

step "done: $out/app.signed.bin and $out/app.signed.hex"
