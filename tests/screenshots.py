"""Regenerate the demo page screenshots in docs/ (headless Chromium, a real wskit server).

    python tests/screenshots.py [--backend twisted|asyncio]

Writes docs/demo-page.png (one tab) and docs/demo-two-tabs.png (two chat tabs side by side).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from browser import chromium  # noqa: E402
from support import ROOT, serve  # noqa: E402

DOCS = ROOT / "docs"

TWO_TABS = """<!doctype html><meta charset="utf-8">
<style>
  body { margin: 0; background: #0e131c; display: flex; gap: 16px; padding: 16px; }
  figure { margin: 0; display: flex; flex-direction: column; gap: 6px; }
  figcaption { color: #aab4c5; font: 13px system-ui, sans-serif; }
  iframe { width: 1000px; height: 790px; border: 0; border-radius: 8px; background: #fff; }
</style>
<figure><figcaption>tab 1: alice</figcaption><iframe id="a" src="%(url)s?nick=alice&room=lobby"></iframe></figure>
<figure><figcaption>tab 2: bob</figcaption><iframe id="b" src="%(url)s?nick=bob&room=lobby"></iframe></figure>
"""

CONVERSATION = [
    ("a", "hi bob! this is wskit's demo page"),
    ("b", "hey alice: chat on wskit.chat.v2.json, deflate negotiated"),
    ("a", "and the ticker on the right is pub/sub, fed by the server"),
    ("b", "one port for the page and the WebSocket, nice"),
]


def chat_in_two_frames(page) -> None:
    frames = {name: page.frame_locator(f"#{name}") for name in ("a", "b")}
    for name in ("a", "b"):
        frames[name].locator("#join").click()
        frames[name].locator("#members-room:text-is('lobby')").wait_for()
    frames["a"].locator("#members li:text-is('bob')").wait_for()
    for n, (name, text) in enumerate(CONVERSATION, 1):
        frames[name].locator("#say-text").fill(text)
        frames[name].locator("#say-text").press("Enter")
        for other in ("a", "b"):
            frames[other].locator("#messages .message").nth(n - 1).wait_for()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", default="twisted")
    args = parser.parse_args()
    proc, port = serve(args.backend, "--ticker-interval", "0.5")
    url = f"http://127.0.0.1:{port}/"
    with proc, chromium() as browser:
        context = browser.new_context(viewport={"width": 2064, "height": 840}, device_scale_factor=1)
        context.set_default_timeout(20_000)
        page = context.new_page()
        page.set_content(TWO_TABS % {"url": url})
        chat_in_two_frames(page)
        # Let the sparklines fill up.
        frame = page.locator("#a").element_handle().content_frame()
        try:
            frame.wait_for_function("Number(document.getElementById('ticker-count').textContent) >= 100")
        finally:
            page.screenshot(path=str(DOCS / "demo-two-tabs.png"))

        single = context.new_page()
        single.set_viewport_size({"width": 1280, "height": 800})
        single.goto(url + "?nick=carol&room=lobby&autojoin")
        single.locator("#messages .message").nth(len(CONVERSATION) - 1).wait_for()
        single.wait_for_function("Number(document.getElementById('ticker-count').textContent) >= 40")
        single.screenshot(path=str(DOCS / "demo-page.png"))
    print("wrote", DOCS / "demo-two-tabs.png", "and", DOCS / "demo-page.png")


if __name__ == "__main__":
    main()
