#!/usr/bin/env python3
"""moto_server for the tests, with these gaps closed: KMS Sign/Verify with
MessageType=DIGEST, KMS RSA-PSS salts, KMS Ed25519 keys, and DynamoDB
transactions that are not isolated.

moto 5.2 ignores MessageType and hashes the message again, so a signature over
a digest comes out over SHA-256(digest) and never verifies against the key, as
it would on AWS. This launcher treats the message as the digest when
MessageType is DIGEST (checking its length as AWS does), and changes nothing
else. tests keep it honest: a DIGEST signature must verify with the public key
from GetPublicKey.

RSASSA_PSS_SHA_* in moto uses the largest salt that fits; KMS uses a salt as
long as the digest (what MCUboot requires: 32 bytes for SHA-256). This
launcher signs and verifies with the digest-length salt, raw or DIGEST.

moto 5.2 has no ECC_NIST_EDWARDS25519 keys. This launcher adds them as KMS
documents them: SIGN_VERIFY only, ED25519_SHA_512 (pure Ed25519 over the
message) with MessageType=RAW and at most 4096 bytes of message; DIGEST is
refused (ED25519_PH_SHA_512, the prehashed variant, is not added: MCUboot
does not verify it).

moto 5.2 has no DeriveSharedSecret. This launcher adds it as KMS documents it:
ECDH with a KEY_AGREEMENT key (ECC_NIST_P256/384/521) and a peer's DER
SubjectPublicKeyInfo on the same curve; the answer is the raw shared secret
(the x-coordinate). Any other key usage is refused (InvalidKeyUsageException),
as is a key agreement algorithm other than ECDH or a peer key that does not
parse or is on another curve. A KEY_AGREEMENT key still cannot sign (moto's own
check).

DynamoDB runs TransactWriteItems serializably. moto applies a transaction
without a lock and, when one fails its conditions, restores a snapshot of the
whole table taken before it, which erases writes other threads made meanwhile.
This launcher answers one request at a time, so the emulator is at least as
strict as the service; the tests' races then play out between requests, as
they do against AWS.

That snapshot is also a deep copy of every table a transaction names, taken
for every transaction, so on moto a transaction costs time in proportion to
the tables' size (on DynamoDB it does not), and a load test measures the table
growing rather than the code under test. With one request at a time, keeping
only the items the transaction names and putting those back when it is
cancelled restores exactly the same state; this launcher does that instead.

usage: scripts/moto_server.py [-H 127.0.0.1] [-p PORT]   (moto_server's flags)
"""
import contextvars
import sys

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from cryptography.exceptions import InvalidSignature
from moto.kms import responses, utils
from moto.kms.exceptions import ValidationException

_is_digest = contextvars.ContextVar("kms_message_is_digest", default=False)
_HASHES = {
    "ECDSA_SHA_256": utils.hashes.SHA256,
    "ECDSA_SHA_384": utils.hashes.SHA384,
    "ECDSA_SHA_512": utils.hashes.SHA512,
}


def _with_message_type(handler):
    def wrapped(self):
        token = _is_digest.set(self._get_param("MessageType") == "DIGEST")
        try:
            return handler(self)
        finally:
            _is_digest.reset(token)

    return wrapped


def _prehashed(message, signing_algorithm, valid):
    utils.validate_signing_algorithm(signing_algorithm, valid)
    algorithm = _HASHES[signing_algorithm]()
    if len(message) != algorithm.digest_size:
        raise ValidationException(
            f"Digest is invalid length for algorithm {signing_algorithm}."
        )
    return ec.ECDSA(Prehashed(algorithm))


_PSS_HASHES = {
    "RSASSA_PSS_SHA_256": utils.hashes.SHA256,
    "RSASSA_PSS_SHA_384": utils.hashes.SHA384,
    "RSASSA_PSS_SHA_512": utils.hashes.SHA512,
}


