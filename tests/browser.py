"""Headless Chromium for the browser tests, driven by Playwright's Python package.

Uses the system Chromium (Debian package ``chromium``); Playwright's own
browser downloads are never used. A missing browser is a test failure with a
message saying what to install, not a skip.
"""

from __future__ import annotations

import os
from contextlib import contextmanager

CHROMIUM = os.environ.get("WSKIT_CHROMIUM", "/usr/bin/chromium")

# Hostnames the browser resolves to 127.0.0.1, so tests can give pages
# non-loopback origins without touching /etc/hosts.
SAME_SITE_HOST = "wskit.test"
FOREIGN_HOST = "evil.example.com"

CHROMIUM_ARGS = [
    "--no-sandbox",  # runs as root in CI containers
    "--disable-dev-shm-usage",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
    "--disable-features=HttpsUpgrades,HttpsFirstBalancedModeAutoEnable",
    f"--host-resolver-rules=MAP {SAME_SITE_HOST} 127.0.0.1, MAP {FOREIGN_HOST} 127.0.0.1",
]


class BrowserMissing(RuntimeError):
    pass


def check_browser() -> None:
    """Raise :class:`BrowserMissing` with install instructions when Chromium or Playwright is absent."""
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        raise BrowserMissing(
            f"Chromium not found at {CHROMIUM}: the browser tests need it. "
            "Install it with `apt-get install -y chromium` (or set WSKIT_CHROMIUM to its path). "
            "Do not use `playwright install`."
        )
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as exc:
        raise BrowserMissing(f"the Playwright Python package is missing ({exc}): pip install -e '.[test]'") from exc


@contextmanager
def chromium():
    """One headless Chromium for a whole test module; yields the Playwright ``Browser``."""
    check_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()
