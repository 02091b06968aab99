"""TLS material checked at the edge and built for the dispatcher (shared/tls.py): bounded in what
it costs a shared worker."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from shared import tls


def self_signed(key) -> tuple[str, str]:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "em-test")])
    now = datetime.now(UTC)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(days=1))
                   .not_valid_after(now + timedelta(days=1)).sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return certificate.public_bytes(serialization.Encoding.PEM).decode(), key_pem.decode()


def test_rsa_keys_above_4096_bits_are_refused_before_the_key_is_checked():
    certificate, key = self_signed(rsa.generate_private_key(65537, 4104))
    with pytest.raises(tls.TlsMaterialInvalid) as refused:
        tls.check(certificate, key, None)
    assert refused.value.field == "certificate" and "4096" in refused.value.message


def test_a_reasonable_key_passes_and_a_foreign_key_is_refused():
    certificate, key = self_signed(rsa.generate_private_key(65537, 2048))
    tls.check(certificate, key, None)
    _, other_key = self_signed(ec.generate_private_key(ec.SECP256R1()))
    with pytest.raises(tls.TlsMaterialInvalid) as refused:
        tls.check(certificate, other_key, None)
    assert refused.value.field == "private_key"


def test_the_dispatchers_context_cache_keeps_only_the_most_recently_used(monkeypatch):
    monkeypatch.setattr(tls, "MAX_CONTEXTS", 2)
    monkeypatch.setattr(tls, "_contexts", type(tls._contexts)())
    bundles = [self_signed(ec.generate_private_key(ec.SECP256R1()))[0] for _ in range(3)]
    first = tls.client_context(None, None, bundles[0])
    tls.client_context(None, None, bundles[1])
    assert tls.client_context(None, None, bundles[0]) is first  # used again: kept
    tls.client_context(None, None, bundles[2])
    assert len(tls._contexts) == 2
    assert tls.client_context(None, None, bundles[0]) is first, "the least recently used one went instead"


def test_a_client_certificate_loads_without_a_file_on_disk():
    certificate, key = self_signed(ec.generate_private_key(ec.SECP256R1()))
    context = tls.client_context(certificate, key, None)
    assert context.verify_mode.name == "CERT_REQUIRED"
