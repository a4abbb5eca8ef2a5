#!/usr/bin/env bash
# Known-answer MCUboot images, made once by imgtool 2.5 (the oracle), never by
# the code under test. Re-run only to add cases; commit what it writes.
#   usage: tests/data/images/generate.sh [path/to/imgtool]
set -euo pipefail
cd "$(dirname "$0")"
imgtool=${1:-../../../.venv/bin/imgtool}
"$imgtool" version | grep -q '^2\.5\.' || { echo "needs imgtool 2.5" >&2; exit 1; }

# A development key for these vectors only (never used for anything else).
[ -f dev-key.pem ] || "$imgtool" keygen -t ecdsa-p256 -k dev-key.pem
"$imgtool" getpub -e pem -k dev-key.pem > dev-key.pub.pem

# Deterministic firmware: 5000 bytes of a fixed pseudo-random sequence.
python3 - <<'PY'
import random
r = random.Random(20261128)
open("firmware.bin", "wb").write(bytes(r.randrange(256) for _ in range(5000)))
PY

common=(-v 2.7.1+42 -H 0x200 --pad-header -S 0x20000)
sign() { out=$1; shift; "$imgtool" sign "$@" firmware.bin "$out" >/dev/null; }

sign unsigned.bin "${common[@]}"
sign unsigned-confirm.bin "${common[@]}" --confirm --align 4 -s auto
sign unsigned-deps-tlvs.hex "${common[@]}" -d "(1,1.0.0+0)" --custom-tlv 0xa0 0xdeadbeef -x 0x8000
sign signed.bin "${common[@]}" -k dev-key.pem -s 7
sign signed-full-key.bin "${common[@]}" -k dev-key.pem --public-key-format full
sign signed-confirm.hex "${common[@]}" -k dev-key.pem --confirm -x 0xc000 -s auto
echo "written: $(ls *.bin *.hex | tr '\n' ' ')"
