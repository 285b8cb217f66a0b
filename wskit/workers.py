"""Worker processes serving one port: ``wskit serve --workers N``, ``twistd -n wskit --workers N``.

The supervisor binds the listening socket once and starts N worker
processes (``python -m wskit _worker``) that inherit it. Every worker accepts
on that one socket (Twisted ``reactor.adoptStreamPort``, asyncio
``loop.create_server(sock=...)``) and the kernel hands each new connection
to one of them. Binding once works on every POSIX system, gives ``--port 0``
a single port, lets twistd bind a privileged port as root before dropping
privileges, and keeps connections waiting in the backlog when a worker dies
(with SO_REUSEPORT each worker would have its own queue, lost with it).

A worker gets its settings over its stdin: the supervisor's, with
``workers=1`` and no metrics endpoint of its own (everything else, a hub
setting included, is the same), plus which socket to adopt. It says
"ready" on a status pipe once listening; that pipe closing tells the
supervisor the worker has gone. Its stdin stays open for its life: a worker
whose supervisor vanished (SIGKILL) sees end of file and shuts down.

The supervisor restarts a worker that exits, after a delay that doubles with
each quick exit in a row (:class:`RestartBackoff`), so a crash loop does not
spin; a worker that exits before the first "serving" announcement stops the
whole server instead (a setting or a program that cannot work). SIGINT or
SIGTERM to the supervisor makes it send SIGTERM to every worker: each stops
listening, closes its connections with 1001 and exits; the supervisor exits
once all have, and kills any still there after the close timeout plus
:data:`KILL_GRACE_SECONDS`.

Each worker's log lines carry its number: a ``[w2]`` prefix on every line it
writes to the shared stderr, or, under twistd, the supervisor logs each line
of the worker with system ``w2`` (``... [w2] wskit: open ...``) and a
``worker`` field.

Without a shared hub, workers share nothing but the port: echo and RPC
scale out, while chat rooms and pub/sub topics (and the demo ticker) exist
once per worker, so two clients see each other only when the kernel gave
them the same worker. A hub that crosses processes (Redis, say) configured in
the settings reaches every worker unchanged.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import pickle
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import txaio

from . import metrics
from .errors import HubUnavailable, ListenError, WskitError, check_tls_files, describe_listen_error
from .protocol import closing_deadline
from .settings import MetricsSettings, ServerSettings

# What a worker is told over its status pipe once it accepts connections.
READY = b"ready"
# Seconds a stopping supervisor waits beyond the close-handshake deadline
# before it kills workers that are still there.
KILL_GRACE_SECONDS = 5.0
_HEADER = struct.Struct("!Q")


class WorkerError(WskitError):
    """A worker process could not start (it exited before it was listening)."""


@dataclass(frozen=True)
class RestartBackoff:
    """How long the supervisor waits before restarting a worker that exited.

    ``initial`` after the first exit; each further exit of a worker that ran
    less than ``stable_after`` seconds doubles it (``factor``), up to
    ``maximum``. A worker that ran ``stable_after`` seconds starts over at
    ``initial``.

    >>> [RestartBackoff().delay(n) for n in (1, 2, 3, 8, 20)]
    [0.5, 1.0, 2.0, 30.0, 30.0]
    """

    initial: float = 0.5
    factor: float = 2.0
    maximum: float = 30.0
    stable_after: float = 10.0

    def delay(self, quick_exits: int) -> float:
        return min(self.maximum, self.initial * self.factor ** max(0, quick_exits - 1))


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker process is told on its stdin."""

    worker: int
    backend: str
    settings: ServerSettings
    listen_fd: int
    family: int
    status_fd: int
    relay_logs: bool = False
    metrics_dir: str | None = None
    app_factory: str | None = None


