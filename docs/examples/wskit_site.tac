"""wskit inside an existing Twisted application.

Two things in one MultiService, started and stopped together by twistd:

* an existing twisted.web site (a page at /, a JSON status at /api/status) with
  wskit's WebSocket endpoint mounted at /live/ws, on SITE_PORT;
* a standalone wskit WebSocketService (demo page at /, endpoint at /ws,
  demo ticker) on WS_PORT.

Run it with:

    twistd -ny docs/examples/wskit_site.tac

Ports come from EXAMPLE_SITE_PORT / EXAMPLE_WS_PORT (default 8080 and 9000).
"""

import os

from twisted.application import service, strports
from twisted.web import resource, server, static

from wskit import ServerSettings, WebSocketApp
from wskit.twisted import WebSocketService, websocket_resource

SITE_PORT = int(os.environ.get("EXAMPLE_SITE_PORT", "8080"))
WS_PORT = int(os.environ.get("EXAMPLE_WS_PORT", "9000"))

# -- the web application you already have ------------------------------------
root = resource.Resource()
root.putChild(b"", static.Data(b"<!doctype html><title>My app</title><h1>My app</h1>\n", "text/html"))
api = resource.Resource()
api.putChild(b"status", static.Data(b'{"ok": true}\n', "application/json"))
root.putChild(b"api", api)

# -- wskit mounted at /live/ws -------------------------------------------------
# Only the settings about WebSocket behaviour apply to a mounted resource
# (subprotocols, origins, limits, compression); host/port/path/static belong to
# the Site you mount it in.
live_app = WebSocketApp(ServerSettings(
    subprotocols=("wskit.chat.v2.json", "wskit.echo"),
    allowed_origins=("https://myapp.example.com",),
))
live = resource.Resource()
live.putChild(b"ws", websocket_resource(live_app))
root.putChild(b"live", live)

application = service.Application("myapp")
services = service.MultiService()
services.setServiceParent(application)

site = server.Site(root)
strports.service(f"tcp:{SITE_PORT}:interface=127.0.0.1", site).setServiceParent(services)

# -- a standalone wskit service beside it -------------------------------------
WebSocketService(ServerSettings(host="127.0.0.1", port=WS_PORT, ticker_interval=1.0)).setServiceParent(services)
