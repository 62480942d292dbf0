#!/usr/bin/env python3
"""The local KMS emulator: moto's server, with `Sign` honouring `MessageType=DIGEST`,
`GenerateDataKeyPairWithoutPlaintext`, which moto lacks, and a throttling switch for the
fault runs.

moto (5.2) ignores MessageType and always hashes the message it gets, so a digest sent
the way AWS KMS expects it (and the way our signer sends it) would be hashed twice and
the signature would not verify. This launcher patches only that: with DIGEST, the bytes
received are signed as a pre-computed digest of the algorithm's hash, exactly as AWS KMS
does, and a digest of the wrong length is rejected like AWS does. Everything else is moto.

GenerateDataKeyPairWithoutPlaintext is implemented as AWS documents it: a fresh key pair of
the requested spec, its public half as DER SubjectPublicKeyInfo, its private half as
DER PKCS #8 encrypted under the given symmetric key (moto's own encryption, so Decrypt and
ReEncrypt open it, under the same encryption context only), never returned in clear; an
asymmetric or disabled key, or an unknown spec, is refused with AWS's errors.

The throttling switch: when the environment names a file in KMS_EMULATOR_FAULTS_FILE (the
stack puts it in its own directory; the functions are never told where), and that file
holds `{"throttle": ["Sign", "Decrypt", ...]}`, every call of a named operation is refused
as AWS KMS refuses a call over the account's request quota: HTTP 400 with
`{"__type": "ThrottlingException", "message": "Rate exceeded"}`. Removing the file (or an
empty list) switches it off. Only whoever can write that file (the harness, a test) flips
it; nothing a client sends to the emulator can.

Usage: kms_emulator.py -H 127.0.0.1 -p PORT   (the same arguments as moto_server)
"""

import base64
import json
import os
import sys
import threading
import uuid

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from moto.kms import utils as kms_utils
from moto.core.exceptions import JsonRESTError
from moto.kms.exceptions import InvalidKeyUsageException, ValidationException
from moto.kms.responses import KmsResponse
from moto.server import main

_request = threading.local()

# ---------------------------------------------------------------- the throttling switch

FAULTS_FILE = os.environ.get("KMS_EMULATOR_FAULTS_FILE")


def throttled_operations() -> frozenset:
    """The operations the faults file names now (read per call: the harness flips it at any
    moment); none without the file."""
    if not FAULTS_FILE:
        return frozenset()
    try:
        with open(FAULTS_FILE) as f:
            return frozenset(json.load(f).get("throttle", []))
    except (OSError, ValueError, AttributeError):
        return frozenset()


def throttling_answer():
    """AWS KMS's answer to a call over the request quota (JSON 1.1 protocol)."""
    body = json.dumps({"__type": "ThrottlingException", "message": "Rate exceeded"})
    headers = {"Content-Type": "application/x-amz-json-1.1", "x-amzn-RequestId": str(uuid.uuid4())}
    return 400, headers, body


_call_action = KmsResponse.call_action


def call_action_or_throttle(self):  # type: ignore[no-untyped-def]
    if self._get_action() in throttled_operations():
        return throttling_answer()
    return _call_action(self)


KmsResponse.call_action = call_action_or_throttle

# ---------------------------------------------------------------- Sign with MessageType=DIGEST


HASHES = {
    "ECDSA_SHA_256": hashes.SHA256,
    "ECDSA_SHA_384": hashes.SHA384,
    "ECDSA_SHA_512": hashes.SHA512,
    "RSASSA_PKCS1_V1_5_SHA_256": hashes.SHA256,
    "RSASSA_PKCS1_V1_5_SHA_384": hashes.SHA384,
    "RSASSA_PKCS1_V1_5_SHA_512": hashes.SHA512,
    "RSASSA_PSS_SHA_256": hashes.SHA256,
    "RSASSA_PSS_SHA_384": hashes.SHA384,
    "RSASSA_PSS_SHA_512": hashes.SHA512,
}


def _digest_mode() -> bool:
    return getattr(_request, "digest", False)


def _prehashed(message: bytes, signing_algorithm: str) -> Prehashed:
    algorithm = HASHES[signing_algorithm]()
    if len(message) != algorithm.digest_size:
        raise ValidationException(
            f"Digest is invalid length for algorithm {signing_algorithm}."
        )
    return Prehashed(algorithm)


_response_sign = KmsResponse.sign


