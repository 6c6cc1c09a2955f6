"""Shards in an object store: `imagefit shard DATA s3://bucket/prefix`, then `imagefit train s3://bucket/prefix`.

The store is a private S3 server (moto's) on loopback, started here over TLS with a certificate from a CA made
here and trusted through SSL_CERT_FILE / AWS_CA_BUNDLE, the way a user's S3-compatible server is reached through
AWS_ENDPOINT_URL (litdata reads and writes S3 through obstore and boto3, and obstore speaks HTTPS only).
"""

from __future__ import annotations

import csv
import datetime
import ipaddress
import json
import socket
import subprocess
import sys
import time

import pytest
from conftest import TINY, make_class_folders
from typer.testing import CliRunner

import imagefit
from imagefit.cli import app
from imagefit.data.cache import cache_root
from imagefit.data.decode import read_bytes
from imagefit.data.sources import find_samples, locator_name

pytest.importorskip("litdata", reason="litdata is not installed: pip install -e '.[test]'")
pytest.importorskip("moto.server", reason="moto's S3 server is not installed: pip install -e '.[test]'")
x509 = pytest.importorskip("cryptography.x509", reason="cryptography is not installed (it comes with moto)")


def _certificates(folder):
    """A CA and a server certificate for 127.0.0.1 signed by it, as PEM files in FOLDER: (ca, cert, key)."""
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


@pytest.fixture
def s3_bucket(tmp_path_factory, monkeypatch):
    """An empty bucket on a private S3 server over TLS on loopback; the environment set to reach it. Stopped after."""
    folder = tmp_path_factory.mktemp("s3")
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
                pytest.fail("the private S3 server did not start")
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
        for name, value in environment.items():
            monkeypatch.setenv(name, value)
        import boto3

        boto3.client("s3").create_bucket(Bucket="bucket")
        yield "s3://bucket"
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_shards_written_to_an_object_store_train_as_the_folder_does(tmp_path, s3_bucket):
    data = make_class_folders(tmp_path / "colours", per_class=10)
    url = f"{s3_bucket}/colours"
    result = CliRunner().invoke(app, ["shard", str(data), url])
    assert result.exit_code == 0, result.output
    assert "20 images in 1 LitData chunk files" in result.output and url in result.output

    sharded, original = find_samples(url).samples, find_samples(data).samples
    assert sharded[0].path.startswith(f"{url}::00000000/")
    assert [(locator_name(s.path), s.label) for s in sharded] == [(locator_name(s.path), s.label) for s in original]
    assert all(read_bytes(a.path) == read_bytes(b.path) for a, b in zip(sharded, original, strict=True))
    assert list((cache_root() / "shards").rglob("index.json"))  # litdata caches under imagefit's own cache

    runs = {}
    for name, source in (("folder", data), ("store", url)):
        runs[name] = tmp_path / "runs" / name
        imagefit.train(source, out=runs[name], epochs=2, frozen_epochs=1, **TINY)
    config = json.loads((runs["store"] / "config.json").read_text())
    assert config["data"] == url

    def split_rows(run):
        with open(run / "split.csv", newline="") as handle:
            return sorted((locator_name(r["path"]), r["label"], r["split"]) for r in csv.DictReader(handle))

    assert split_rows(runs["store"]) == split_rows(runs["folder"])
    metrics = {name: json.loads((run / "metrics.json").read_text())["val"] for name, run in runs.items()}
    assert metrics["store"]["accuracy"] == metrics["folder"]["accuracy"]
    assert metrics["store"]["log_loss"] == pytest.approx(metrics["folder"]["log_loss"], abs=1e-4)


def test_a_prefix_that_holds_shards_or_none_is_said_in_one_line(tmp_path, s3_bucket):
    data = make_class_folders(tmp_path / "data", per_class=2)
    url = f"{s3_bucket}/once"
    assert CliRunner().invoke(app, ["shard", str(data), url]).exit_code == 0
    again = CliRunner().invoke(app, ["shard", str(data), url])
    assert again.exit_code == 2 and "already holds shards" in again.output
    assert len(again.output.strip().splitlines()) == 1
    missing = CliRunner().invoke(app, ["train", f"{s3_bucket}/nothing-here", "--out", str(tmp_path / "run")])
    assert missing.exit_code == 2 and "imagefit-shards.json could not be read" in missing.output
    assert len(missing.output.strip().splitlines()) == 1
