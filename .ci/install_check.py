"""What a user gets from a plain ``pip install .``: run with that install's Python, outside the checkout.

    python .ci/install_check.py VENV_BIN

Checks, each against real processes of the installed ``wskit`` and ``twistd``:
the twistd plugin is listed; ``wskit serve`` answers ``wss://`` with
``--tls-cert/--tls-key`` (and ``wskit connect --ca-file`` talks to it);
``twistd -n -u 65534 -g 65534 wskit --port <1024`` serves from a process
running as uid 65534; a taken port makes ``wskit serve`` (both backends) and
``twistd -n wskit`` exit non-zero with one line and no traceback.
Prints one line per check and exits non-zero on the first failure.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

BIN = Path(sys.argv[1]).resolve()
WORK = Path(tempfile.mkdtemp(prefix="wskit-install-check-"))
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1"}


def check(name: str, ok: bool, detail: str = "") -> None:
    print(f"{'ok  ' if ok else 'FAIL'} {name}" + (f": {detail}" if detail and not ok else ""), flush=True)
    if not ok:
        raise SystemExit(1)


class Server:
    """A server process; ``url`` is read from its 'serving ... at URL' line."""

    def __init__(self, cmd: list[str]):
        self.lines: list[str] = []
        self.ready = threading.Event()
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=WORK, env=ENV)
        threading.Thread(target=self._pump, daemon=True).start()
        if not self.ready.wait(30):
            self.stop()
            check(f"start {' '.join(cmd)}", False, "\n".join(self.lines))
        self.url = re.search(r"(wss?://\S+)", next(x for x in self.lines if "serving" in x)).group(1)

    def _pump(self) -> None:
        for raw in self.proc.stdout:
            self.lines.append(raw.decode(errors="replace").rstrip())
            if "wskit: serving" in self.lines[-1]:
                self.ready.set()
        self.ready.set()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(20)


def connect(url: str, *args: str) -> str:
    result = subprocess.run([str(BIN / "wskit"), "connect", url, "-s", "wskit.echo", *args], input=b"hello\n",
                            capture_output=True, timeout=30, cwd=WORK, env=ENV)
    return result.stdout.decode() + result.stderr.decode()


def make_certificate() -> tuple[str, str]:
    # cryptography comes with Twisted's TLS extra, a dependency of wskit.
    code = r'''
import datetime, ipaddress, sys
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
key = ec.generate_private_key(ec.SECP256R1())
name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
now = datetime.datetime.now(datetime.timezone.utc)
cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256()))
open(sys.argv[1], "wb").write(cert.public_bytes(serialization.Encoding.PEM))
open(sys.argv[2], "wb").write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                serialization.NoEncryption()))
'''
    cert, key = str(WORK / "cert.pem"), str(WORK / "key.pem")
    subprocess.run([str(BIN / "python"), "-c", code, cert, key], check=True, cwd=WORK)
    return cert, key


def free_privileged_port() -> int:
    for port in range(81, 1024):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise SystemExit("no free port below 1024")


def main() -> None:
    out = subprocess.run([str(BIN / "twistd"), "--help"], capture_output=True, text=True, cwd=WORK, env=ENV).stdout
    check("twistd lists the wskit plugin", any(line.split()[:1] == ["wskit"] for line in out.splitlines()))

    cert, key = make_certificate()
    for backend in ("twisted", "asyncio"):
        server = Server([str(BIN / "wskit"), "serve", "--backend", backend, "--port", "0",
                         "--tls-cert", cert, "--tls-key", key])
        try:
            check(f"wskit serve --backend {backend} announces wss://", server.url.startswith("wss://"), server.url)
            answer = connect(server.url, "--ca-file", cert)
            check(f"wskit connect wss:// echoes ({backend} server)", "< hello" in answer, answer)
        finally:
            server.stop()

    if os.geteuid() == 0:
        port = free_privileged_port()
        server = Server([str(BIN / "twistd"), "-n", "--pidfile=", "-u", "65534", "-g", "65534", "wskit",
                         "--port", str(port)])
        try:
            answer = connect(f"ws://127.0.0.1:{port}/ws")
            check(f"twistd -u 65534 serves port {port}", "< hello" in answer, answer + "\n".join(server.lines))
            uid = next(int(line.split()[1]) for line in Path(f"/proc/{server.proc.pid}/status").read_text()
                       .splitlines() if line.startswith("Uid:"))
            check("the twistd process runs as uid 65534", uid == 65534, str(uid))
        finally:
            server.stop()
    else:
        check("privileged port check needs root", False, f"euid {os.geteuid()}")

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        for name, cmd in (
            ("wskit serve (twisted)", [str(BIN / "wskit"), "serve", "--port", port]),
            ("wskit serve (asyncio)", [str(BIN / "wskit"), "serve", "--backend", "asyncio", "--port", port]),
            ("twistd -n wskit", [str(BIN / "twistd"), "-n", "--pidfile=", "wskit", "--port", port]),
        ):
            started = time.monotonic()
            result = subprocess.run(cmd, capture_output=True, timeout=30, cwd=WORK, env=ENV)
            text = (result.stdout + result.stderr).decode()
            lines = [line for line in text.splitlines() if "cannot listen" in line]
            check(f"{name} on a taken port exits non-zero with one line",
                  result.returncode != 0 and len(lines) == 1 and "Traceback" not in text
                  and time.monotonic() - started < 15, text)


if __name__ == "__main__":
    main()
