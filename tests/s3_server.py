"""A private S3 server (moto's) over TLS on loopback, with a CA made here: for the object-store tests and
benchmarks/shard_loader.py. The environment it returns reaches it the way a user's S3-compatible server is reached
(AWS_ENDPOINT_URL, and the CA trusted through SSL_CERT_FILE / AWS_CA_BUNDLE: litdata reads and writes S3 through
obstore and boto3, and obstore speaks HTTPS only)."""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import socket
import subprocess
import sys
import time
from pathlib import Path


def _certificates(folder: Path):
    """A CA and a server certificate for 127.0.0.1 signed by it, as PEM files in FOLDER: (ca, cert, key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def build(subject, issuer, public_key, signing_key, *, ca: bool):
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                ),
                critical=False,
            ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        return builder.sign(signing_key, hashes.SHA256())

    ca_key, server_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = build("imagefit test CA", "imagefit test CA", ca_key.public_key(), ca_key, ca=True)
    server = build("localhost", "imagefit test CA", server_key.public_key(), ca_key, ca=False)
    paths = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return paths


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def private_s3(folder: Path, bucket: str = "bucket"):
    """Start the server (certificates in FOLDER), make BUCKET; yield the environment that reaches it. Stopped after."""
    ca, cert, key = _certificates(folder)
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port), "-c", str(cert), "-k", str(key)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(300):  # until it accepts connections (or has died): a readiness check, not a timing
            if server.poll() is not None:
                raise RuntimeError("the private S3 server did not start")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        environment = {
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": f"https://127.0.0.1:{port}",
            "SSL_CERT_FILE": str(ca),
            "AWS_CA_BUNDLE": str(ca),
        }
        import boto3

        boto3.client(
            "s3",
            endpoint_url=environment["AWS_ENDPOINT_URL"],
            verify=str(ca),
            aws_access_key_id="test",
            aws_secret_access_key="test",
            region_name="us-east-1",
        ).create_bucket(Bucket=bucket)
        yield environment
    finally:
        server.terminate()
        server.wait(timeout=30)