def _rsa_scheme(self, message, signing_algorithm):
    """(padding, algorithm) for an RSA key, or None for moto's own (PKCS#1 v1.5)."""
    from cryptography.hazmat.primitives.asymmetric import padding

    utils.validate_signing_algorithm(
        signing_algorithm, utils.SigningAlgorithm.rsa_signing_algorithms()
    )
    if signing_algorithm not in _PSS_HASHES and not _is_digest.get():
        return None
    if signing_algorithm in _PSS_HASHES:
        hash_ = _PSS_HASHES[signing_algorithm]()
        pad = padding.PSS(mgf=padding.MGF1(hash_), salt_length=hash_.digest_size)
    else:
        hash_ = {"256": utils.hashes.SHA256, "384": utils.hashes.SHA384}.get(
            signing_algorithm[-3:], utils.hashes.SHA512
        )()
        pad = padding.PKCS1v15()
    if _is_digest.get():
        if len(message) != hash_.digest_size:
            raise ValidationException(
                f"Digest is invalid length for algorithm {signing_algorithm}."
            )
        return pad, Prehashed(hash_)
    return pad, hash_


_raw_rsa_sign = utils.RSAPrivateKey.sign
_raw_rsa_verify = utils.RSAPrivateKey.verify


def _rsa_sign(self, message, signing_algorithm):
    scheme = _rsa_scheme(self, message, signing_algorithm)
    if scheme is None:
        return _raw_rsa_sign(self, message, signing_algorithm)
    return self.private_key.sign(message, *scheme)


def _rsa_verify(self, message, signature, signing_algorithm):
    scheme = _rsa_scheme(self, message, signing_algorithm)
    if scheme is None:
        return _raw_rsa_verify(self, message, signature, signing_algorithm)
    try:
        self.private_key.public_key().verify(signature, message, *scheme)
        return True
    except InvalidSignature:
        return False


_EDWARDS = "ECC_NIST_EDWARDS25519"
_ED25519_ALGORITHM = "ED25519_SHA_512"


class _Ed25519PrivateKey(utils.AbstractPrivateKey):
    """An ECC_NIST_EDWARDS25519 key as KMS has it."""

    def __init__(self):
        from cryptography.hazmat.primitives.asymmetric import ed25519

        self.private_key = ed25519.Ed25519PrivateKey.generate()
        self.valid_signing_algorithms = [_ED25519_ALGORITHM]

    @staticmethod
    def _check(message, signing_algorithm):
        utils.validate_signing_algorithm(signing_algorithm, [_ED25519_ALGORITHM])
        if _is_digest.get():
            raise ValidationException(
                "ED25519_SHA_512 signs RAW messages only; use ED25519_PH_SHA_512 for DIGEST"
            )
        if len(message) > 4096:
            raise ValidationException(
                "1 validation error detected: Value at 'message' failed to satisfy "
                "constraint: Member must have length less than or equal to 4096"
            )

    def sign(self, message, signing_algorithm):
        self._check(message, signing_algorithm)
        return self.private_key.sign(message)

    def verify(self, message, signature, signing_algorithm):
        self._check(message, signing_algorithm)
        try:
            self.private_key.public_key().verify(signature, message)
            return True
        except InvalidSignature:
            return False

    def public_key(self):
        return self.private_key.public_key().public_bytes(
            encoding=utils.serialization.Encoding.DER,
            format=utils.serialization.PublicFormat.SubjectPublicKeyInfo,
        )


def _edwards_keys():
    from moto.kms import models

    backend = models.KmsBackend
    check_spec = backend._KmsBackend__ensure_valid_key_spec

    def ensure_valid_key_spec(self, key_spec):
        if key_spec != _EDWARDS:
            check_spec(self, key_spec)

    backend._KmsBackend__ensure_valid_key_spec = ensure_valid_key_spec
    generate = models.generate_private_key

    def generate_private_key(key_spec):
        return _Ed25519PrivateKey() if key_spec == _EDWARDS else generate(key_spec)

    models.generate_private_key = generate_private_key
    algorithms = models.Key.signing_algorithms

    def signing_algorithms(self):
        if self.key_spec == _EDWARDS:
            return [_ED25519_ALGORITHM]
        return algorithms.fget(self)

    models.Key.signing_algorithms = property(signing_algorithms)


_raw_sign = utils.ECDSAPrivateKey.sign
_raw_verify = utils.ECDSAPrivateKey.verify


def _sign(self, message, signing_algorithm):
    if not _is_digest.get():
        return _raw_sign(self, message, signing_algorithm)
    scheme = _prehashed(message, signing_algorithm, self.valid_signing_algorithms)
    return self.private_key.sign(message, scheme)


