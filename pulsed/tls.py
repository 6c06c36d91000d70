"""The server's TLS credentials, checked at start-up.

grpcio reports a bad certificate or key only when the first client connects,
and then vaguely; reading both files here turns every such mistake into a
start-up error that names the variable.
"""

from __future__ import annotations

import datetime
import logging

import grpc
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from pulsed.config import ConfigError

log = logging.getLogger(__name__)


def server_credentials(cert_path: str, key_path: str) -> grpc.ServerCredentials:
    """Credentials for ``add_secure_port`` from PEM files.

    Raises ``ConfigError`` naming PULSE_TLS_CERT or PULSE_TLS_KEY when a
    file cannot be read, holds no certificate or no unencrypted private key,
    or when the key does not belong to the certificate.
    """
    cert_pem = _read("PULSE_TLS_CERT", cert_path)
    key_pem = _read("PULSE_TLS_KEY", key_path)

    try:
        chain = x509.load_pem_x509_certificates(cert_pem)
    except ValueError:
        raise ConfigError(
            f"PULSE_TLS_CERT={cert_path!r} holds no PEM certificate "
            "(-----BEGIN CERTIFICATE-----)"
        ) from None
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        # TypeError: the key is encrypted. The message of either is not
        # shown: it could quote the file.
        raise ConfigError(
            f"PULSE_TLS_KEY={key_path!r} holds no unencrypted PEM private key "
            "(-----BEGIN PRIVATE KEY-----); decrypt it first if it has a "
            "passphrase"
        ) from None

    pem, spki = (
        serialization.Encoding.PEM,
        serialization.PublicFormat.SubjectPublicKeyInfo,
    )
    certified = chain[0].public_key().public_bytes(pem, spki)
    if key.public_key().public_bytes(pem, spki) != certified:
        raise ConfigError(
            f"PULSE_TLS_KEY={key_path!r} is not the private key of the first "
            f"certificate in PULSE_TLS_CERT={cert_path!r}"
        )
    expires = chain[0].not_valid_after_utc
    if expires < datetime.datetime.now(datetime.UTC):
        log.warning(
            "tls.expired cert=%s not_after=%s: clients will refuse it",
            cert_path,
            expires.isoformat(),
        )
    return grpc.ssl_server_credentials([(key_pem, cert_pem)])


def _read(variable: str, path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise ConfigError(
            f"{variable}={path!r} cannot be read: {exc.strerror or exc}"
        ) from None
