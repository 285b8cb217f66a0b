"""The demo page in a real browser (headless Chromium), against ``wskit serve`` on both backends.

One Chromium for the module, a fresh context per test, several pages each.
"""

from __future__ import annotations

import http.server
import threading
from pathlib import Path

import pytest
from browser import FOREIGN_HOST, SAME_SITE_HOST, BrowserMissing, check_browser, chromium
from support import BACKENDS, free_port, serve
from tlscert import make_self_signed

TIMEOUT_MS = 15_000


@pytest.fixture(scope="module")
def browser():
    missing = None
    try:
        check_browser()
    except BrowserMissing as exc:
        missing = str(exc)
    if missing:
        pytest.fail(missing, pytrace=False)  # a missing browser fails the run; it is never a skip
    with chromium() as instance:
        yield instance


@pytest.fixture(scope="module", params=BACKENDS)
def server(request):
    # SAME_SITE_HOST stands for the server's public name: a name it answers to only when listed.
    proc, port = serve(request.param, "--ticker-interval", "0.2", "--allow-host", SAME_SITE_HOST)
    with proc:
        yield request.param, proc, port


@pytest.fixture
def context(browser):
    ctx = browser.new_context(viewport={"width": 1280, "height": 800})
    ctx.set_default_timeout(TIMEOUT_MS)
    yield ctx
    ctx.close()


def open_demo(context, host: str, port: int, scheme: str = "http", **query: str):
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.js_errors = errors
    params = "&".join(f"{k}={v}" for k, v in query.items())
    page.goto(f"{scheme}://{host}:{port}/?{params}")
    return page


def join(page, room: str) -> None:
    page.fill("#room", room)
    page.click("#join")
    page.wait_for_selector(f"#members-room:text-is('{room}')")


def say(page, text: str) -> None:
    page.fill("#say-text", text)
    page.press("#say-text", "Enter")


def message_texts(page) -> list[str]:
    return page.locator("#messages .message .text").all_inner_texts()


def test_two_pages_chat_in_one_room(server, context):
    backend, _proc, port = server
    room = f"browser-{backend}"
    # One page under a non-loopback name (same-origin rule), one on 127.0.0.1 (loopback rule).
    alice = open_demo(context, SAME_SITE_HOST, port, nick="alice")
    bob = open_demo(context, "127.0.0.1", port, nick="bob")
    join(alice, room)
    join(bob, room)
    alice.wait_for_selector("#members li:text-is('bob')")  # presence reached alice
    bob.wait_for_selector("#members li:text-is('alice')")  # bob got the member list on join

    say(alice, "hello from alice")
    bob.wait_for_selector("#messages .message:has(.from:text-is('alice')) .text:text-is('hello from alice')")
    say(bob, "hi alice, bob here")
    alice.wait_for_selector("#messages .message .text:text-is('hi alice, bob here')")
    assert message_texts(alice) == ["hello from alice", "hi alice, bob here"]
    assert message_texts(bob) == ["hello from alice", "hi alice, bob here"]

    # A latecomer gets the room's history on join.
    carol = open_demo(context, "127.0.0.1", port, nick="carol")
    join(carol, room)
    carol.wait_for_selector("#messages .message.history .text:text-is('hi alice, bob here')")
    assert message_texts(carol) == ["hello from alice", "hi alice, bob here"]
    assert sorted(carol.locator("#members li").all_inner_texts()) == ["alice", "bob", "carol"]

    # Leaving is announced to the others.
    bob.click("#leave")
    alice.wait_for_selector("#messages .notice:text-is('bob left.')")
    alice.wait_for_function("!Array.from(document.querySelectorAll('#members li')).some(li => li.textContent === 'bob')")
    for page in (alice, bob, carol):
        assert page.js_errors == []


def test_negotiated_subprotocol_and_permessage_deflate(server, context):
    _backend, proc, port = server
    page = open_demo(context, "127.0.0.1", port, nick="dave")
    join(page, "negotiation")
    assert page.inner_text("#chat-protocol") == "wskit.chat.v2.json"
    extensions = page.inner_text("#chat-extensions")
    assert extensions.startswith("permessage-deflate"), extensions
    # Straight from the browser's WebSocket object, not only the page's badge.
    negotiated = page.evaluate("""() => new Promise((resolve, reject) => {
        const ws = new WebSocket(document.getElementById('endpoint').textContent, ['wskit.chat.v2.json']);
        ws.onopen = () => { resolve({protocol: ws.protocol, extensions: ws.extensions}); ws.close(); };
        ws.onerror = () => reject(new Error('WebSocket failed'));
    })""")
    assert negotiated["protocol"] == "wskit.chat.v2.json"
    assert "permessage-deflate" in negotiated["extensions"]
    proc.wait_for_log("subprotocol=wskit.chat.v2.json extensions=permessage-deflate")


