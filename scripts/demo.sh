#!/usr/bin/env bash
# The main job on embedded defaults, on this machine alone:
#   a provisioning backend (provisiond, SQLite) with a factory token;
#   development keys (release and provisioning authority) inside a SoftHSM2 token;
#   a sample application released under a written policy: two of three
#   officers (approval keys in the token) approve, then the station signs it
#   as an MCUboot image with the HSM's release key and audits every step;
#   an emulated nRF51 (QEMU), blank, provisioned over its GDB stub by the factory
#   station: hardware ID from FICR, the boot stage (release and authority keys
#   built in) and the released image programmed; the chip makes its own key from
#   its RNG and proves it; serial from the backend, the record for that key
#   (key_origin=device) written to flash, everything read back, device activated;
#   a root and a device CA (X.509) from keys in the token, and each device's
#   certificate issued by the station and written next to its record;
#   then it boots: the boot stage verifies the image and the record, and starts
#   the application, which prints its serial and authenticates to the backend
#   over its UART (`device relay`), signing the challenge with the key it made.
# Everything goes to .work/demo/ (removed and made afresh each run).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
step() { printf '\n==> %s\n' "$*"; }

scripts/setup.sh
step "build keytool, provisiond, factory (release)"
cargo build --quiet --release -p keytool -p lambda -p factory
bin=$root/target/release
out=$root/.work/demo
rm -rf "$out" && mkdir -p "$out/tokens"
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done' EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

