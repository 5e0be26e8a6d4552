"""The emulator's own TLS material: a small local CA and one server certificate.

``ensure_tls(state_dir)`` creates both on first use and reuses them afterwards, so a CA
bundle handed to clients stays valid across restarts with the same directory. The CA
carries CA:TRUE, key usage and SKI; the leaf carries SAN IP:127.0.0.1 and DNS:localhost,
serverAuth EKU and AKI, which is what strict X.509 verification (urllib3 2, Python
3.13) requires.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .state import write_atomic

CA_FILE = "ca.pem"
CA_KEY_FILE = "ca-key.pem"
SERVER_CERT_FILE = "server.pem"
SERVER_KEY_FILE = "server-key.pem"
_VALIDITY = datetime.timedelta(days=3650)
_LEAF_VALIDITY = datetime.timedelta(days=825)


@dataclass(frozen=True)
class TlsFiles:
    """Absolute paths of the CA bundle and the server certificate and key."""

    ca_bundle: Path
    server_cert: Path
    server_key: Path


def ensure_tls(state_dir: Path) -> TlsFiles:
    """Return the TLS files under ``state_dir``, creating any that are missing.

    An existing CA is reused; a missing or expiring leaf is reissued from it.
    """
    state_dir = state_dir.resolve()
    files = TlsFiles(state_dir / CA_FILE, state_dir / SERVER_CERT_FILE, state_dir / SERVER_KEY_FILE)
    ca_key_path = state_dir / CA_KEY_FILE
    if files.ca_bundle.exists() and ca_key_path.exists():
        ca_cert = x509.load_pem_x509_certificate(files.ca_bundle.read_bytes())
        ca_key = serialization.load_pem_private_key(ca_key_path.read_bytes(), None)
    else:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_cert = _issue_ca(ca_key)
        _write_private(ca_key_path, _pem_key(ca_key))
        write_atomic(files.ca_bundle, ca_cert.public_bytes(serialization.Encoding.PEM))
    if not _leaf_usable(files, ca_cert):
        leaf_key = ec.generate_private_key(ec.SECP256R1())
        leaf = _issue_leaf(leaf_key, ca_key, ca_cert)
        _write_private(files.server_key, _pem_key(leaf_key))
        write_atomic(files.server_cert, leaf.public_bytes(serialization.Encoding.PEM))
    return files


def _issue_ca(key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hsm_emulator local CA")])
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .sign(key, hashes.SHA256())
    )


def _issue_leaf(key: ec.EllipticCurvePrivateKey, ca_key, ca_cert: x509.Certificate) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + _LEAF_VALIDITY)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=True, key_cert_sign=False, crl_sign=False,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca_key, hashes.SHA256())
    )


def _leaf_usable(files: TlsFiles, ca_cert: x509.Certificate) -> bool:
    if not (files.server_cert.exists() and files.server_key.exists()):
        return False
    leaf = x509.load_pem_x509_certificate(files.server_cert.read_bytes())
    remaining = leaf.not_valid_after_utc - datetime.datetime.now(datetime.timezone.utc)
    return leaf.issuer == ca_cert.subject and remaining > datetime.timedelta(days=30)


def _pem_key(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _write_private(path: Path, data: bytes) -> None:
    write_atomic(path, data, mode=0o600)
