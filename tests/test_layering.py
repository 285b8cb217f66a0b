"""The layering as built: dependencies point one way, and applications go through wskit.Connection.

core (settings, negotiation, compression, serializers, hub, Connection/Handler, ...)
  <- backend adapters (wskit.twisted, wskit.asyncio, wskit.runner)
  <- applications (wskit.protocols, wskit.clients)
  <- glue (CLI, options, twistd plugin)
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from support import ROOT, python_env

CORE = "core"
ADAPTER = "adapter"
APP = "app"
GLUE = "glue"
RANK = {CORE: 0, ADAPTER: 1, APP: 2, GLUE: 3}

ADAPTERS = {"wskit.twisted", "wskit.asyncio", "wskit.runner", "wskit.workers", "wskit.metrics_http"}
GLUE_MODULES = {"wskit.cli", "wskit.options", "wskit.__main__", "twisted.plugins.wskit_plugin"}
# The only application modules that may name a backend: the backend-specific halves of the client,
# and the interactive client, a whole program run on the backend the user picks.
BACKEND_HALVES = {"wskit.clients._twisted": {"wskit.twisted"}, "wskit.clients._asyncio": {"wskit.asyncio"},
                  "wskit.clients.interactive": {"wskit.twisted", "wskit.asyncio"}}


def module_name(path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[0] in ("protocols", "clients"):
        parts = ["wskit", *parts]
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def layer(name: str) -> str | None:
    if not (name == "wskit" or name.startswith("wskit.") or name == "twisted.plugins.wskit_plugin"):
        return None
    if name in GLUE_MODULES:
        return GLUE
    if name in ADAPTERS:
        return ADAPTER
    if name.startswith(("wskit.protocols", "wskit.clients")):
        return APP
    return CORE


def sources():
    for folder in ("wskit", "protocols", "clients"):
        yield from sorted((ROOT / folder).rglob("*.py"))
    yield ROOT / "twisted" / "plugins" / "wskit_plugin.py"


def imports_of(path, name: str, read=lambda p: p.read_text()) -> set[str]:
    """Every wskit module ``path`` imports, at the top or inside functions, resolved to absolute names."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(read(path), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.add(module)
            # "from . import twisted" imports a submodule
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return {m for m in found if layer(m) is not None and _is_module(m)}


def _is_module(name: str) -> bool:
    if name == "wskit":
        return True
    parts = name.split(".")
    if parts[:2] == ["wskit", "protocols"]:
        base = ROOT / "protocols"
        parts = parts[2:]
    elif parts[:2] == ["wskit", "clients"]:
        base = ROOT / "clients"
        parts = parts[2:]
    elif parts[0] == "wskit":
        base = ROOT / "wskit"
        parts = parts[1:]
    else:
        return name == "twisted.plugins.wskit_plugin"
    target = base.joinpath(*parts) if parts else base
    return target.with_suffix(".py").is_file() or (target / "__init__.py").is_file()


def violations(read=lambda p: p.read_text()) -> list[str]:
    found = []
    for path in sources():
        name = module_name(path)
        own = layer(name)
        for imported in imports_of(path, name, read):
            theirs = layer(imported)
            if imported == name or imported == "wskit" or name == "wskit":
                continue  # the package root re-exports public names lazily
            if RANK[theirs] > RANK[own]:
                found.append(f"{name} ({own}) imports {imported} ({theirs})")
            elif own == APP and theirs == ADAPTER and imported != "wskit.runner":
                if imported not in BACKEND_HALVES.get(name, ()):
                    found.append(f"{name} (application) names the backend {imported}")
    return found


def test_dependencies_point_one_way():
    assert violations() == []


def reading_with(target: Path, extra: str):
    """A file reader for the checks below that sees ``extra`` appended to ``target``."""
    return lambda path: path.read_text() + (extra if path == target else "")


def test_the_layering_check_sees_a_violation():
    # The check itself can fail: a core module importing a shipped protocol is reported.
    read = reading_with(ROOT / "wskit" / "settings.py", "\nfrom wskit.protocols import chat\n")
    assert "wskit.settings (core) imports wskit.protocols.chat (app)" in violations(read)


def test_importing_wskit_imports_no_backend_client_or_protocol():
    code = (
        "import sys, wskit\n"
        "wskit.ServerSettings, wskit.Connection, wskit.WskitError\n"
        "bad = [m for m in sys.modules if m.startswith(('wskit.clients', 'wskit.protocols', 'wskit.twisted',"
        " 'wskit.asyncio', 'twisted.internet.reactor', 'asyncio.base_events')) or m == 'autobahn.twisted']\n"
        "print(bad)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=python_env(),
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


APPLICATION_FILES = [
    *sorted((ROOT / "protocols").glob("*.py")),
    *sorted((ROOT / "clients").glob("*.py")),
    ROOT / "wskit" / "broadcast.py",
    ROOT / "wskit" / "hub.py",
]
# Autobahn's protocol methods and wskit's private protocol state: application code uses wskit.Connection.
FORBIDDEN = ("sendMessage", "sendClose", "sendCloseFrame", "sendPreparedMessage", "dropConnection",
             "sendPing", "_handler_failed", "_compress_threshold", "dataBuffer", "_tempDataLen",
             "_writing_paused", "_paused_bytes", "websocket_protocol_in_use")


@pytest.mark.parametrize("path", APPLICATION_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_application_code_goes_through_the_connection(path):
    tree = ast.parse(path.read_text(), str(path))
    used = sorted({node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)
                   and node.attr in FORBIDDEN})
    assert used == []


# Twisted's private write-buffer state. Flow control comes from the transport's
# producer signals, never from these; the one reader is the Twisted adapter's
# write path, which sends at once only when nothing is queued ahead of a write.
TWISTED_BUFFER_STATE = ("dataBuffer", "_tempDataBuffer", "_tempDataLen")
BUFFER_READER = (ROOT / "wskit" / "twisted.py", "_write_out")


def twisted_buffer_readers(read=lambda path: path.read_text()) -> list[str]:
    """Where wskit, protocols/ or clients/ touch Twisted's write buffers, other than BUFFER_READER."""
    found = []
    for folder in ("wskit", "protocols", "clients"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            tree = ast.parse(read(path), str(path))
            allowed = set()
            if path == BUFFER_READER[0]:
                for node in ast.walk(tree):
                    if isinstance(node, ast.FunctionDef) and node.name == BUFFER_READER[1]:
                        allowed |= {id(n) for n in ast.walk(node)}
            found += [f"{path.relative_to(ROOT)}:{node.lineno} {node.attr}" for node in ast.walk(tree)
                      if isinstance(node, ast.Attribute) and node.attr in TWISTED_BUFFER_STATE
                      and id(node) not in allowed]
    return found


def test_no_module_reads_twisted_transport_buffers():
    assert twisted_buffer_readers() == []


def test_the_buffer_check_sees_a_reader_outside_the_write_path():
    read = reading_with(ROOT / "wskit" / "protocol.py", "\ndef peek(transport):\n    return transport._tempDataLen\n")
    (found,) = twisted_buffer_readers(read)
    assert found.startswith("wskit/protocol.py:") and found.endswith("_tempDataLen")