step "SoftHSM2 tokens in $out/tokens: 'demo' (authority, station), 'release', and one per officer"
printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n' "$out/tokens" > "$out/softhsm2.conf"
export SOFTHSM2_CONF=$out/softhsm2.conf PKCS11_PIN=1234
export PKCS11_MODULE=${PKCS11_MODULE:-$(ls /usr/lib/softhsm/libsofthsm2.so /usr/lib/*/softhsm/libsofthsm2.so 2>/dev/null | head -1)}
softhsm2-util --init-token --free --label demo --pin 1234 --so-pin 5678 >/dev/null
# The release token's PINs exist only until the ceremony below.
printf 1111 > "$out/release.pin"; printf 5678 > "$out/release.so-pin"
softhsm2-util --init-token --free --label release --pin 1111 --so-pin 5678 >/dev/null
release="pkcs11:token=release;object=release"
authority="pkcs11:token=demo;object=authority"
$bin/keytool key generate -t ecdsa-p256 -k "$release?pin-source=$out/release.pin"
$bin/keytool key generate -t ecdsa-p256 -k "$authority"
$bin/keytool key getpub -e pem -k "$release" -o "$out/release.pub.pem"
$bin/keytool key getpub -e pem -k "$authority" -o "$out/authority.pub.pem"
$bin/keytool key generate -t ecdsa-p256 -k "pkcs11:token=demo;object=station" >/dev/null
# Each officer's own token (a smart card in real life), with their own PIN and
# approval key; $officer_uri[NAME] is how the station reaches it.
declare -A officer_uri
pin=2000
for officer in alice bob carol; do
    pin=$((pin + 111)); printf '%s' "$pin" > "$out/$officer.pin"
    softhsm2-util --init-token --free --label "$officer" --pin "$pin" --so-pin 5678 >/dev/null
    officer_uri[$officer]="pkcs11:token=$officer?pin-source=$out/$officer.pin"
    key="pkcs11:token=$officer;object=approval?pin-source=$out/$officer.pin"
    $bin/keytool key generate -t ecdsa-p256 -k "$key" >/dev/null
    $bin/keytool key getpub -e pem -k "$key" -o "$out/$officer.pub.pem"
done
fingerprint() { $bin/keytool key getpub -e raw -k "$1" | sha256sum | cut -c1-64; }

step "provisioning backend on SQLite, with a token for the factory line"
$bin/provisiond token add --store "sqlite:$out/registry.db" --name line-1 --role factory | tail -1 > "$out/line-1.token"
api=$(port)
$bin/provisiond serve --listen "127.0.0.1:$api" --store "sqlite:$out/registry.db" \
    --authority "$out/authority.pub.pem" 2>"$out/provisiond.log" &
pids+=($!)
until (exec 3<>"/dev/tcp/127.0.0.1/$api") 2>/dev/null; do sleep 0.1; done
echo "provisiond on http://127.0.0.1:$api"

step "the release policy: 2 of 3 officers, version rule, keys by role (production: no file keys)"
cat > "$out/policy.toml" <<POLICY
name = "demo-fleet"
production = true
audit_log = "audit.jsonl"
station_key = "pkcs11:token=demo;object=station"
station_key_fingerprint = "sha256:$(fingerprint "pkcs11:token=demo;object=station")"

[keys.release]
uri = "$release"
role = "release"
fingerprint = "sha256:$(fingerprint "$release")"

[keys.authority]
uri = "$authority"
role = "authority"
fingerprint = "sha256:$(fingerprint "$authority")"

[officers]
alice = { public_key = "alice.pub.pem" }
bob = { public_key = "bob.pub.pem" }
carol = { public_key = "carol.pub.pem" }

[products.demo]
slot_size = 0x19000
release_keys = ["release"]
officers = ["alice", "bob", "carol"]
quorum = 2
rollback_quorum = 3
required_tlvs = ["SEC_CNT"]
POLICY
export KEYTOOL_POLICY=$out/policy.toml
$bin/keytool policy check --resolve-keys "$KEYTOOL_POLICY"
$bin/keytool audit init    # a production station starts its history once, on purpose

step "ceremony: the release token's PINs become random shares, 2 of 3, in the officers' own tokens"
$bin/keytool ceremony init --token release --threshold 2 \
    --pin-source "$out/release.pin" --so-pin-source "$out/release.so-pin" \
    --officer "alice=${officer_uri[alice]}" --officer "bob=${officer_uri[bob]}" \
    --officer "carol=${officer_uri[carol]}"
rm "$out/release.pin" "$out/release.so-pin"   # they open nothing any more
if PKCS11_PIN=1111 $bin/keytool key list -k "pkcs11:token=release" >/dev/null 2>&1; then
    echo "demo: the release token still opens with its old PIN" >&2; exit 1
fi
echo "the old PIN no longer opens the release token"

step "sample application released: request, two officers approve, the station signs"
firmware/qemu/build-app.sh "$out/app.bin"
$bin/keytool image sign -v 1.0.0+1 -s auto -H 0x200 --pad-header \
    -S 0x19000 --align 4 "$out/app.bin" "$out/app.unsigned.bin"
$bin/keytool release request "$out/app.unsigned.bin" --product demo -o "$out/app.req.json"
for officer in alice bob; do
    $bin/keytool release approve --yes "$out/app.req.json" \
        --officer-key "pkcs11:token=$officer;object=approval?pin-source=$out/$officer.pin"
done
# Two officers unlock the release token with their shares for this one signature.
$bin/keytool release sign "$out/app.req.json" --image "$out/app.unsigned.bin" -k "$release" \
    -o "$out/app.signed.bin" --unlock "alice=${officer_uri[alice]}" --unlock "carol=${officer_uri[carol]}"
$bin/keytool image verify -k "$out/release.pub.pem" "$out/app.signed.bin"
$bin/keytool audit verify --log "$out/audit.jsonl" -k "pkcs11:token=demo;object=station"
unset KEYTOOL_POLICY

step "the boot stage, with the release and authority public keys built in"
firmware/qemu/boot.sh --release-key "$out/release.pub.pem" --authority "$out/authority.pub.pem" \
    --build-only "$out/boot-stage.bin"

step "emulated nRF51 (QEMU microbit), blank, halted on its GDB stub, waiting for the station"
gdb=$(port) uart=$(port)
firmware/qemu/boot.sh --blank --gdb "$gdb" --uart "$uart" > "$out/console.txt" &
chip=$!
until (exec 3<>"/dev/tcp/127.0.0.1/$gdb") 2>/dev/null; do sleep 0.1; done
$bin/factory read-id --chip nrf51822 --gdb "127.0.0.1:$gdb"

step "device PKI from keys in the token: root CA and device CA (X.509)"
$bin/keytool key generate -t ecdsa-p256 -k "pkcs11:token=demo;object=root-ca" >/dev/null
$bin/keytool key generate -t ecdsa-p256 -k "pkcs11:token=demo;object=device-ca" >/dev/null
$bin/keytool ca init-root -k "pkcs11:token=demo;object=root-ca" \
    --subject "CN=Demo Fleet Root CA,O=Demo,C=SE" -o "$out/root-ca.pem"
$bin/keytool ca init-intermediate -k "pkcs11:token=demo;object=device-ca" \
    --issuer-key "pkcs11:token=demo;object=root-ca" --issuer-cert "$out/root-ca.pem" \
    --subject "CN=Demo Device CA,O=Demo,C=SE" -o "$out/device-ca.pem"
openssl x509 -noout -subject -issuer -in "$out/device-ca.pem"

step "factory provision over the GDB stub: the chip makes its own key and proves it; authority and device CA keys in the HSM"
$bin/factory provision --chip nrf51822 --gdb "127.0.0.1:$gdb" \
    --backend "http://127.0.0.1:$api" --token-file "$out/line-1.token" \
    --authority-key "$authority" --product demo --key-origin device \
    --boot-stage "$out/boot-stage.bin" \
    --firmware "$out/app.signed.bin" --slot 0x8000 --release-key "$out/release.pub.pem" \
    --device-ca-key "pkcs11:token=demo;object=device-ca" --device-ca-cert "$out/device-ca.pem" \
    --hold

step "the device's X.509 certificate, read back from the emulated flash"
$bin/factory read-cert --chip nrf51822 --gdb "127.0.0.1:$gdb" -o "$out/device.pem"
openssl x509 -noout -subject -ext subjectAltName -in "$out/device.pem"
openssl verify -CAfile "$out/root-ca.pem" -untrusted "$out/device-ca.pem" "$out/device.pem"

step "the registry: device 1, active, its key born on the chip; then the chip runs"
curl -sf -H "authorization: Bearer $(cat "$out/line-1.token")" "http://127.0.0.1:$api/v1/devices/1"; echo
$bin/factory reset --chip nrf51822 --gdb "127.0.0.1:$gdb"

step "the chip authenticates itself over its UART with the key it made (the backend checks its signature)"
until grep -q '^APP ' "$out/console.txt"; do sleep 0.1; done
$bin/device relay --uart "127.0.0.1:$uart" --serial 1 --backend "http://127.0.0.1:$api"
exec 3<>"/dev/tcp/127.0.0.1/$uart"; echo BYE >&3; exec 3>&-

step "the chip's console: the boot stage verified image and record, the application ran"
wait "$chip"
cat "$out/console.txt"
grep -q '^APP version=1.0.0+1 serial=1 ' "$out/console.txt" \
    || { echo "demo: the application did not start" >&2; exit 1; }
grep -q '^PROVISIONED serial=1 .* key_origin=device' "$out/console.txt" \
    || { echo "demo: the record does not say the key was born on the chip" >&2; exit 1; }

step "the backend's audit log"
$bin/provisiond audit show --store "sqlite:$out/registry.db"
$bin/provisiond audit verify --store "sqlite:$out/registry.db"
step "done: keys in $out/tokens, registry $out/registry.db, station audit log $out/audit.jsonl"