def _verify(self, message, signature, signing_algorithm):
    if not _is_digest.get():
        return _raw_verify(self, message, signature, signing_algorithm)
    scheme = _prehashed(message, signing_algorithm, self.valid_signing_algorithms)
    try:
        self.private_key.public_key().verify(signature, message, scheme)
        return True
    except InvalidSignature:
        return False


responses.KmsResponse.sign = _with_message_type(responses.KmsResponse.sign)
responses.KmsResponse.verify = _with_message_type(responses.KmsResponse.verify)
utils.ECDSAPrivateKey.sign = _sign
utils.ECDSAPrivateKey.verify = _verify
utils.RSAPrivateKey.sign = _rsa_sign
utils.RSAPrivateKey.verify = _rsa_verify
_edwards_keys()

def _key_agreement():
    import base64
    import json

    from cryptography.hazmat.primitives import serialization
    from moto.kms.exceptions import InvalidKeyUsageException

    def derive_shared_secret(self):
        key = self.kms_backend.describe_key(self._get_param("KeyId"))
        if key.key_usage != "KEY_AGREEMENT":
            raise InvalidKeyUsageException()
        if self._get_param("KeyAgreementAlgorithm") != "ECDH":
            raise ValidationException("KeyAgreementAlgorithm must be ECDH")
        try:
            peer = serialization.load_der_public_key(
                base64.b64decode(self._get_param("PublicKey"))
            )
        except (ValueError, TypeError):
            raise ValidationException("PublicKey is not a DER-encoded public key")
        own = key.private_key.private_key
        if not isinstance(peer, ec.EllipticCurvePublicKey) or peer.curve.name != own.curve.name:
            raise ValidationException("PublicKey is not a key on the key's curve")
        secret = own.exchange(ec.ECDH(), peer)
        return json.dumps(
            {
                "KeyId": key.arn,
                "SharedSecret": base64.b64encode(secret).decode(),
                "KeyAgreementAlgorithm": "ECDH",
                "KeyOrigin": "AWS_KMS",
            }
        )

    responses.KmsResponse.derive_shared_secret = derive_shared_secret


_key_agreement()


def _one_request_at_a_time():
    import threading

    from moto.moto_server.werkzeug_app import DomainDispatcherApplication

    lock = threading.Lock()
    call = DomainDispatcherApplication.__call__

    def serialized(self, environ, start_response):
        with lock:
            # Read the whole answer inside the lock: WSGI bodies may be lazy.
            return list(call(self, environ, start_response))

    DomainDispatcherApplication.__call__ = serialized


def _transactions_restore_their_own_items():
    import copy

    from moto.dynamodb import models

    class _NoTableCopy:
        """`copy` for moto's DynamoDB models, but tables are not copied."""

        def __getattr__(self, name):
            return getattr(copy, name)

        @staticmethod
        def deepcopy(value, memo=None):
            if isinstance(value, models.Table):
                return value
            return copy.deepcopy(value, memo)

    models.copy = _NoTableCopy()
    transact = models.DynamoDBBackend.transact_write_items

    def keys_named(backend, transact_items):
        for entry in transact_items:
            op_type, op = next(iter(entry.items()))
            table = backend.tables.get(op.get("TableName"))
            if table is None:
                continue
            if op_type == "Put":
                attrs = op["Item"]
                key = {table.hash_key_attr: attrs.get(table.hash_key_attr)}
                if table.range_key_attr is not None:
                    key[table.range_key_attr] = attrs.get(table.range_key_attr)
                if any(v is None for v in key.values()):
                    continue
            else:
                key = op.get("Key")
                if key is None:
                    continue
            yield table.name, key

    def restoring(self, transact_items):
        saved = []
        for table_name, key in keys_named(self, transact_items):
            try:
                current = self.get_item(table_name, key)
            except Exception:
                continue
            saved.append((table_name, key, copy.deepcopy(current.to_json()["Attributes"]) if current else None))
        try:
            return transact(self, transact_items)
        except Exception:
            for table_name, key, before in reversed(saved):
                if before is None:
                    self.delete_item(table_name, key)
                else:
                    self.put_item(table_name, before)
            raise

    models.DynamoDBBackend.transact_write_items = restoring


if __name__ == "__main__":
    from moto.server import main

    _one_request_at_a_time()
    _transactions_restore_their_own_items()
    main(sys.argv[1:])