def encode_spec(spec: WorkerSpec) -> bytes:
    # Pickle: the supervisor and the worker are the same program, and the pipe
    # is theirs alone; any field a later setting adds crosses unchanged.
    data = pickle.dumps(spec, protocol=pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(len(data)) + data


def _read_exactly(fd: int, count: int) -> bytes:
    chunks = []
    while count:
        chunk = os.read(fd, count)
        if not chunk:
            raise EOFError("the supervisor closed the pipe before sending the worker's settings")
        chunks.append(chunk)
        count -= len(chunk)
    return b"".join(chunks)


def read_spec(fd: int = 0) -> WorkerSpec:
    (length,) = _HEADER.unpack(_read_exactly(fd, _HEADER.size))
    return pickle.loads(_read_exactly(fd, length))


def worker_settings(settings: ServerSettings) -> ServerSettings:
    """The settings a worker runs with: the supervisor's, serving in its own process,
    with metrics recorded but served by the supervisor."""
    return settings.replace(workers=1, metrics=dataclasses.replace(settings.metrics, port=None))


def bind_socket(settings: ServerSettings) -> socket.socket:
    """The listening socket every worker accepts on; :class:`ListenError` when it cannot be bound."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            settings.host or None, settings.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
        try:
            # What Twisted and asyncio do on POSIX: rebind while old connections linger in TIME_WAIT.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(socket.SOMAXCONN)
            # Every worker accepts until EAGAIN; O_NONBLOCK belongs to the socket all of them share.
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
    except OSError as exc:
        raise ListenError(describe_listen_error(exc, settings)) from None
    return sock


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"was killed by {name}"
    return f"exited with status {code}"


class _Worker:
    """One worker slot: the process in it now, and its exit history."""

    def __init__(self, number: int):
        self.number = number
        self.process: subprocess.Popen | None = None
        self.started_at = 0.0
        self.ready = False
        self.quick_exits = 0
        self.restart_call: Any = None
        self.exit_code: int | None = None


class Supervisor:
    """Starts, watches, restarts and stops the worker processes of one server.

    Backend-neutral: timers and futures go through txaio (the process's
    reactor or loop) and ``call_from_thread`` hands the watcher threads'
    news to it (``reactor.callFromThread``, ``loop.call_soon_threadsafe``).

    ``relay_output(worker, line)``: when given, workers write their log lines
    without timestamps to a pipe and each line is handed to it (twistd logs
    them); otherwise workers write to this process's stderr, every line
    prefixed ``[wN]``.

    ``app_factory``: ``"module:callable"``, imported in each worker and called
    with the worker's settings, returning the :class:`wskit.WebSocketApp` to
    serve (the shipped subprotocols when None).

    Use: :meth:`bind` (may raise :class:`ListenError`), :meth:`start`, then
    ``serving`` fires with the port once every worker listens (or None when
    stopped first; fails with :class:`WorkerError`), :meth:`stop`, and
    ``finished`` fires with the exit status; :meth:`close` at the end.
    """

    def __init__(self, settings: ServerSettings, backend: str, call_from_thread: Callable[..., Any], *,
                 app_factory: str | None = None, relay_output: Callable[[int, str], None] | None = None,
                 backoff: RestartBackoff | None = None, log: Any = None):
        self.settings = settings.validate()
        self.backend = backend
        self.count = settings.workers
        self.app_factory = app_factory
        self.relay_output = relay_output
        self.backoff = backoff or RestartBackoff()
        self.log = log or txaio.make_logger()
        self._call_from_thread = call_from_thread
        self.sock: socket.socket | None = None
        self.metrics_dir: str | None = None
        self.workers = [_Worker(n) for n in range(1, self.count + 1)]
        self.serving = txaio.create_future()
        self.finished = txaio.create_future()
        self.announced = False
        self.stopping = False
        self.failed = False
        self._kill_call: Any = None

    @property
    def port(self) -> int:
        assert self.sock is not None
        return self.sock.getsockname()[1]

    @property
    def pids(self) -> list[int]:
        return [w.process.pid for w in self.workers if w.process is not None]

    def bind(self) -> int:
        """Bind the shared socket; returns the port."""
        if self.sock is None:
            check_tls_files(self.settings)
            self.sock = bind_socket(self.settings)
        return self.port

    def start(self) -> Any:
        self.bind()
        if self.settings.metrics.enabled and self.metrics_dir is None:
            # Made here, not in bind(): under twistd -u/-g this runs as the user the workers run as.
            self.metrics_dir = tempfile.mkdtemp(prefix="wskit-metrics-")
            metrics.enable(self.metrics_dir)
        for worker in self.workers:
            if not self.stopping:  # a worker that could not be started stops the rest
                self._spawn(worker)
        self._count_running()
        return self.serving

    # -- one worker ----------------------------------------------------------

    def _spawn(self, worker: _Worker) -> None:
        assert self.sock is not None
        status_read, status_write = os.pipe()
        relay = self.relay_output is not None
        spec = WorkerSpec(
            worker=worker.number, backend=self.backend, settings=worker_settings(self.settings),
            listen_fd=self.sock.fileno(), family=self.sock.family, status_fd=status_write,
            relay_logs=relay, metrics_dir=self.metrics_dir, app_factory=self.app_factory,
        )
        env = dict(os.environ, WSKIT_WORKER=str(worker.number), PYTHONUNBUFFERED="1")
        if self.metrics_dir is not None:
            env["PROMETHEUS_MULTIPROC_DIR"] = self.metrics_dir
        argv = [sys.executable, "-m", "wskit", "_worker", "--worker", str(worker.number),
                "--backend", self.backend]
        worker.started_at = time.monotonic()
        try:
            process = subprocess.Popen(
                argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE if relay else None,
                stderr=subprocess.STDOUT if relay else None, pass_fds=(self.sock.fileno(), status_write),
                env=env,
            )
        except OSError as exc:  # the interpreter cannot be run (by this user), say
            os.close(status_read)
            worker.exit_code = 1
            self._lost(worker, f"worker {worker.number} could not be started ({exc})", started=False)
            return
        finally:
            os.close(status_write)
        worker.process, worker.ready = process, False
        assert process.stdin is not None
        # The worker reads this before anything else; the pipe stays open for its life.
        process.stdin.write(encode_spec(spec))
        process.stdin.flush()
        threading.Thread(target=self._watch, args=(worker, process, status_read), daemon=True,
                         name=f"wskit-worker-{worker.number}").start()
        if relay:
            threading.Thread(target=self._relay, args=(worker, process), daemon=True,
                             name=f"wskit-worker-{worker.number}-output").start()

    def _watch(self, worker: _Worker, process: subprocess.Popen, status_read: int) -> None:
        """In a thread: the worker's status lines, then its exit (the pipe closes with it)."""
        buffered = b""
        try:
            while True:
                chunk = os.read(status_read, 256)
                if not chunk:
                    break
                buffered += chunk
                while b"\n" in buffered:
                    line, buffered = buffered.split(b"\n", 1)
                    self._call_from_thread(self._status, worker, process, line)
        finally:
            os.close(status_read)
        code = process.wait()
        if process.stdin is not None:
            process.stdin.close()
        self._call_from_thread(self._exited, worker, process, code)

    def _relay(self, worker: _Worker, process: subprocess.Popen) -> None:
        assert process.stdout is not None and self.relay_output is not None
        for raw in process.stdout:
            self._call_from_thread(self.relay_output, worker.number, raw.decode("utf-8", "replace").rstrip("\n"))

    def _status(self, worker: _Worker, process: subprocess.Popen, line: bytes) -> None:
        if worker.process is not process or line.strip() != READY:
            return
        worker.ready = True
        if not self.announced and not self.stopping and all(w.ready for w in self.workers):
            self.announced = True
            txaio.resolve(self.serving, self.port)

    def _exited(self, worker: _Worker, process: subprocess.Popen, code: int) -> None:
        if worker.process is not process:
            return
        worker.process, worker.ready, worker.exit_code = None, False, code
        recorder = metrics.recorder()
        if isinstance(recorder, metrics.PrometheusRecorder):
            recorder.mark_process_dead(process.pid)
        self._count_running()
        self._lost(worker, f"worker {worker.number} (pid {process.pid}) {describe_exit(code)}")

    def _lost(self, worker: _Worker, what: str, started: bool = True) -> None:
        """A worker is gone (or could not be started): finish, give up, or restart it after a while."""
        if self.stopping:
            self._finish_if_done()
            return
        if not self.announced:
            self.failed = True
            message = f"{what} before it was listening" if started else what
            self.log.error("wskit: {message}", message=message)
            txaio.reject(self.serving, WorkerError(message))
            self.stop()
            return
        ran = time.monotonic() - worker.started_at
        worker.quick_exits = 1 if ran >= self.backoff.stable_after else worker.quick_exits + 1
        delay = self.backoff.delay(worker.quick_exits)
        self.log.warn("wskit: {what} after {ran:.1f} s; restarting it in {delay:.1f} s",
                      what=what, ran=ran, delay=delay, wskit_event="worker-exit")
        metrics.recorder().worker_restarted()
        worker.restart_call = txaio.call_later(delay, self._restart, worker)

    def _restart(self, worker: _Worker) -> None:
        worker.restart_call = None
        if not self.stopping and worker.process is None:
            self._spawn(worker)
            self._count_running()

    def _count_running(self) -> None:
        metrics.recorder().workers_running(len(self.pids))

    # -- stopping ------------------------------------------------------------

    def stop(self) -> Any:
        """SIGTERM every worker; ``finished`` fires with the exit status once all have exited."""
        if not self.stopping:
            self.stopping = True
            if not txaio.is_called(self.serving):
                txaio.resolve(self.serving, None)  # stopped before every worker was listening
            for worker in self.workers:
                if worker.restart_call is not None:
                    worker.restart_call.cancel()
                    worker.restart_call = None
                self._signal(worker, signal.SIGTERM)
            self._kill_call = txaio.call_later(closing_deadline(self.settings) + KILL_GRACE_SECONDS,
                                               self._kill_remaining)
            self._finish_if_done()
        return self.finished

    def _signal(self, worker: _Worker, signum: int) -> None:
        if worker.process is not None:
            try:
                worker.process.send_signal(signum)
            except ProcessLookupError:
                pass

    def _kill_remaining(self) -> None:
        self._kill_call = None
        for worker in self.workers:
            if worker.process is not None:
                self.log.warn("wskit: worker {worker} (pid {pid}) did not stop in time; killing it",
                              worker=worker.number, pid=worker.process.pid)
                self._signal(worker, signal.SIGKILL)

    def _finish_if_done(self) -> None:
        if any(w.process is not None for w in self.workers) or txaio.is_called(self.finished):
            return
        if self._kill_call is not None:
            self._kill_call.cancel()
            self._kill_call = None
        clean = not self.failed and all(w.exit_code in (None, 0) for w in self.workers)
        txaio.resolve(self.finished, 0 if clean else 1)

    def close(self) -> None:
        """Close the shared socket and remove the metrics directory (once ``finished`` fired)."""
        if self.sock is not None:
            self.sock.close()
        if self.metrics_dir is not None:
            shutil.rmtree(self.metrics_dir, ignore_errors=True)


def announcement(settings: ServerSettings, names: Any, port: int, backend: str) -> str:
    return (f"wskit: serving {', '.join(names)} at {settings.replace(port=port).url} "
            f"({backend}, {settings.workers} workers)")


def _build_app(settings: ServerSettings, app_factory: str | None) -> Any:
    """What a worker serves: ``app_factory(settings)`` (``"module:callable"``), or the shipped subprotocols."""
    from .app import WebSocketApp

    if app_factory is None:
        return WebSocketApp(settings)
    module, _, name = app_factory.partition(":")
    return getattr(importlib.import_module(module), name)(settings)


def _app_names(settings: ServerSettings, app_factory: str | None) -> tuple[str, ...]:
    # Built once here too: names for the announcement, and a factory that fails does so up front.
    return _build_app(worker_settings(settings), app_factory).registry.names


async def _serve_metrics(settings: MetricsSettings, backend: str) -> tuple[Any, Callable[[], Any]]:
    """Start the supervisor's metrics endpoint; ``(port, close)``."""
    from . import metrics_http

    if backend == "twisted":
        from twisted.internet import reactor

        port = await metrics_http.listen_twisted(settings, reactor)
        return port.getHost().port, port.stopListening
    server = await metrics_http.serve_asyncio(settings)
    return metrics_http.listening_port(server), server.close


async def supervise(settings: ServerSettings, backend: str, stopping: Any, app_factory: str | None = None,
                    announce: Callable[[str], Any] | None = None) -> int:
    """Run ``settings.workers`` worker processes until ``stopping`` fires; returns the exit status.

    What ``wskit serve --workers N`` runs, as a ``main(stopping)`` for :func:`wskit.run`::

        settings = ServerSettings(port=9000, workers=4)
        wskit.run(lambda stopping: supervise(settings, "asyncio", stopping, app_factory="chat.app:build"),
                  "asyncio")

    ``app_factory``: see :class:`Supervisor`. ``announce(line)`` gets the
    "wskit: serving ..." line once every worker listens, and the metrics URL
    (default: logged). Worker processes log on their own; the supervisor's
    lines go through txaio's logging, so start it to see them.
    """
    log = txaio.make_logger()
    if announce is None:
        def announce(line: str) -> None:
            log.info("{line}", line=line)

    if backend == "twisted":
        from twisted.internet import reactor

        call_from_thread = reactor.callFromThread
    else:
        import asyncio

        call_from_thread = asyncio.get_running_loop().call_soon_threadsafe
    names = _app_names(settings, app_factory)
    supervisor = Supervisor(settings, backend, call_from_thread, app_factory=app_factory, log=log)
    supervisor.bind()
    close_metrics = None
    try:
        if settings.metrics.enabled:
            from .metrics_http import metrics_url

            metrics_port, close_metrics = await _serve_metrics(settings.metrics, backend)
            announce(f"wskit: metrics at {metrics_url(settings.metrics, metrics_port)}")
        txaio.add_callbacks(stopping, lambda _: supervisor.stop() and None, None)
        supervisor.start()
        try:
            port = await supervisor.serving
        except WorkerError:
            port = None
        if port is not None:
            announce(announcement(settings, names, port, backend))
        return await supervisor.finished
    finally:
        supervisor.stop()
        if close_metrics is not None:
            close_metrics()
        supervisor.close()


def supervisor_service(settings: ServerSettings, app_factory: str | None = None, reactor: Any = None) -> Any:
    """A Twisted ``IService`` running the worker processes of ``settings`` (``twistd wskit --workers N``).

    It binds in ``privilegedStartService`` (as root under ``twistd -u/-g``),
    starts the workers in ``startService`` (after privileges are dropped),
    logs each worker's lines as events with system ``wN``, and on stop
    forwards SIGTERM and waits for every worker to exit.
    """
    from twisted.application import service
    from twisted.internet import defer
    from twisted.logger import Logger
    from twisted.python.failure import Failure

    txaio.use_twisted()
    log = Logger(namespace="wskit")

    def relay(worker: int, line: str) -> None:
        log.info("{line}", line=line, log_system=f"w{worker}", worker=worker)

    class SupervisorService(service.Service):
        def __init__(self) -> None:
            self.settings = settings
            self.names = _app_names(settings, app_factory)
            self.supervisor: Supervisor | None = None
            self.metrics_port: Any = None

        def _reactor(self) -> Any:
            if reactor is None:
                from twisted.internet import reactor as global_reactor

                return global_reactor
            return reactor

        def privilegedStartService(self) -> None:
            super().privilegedStartService()
            self._bind()

        def startService(self) -> None:
            super().startService()
            self._bind()
            assert self.supervisor is not None
            self.supervisor.start()
            txaio.add_callbacks(self.supervisor.serving, self._serving, self._failed)

        def _bind(self) -> None:
            if self.supervisor is not None:
                return
            r = self._reactor()
            self.supervisor = Supervisor(settings, "twisted", r.callFromThread, app_factory=app_factory,
                                         relay_output=relay, log=log)
            try:
                self.supervisor.bind()
                if settings.metrics.enabled:
                    from . import metrics_http

                    listened: list[Any] = []
                    metrics_http.listen_twisted(settings.metrics, r).addBoth(listened.append)
                    if isinstance(listened[0], Failure):  # a TCP endpoint answers at once
                        listened[0].raiseException()
                    self._metrics_listening(listened[0])
            except ListenError as exc:
                log.error("wskit: {message}", message=str(exc))
                raise SystemExit(1) from None

        def _metrics_listening(self, port: Any) -> None:
            from .metrics_http import metrics_url

            self.metrics_port = port
            log.info("wskit: metrics at {url}", url=metrics_url(settings.metrics, port.getHost().port))

        def _serving(self, port: int | None) -> None:
            if port is not None:
                log.info("{line}", line=announcement(settings, self.names, port, "twisted"))

        def _failed(self, fail: Any) -> None:
            # The reason is logged; stop twistd (once its reactor runs, if it does not yet).
            r = self._reactor()
            r.callLater(0, lambda: r.stop() if r.running else None)

        def stopService(self) -> Any:
            super().stopService()
            if self.supervisor is None:
                return None
            supervisor = self.supervisor

            def done(result: Any) -> Any:
                if self.metrics_port is not None:
                    self.metrics_port.stopListening()
                supervisor.close()
                return result

            return defer.maybeDeferred(supervisor.stop).addBoth(done)

    return SupervisorService()


# -- the worker side -------------------------------------------------------------


class TaggedStream:
    """A text stream that starts every line written to it with ``tag`` (``"[w2] "``)."""

    mode = "w"  # for txaio's and Twisted's "text or bytes?" checks

    def __init__(self, stream: Any, tag: str):
        self._stream = stream
        self._tag = tag
        self._line_start = True

    def write(self, text: str) -> int:
        if not text:
            return 0
        out = []
        for piece in text.splitlines(keepends=True):
            if self._line_start:
                out.append(self._tag)
            out.append(piece)
            self._line_start = piece.endswith("\n")
        self._stream.write("".join(out))
        self._stream.flush()
        return len(text)

    def flush(self) -> None:
        self._stream.flush()


def start_worker_logging(spec: WorkerSpec) -> None:
    """Log lines that say which worker wrote them."""
    import txaio as _txaio

    number = spec.worker
    if spec.backend == "twisted":
        from twisted.logger import FileLogObserver, eventAsText, globalLogBeginner, textFileLogObserver

        if spec.relay_logs:
            # The supervisor adds time and "[wN]" when it logs the line.
            inner = FileLogObserver(sys.stdout, lambda event: eventAsText(
                event, includeTimestamp=False, includeSystem=False) + "\n")
        else:
            inner = textFileLogObserver(TaggedStream(sys.stderr, f"[w{number}] "))

        def observer(event: dict) -> None:
            event.setdefault("worker", number)
            inner(event)

        _txaio.set_global_log_level("info")
        globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)
    else:
        out = sys.stdout if spec.relay_logs else TaggedStream(sys.stderr, f"[w{number}] ")
        _txaio.start_logging(out=out, level="info")


