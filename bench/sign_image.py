#!/usr/bin/env python3
"""Whole-process timing of signing a 16 MiB image with a file key, per key type.

Runs, in the same session and on the same file, for each key type:
  * keytool image sign   (this project, release build)
  * imgtool sign         (MCUboot's tool, same flags and key)
  * openssl dgst -shaN   (the floor: hashing the file once with the image's hash)
and prints median wall times and the ratios the issues set goals for:
imgtool / keytool (goal >= 15) and keytool / openssl (goal <= 2).

usage: bench/sign_image.py [--runs N] [--size-mib M] [--types T,...]
Types: ecdsa-p256 (default alone), ecdsa-p384, ed25519, ed25519-sha512,
rsa-2048, rsa-3072, or all.
Needs target/release/keytool and .venv/bin/imgtool (scripts/setup.sh).
"""
import argparse
import os
import statistics
import subprocess
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEYTOOL = os.path.join(ROOT, "target", "release", "keytool")
IMGTOOL = os.path.join(ROOT, ".venv", "bin", "imgtool")


def timed(cmd, runs, out=None):
    """Median and best wall time of `runs` runs. `out` is the output path;
    each run writes a new file (removed afterwards, untimed), so no tool pays
    for replacing the previous run's output."""
    samples = []
    for i in range(runs):
        argv = [a if a != "{out}" else f"{out}.{i}" for a in cmd]
        t0 = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        samples.append(time.perf_counter() - t0)
        if out:
            os.remove(f"{out}.{i}")
    return statistics.median(samples), min(samples)


# key type -> (keytool -t, extra sign flags, openssl digest)
TYPES = {
    "ecdsa-p256": ("ecdsa-p256", [], "-sha256"),
    "ecdsa-p384": ("ecdsa-p384", [], "-sha384"),
    "ed25519": ("ed25519", [], "-sha256"),
    "ed25519-sha512": ("ed25519", ["--sha", "512"], "-sha512"),
    "rsa-2048": ("rsa-2048", [], "-sha256"),
    "rsa-3072": ("rsa-3072", [], "-sha256"),
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--size-mib", type=int, default=16)
    ap.add_argument("--types", default="ecdsa-p256")
    args = ap.parse_args()
    types = list(TYPES) if args.types == "all" else args.types.split(",")
    with tempfile.TemporaryDirectory() as d:
        fw = os.path.join(d, "app.bin")
        with open(fw, "wb") as f:
            f.write(os.urandom(args.size_mib << 20))
        slot = hex((args.size_mib << 20) + 0x10000)
        flags = ["-v", "1.2.3", "-H", "0x200", "--pad-header", "-S", slot, "-s", "auto"]
        # Warm the page cache once.
        timed(["openssl", "dgst", "-sha256", fw], 1)
        for name in types:
            kind, extra, dgst = TYPES[name]
            key = os.path.join(d, f"{kind}.pem")
            if not os.path.exists(key):
                subprocess.run([KEYTOOL, "key", "generate", "-t", kind, "-k", key], check=True,
                               stdout=subprocess.DEVNULL)
            sign = [*flags, *extra]
            results = {
                "keytool image sign": timed(
                    [KEYTOOL, "image", "sign", "-k", key, *sign, fw, "{out}"],
                    args.runs, os.path.join(d, "k.bin")),
                "imgtool sign": timed([IMGTOOL, "sign", "-k", key, *sign, fw, "{out}"],
                                      max(3, args.runs // 3), os.path.join(d, "i.bin")),
                f"openssl dgst {dgst}": timed(["openssl", "dgst", dgst, fw], args.runs),
            }
            print(f"signing a {args.size_mib} MiB image with a {name} file key "
                  "(median of runs, wall time)")
            for label, (median, best) in results.items():
                print(f"  {label:<22} median {median * 1000:8.1f} ms   best {best * 1000:8.1f} ms")
            k = results["keytool image sign"][0]
            i = results["imgtool sign"][0]
            o = results[f"openssl dgst {dgst}"][0]
            print(f"  imgtool / keytool   = {i / k:6.1f}x   (goal >= 15)")
            print(f"  keytool / openssl   = {k / o:6.2f}x   (goal <= 2)")


if __name__ == "__main__":
    main()
