"""HTTPS and WSS (``ssl=``, ``--certfile``/``--keyfile``) on every runtime that serves TLS,
with a self-signed certificate made here: a GET /healthz and a whole WebSocket stream through a
client that trusts only that certificate; a plain-HTTP client on the TLS port gets no answer
and harms nothing; the sockets runtime refuses TLS with a reason."""

from __future__ import annotations

import datetime
import ipaddress
import json
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from support import fast_source
from websockets.sync.client import connect
from websockets.typing import Subprotocol

from diaproto import adapters
from diaproto.apps.cli import main
from diaproto.apps.serve.app import DiaService
from diaproto.apps.tls import server_context

x509 = pytest.importorskip("cryptography.x509")
hashes = pytest.importorskip("cryptography.hazmat.primitives.hashes")
serialization = pytest.importorskip("cryptography.hazmat.primitives.serialization")
ec = pytest.importorskip("cryptography.hazmat.primitives.asymmetric.ec")

LIMIT = 60.0
TLS_RUNTIMES = ["asyncio", "anyio", "trio", "tornado"]


@dataclass
class Certificate:
    certfile: Path
    keyfile: Path

    def client(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.certfile))

    def server(self) -> ssl.SSLContext:
        context = server_context(str(self.certfile), str(self.keyfile), "asyncio")
        assert context is not None
        return context


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    """A self-signed certificate for 127.0.0.1 and localhost, valid for a day."""
    folder = tmp_path_factory.mktemp("tls")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "diaproto test")])
    now = datetime.datetime.now(datetime.UTC)
    names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    certfile, keyfile = folder / "cert.pem", folder / "key.pem"
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return Certificate(certfile, keyfile)


@pytest.fixture(params=TLS_RUNTIMES)
def tls_port(request: pytest.FixtureRequest, certificate: Certificate) -> Iterator[int]:
    handle = adapters.start_in_thread(
        request.param, DiaService(fast_source()), ssl=certificate.server()
    )
    try:
        yield handle.port
    finally:
        assert handle.stop()


def healthz(port: int, certificate: Certificate) -> None:
    with httpx.Client(verify=certificate.client(), timeout=LIMIT, trust_env=False) as client:
        answer = client.get(f"https://127.0.0.1:{port}/healthz")
    assert answer.status_code == 200 and answer.text.startswith("ok")


def test_https_and_wss(tls_port: int, certificate: Certificate) -> None:
    healthz(tls_port, certificate)
    url = f"wss://localhost:{tls_port}/ws"
    subprotocols = [Subprotocol("diaproto.v1")]
    with connect(url, subprotocols=subprotocols, ssl=certificate.client(), proxy=None) as ws:
        ws.send(json.dumps({"type": "open", "stream": 1, "text": "Hi there.", "voice": "S1"}))
        audio = 0
        while True:
            message = ws.recv(timeout=LIMIT)
            if isinstance(message, bytes):
                audio += len(message)
                continue
            control = json.loads(message)
            if control["type"] in ("end", "error"):
                assert control["type"] == "end", control
                break
    assert audio > 0


def test_plain_http_on_the_tls_port_harms_nothing(tls_port: int, certificate: Certificate) -> None:
    with socket.create_connection(("127.0.0.1", tls_port), timeout=LIMIT) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        answer = b""
        try:
            while chunk := sock.recv(4096):
                answer += chunk
        except ConnectionResetError:
            pass
    assert not answer.startswith(b"HTTP/")  # nothing in the clear: an alert, or a close
    healthz(tls_port, certificate)  # the server goes on


def test_an_untrusted_client_fails_its_handshake(tls_port: int, certificate: Certificate) -> None:
    with (
        httpx.Client(timeout=LIMIT, trust_env=False) as client,
        pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"),
    ):
        client.get(f"https://127.0.0.1:{tls_port}/healthz")
    healthz(tls_port, certificate)


def test_no_certificate_is_plain_tcp() -> None:
    assert server_context(None, None, "sockets") is None


def test_the_sockets_runtime_refuses_tls(certificate: Certificate) -> None:
    with pytest.raises(ValueError, match="the sockets runtime does not serve TLS"):
        adapters.start_in_thread("sockets", DiaService(fast_source()), ssl=certificate.server())


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--runtime", "sockets", "--certfile", "{cert}"], "sockets runtime serves plain TCP"),
        (["--keyfile", "{key}"], "--keyfile needs --certfile"),
        (["--certfile", "{missing}"], "no such file"),
        (["--certfile", "{key}", "--keyfile", "{key}"], "cannot load the certificate"),
    ],
)
def test_the_command_refuses_tls_it_cannot_serve(
    certificate: Certificate,
    capsys: pytest.CaptureFixture[str],
    flags: list[str],
    message: str,
) -> None:
    names = {
        "cert": str(certificate.certfile),
        "key": str(certificate.keyfile),
        "missing": str(certificate.certfile.with_name("none.pem")),
    }
    argv = ["serve", "--port", "0", *(flag.format(**names) for flag in flags)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