def response_sign(self):  # type: ignore[no-untyped-def]
    _request.digest = self._get_param("MessageType") == "DIGEST"
    try:
        return _response_sign(self)
    finally:
        _request.digest = False


_ecdsa_sign = kms_utils.ECDSAPrivateKey.sign


def ecdsa_sign(self, message: bytes, signing_algorithm: str) -> bytes:
    if not _digest_mode():
        return _ecdsa_sign(self, message, signing_algorithm)
    kms_utils.validate_signing_algorithm(signing_algorithm, self.valid_signing_algorithms)
    return self.private_key.sign(message, ec.ECDSA(_prehashed(message, signing_algorithm)))


_rsa_sign = kms_utils.RSAPrivateKey.sign


def rsa_sign(self, message: bytes, signing_algorithm: str) -> bytes:
    if not _digest_mode():
        return _rsa_sign(self, message, signing_algorithm)
    kms_utils.validate_signing_algorithm(
        signing_algorithm, kms_utils.SigningAlgorithm.rsa_signing_algorithms()
    )
    prehashed = _prehashed(message, signing_algorithm)
    if signing_algorithm.startswith("RSASSA_PSS"):
        pad = padding.PSS(mgf=padding.MGF1(HASHES[signing_algorithm]()), salt_length=padding.PSS.DIGEST_LENGTH)
    else:
        pad = padding.PKCS1v15()
    return self.private_key.sign(message, pad, prehashed)


# The key pair specs of GenerateDataKeyPair*, as cryptography makes them.
KEY_PAIR_SPECS = {
    "ECC_NIST_P256": lambda: ec.generate_private_key(ec.SECP256R1()),
    "ECC_NIST_P384": lambda: ec.generate_private_key(ec.SECP384R1()),
    "ECC_NIST_P521": lambda: ec.generate_private_key(ec.SECP521R1()),
    "ECC_SECG_P256K1": lambda: ec.generate_private_key(ec.SECP256K1()),
    "RSA_2048": lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
    "RSA_3072": lambda: rsa.generate_private_key(public_exponent=65537, key_size=3072),
    "RSA_4096": lambda: rsa.generate_private_key(public_exponent=65537, key_size=4096),
}


def generate_data_key_pair_without_plaintext(self):  # type: ignore[no-untyped-def]
    """https://docs.aws.amazon.com/kms/latest/APIReference/API_GenerateDataKeyPairWithoutPlaintext.html"""
    key_id = self._get_param("KeyId")
    spec = self._get_param("KeyPairSpec")
    encryption_context = self._get_param("EncryptionContext", {})
    self._validate_key_id(key_id)
    if spec not in KEY_PAIR_SPECS:
        raise ValidationException(
            f"1 validation error detected: Value '{spec}' at 'keyPairSpec' failed to satisfy "
            f"constraint: Member must satisfy enum value set: [{', '.join(sorted(KEY_PAIR_SPECS))}, SM2]"
        )
    key = self.kms_backend.describe_key(key_id)
    if key.key_state != "Enabled":
        raise DisabledException(f"{key.arn} is {key.key_state.lower()}.")
    # AWS's default usage and spec where CreateKey named none.
    if (key.key_usage or "ENCRYPT_DECRYPT") != "ENCRYPT_DECRYPT" or key.key_spec != "SYMMETRIC_DEFAULT":
        raise InvalidKeyUsageException()
    private = KEY_PAIR_SPECS[spec]()
    pkcs8 = private.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    spki = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    ciphertext, arn = self.kms_backend.encrypt(
        key_id=key.id, plaintext=pkcs8, encryption_context=encryption_context
    )
    return json.dumps(
        {
            "KeyId": arn,
            "KeyPairSpec": spec,
            "PrivateKeyCiphertextBlob": base64.b64encode(ciphertext).decode(),
            "PublicKey": base64.b64encode(spki).decode(),
        }
    )


class DisabledException(JsonRESTError):
    code = 400

    def __init__(self, message: str):
        super().__init__("DisabledException", message)


KmsResponse.generate_data_key_pair_without_plaintext = generate_data_key_pair_without_plaintext
KmsResponse.sign = response_sign
kms_utils.ECDSAPrivateKey.sign = ecdsa_sign
kms_utils.RSAPrivateKey.sign = rsa_sign

if __name__ == "__main__":
    sys.exit(main())
