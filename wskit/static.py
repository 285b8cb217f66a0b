"""Where the demo page and its assets live (shipped inside the wheel)."""

from __future__ import annotations

import mimetypes
import os

PACKAGE_STATIC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")


def static_root(static_dir: str | None = None) -> str:
    """The folder served at ``/``: ``static_dir`` if given, else wskit's demo page."""
    root = static_dir or PACKAGE_STATIC
    if not os.path.isdir(root):
        raise FileNotFoundError(f"static folder {root!r} does not exist")
    return root


def resolve_static_file(root: str, request_path: str) -> str | None:
    """Map a URL path to a file under ``root``; None when absent or outside it."""
    rel = request_path.split("?", 1)[0].lstrip("/") or "index.html"
    full = os.path.realpath(os.path.join(root, rel))
    if not full.startswith(os.path.realpath(root) + os.sep):
        return None
    if os.path.isdir(full):
        full = os.path.join(full, "index.html")
    return full if os.path.isfile(full) else None


def content_type(path: str) -> str:
    kind = mimetypes.guess_type(path)[0] or "application/octet-stream"
    if kind.startswith("text/") or kind in ("application/javascript", "application/json"):
        kind += "; charset=utf-8"
    return kind
