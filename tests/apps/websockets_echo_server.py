"""An independent echo server (python-websockets) with chosen deflate parameters.

python tests/apps/websockets_echo_server.py PORT
Prints "serving" on stderr once bound.
"""

import asyncio
import sys

from websockets.asyncio.server import serve
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory


async def echo(ws):
    async for message in ws:
        await ws.send(message)


async def main(port):
    deflate = ServerPerMessageDeflateFactory(
        server_max_window_bits=11, client_max_window_bits=10, server_no_context_takeover=True
    )
    async with serve(echo, "127.0.0.1", port, subprotocols=["wskit.echo"], extensions=[deflate]):
        sys.stderr.write("serving\n")
        sys.stderr.flush()
        await asyncio.Future()


asyncio.run(main(int(sys.argv[1])))
