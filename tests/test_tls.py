"""wss:// and https:// with --tls-cert/--tls-key: both backends and twistd, python-websockets and wskit clients.

The certificate is self-signed for 127.0.0.1 and generated at test time.
"""

from __future__ import annotations

import ssl
import subprocess
import sys

import pytest
from support import BACKENDS, ROOT, python_env, run, serve, twistd
from tlscert import make_self_signed
from webclient import http_get, trusting, ws_echo
from websockets.exceptions import InvalidHandshake

SERVERS = (*BACKENDS, "twistd")


@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    return make_self_signed(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module", params=SERVERS)
def tls_server(request, cert):
    cert_file, key_file = cert
    args = ("--tls-cert", cert_file, "--tls-key", key_file, "--ticker-interval", "0")
    proc, port = twistd(*args) if request.param == "twistd" else serve(request.param, *args)
    with proc:
        yield request.param, proc, port


def wskit_connect(url: str, backend: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "wskit", "connect", "--backend", backend, url, *args],
        input=b"secure hello\n", capture_output=True, timeout=30, env=python_env(), cwd=str(ROOT),
    )


def test_server_announces_a_wss_url(tls_server):
    _kind, proc, port = tls_server
    proc.wait_for_log(f"wss://127.0.0.1:{port}/ws")


def test_wss_echo_for_a_client_trusting_the_certificate(tls_server, cert):
    _kind, _proc, port = tls_server
    subprotocol, reply = run(ws_echo(f"wss://127.0.0.1:{port}/ws", context=trusting(cert[0]),
                                     text="secure hello"))
    assert subprotocol == "wskit.echo"
    assert reply == "secure hello"


def test_https_serves_the_demo_page(tls_server, cert):
    _kind, _proc, port = tls_server
    status, headers, body = http_get(f"https://127.0.0.1:{port}/", context=trusting(cert[0]))
    assert status == 200
    assert headers["Content-Type"].startswith("text/html")
    assert b"wskit.chat.v2.json" in body


def test_a_client_that_does_not_trust_the_certificate_is_refused(tls_server):
    _kind, _proc, port = tls_server
    with pytest.raises(ssl.SSLCertVerificationError):
        run(ws_echo(f"wss://127.0.0.1:{port}/ws", context=ssl.create_default_context()))


def test_plain_ws_to_a_tls_port_fails(tls_server):
    _kind, _proc, port = tls_server
    with pytest.raises((InvalidHandshake, ConnectionError, EOFError)):
        run(ws_echo(f"ws://127.0.0.1:{port}/ws"), timeout=15)


# Each server meets the other backend's client here and its own in the failure test below,
# so both clients are checked with and without --ca-file at half the subprocess cost.
OTHER_CLIENT = {"twisted": "asyncio", "asyncio": "twisted", "twistd": "asyncio"}


def test_wskit_connect_with_ca_file(tls_server, cert):
    kind, _proc, port = tls_server
    client = OTHER_CLIENT[kind]
    done = wskit_connect(f"wss://127.0.0.1:{port}/ws", client, "--ca-file", cert[0], "-s", "wskit.echo")
    out = done.stdout.decode()
    assert done.returncode == 0, done.stderr.decode()
    assert "connected: subprotocol=wskit.echo" in out
    assert "< secure hello" in out


def test_wskit_connect_without_ca_file_explains_the_failure(tls_server):
    kind, _proc, port = tls_server
    client = "twisted" if kind == "twistd" else kind
    done = wskit_connect(f"wss://127.0.0.1:{port}/ws", client)
    err = done.stderr.decode()
    assert done.returncode == 1
    assert "is not trusted" in err and "--ca-file" in err
    assert "Traceback" not in err
