"""TLS material of a delivery configuration (mutual TLS: a client certificate and its key; a CA
bundle for an endpoint on a private PKI), all PEM: checked at the api with `cryptography`, and
turned into an `ssl.SSLContext` by the dispatcher, once per version of the material."""

from __future__ import annotations

import hashlib
import os
import ssl
import threading
from collections import OrderedDict
from datetime import UTC, datetime

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

# Bigger RSA keys cost seconds to check and a tenth of a second per handshake, on shared workers.
MAX_RSA_BITS = 4096
# Contexts kept by the dispatcher (about 1 MB each): the most recently used.
MAX_CONTEXTS = 256


class TlsMaterialInvalid(ValueError):
    """`field` names what is wrong: certificate, private_key or ca_bundle."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


def check(certificate: str | None, private_key: str | None, ca_bundle: str | None) -> None:
    """Refuse what could only fail at delivery: garbage PEM, a key that is not the certificate's,
    an expired (or not yet valid) certificate."""
    if ca_bundle is not None:
        _ca_certificates(ca_bundle)
    if certificate is None and private_key is None:
        return
    cert = _certificate(certificate or "")
    _check_key_type(cert.public_key())
    key = _private_key(private_key or "")
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    if cert.public_key().public_bytes(serialization.Encoding.DER, public) != \
            key.public_key().public_bytes(serialization.Encoding.DER, public):
        raise TlsMaterialInvalid("private_key", "the private key does not belong to the certificate")


def _certificate(pem: str) -> x509.Certificate:
    try:
        cert = x509.load_pem_x509_certificate(pem.encode())
    except ValueError:
        raise TlsMaterialInvalid("certificate", "not a PEM X.509 certificate") from None
    now = datetime.now(UTC)
    if cert.not_valid_after_utc <= now:
        raise TlsMaterialInvalid("certificate", f"the certificate expired at {cert.not_valid_after_utc.isoformat()}")
    if cert.not_valid_before_utc > now:
        raise TlsMaterialInvalid("certificate",
                                 f"the certificate is valid only from {cert.not_valid_before_utc.isoformat()}")
    return cert


def _check_key_type(public_key) -> None:
    if isinstance(public_key, rsa.RSAPublicKey):
        if public_key.key_size > MAX_RSA_BITS:
            raise TlsMaterialInvalid("certificate", f"RSA keys above {MAX_RSA_BITS} bits are refused "
                                                    f"(this one has {public_key.key_size})")
    elif not isinstance(public_key, ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        raise TlsMaterialInvalid("certificate", "the certificate's key must be RSA, EC or Ed25519/Ed448")


def _private_key(pem: str):
    try:
        # The expensive RSA checks are skipped: the key is then compared with the certificate's
        # public key, whose size is already bounded, so a mismatched or oversized key is refused.
        return serialization.load_pem_private_key(pem.encode(), password=None, unsafe_skip_rsa_key_validation=True)
    except TypeError:
        raise TlsMaterialInvalid("private_key", "the private key is encrypted: give it without a passphrase") from None
    except (ValueError, UnsupportedAlgorithm):
        raise TlsMaterialInvalid("private_key", "not a PEM private key") from None


def _ca_certificates(pem: str) -> list[x509.Certificate]:
    try:
        certificates = x509.load_pem_x509_certificates(pem.encode())
    except ValueError:
        certificates = []
    if not certificates:
        raise TlsMaterialInvalid("ca_bundle", "not PEM X.509 certificates")
    return certificates


def describe(certificate: str) -> dict:
    """What may be shown of a stored client certificate: its subject and when it expires."""
    try:
        cert = x509.load_pem_x509_certificate(certificate.encode())
    except ValueError:
        return {}
    return {"certificate_subject": cert.subject.rfc4514_string(),
            "certificate_expires_at": cert.not_valid_after_utc.isoformat()}


_contexts: OrderedDict[str, ssl.SSLContext] = OrderedDict()
_contexts_lock = threading.Lock()  # configurations are loaded in worker threads


def client_context(certificate: str | None, private_key: str | None, ca_bundle: str | None) -> ssl.SSLContext:
    """A verifying client context (the system's trust store, or only `ca_bundle`), presenting the
    client certificate when there is one. Cached by the digest of the material: the same
    material (however often its configuration is reloaded) is one context, one TLS session cache."""
    digest = hashlib.sha256("\0".join((certificate or "", private_key or "", ca_bundle or "")).encode()).hexdigest()
    with _contexts_lock:
        context = _contexts.get(digest)
        if context is not None:
            _contexts.move_to_end(digest)
            return context
    context = _build(certificate, private_key, ca_bundle)
    with _contexts_lock:
        _contexts[digest] = context
        while len(_contexts) > MAX_CONTEXTS:
            _contexts.popitem(last=False)
    return context


def _build(certificate: str | None, private_key: str | None, ca_bundle: str | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cadata=ca_bundle) if ca_bundle else ssl.create_default_context()
    if certificate and private_key:
        # The ssl module loads a chain only from a file: an anonymous one in memory, so the key
        # never touches a disk, not even after a crash.
        descriptor = os.memfd_create("em-tls", os.MFD_CLOEXEC)
        try:
            os.write(descriptor, (certificate.strip() + "\n" + private_key.strip() + "\n").encode())
            context.load_cert_chain(f"/proc/self/fd/{descriptor}")
        finally:
            os.close(descriptor)
    return context