def _adopted_endpoint(reactor: Any, spec: WorkerSpec) -> Any:
    """A Twisted server endpoint that listens by adopting the inherited socket."""
    from twisted.internet import defer

    settings = spec.settings
    tls_options = None
    if settings.tls.enabled:
        from twisted.internet import ssl

        with open(settings.tls.cert, "rb") as f:
            cert = f.read()
        with open(settings.tls.key, "rb") as f:
            key = f.read()
        tls_options = ssl.PrivateCertificate.loadPEM(cert + b"\n" + key).options()

    class AdoptedSocketEndpoint:
        def listen(self, factory: Any) -> Any:
            if tls_options is not None:
                from twisted.protocols.tls import TLSMemoryBIOFactory

                factory = TLSMemoryBIOFactory(tls_options, False, factory)
            return defer.execute(reactor.adoptStreamPort, spec.listen_fd, spec.family, factory)

    return AdoptedSocketEndpoint()


async def _run_worker(spec: WorkerSpec, stopping: Any) -> int:
    """One worker: listen on the inherited socket, say ready, serve until SIGTERM, close with 1001."""
    log = txaio.make_logger()
    app = _build_app(spec.settings, spec.app_factory)
    if spec.backend == "twisted":
        from twisted.internet import reactor

        from . import twisted as wtwisted

        svc = wtwisted.WebSocketService(app=app, reactor=reactor, endpoint=_adopted_endpoint(reactor, spec))
        svc.startService()
        await svc.when_listening()
        shutdown = svc.stopService
    else:
        from . import asyncio as wasyncio

        sock = socket.socket(fileno=spec.listen_fd)
        server = await wasyncio.serve(app=app, sock=sock)

        async def shutdown() -> None:
            server.close()
            await server.wait_closed()

    await app.hub_ready(shutdown)  # a hub unreachable from the start stops the worker
    recorder = metrics.recorder()
    flusher = _Flusher(recorder) if recorder.enabled else None
    log.info("wskit: worker {worker} ready pid={pid}", worker=spec.worker, pid=os.getpid())
    os.write(spec.status_fd, READY + b"\n")
    await stopping
    _stopping.set()
    await shutdown()
    if flusher is not None:
        flusher.stop()
    return 0


