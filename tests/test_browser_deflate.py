"""permessage-deflate with Chromium while the server hibernates its zlib contexts.

Chromium keeps its deflate contexts (context takeover) across the whole
conversation; the server frees its own after every message (or after a short
idle delay) and rebuilds them from the saved windows. Every echo must come
back exactly, and compressed messages keep referring to earlier ones.
"""

from __future__ import annotations

import pytest
from browser import BrowserMissing, check_browser, chromium
from support import BACKENDS, ServerProcess

from wskit.compression import HIBERNATE_ENV

TIMEOUT_MS = 30_000
MODES = {"every-message": "message", "idle-0.3s": "0.3"}
SERVERS = [(backend, mode) for backend in BACKENDS for mode in MODES]


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


@pytest.fixture(scope="module", params=SERVERS, ids=[f"{b}-{m}" for b, m in SERVERS])
def server(request):
    backend, mode = request.param
    proc = ServerProcess(["--backend", backend, "--port", "0", "--ticker-interval", "0"],
                         env={HIBERNATE_ENV: MODES[mode]}).start()
    with proc:
        yield mode, proc.port


ECHO_SCRIPT = """async ({url, pauseMs}) => {
    const ws = new WebSocket(url, ['wskit.echo']);
    ws.binaryType = 'arraybuffer';
    await new Promise((resolve, reject) => { ws.onopen = resolve; ws.onerror = () => reject(new Error('open failed')); });
    const inbox = [];
    let waiting = null;
    ws.onmessage = (event) => { inbox.push(event.data); if (waiting) { const w = waiting; waiting = null; w(); } };
    const next = () => inbox.length ? Promise.resolve(inbox.shift())
                                     : new Promise((resolve) => { waiting = () => resolve(inbox.shift()); });
    const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
    let seed = 7;
    const rand = (n) => { seed = (seed * 1103515245 + 12345) % 2147483648; return seed % n; };
    const words = ['price', 'tick', 'chat', 'room', 'hello', 'world', 'deflate', 'window', 'json', 'event'];
    const text = (n) => { let s = ''; while (s.length < n) s += words[rand(words.length)] + ' '; return s.slice(0, n); };
    const sizes = [20, 300, 300, 5000, 40, 1200, 300, 70000, 300, 10, 800, 300];
    let mismatches = 0, count = 0;
    for (let round = 0; round < 3; round++) {
        for (const size of sizes) {
            const binary = rand(4) === 0;
            const payload = binary ? new TextEncoder().encode(text(size)).buffer : text(size);
            ws.send(payload);
            const echo = await next();
            const same = binary
                ? (echo instanceof ArrayBuffer && new Uint8Array(echo).join(',') === new Uint8Array(payload).join(','))
                : echo === payload;
            if (!same) mismatches++;
            count++;
            if (pauseMs && rand(3) === 0) await sleep(pauseMs);
        }
    }
    const extensions = ws.extensions;
    ws.close();
    return {mismatches, count, extensions};
}"""


def test_chromium_echo_across_hibernations(server, browser):
    mode, port = server
    context = browser.new_context()
    context.set_default_timeout(TIMEOUT_MS)
    try:
        page = context.new_page()
        page.goto(f"http://127.0.0.1:{port}/")
        # With the idle mode, some pauses outlast the delay (0.3 s, checked in 0.2 s buckets).
        result = page.evaluate(ECHO_SCRIPT, {"url": f"ws://127.0.0.1:{port}/ws",
                                             "pauseMs": 900 if mode == "idle-0.3s" else 0})
    finally:
        context.close()
    assert result["extensions"].startswith("permessage-deflate"), result
    assert result["count"] == 36 and result["mismatches"] == 0, result
