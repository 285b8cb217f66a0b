"""`wskit serve --workers N` and `twistd -n wskit --workers N`: worker processes on one port.

Real processes: a supervisor started like any server (port 0, the port read from its "serving"
line) and the workers it starts. Workers are told apart by their log lines, which carry `[wN]`,
and each says `worker N ready pid=P` once it accepts connections.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import ssl
import subprocess
import sys

import pytest
from websockets.asyncio.client import connect

from support import BACKENDS, ROOT, TWISTD, ServerProcess, python_env, run, serve, twistd
from worker_support import echo_once, gone, open_on_every_worker, wait_until, worker_pids

pytestmark = pytest.mark.timeout(120)

def start_workers(kind: str, *args: str) -> tuple[ServerProcess, int]:
    if kind == "twistd":
        return twistd("--workers", "2", "--ticker-interval", "0", *args)
    return serve(kind, "--workers", "2", "--ticker-interval", "0", *args)


@pytest.mark.parametrize("backend", BACKENDS)
def test_two_workers_serve_one_port(backend):
    proc, port = start_workers(backend)
    with proc:
        serving = proc.wait_for_log("wskit: serving")
        assert serving.endswith(f"({backend}, 2 workers)"), serving
        pids = worker_pids(proc)
        assert sorted(pids) == [1, 2] and len(set(pids.values())) == 2
        assert proc.proc.pid not in pids.values()

        async def scenario():
            conns = await open_on_every_worker(port, proc)
            for ws in conns:
                await ws.send("hi")
                assert await ws.recv() == "hi"
                await ws.close()

        run(scenario(), timeout=60)
        # every line a worker wrote carries its tag; the supervisor's lines carry none
        for line in proc.lines:
            if "wskit: open" in line or "wskit: close" in line:
                assert re.match(r"\[w[12]\] ", line), line


@pytest.mark.parametrize("backend", BACKENDS)
def test_killed_worker_is_restarted_and_the_port_keeps_serving(backend):
    proc, port = start_workers(backend)
    with proc:
        first = worker_pids(proc)[1]
        os.kill(first, signal.SIGKILL)
        proc.wait_for_log(f"worker 1 (pid {first}) was killed by SIGKILL")
        # while worker 1 is down (and after), the other worker and the shared backlog serve
        assert run(echo_once(port, "during")) == "during"
        second = wait_until(lambda: worker_pids(proc)[1] != first and worker_pids(proc)[1],
                            what="worker 1 to come back")
        assert worker_pids(proc)[2] != second
        assert run(echo_once(port, "after")) == "after"
        # a second quick exit in a row waits twice as long: a crash loop does not spin
        os.kill(second, signal.SIGKILL)
        line = proc.wait_for_log(f"worker 1 (pid {second}) was killed by SIGKILL")
        assert "restarting it in 1.0 s" in line, line
        wait_until(lambda: worker_pids(proc)[1] not in (first, second), what="worker 1 again")
        assert run(echo_once(port, "again")) == "again"


@pytest.mark.parametrize("kind", [*BACKENDS, "twistd"])
def test_sigterm_closes_every_connection_with_1001_and_every_process_exits(kind):
    proc, port = start_workers(kind)
    with proc:
        pids = worker_pids(proc)

        async def scenario():
            conns = await open_on_every_worker(port, proc)
            proc.proc.send_signal(signal.SIGTERM)
            await asyncio.gather(*(asyncio.wait_for(ws.wait_closed(), 20) for ws in conns))
            return [ws.close_code for ws in conns]

        codes = run(scenario(), timeout=60)
        assert set(codes) == {1001}, codes
        status = proc.wait_exit(20)
        # twistd ends itself with the signal it was stopped by, as it does without workers
        assert status == (0 if kind != "twistd" else -signal.SIGTERM), "\n".join(proc.lines)
        wait_until(lambda: all(gone(pid) for pid in pids.values()), 10, "the workers to exit")
        assert "Traceback" not in "\n".join(proc.lines)


def test_twistd_workers_log_through_twistd():
    proc, port = start_workers("twistd")
    with proc:
        assert proc.wait_for_log("wskit: serving").endswith("(twisted, 2 workers)")
        assert run(echo_once(port)) == "ping"
        line = proc.wait_for_log("wskit: open")
        # twistd's own format, with the worker as the log system
        assert re.search(r"^\S+ \[w[12]\] wskit: open peer=", line), line


@pytest.mark.parametrize("backend", BACKENDS)
def test_one_worker_is_a_plain_server(backend):
    proc, port = serve(backend, "--workers", "1", "--ticker-interval", "0")
    with proc:
        assert proc.wait_for_log("wskit: serving").endswith(f"({backend})")
        assert run(echo_once(port)) == "ping"
        assert not any("worker" in line or line.startswith("[w") for line in proc.lines)


def test_a_worker_that_cannot_start_stops_the_server(tmp_path):
    # Every worker process fails before it listens (a broken install, say).
    (tmp_path / "sitecustomize.py").write_text(
        "import os\nif os.environ.get('WSKIT_WORKER'):\n    os._exit(3)\n")
    env = {**python_env(), "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-m", "wskit", "serve", "--workers", "2", "--port", "0"],
                            capture_output=True, text=True, timeout=60, env=env, cwd=str(ROOT))
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert re.search(r"wskit: worker [12] \(pid \d+\) exited with status 3 before it was listening", output)
    assert "wskit: serving" not in output and "Traceback" not in output


@pytest.mark.parametrize("args, message", [
    (["--workers", "0"], "workers must be >= 1"),
    (["--workers", "2", "--endpoint", "tcp:0"], "worker processes share a TCP port"),
])
def test_bad_worker_options_are_one_line(args, message):
    result = subprocess.run([sys.executable, "-m", "wskit", "serve", *args], capture_output=True, text=True,
                            timeout=30, env=python_env(), cwd=str(ROOT))
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2
    assert len(lines) == 1 and lines[0].startswith("wskit: ") and message in lines[0], result.stderr


@pytest.mark.parametrize("backend", BACKENDS)
def test_supervise_runs_an_application_of_its_own_in_every_worker(backend):
    # wskit.workers.supervise(app_factory="module:callable"): each worker imports and builds the app.
    apps = ROOT / "tests" / "apps"
    env = {"PYTHONPATH": os.pathsep.join([str(apps), os.environ.get("PYTHONPATH", "")])}
    proc = ServerProcess([], cmd=[sys.executable, str(apps / "workers_app.py"), backend], ready="wskit: serving",
                         env=env).start()
    with proc:
        serving = proc.wait_for_log("wskit: serving")
        assert "serving test.whoami at ws://" in serving and serving.endswith(f"({backend}, 2 workers)")
        url = f"ws://127.0.0.1:{proc.port}/ws"

        async def scenario():
            conns, seen = [], set()
            for _ in range(8):  # concurrent batches, kept open, until both workers answered
                batch = await asyncio.gather(*(connect(url, subprotocols=["test.whoami"]) for _ in range(12)))
                for ws in batch:
                    await ws.send("?")
                    seen.add(await ws.recv())
                conns += batch
                if len(seen) == 2:
                    break
            await asyncio.gather(*(ws.close() for ws in conns))
            return seen

        assert run(scenario(), timeout=60) == {"1", "2"}


@pytest.mark.parametrize("backend", BACKENDS)
def test_workers_stop_when_their_supervisor_is_killed(backend):
    proc, port = start_workers(backend)
    with proc:
        pids = worker_pids(proc)
        proc.proc.kill()  # SIGKILL: nothing forwards anything; the workers see their stdin close
        proc.proc.wait(10)
        wait_until(lambda: all(gone(pid) for pid in pids.values()), 20, "orphaned workers to exit")


def unprivileged_cannot_run_python() -> bool:
    """Whether uid 65534 is refused this interpreter (an interpreter under /root, say)."""
    try:
        subprocess.run([sys.executable, "-c", "pass"], user=65534, group=65534, check=True, timeout=30)
    except (PermissionError, subprocess.CalledProcessError):
        return True
    return False


def test_twistd_binds_a_privileged_port_and_runs_unprivileged_workers(tmp_path):
    from test_deploy import free_privileged_port, process_uid
    from test_metrics import Scrape, metrics_url

    assert os.geteuid() == 0, "this test binds a port below 1024 as root (CI runs as root)"
    if unprivileged_cannot_run_python():  # workers are new processes: the user runs the interpreter
        pytest.skip(f"uid 65534 cannot run {sys.executable} here (the next test covers that case)")
    port = free_privileged_port()
    cmd = [*TWISTD, "-n", "--pidfile=", "-u", "65534", "-g", "65534", "wskit", "--port", str(port),
           "--workers", "2", "--metrics-port", "0", "--protocol", "wskit.echo", "--no-static"]
    env = {"PYTHONDONTWRITEBYTECODE": "1", "HOME": str(tmp_path)}
    with ServerProcess([], cmd=cmd, ready="wskit: serving", env=env) as proc:
        assert run(echo_once(port, "unprivileged")) == "unprivileged"
        assert [process_uid(pid) for pid in [proc.proc.pid, *worker_pids(proc).values()]] == [65534] * 3
        # the workers (as 65534) write the metrics files the supervisor (as 65534) reads
        assert wait_until(lambda: Scrape(metrics_url(proc))["wskit_connections_opened_total"] == 1,
                          what="the metrics of the echo")
    assert "Traceback" not in "\n".join(proc.lines)


def test_twistd_says_when_it_cannot_start_a_worker():
    # The user twistd drops to cannot run the interpreter: one line, and twistd stops.
    assert os.geteuid() == 0, "this test drops privileges to uid 65534 (CI runs as root)"
    if not unprivileged_cannot_run_python():
        pytest.skip(f"uid 65534 can run {sys.executable} here (the previous test covers that case)")
    cmd = [*TWISTD, "-n", "--pidfile=", "-u", "65534", "-g", "65534", "wskit", "--port", "0", "--workers", "2"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=python_env(), cwd=str(ROOT))
    output = result.stdout + result.stderr
    lines = [line for line in output.splitlines() if "could not be started" in line]
    assert len(lines) == 1 and "wskit: worker 1 could not be started" in lines[0], output
    assert "Traceback" not in output and "wskit: serving" not in output


@pytest.mark.parametrize("backend", BACKENDS)
def test_workers_serve_tls(backend, tmp_path):
    from tlscert import make_self_signed

    cert, key = make_self_signed(tmp_path)
    proc, port = start_workers(backend, "--tls-cert", cert, "--tls-key", key)
    with proc:
        assert "at wss://127.0.0.1:" in proc.wait_for_log("wskit: serving")
        context = ssl.create_default_context(cafile=cert)

        async def echo():
            async with connect(f"wss://127.0.0.1:{port}/ws", ssl=context, subprotocols=["wskit.echo"]) as ws:
                await ws.send("secret")
                return await ws.recv()

        assert run(echo()) == "secret"
