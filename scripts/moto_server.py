#!/usr/bin/env python3
"""moto_server for the tests, with two gaps closed: KMS Sign/Verify with
MessageType=DIGEST, and DynamoDB transactions that are not isolated.

moto 5.2 ignores MessageType and hashes the message again, so a signature over
a digest comes out over SHA-256(digest) and never verifies against the key, as
it would on AWS. This launcher treats the message as the digest when
MessageType is DIGEST (checking its length as AWS does), and changes nothing
else. tests keep it honest: a DIGEST signature must verify with the public key
from GetPublicKey.

DynamoDB runs TransactWriteItems serializably. moto applies a transaction
without a lock and, when one fails its conditions, restores a snapshot of the
whole table taken before it, which erases writes other threads made meanwhile.
This launcher answers one request at a time, so the emulator is at least as
strict as the service; the tests' races then play out between requests, as
they do against AWS.

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


if __name__ == "__main__":
    from moto.server import main

    _one_request_at_a_time()
    main(sys.argv[1:])
