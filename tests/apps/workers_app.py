"""Worker processes through the API: wskit.workers.supervise with an app factory.

python tests/apps/workers_app.py BACKEND   (with tests/apps on PYTHONPATH, for the workers)
Two workers on a free port; each serves "test.whoami", which answers every message with the
number of the worker that holds the connection (WSKIT_WORKER). Prints "serving" once listening.
"""

import os
import sys

import wskit
from wskit import Handler, ServerSettings, SubprotocolRegistry, WebSocketApp


class WhoAmI(Handler):
    subprotocol = "test.whoami"

    def on_message(self, payload, is_binary):
        self.connection.send_text(os.environ["WSKIT_WORKER"])


def build_app(settings):
    registry = SubprotocolRegistry()
    registry.register(WhoAmI.subprotocol, WhoAmI)
    return WebSocketApp(settings, registry=registry)


def main():
    from wskit.workers import supervise

    backend = sys.argv[1]
    settings = ServerSettings(port=0, workers=2, default_subprotocol=None, ticker_interval=0)

    def announce(line):
        sys.stderr.write(line + "\n")
        sys.stderr.flush()

    return wskit.run(lambda stopping: supervise(settings, backend, stopping, app_factory="workers_app:build_app",
                                                announce=announce), backend)


if __name__ == "__main__":
    sys.exit(main())
