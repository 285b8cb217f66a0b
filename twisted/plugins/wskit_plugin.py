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
        from wskit.options import server_settings
        from wskit.settings import SettingsError

        values = {key.replace("-", "_"): value for key, value in options.items()}
        try:
            settings = server_settings(values, backend="twisted")
        except SettingsError as exc:
            raise usage.UsageError(str(exc))
        from wskit.twisted import WebSocketService

        svc = WebSocketService(settings)
        svc.when_listening().addCallback(_announce, svc)
        return svc


def _announce(port, svc):
    # twistd prints "Site starting on PORT"; say which URL and subprotocols that is.
    from twisted.logger import Logger

    actual = getattr(port.getHost(), "port", None)
    settings = svc.settings if actual is None else svc.settings.replace(port=actual)
    Logger().info(
        "wskit: serving {names} at {url} (twisted)",
        names=", ".join(svc.app.registry.names),
        url=settings.url,
    )
    return port


serviceMaker = WskitServiceMaker()
