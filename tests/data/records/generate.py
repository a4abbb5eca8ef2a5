#!/usr/bin/env python3
"""Known-answer provisioning records, made once with Python's `cryptography`
(independent of the code under test), following docs/provisioning-record.md.
Re-run only to add cases; commit what it writes.

usage: .venv/bin/python tests/data/records/generate.py
"""
import hashlib
import json
import os
import struct

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, decode_dss_signature

HERE = os.path.dirname(os.path.abspath(__file__))


def key(name):
    path = os.path.join(HERE, name)
    if os.path.exists(path):
        with open(path, "rb") as f:
            return serialization.load_pem_private_key(f.read(), None)
    k = ec.generate_private_key(ec.SECP256R1())
    with open(path, "wb") as f:
        f.write(k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()))
    return k


def spki(k):
    return k.public_key().public_bytes(serialization.Encoding.DER,
                                       serialization.PublicFormat.SubjectPublicKeyInfo)


def point(k):
    return k.public_key().public_bytes(serialization.Encoding.X962,
                                       serialization.PublicFormat.UncompressedPoint)


def record(authority, device, hw_id_hex, serial, product, issued_at):
    signed = (b"PROV" + bytes([1, 0]) + struct.pack("<H", 208) + bytes.fromhex(hw_id_hex)
              + struct.pack("<I", serial) + product.encode().ljust(16, b"\0") + point(device)
              + bytes(3) + struct.pack("<Q", issued_at) + hashlib.sha256(spki(authority)).digest())
    assert len(signed) == 144
    der = authority.sign(hashlib.sha256(signed).digest(), ec.ECDSA(Prehashed(ec.hashes.SHA256())))
    r, s = decode_dss_signature(der)
    return signed + r.to_bytes(32, "big") + s.to_bytes(32, "big")


def main():
    authority = key("authority.pem")
    device = key("device.pem")
    with open(os.path.join(HERE, "authority.pub.pem"), "wb") as f:
        f.write(authority.public_key().public_bytes(serialization.Encoding.PEM,
                                                    serialization.PublicFormat.SubjectPublicKeyInfo))
    with open(os.path.join(HERE, "device.pub.pem"), "wb") as f:
        f.write(device.public_key().public_bytes(serialization.Encoding.PEM,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo))
    cases = [
        ("qemu-microbit.bin", "1234567800000003", 1, "microbit-demo", 1795000000),
        ("max-serial.bin", "ffeeddccbbaa9988", 4294967295, "sixteen-chars-xx", 0),
    ]
    expected = []
    for name, hw_id, serial, product, issued_at in cases:
        rec = record(authority, device, hw_id, serial, product, issued_at)
        with open(os.path.join(HERE, name), "wb") as f:
            f.write(rec)
        expected.append({"file": name, "hw_id": hw_id, "serial": serial, "product": product,
                         "issued_at": issued_at,
                         "authority_key_id": hashlib.sha256(spki(authority)).hexdigest(),
                         "device_pubkey": point(device).hex()})
    with open(os.path.join(HERE, "expected.json"), "w") as f:
        json.dump(expected, f, indent=2)
        f.write("\n")


if __name__ == "__main__":
    main()
