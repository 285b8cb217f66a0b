"""twistd plugin: ``twistd -n wskit [options]`` takes the same options as ``wskit serve``."""

from __future__ import annotations

from twisted.application.service import IServiceMaker
from twisted.plugin import IPlugin
from twisted.python import usage
from zope.interface import implementer


def _collector(opt):
    # usage.Options counts a handler's parameters: it must take exactly (self, value).
    def collect(self, value):
        self.setdefault(opt.dest, []).append(opt.kind(value))

    collect.__doc__ = opt.help
    return collect


def _build_options():
    from wskit.options import SERVER_OPTIONS

    params, flags = [], []
    methods = {}
    for opt in SERVER_OPTIONS:
        if opt.kind is None:
            flags.append([opt.name, None, opt.help])
        elif opt.repeatable:
            methods["opt_" + opt.dest] = _collector(opt)
        else:
            params.append([opt.name, None, opt.default, opt.help, opt.kind])

    return type("Options", (usage.Options,), {"optParameters": params, "optFlags": flags, **methods})


Options = _build_options()


@implementer(IServiceMaker, IPlugin)
class WskitServiceMaker:
    tapname = "wskit"
    description = "wskit WebSocket server (same options as `wskit serve`)"
    options = Options

    def makeService(self, options):
        from wskit.allocator import fix_mmap_threshold
        from wskit.options import server_settings
        from wskit.settings import SettingsError

        fix_mmap_threshold()  # a long-running server: see wskit/allocator.py

        values = {key.replace("-", "_"): value for key, value in options.items()}
        try:
            settings = server_settings(values)
            if settings.metrics.enabled:
                from wskit.metrics import check_available

                check_available()
            if settings.workers > 1:
                # This process supervises: it binds (in privilegedStartService) and starts the workers.
                from wskit.workers import supervisor_service

                return supervisor_service(settings)
            # Building the app reads key files (--auth-secret-file, --auth-public-key).
            return _twistd_service(settings)
        except SettingsError as exc:
            raise usage.UsageError(str(exc))


def _twistd_service(settings):
    from twisted.logger import Logger
    from twisted.python.failure import Failure

    from wskit.twisted import WebSocketService

    log = Logger(namespace="wskit")

    class TwistdWebSocketService(WebSocketService):
        """Binds in privilegedStartService (before twistd drops privileges) and,
        when it cannot listen, says why in one line and ends twistd with exit status 1."""

        def privilegedStartService(self):
            super().privilegedStartService()
            self._exit_unless_listening()

        def startService(self):
            super().startService()
            self._exit_unless_listening()

        def _exit_unless_listening(self):
            result = self._listen_result
            if isinstance(result, Failure):
                log.error("wskit: {message}", message=result.getErrorMessage())
                raise SystemExit(1)

    svc = TwistdWebSocketService(settings)
    svc.when_listening().addCallbacks(_announce, lambda _fail: None, callbackArgs=(svc,))
    return svc


def _announce(port, svc):
    # twistd prints "Site starting on PORT"; say which URL and subprotocols that is.
    from twisted.logger import Logger

    if svc.metrics_port is not None:
        from wskit.metrics_http import metrics_url

        Logger(namespace="wskit").info("wskit: metrics at {url}",
                                       url=metrics_url(svc.settings.metrics, svc.metrics_port.getHost().port))
    Logger(namespace="wskit").info(
        "wskit: serving {names} at {url} (twisted)",
        names=", ".join(svc.app.registry.names),
        url=svc.settings.url_for(port.getHost().port),
    )
    return port


serviceMaker = WskitServiceMaker()
