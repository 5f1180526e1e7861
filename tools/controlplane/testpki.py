"""Throw-away certificates for the test cluster and the servers tests start (a CA, serving and client
certificates it signs), made in one place so that every one has the same validity, key type and usages.
Never for anything that outlives a test run: the keys are written unencrypted."""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

VALID_FOR = dt.timedelta(days=7)
BACKDATED = dt.timedelta(hours=1)  # clocks of the components need not agree to the second


def new_key() -> Any:
    from cryptography.hazmat.primitives.asymmetric import rsa

    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def pem_key(key: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _builder(subject: Any, issuer: Any, public_key: Any) -> Any:
    from cryptography import x509

    now = dt.datetime.now(dt.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATED)
        .not_valid_after(now + VALID_FOR)
    )


@dataclass
class CA:
    cert: Any
    key: Any

    @classmethod
    def create(cls, common_name: str) -> CA:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes
        from cryptography.x509.oid import NameOID

        key = new_key()
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        cert = (
            _builder(name, name, key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True
            )
            .sign(key, hashes.SHA256())
        )
        return cls(cert, key)

    @classmethod
    def load(cls, cert_file: Path, key_file: Path) -> CA:
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization

        return cls(
            x509.load_pem_x509_certificate(cert_file.read_bytes()),
            serialization.load_pem_private_key(key_file.read_bytes(), password=None),
        )

    @property
    def pem(self) -> bytes:
        from cryptography.hazmat.primitives import serialization

        return self.cert.public_bytes(serialization.Encoding.PEM)

    def write(self, cert_file: Path, key_file: Path) -> None:
        write_pair(self.cert, self.key, cert_file, key_file)

    def _issue(self, common_name: str, organizations: list[str], extensions: list[Any]) -> tuple[Any, Any]:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes
        from cryptography.x509.oid import NameOID

        key = new_key()
        names = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
        subject = x509.Name([*names, x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        builder = _builder(subject, self.cert.subject, key.public_key())
        for extension in extensions:
            builder = builder.add_extension(extension, critical=False)
        return builder.sign(self.key, hashes.SHA256()), key

    def issue_server(
        self,
        common_name: str,
        cert_file: Path,
        key_file: Path,
        dns: Sequence[str] = (),
        ips: Sequence[str] = (),
    ) -> None:
        """A serving certificate for these DNS names and IP addresses, written to the two files."""
        from cryptography import x509
        from cryptography.x509.oid import ExtendedKeyUsageOID

        sans = [x509.DNSName(d) for d in dns] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
        cert, key = self._issue(
            common_name,
            [],
            [x509.SubjectAlternativeName(sans), x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH])],
        )
        write_pair(cert, key, cert_file, key_file)

    def issue_client(
        self, common_name: str, organizations: list[str], cert_file: Path, key_file: Path
    ) -> None:
        """A client certificate: Kubernetes maps the common name to the user, the organizations to groups."""
        from cryptography import x509
        from cryptography.x509.oid import ExtendedKeyUsageOID

        cert, key = self._issue(
            common_name, organizations, [x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH])]
        )
        write_pair(cert, key, cert_file, key_file)


def write_pair(cert: Any, key: Any, cert_file: Path, key_file: Path) -> None:
    from cryptography.hazmat.primitives import serialization

    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(pem_key(key))
    key_file.chmod(0o600)
