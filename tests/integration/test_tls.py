"""TLS on a real pulsed, with certificates made here by ``cryptography``:
TLS clients work, plaintext and untrusting clients fail clearly, and bad
certificate settings stop start-up naming the variable."""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
import pathlib
import subprocess
import sys
import threading
import time
from collections.abc import Callable

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from grpc_health.v1 import health_pb2, health_pb2_grpc

from pulse_client import Pulse, Unauthenticated, Unavailable
from pulsed.config import Config, ConfigError
from tests.fixtures.servers import (
    REPO_ROOT,
    SERVING_TIMEOUT_SECONDS,
    InProcessServer,
    PulsedProcess,
    free_port,
)

# Short, so that a client that cannot connect says so quickly.
CLIENT_TIMEOUT_SECONDS = 5.0


@dataclasses.dataclass(frozen=True)
class Certificates:
    ca: pathlib.Path
    cert: pathlib.Path
    key: pathlib.Path
    # The key of another certificate.
    other_key: pathlib.Path
    # The right key, encrypted with a passphrase.
    encrypted_key: pathlib.Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _key_pem(key: ec.EllipticCurvePrivateKey, passphrase: bytes | None = None) -> bytes:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


@pytest.fixture
def certificates(tmp_path: pathlib.Path) -> Certificates:
    """A CA and a server certificate for localhost and 127.0.0.1."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("pulse test CA"))
        .issuer_name(_name("pulse test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("localhost"))
        .issuer_name(ca_cert.subject)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                ]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )

    files = Certificates(
        ca=tmp_path / "ca.pem",
        cert=tmp_path / "server.pem",
        key=tmp_path / "server.key",
        other_key=tmp_path / "other.key",
        encrypted_key=tmp_path / "encrypted.key",
    )
    files.ca.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    files.cert.write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(_key_pem(server_key))
    files.other_key.write_bytes(_key_pem(ec.generate_private_key(ec.SECP256R1())))
    files.encrypted_key.write_bytes(_key_pem(server_key, b"passphrase"))
    return files


@pytest.fixture
def tls_server(
    start_inprocess: Callable[..., InProcessServer], certificates: Certificates
) -> InProcessServer:
    return start_inprocess(
        tls_cert=str(certificates.cert), tls_key=str(certificates.key)
    )


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
def test_a_tls_client_works_against_a_tls_server(
    tls_server: InProcessServer, certificates: Certificates, host: str
) -> None:
    addr = f"{host}:{tls_server.port}"

    with Pulse(addr, tls=True, ca_file=str(certificates.ca)) as pulse:
        job_id = pulse.enqueue("over.tls", {"secret": "payload"})
        job = pulse.get_job(job_id)
        identity = pulse.whoami()

    assert job.topic == "over.tls"
    assert identity.auth_required is False
    assert any("tls=on" in r.getMessage() for r in tls_server.records)


def test_a_plaintext_client_gets_unavailable_from_a_tls_server(
    tls_server: InProcessServer,
) -> None:
    started = time.monotonic()
    with (
        Pulse(tls_server.addr, timeout_seconds=CLIENT_TIMEOUT_SECONDS) as pulse,
        pytest.raises(Unavailable) as excinfo,
    ):
        pulse.stats()

    assert time.monotonic() - started < CLIENT_TIMEOUT_SECONDS + 2
    assert tls_server.addr in str(excinfo.value)


def test_a_client_that_does_not_trust_the_certificate_gets_unavailable(
    tls_server: InProcessServer,
) -> None:
    # The system's roots do not include the test CA.
    with (
        Pulse(
            f"localhost:{tls_server.port}",
            tls=True,
            timeout_seconds=CLIENT_TIMEOUT_SECONDS,
        ) as pulse,
        pytest.raises(Unavailable),
    ):
        pulse.stats()


def test_a_tls_client_gets_unavailable_from_a_plaintext_server(
    server: InProcessServer, certificates: Certificates
) -> None:
    with (
        Pulse(
            f"localhost:{server.port}",
            tls=True,
            ca_file=str(certificates.ca),
            timeout_seconds=CLIENT_TIMEOUT_SECONDS,
        ) as pulse,
        pytest.raises(Unavailable),
    ):
        pulse.stats()


def _wait_until_serving_over_tls(
    pulsed: PulsedProcess, certificates: Certificates
) -> None:
    credentials = grpc.ssl_channel_credentials(certificates.ca.read_bytes())
    deadline = time.monotonic() + SERVING_TIMEOUT_SECONDS
    with grpc.secure_channel(f"localhost:{pulsed.port}", credentials) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline and pulsed.alive():
            try:
                reply = health.Check(health_pb2.HealthCheckRequest(), timeout=1)
            except grpc.RpcError:
                time.sleep(0.05)
                continue
            if reply.status == health_pb2.HealthCheckResponse.SERVING:
                return
    raise AssertionError(f"pulsed did not serve over TLS:\n{pulsed.log()}")


def test_a_worker_runs_jobs_over_tls_with_credentials_on_a_real_pulsed(
    start_pulsed: Callable[..., PulsedProcess], certificates: Certificates
) -> None:
    pulsed = start_pulsed(
        wait=False,
        env={
            "PULSE_TLS_CERT": str(certificates.cert),
            "PULSE_TLS_KEY": str(certificates.key),
            "PULSE_AUTH_USERS": "app:App-Passw0rd:worker",
        },
    )
    _wait_until_serving_over_tls(pulsed, certificates)

    def client(password: str) -> Pulse:
        return Pulse(
            f"localhost:{pulsed.port}",
            user="app",
            password=password,
            tls=True,
            ca_file=str(certificates.ca),
        )

    done = threading.Event()
    worker = client("App-Passw0rd")
    worker.register("tls.work", lambda payload: done.set())
    thread = threading.Thread(target=worker.run, name="tls-worker")
    thread.start()
    try:
        with client("App-Passw0rd") as producer:
            producer.enqueue("tls.work", {})
            assert done.wait(15)
        with client("wrong") as wrong, pytest.raises(Unauthenticated):
            wrong.stats()
    finally:
        worker.stop()
        thread.join(15)
        worker.close()

    assert "tls=on" in pulsed.log()
    assert "auth.without_tls" not in pulsed.log()


@pytest.mark.parametrize(
    ("which", "expected"),
    [
        ("missing-cert", "PULSE_TLS_CERT='{missing}' cannot be read"),
        ("missing-key", "PULSE_TLS_KEY='{missing}' cannot be read"),
        ("cert-is-a-key", "PULSE_TLS_CERT='{key}' holds no PEM certificate"),
        ("key-is-a-cert", "PULSE_TLS_KEY='{cert}' holds no unencrypted PEM"),
        ("encrypted-key", "PULSE_TLS_KEY='{encrypted_key}' holds no unencrypted"),
        ("other-key", "PULSE_TLS_KEY='{other_key}' is not the private key of"),
    ],
)
def test_unusable_tls_files_stop_start_up_naming_the_variable(
    start_inprocess: Callable[..., InProcessServer],
    certificates: Certificates,
    tmp_path: pathlib.Path,
    which: str,
    expected: str,
) -> None:
    missing = tmp_path / "nowhere.pem"
    cert, key = {
        "missing-cert": (missing, certificates.key),
        "missing-key": (certificates.cert, missing),
        "cert-is-a-key": (certificates.key, certificates.key),
        "key-is-a-cert": (certificates.cert, certificates.cert),
        "encrypted-key": (certificates.cert, certificates.encrypted_key),
        "other-key": (certificates.cert, certificates.other_key),
    }[which]
    paths = {
        "missing": missing,
        **{
            f.name: getattr(certificates, f.name)
            for f in dataclasses.fields(certificates)
        },
    }

    with pytest.raises(ConfigError) as excinfo:
        start_inprocess(tls_cert=str(cert), tls_key=str(key))

    assert expected.format(**paths) in str(excinfo.value)
    assert "BEGIN" not in str(excinfo.value).replace("-----BEGIN", "")


def test_an_unreadable_tls_file_ends_pulsed_with_one_clear_line(
    db_url: str, certificates: Certificates, tmp_path: pathlib.Path
) -> None:
    missing = tmp_path / "missing.key"
    process = subprocess.run(
        [sys.executable, "-m", "pulsed.server"],
        cwd=REPO_ROOT,
        env={
            "PATH": "/usr/bin:/bin",
            "PYTHONPATH": str(REPO_ROOT),
            "DB_URL": db_url,
            "PULSE_GRPC_ADDR": f"127.0.0.1:{free_port()}",
            "PULSE_TLS_CERT": str(certificates.cert),
            "PULSE_TLS_KEY": str(missing),
        },
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )

    assert process.returncode == 2
    assert "Traceback" not in process.stderr
    assert f"PULSE_TLS_KEY={str(missing)!r} cannot be read" in process.stderr


def test_one_tls_variable_without_the_other_stops_start_up() -> None:
    with pytest.raises(ConfigError, match="PULSE_TLS_KEY is set but PULSE_TLS_CERT"):
        Config.from_env({"PULSE_TLS_KEY": "/k.pem"})
