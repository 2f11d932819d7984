"""Trino's TLS certificate and password file, generated from the env file.

Scope: writes `<data>/tls/` (a self-signed certificate for the coordinator's HTTPS port,
and the PEM clients trust) and `<data>/trino-auth/password.db` (PBKDF2 hashes of the
passwords in the env file). Who may do what is `conf/trino/rules.json`, committed: it
holds user names, never secrets.

Why a self-signed certificate: password authentication needs TLS, and on a loopback-only
machine there is no CA to ask. Clients pin this one certificate (`trino_ca_file`), so a
mismatch is an error, not a warning. On a server, replace it with one from your CA.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import datetime as dt
import hashlib
import ipaddress
import secrets
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

if TYPE_CHECKING:  # the settings class is built from the service modules
    from lakehouse.settings import Settings


# Trino 476's file authenticator checks `iterations:salt:hash` (hex) with
# PBKDF2WithHmacSHA1 (read from its EncryptionUtil; the docs don't name the digest). Python's
# hashlib makes it, so no bcrypt dependency; Trino caches a verified password.
PBKDF2_ITERATIONS = 100_000
CERT_DAYS = 825
# Names the coordinator is reached by: loopback here, the service name in compose.
DNS_NAMES = ("localhost", "trino")


def user_passwords(settings: Settings) -> dict[str, str]:
    """The Trino users and their passwords. Names are fixed; rules.json grants by name."""
    return {
        "lakehouse": settings.trino_lakehouse_password.get_secret_value(),
        "dbt": settings.trino_dbt_password.get_secret_value(),
        "superset": settings.trino_superset_password.get_secret_value(),
    }


def pbkdf2_line(user: str, password: str, salt: bytes | None = None,
                iterations: int = PBKDF2_ITERATIONS) -> str:
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha1", password.encode(), salt, iterations, dklen=64)
    return f"{user}:{iterations}:{salt.hex()}:{digest.hex()}"


def write_password_file(settings: Settings) -> Path:
    """Rewritten on every start, so a password changed in the env file takes effect."""
    path = settings.trino_password_file
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [pbkdf2_line(u, p) for u, p in user_passwords(settings).items()]
    _write_private(path, "\n".join(lines) + "\n")
    return path


def _subject_names(settings: Settings) -> tuple[list[str], list[str]]:
    dns, ips = list(DNS_NAMES), ["127.0.0.1"]
    for host in {settings.host, settings.trino_address}:
        try:
            ipaddress.ip_address(host)
        except ValueError:
            dns.append(host)
        else:
            ips.append(host)
    return sorted(set(dns)), sorted(set(ips))


def certificate_ok(settings: Settings) -> bool:
    """True if the certificate exists, covers our names and is valid for 30 more days."""
    keystore, cert_file = settings.trino_keystore_file, settings.trino_ca_file
    if not (keystore.exists() and cert_file.exists()):
        return False
    cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    if cert.not_valid_after_utc < dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=30):
        return False
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    dns, ips = _subject_names(settings)
    have_ips = {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}
    return set(dns) <= set(san.get_values_for_type(x509.DNSName)) and set(ips) <= have_ips


def ensure_certificate(settings: Settings) -> Path:
    """Generate the coordinator's key and certificate once (and again before they expire)."""
    if certificate_ok(settings):
        return settings.trino_ca_file
    dns, ips = _subject_names(settings)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "lakehouse-trino"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "lakehouse (self-signed)")])
    now = dt.datetime.now(dt.timezone.utc)
    san = [x509.DNSName(d) for d in dns] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=CERT_DAYS))
            .add_extension(x509.SubjectAlternativeName(san), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(key, hashes.SHA256()))
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    # Trino reads one PEM holding the key and the certificate; clients get the certificate.
    _write_private(settings.trino_keystore_file, (key_pem + cert_pem).decode())
    settings.trino_ca_file.write_bytes(cert_pem)
    return settings.trino_ca_file


def _write_private(path: Path, text: str) -> None:
    from lakehouse.stack.checks import write_private

    write_private(path, text)