class _Flusher:
    """Moves a worker's counted traffic into the multiprocess files every FLUSH_SECONDS."""

    def __init__(self, recorder: Any):
        self.recorder = recorder
        self.call = txaio.call_later(metrics.FLUSH_SECONDS, self.tick)

    def tick(self) -> None:
        self.recorder.flush()
        self.call = txaio.call_later(metrics.FLUSH_SECONDS, self.tick)

    def stop(self) -> None:
        self.call.cancel()
        self.recorder.flush()


_stopping = threading.Event()


def _watch_supervisor() -> None:
    """In a thread: end of file on stdin means the supervisor is gone; stop as if told to."""
    try:
        while os.read(0, 4096):
            pass
    except OSError:
        pass
    if not _stopping.is_set():
        os.kill(os.getpid(), signal.SIGTERM)


def worker_main() -> int:
    """``python -m wskit _worker``: one worker process, set up from its stdin."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the supervisor's to forward
    spec = read_spec(0)
    os.set_inheritable(spec.status_fd, False)
    os.set_inheritable(spec.listen_fd, False)
    importlib.import_module(f"wskit.{spec.backend}")  # selects txaio's framework
    start_worker_logging(spec)
    if spec.metrics_dir is not None:
        metrics.enable(spec.metrics_dir)
    threading.Thread(target=_watch_supervisor, daemon=True, name="wskit-supervisor-watch").start()
    from .runner import run

    try:
        return run(lambda stopping: _run_worker(spec, stopping), spec.backend, use_uvloop=True, supervised=True)
    except (ListenError, HubUnavailable) as exc:
        sys.stderr.write(f"wskit: worker {spec.worker}: {exc}\n")
        return 1


__all__ = ["RestartBackoff", "Supervisor", "WorkerError", "WorkerSpec", "bind_socket", "supervise",
           "supervisor_service", "worker_main"]
