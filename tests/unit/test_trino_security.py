"""Trino's generated certificate and password file (no server needed)."""

import hashlib
import ipaddress
import stat

from cryptography import x509

from lakehouse.stack import trino_security


def test_password_file_holds_pbkdf2_hashes_of_every_user_and_no_password(settings):
    path = trino_security.write_password_file(settings)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    lines = path.read_text().splitlines()
    passwords = trino_security.user_passwords(settings)
    assert [ln.split(":")[0] for ln in lines] == ["lakehouse", "dbt", "superset"] == list(passwords)
    for line in lines:
        user, iterations, salt, digest = line.split(":")
        assert passwords[user] not in line
        assert int(iterations) >= 1000  # Trino's minimum
        # what Trino 476 computes (EncryptionUtil: PBKDF2WithHmacSHA1, key length = hash length)
        assert hashlib.pbkdf2_hmac("sha1", passwords[user].encode(), bytes.fromhex(salt), int(iterations),
                                   dklen=len(digest) // 2).hex() == digest


def test_certificate_covers_loopback_and_the_compose_name_and_is_reused(settings):
    ca = trino_security.ensure_certificate(settings)
    cert = x509.load_pem_x509_certificate(ca.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {"localhost", "trino"} <= set(san.get_values_for_type(x509.DNSName))
    assert ipaddress.ip_address("127.0.0.1") in san.get_values_for_type(x509.IPAddress)
    assert stat.S_IMODE(settings.trino_keystore_file.stat().st_mode) == 0o600
    keystore = settings.trino_keystore_file.read_text()
    assert "PRIVATE KEY" in keystore and "CERTIFICATE" in keystore and "PRIVATE KEY" not in ca.read_text()
    before = ca.read_bytes()
    trino_security.ensure_certificate(settings)
    assert ca.read_bytes() == before  # not regenerated while valid


def test_certificate_is_regenerated_for_a_new_host(settings):
    trino_security.ensure_certificate(settings)
    moved = settings.model_copy(update={"host": "10.1.2.3"})
    assert not trino_security.certificate_ok(moved)
    trino_security.ensure_certificate(moved)
    assert trino_security.certificate_ok(moved)
