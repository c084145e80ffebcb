"""TLS and basic auth on /metrics from a Prometheus-style web config file, scraped by Prometheus."""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import json
import shutil
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import bcrypt
import pytest
from prometheus_client import CollectorRegistry, Gauge

from awops.metrics.http import MetricsServer, WebConfigError, load_web_config
from tests.fix_awops import run_awops
from tests.fix_pg import free_port

PASSWORD = "scrape-pw-4f1c"


def make_certificate(directory: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "tls.crt", directory / "tls.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def write_web_config(directory: Path, tls: bool = True, users: bool = True) -> Path:
    lines = []
    if tls:
        make_certificate(directory)
        lines += ["tls_server_config:", "  cert_file: tls.crt", "  key_file: tls.key"]
    if users:
        hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()
        lines += ["basic_auth_users:", f"  prometheus: '{hashed}'"]
    path = directory / "web-config.yml"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def secured(tmp_path: Path):
    registry = CollectorRegistry()
    Gauge("awops_example", "an example", registry=registry).set(7)
    server = MetricsServer(
        f"127.0.0.1:{free_port()}",
        registry,
        lambda: (True, {}),
        lambda: (True, {}),
        web_config=load_web_config(write_web_config(tmp_path)),
    )
    server.start()
    yield server, tmp_path / "tls.crt"
    server.stop()


def fetch(url: str, cafile: Path | None, auth: tuple[str, str] | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url)
    if auth is not None:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    context = ssl.create_default_context(cafile=str(cafile)) if cafile else None
    try:
        with urllib.request.urlopen(request, timeout=5, context=context) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_tls_and_basic_auth_guard_metrics_and_leave_probes_open(secured):
    server, cafile = secured
    base = f"https://127.0.0.1:{server.port}"
    assert fetch(f"{base}/metrics", cafile)[0] == 401
    assert fetch(f"{base}/metrics", cafile, ("prometheus", "wrong"))[0] == 401
    assert fetch(f"{base}/metrics", cafile, ("nobody", PASSWORD))[0] == 401
    status, body = fetch(f"{base}/metrics", cafile, ("prometheus", PASSWORD))
    assert status == 200 and "awops_example 7.0" in body
    # Twice: the second answer comes from the cache of proven passwords.
    assert fetch(f"{base}/metrics", cafile, ("prometheus", PASSWORD))[0] == 200
    assert fetch(f"{base}/healthz", cafile) == (200, json.dumps({"ok": True}))
    # Plain HTTP to the TLS port gets no metrics.
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=5).read()
    # The server lives on after the failed handshake.
    assert fetch(f"{base}/healthz", cafile)[0] == 200


@pytest.mark.parametrize(
    ("content", "named"),
    [
        ("tls_server_config: [\n", "not valid YAML"),
        ("basic_auth_users:\n  alice: plain-text-secret\n", "basic_auth_users.alice"),
        ("tls_server_config:\n  cert_file: missing.crt\n  key_file: k\n", "cert_file"),
        ("tls_server_config:\n  key_file: k\n", "tls_server_config.cert_file: required"),
        ("http_server_config:\n  http2: true\n", "http_server_config: unsupported key"),
        ("tls_server_config:\n  cert_file: a\n  ciphers: x\n", "tls_server_config.ciphers"),
        ("- a list\n", "expected a mapping"),
    ],
)
def test_a_bad_web_config_names_the_key_and_never_echoes_a_value(
    tmp_path: Path, content: str, named: str
):
    path = tmp_path / "web-config.yml"
    path.write_text(content)
    with pytest.raises(WebConfigError) as caught:
        load_web_config(path)
    assert named in str(caught.value)
    assert "plain-text-secret" not in str(caught.value)


def test_a_mismatched_certificate_and_key_are_rejected(tmp_path: Path):
    make_certificate(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    make_certificate(other)
    path = tmp_path / "web-config.yml"
    path.write_text("tls_server_config:\n  cert_file: tls.crt\n  key_file: other/tls.key\n")
    with pytest.raises(WebConfigError, match="not a matching PEM certificate and key"):
        load_web_config(path)


def test_config_check_rejects_a_bad_web_config_with_exit_2(tmp_path: Path):
    path = tmp_path / "web-config.yml"
    path.write_text("basic_auth_users:\n  alice: plain-text-secret\n")
    result = run_awops("config", "--check", env={"AWOPS_METRICS_WEB_CONFIG_FILE": str(path)})
    assert result.returncode == 2
    assert "AWOPS_METRICS_WEB_CONFIG_FILE" in result.stderr
    assert "basic_auth_users.alice" in result.stderr
    assert "plain-text-secret" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr
    good = write_web_config(tmp_path)
    result = run_awops("config", "--check", env={"AWOPS_METRICS_WEB_CONFIG_FILE": str(good)})
    assert result.returncode == 0, result.stderr


@pytest.mark.skipif(shutil.which("prometheus") is None, reason="prometheus is not installed")
def test_prometheus_scrapes_through_tls_and_basic_auth(secured, tmp_path: Path):
    server, cafile = secured
    password_file = tmp_path / "scrape-password"
    password_file.write_text(PASSWORD)
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n"
        "scrape_configs:\n"
        "  - job_name: awops\n"
        "    scheme: https\n"
        f"    tls_config:\n      ca_file: {cafile}\n"
        f"    basic_auth:\n      username: prometheus\n      password_file: {password_file}\n"
        f"    static_configs:\n      - targets: ['127.0.0.1:{server.port}']\n"
    )
    port = free_port()
    process = subprocess.Popen(
        [
            "prometheus",
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        value = None
        while time.monotonic() < deadline and value != "7":
            time.sleep(0.5)
            try:
                url = f"http://127.0.0.1:{port}/api/v1/query?query=awops_example"
                with urllib.request.urlopen(url, timeout=2) as response:
                    result = json.load(response)["data"]["result"]
                value = result[0]["value"][1] if result else None
            except OSError:
                continue
        assert value == "7", "Prometheus scraped awops_example through TLS and basic auth"
    finally:
        process.terminate()
        process.wait(10)
