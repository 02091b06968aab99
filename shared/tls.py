"""TLS material of a delivery configuration (mutual TLS: a client certificate and its key; a CA
bundle for an endpoint on a private PKI), all PEM: checked at the api with `cryptography`, and
turned into an `ssl.SSLContext` by the dispatcher, once per version of the material."""

from __future__ import annotations

import hashlib
import os
import ssl
import tempfile
from datetime import UTC, datetime

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization


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


def _private_key(pem: str):
    try:
        return serialization.load_pem_private_key(pem.encode(), password=None)
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


_contexts: dict[str, ssl.SSLContext] = {}


def client_context(certificate: str | None, private_key: str | None, ca_bundle: str | None) -> ssl.SSLContext:
    """A verifying client context (the system's trust store, or only `ca_bundle`), presenting the
    client certificate when there is one. Cached by the digest of the material: the same
    material (however often its configuration is reloaded) is one context, one TLS session cache."""
    digest = hashlib.sha256("\0".join((certificate or "", private_key or "", ca_bundle or "")).encode()).hexdigest()
    context = _contexts.get(digest)
    if context is None:
        context = _contexts[digest] = _build(certificate, private_key, ca_bundle)
    return context


def _build(certificate: str | None, private_key: str | None, ca_bundle: str | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cadata=ca_bundle) if ca_bundle else ssl.create_default_context()
    if certificate and private_key:
        # The ssl module loads a chain only from files: a private directory, removed at once.
        with tempfile.TemporaryDirectory(prefix="em-tls-") as directory:
            path = os.path.join(directory, "client.pem")
            with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as file:
                file.write(certificate.strip() + "\n" + private_key.strip() + "\n")
            context.load_cert_chain(path)
    return context