def test_ticker_panel_receives_events(server, context):
    _backend, _proc, port = server
    page = open_demo(context, "127.0.0.1", port)
    page.wait_for_function("Number(document.getElementById('ticker-count').textContent) >= 8")
    assert page.inner_text("#ticker-protocol") == "wskit.pubsub.v1.json"
    assert "permessage-deflate" in page.inner_text("#ticker-extensions")
    symbols = page.locator("#ticker-rows tr .symbol").all_inner_texts()
    assert sorted(symbols) == ["ABHN", "AIO", "TWST", "WSKT"]
    prices = page.locator("#ticker-rows tr .price").all_inner_texts()
    assert all(float(p) > 0 for p in prices)
    assert '"topic": "ticks.demo"' in page.inner_text("#ticker-raw").replace('":"', '": "')
    assert page.js_errors == []


def test_subscribers_in_the_browser_decode_every_shared_broadcast(server, context):
    """tests/node/shared_broadcast.js in Chromium: six subscribers (Chromium's own deflate
    offer) and a publisher; each gets exactly its events through the shared compressor."""
    _backend, _proc, port = server
    page = open_demo(context, "127.0.0.1", port)
    page.add_script_tag(path=str(Path(__file__).resolve().parent / "node" / "shared_broadcast.js"))
    result = page.evaluate(
        "(url) => sharedBroadcastScenario((i, protocol) => new WebSocket(url, [protocol]))",
        f"ws://127.0.0.1:{port}/ws",
    )
    assert result["ok"], result
    assert all(ext.startswith("permessage-deflate") for ext in result["extensions"]), result
    assert page.js_errors == []


PROBE_PAGE = """<!doctype html><meta charset="utf-8"><title>probe</title>
<script>
window.result = new Promise((resolve) => {
  const ws = new WebSocket("ws://127.0.0.1:%(port)d/ws", ["wskit.echo"]);
  ws.onopen = () => { resolve({opened: true, protocol: ws.protocol}); ws.close(); };
  ws.onclose = (ev) => resolve({opened: false, code: ev.code});
});
</script>"""


@pytest.fixture
def other_site(server):
    """A second, plain HTTP server on another port serving a page that opens the wskit WebSocket."""
    _backend, _proc, ws_port = server
    page = (PROBE_PAGE % {"port": ws_port}).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.server_address[1]
    httpd.shutdown()
    httpd.server_close()


def test_page_from_another_origin_is_refused(server, context, other_site):
    _backend, proc, _port = server
    page = context.new_page()
    page.goto(f"http://{FOREIGN_HOST}:{other_site}/")
    result = page.evaluate("window.result")
    assert result == {"opened": False, "code": 1006}
    line = proc.wait_for_log(f"origin=http://{FOREIGN_HOST}:{other_site}")
    assert "refused" in line and "status=403" in line

    # Control: the same page from a loopback origin connects, so the origin was the reason.
    page.goto(f"http://127.0.0.1:{other_site}/")
    assert page.evaluate("window.result") == {"opened": True, "protocol": "wskit.echo"}


def test_the_demo_page_under_a_foreign_name_is_refused(server, context):
    # DNS rebinding: FOREIGN_HOST resolves to this server; neither its page nor its endpoint may load.
    _backend, proc, port = server
    page = context.new_page()
    response = page.goto(f"http://{FOREIGN_HOST}:{port}/")
    assert response.status == 403
    assert f"--allow-host {FOREIGN_HOST}" in page.inner_text("body")
    line = proc.wait_for_log(f"host {FOREIGN_HOST} not allowed")
    assert "refused" in line and "status=403" in line


@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    return make_self_signed(tmp_path_factory.mktemp("tls"))


def test_demo_page_over_https_uses_wss(server, browser, cert):
    backend, _proc, _port = server
    tls, port = serve(backend, "--ticker-interval", "0.2", "--tls-cert", cert[0], "--tls-key", cert[1])
    # The certificate is self-signed: this context accepts it (as a user clicking through would).
    ctx = browser.new_context(ignore_https_errors=True)
    ctx.set_default_timeout(TIMEOUT_MS)
    try:
        with tls:
            page = open_demo(ctx, "127.0.0.1", port, nick="tls", scheme="https")
            assert page.inner_text("#endpoint") == f"wss://127.0.0.1:{port}/ws"
            join(page, "secure")
            say(page, "over wss")
            page.wait_for_selector("#messages .message .text:text-is('over wss')")
            page.wait_for_function("Number(document.getElementById('ticker-count').textContent) >= 4")
            assert page.inner_text("#chat-protocol") == "wskit.chat.v2.json"
            assert page.js_errors == []
    finally:
        ctx.close()
