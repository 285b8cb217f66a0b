"""The demo page against ``wskit serve --auth-secret`` in headless Chromium, on both backends.

The page takes its token from the URL fragment (#token=..., never sent to the
server), drops it from the address bar and passes it on as ?token= on the
WebSocket URL; the server names the chat user after the token.
"""

from __future__ import annotations

import pytest
from browser import BrowserMissing, check_browser, chromium
from support import BACKENDS, serve

from wskit.auth import issue_token

SECRET = "the-demo-secret-for-browser-tests-0123456789abcdef"
TIMEOUT_MS = 15_000


@pytest.fixture(scope="module")
def browser():
    try:
        check_browser()
    except BrowserMissing as exc:
        pytest.fail(str(exc), pytrace=False)  # a missing browser fails the run; it is never a skip
    with chromium() as instance:
        yield instance


@pytest.fixture(scope="module", params=BACKENDS)
def server(request):
    proc, port = serve(request.param, "--auth-secret", SECRET, "--ticker-interval", "0.2")
    with proc:
        yield proc, port


@pytest.fixture
def context(browser):
    ctx = browser.new_context(viewport={"width": 1280, "height": 800})
    ctx.set_default_timeout(TIMEOUT_MS)
    yield ctx
    ctx.close()


def test_demo_page_with_a_token(server, context):
    proc, port = server
    token = issue_token(SECRET, "ann", name="Ann", permissions={"join": ["demo-*"], "subscribe": ["ticks.*"]})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"http://127.0.0.1:{port}/?nick=mallory#token={token}")
    assert token not in page.url  # out of the address bar (and of the history)
    page.wait_for_function("Number(document.getElementById('ticker-count').textContent) >= 4")
    page.fill("#room", "demo-room")
    page.click("#join")
    page.wait_for_selector("#members-room:text-is('demo-room')")
    assert page.locator("#members li").all_inner_texts() == ["Ann"]  # the token's name, not ?nick=
    page.fill("#say-text", "signed in")
    page.press("#say-text", "Enter")
    page.wait_for_selector("#messages .message:has(.from:text-is('Ann')) .text:text-is('signed in')")
    page.fill("#room", "lobby")  # not granted
    page.click("#join")
    page.wait_for_selector("#chat-status.error:has-text('forbidden')")
    assert errors == []
    assert not [line for line in proc.lines if token in line or token.split(".")[2] in line]


def test_demo_page_without_a_token_says_so(server, context):
    _proc, port = server
    page = context.new_page()
    page.goto(f"http://127.0.0.1:{port}/")
    page.wait_for_selector("#ticker-status.error:has-text('paste one above')")
