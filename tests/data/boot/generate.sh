#!/usr/bin/env bash
# Known-answer images for the boot decision's host tests (firmware/src/boot):
# a small slot layout (8 KiB slots) so every power-cut point can be tried.
# Made once by imgtool 2.5 (the oracle), never by the code under test.
#   usage: tests/data/boot/generate.sh [path/to/imgtool]
set -euo pipefail
cd "$(dirname "$0")"
imgtool=${1:-../../../.venv/bin/imgtool}
"$imgtool" version | grep -q '^2\.5\.' || { echo "needs imgtool 2.5" >&2; exit 1; }
key=../images/dev-key.pem
# A second key the boot stage does not know.
[ -f other-key.pem ] || "$imgtool" keygen -t ecdsa-p256 -k other-key.pem
# Two chips' own P-256 keys (encrypted upgrades are wrapped for them).
for k in device-key other-device-key; do
    [ -f $k.pem ] || "$imgtool" keygen -t ecdsa-p256 -k $k.pem
    openssl pkey -in $k.pem -pubout -out $k.pub.pem
done

# An application for the primary slot at 0x8000 with a 0x200 header: a vector
# table (stack top 0x20004000, reset handler 0x8241) and fixed filler.
python3 - <<'PY'
import random, struct
r = random.Random(20261205)
def app(n):
    return struct.pack("<II", 0x20004000, 0x8241) + bytes(r.randrange(256) for _ in range(n - 8))
open("app.bin", "wb").write(app(3000))
open("big.bin", "wb").write(app(7900))
PY

common=(-H 0x200 --pad-header -S 0x2000 --align 4)
sign() { out=$1; shift; "$imgtool" sign "${common[@]}" "$@" "$out" >/dev/null; }
sign v1.bin -k $key -v 1.0.0 -s 1 app.bin
sign v2-pending.bin -k $key -v 2.0.0 -s 2 --pad app.bin
sign v2-confirmed.bin -k $key -v 2.0.0 -s 2 --pad --confirm app.bin
sign v0-pending.bin -k $key -v 0.9.0 -s 0 --pad app.bin
sign nocnt-pending.bin -k $key -v 3.0.0 --pad app.bin
sign unsigned-pending.bin -v 2.0.0 -s 2 --pad app.bin
sign other-key-pending.bin -k other-key.pem -v 2.0.0 -s 2 --pad app.bin
# Encrypted upgrades (ECIES-P256) for device-key, one for another chip.
sign v2-enc-pending.bin -k $key -v 2.0.0 -s 2 --pad -E device-key.pub.pem app.bin
sign v2-enc256-pending.bin -k $key -v 2.0.0 -s 2 --pad -E device-key.pub.pem --encrypt-keylen 256 app.bin
sign v2-enc-other-pending.bin -k $key -v 2.0.0 -s 2 --pad -E other-device-key.pub.pem app.bin
"$imgtool" sign -H 0x200 --pad-header -S 0x4000 --align 4 -k $key -v 2.0.0 -s 2 big.bin big-unpadded.bin >/dev/null
echo "written: $(ls *.bin | tr '\n' ' ')"
