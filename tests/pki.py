"""A throwaway PKI for TLS tests, made with `cryptography`: a CA, a server certificate for
127.0.0.1 and client certificates (expired ones, ones with the wrong key), all in PEM."""

from __future__ import annotations

import ipaddress
import uuid
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


class Pki:
    """A throwaway CA, a server certificate for 127.0.0.1 and client certificates, in PEM."""

    def __init__(self) -> None:
        self.ca_key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "em-test-ca")])
        self.ca = (self._builder(name, name, self.ca_key.public_key())
                   .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                   .sign(self.ca_key, hashes.SHA256()))

    @staticmethod
    def _builder(subject, issuer, public_key, days: tuple[int, int] = (-1, 30)):
        now = datetime.now(UTC)
        return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public_key)
                .serial_number(x509.random_serial_number())
                .not_valid_before(now + timedelta(days=days[0])).not_valid_after(now + timedelta(days=days[1])))

    def _issue(self, common_name: str, extension, days=(-1, 30)) -> tuple[str, str]:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        certificate = (self._builder(subject, self.ca.subject, key.public_key(), days)
                       .add_extension(extension, critical=False).sign(self.ca_key, hashes.SHA256()))
        return certificate.public_bytes(serialization.Encoding.PEM).decode(), _key_pem(key)

    @property
    def ca_pem(self) -> str:
        return self.ca.public_bytes(serialization.Encoding.PEM).decode()

    def server(self) -> tuple[str, str]:
        loopback = x509.IPAddress(ipaddress.ip_address("127.0.0.1"))
        return self._issue("127.0.0.1", x509.SubjectAlternativeName([loopback]))

    def client(self, other_key: bool = False, expired: bool = False) -> dict:
        certificate, key = self._issue("crm-client-" + uuid.uuid4().hex[:6],
                                       x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]),
                                       days=(-10, -1) if expired else (-1, 30))
        if other_key:
            key = _key_pem(ec.generate_private_key(ec.SECP256R1()))
        return {"certificate": certificate, "private_key": key}


def _key_pem(key) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()
