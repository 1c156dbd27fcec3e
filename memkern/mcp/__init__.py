"""memkern as an MCP server: any MCP client (an agent, an IDE, a chat app) uses memkern directly.

The tools are the operations of the table (``memkern.api.table``) that have an MCP entry,
named as the operations, with their input models as schemas (``memkern.mcp.tools``); the
server, its two resources and its transports are in ``memkern.mcp.server``. ``memkern
mcp`` and ``python -m memkern.mcp`` run it. Needs the ``mcp`` extra (the MCP Python SDK,
version 2): ``pip install 'memkern[mcp]'``.
"""

from __future__ import annotations

try:
    import mcp.server.mcpserver  # noqa: F401  (the SDK, checked once with a useful message)
except ImportError as _exc:  # pragma: no cover - depends on the environment
    raise ImportError("memkern's MCP server needs the MCP Python SDK, version 2 (mcp>=2.3): "
                      "pip install 'memkern[mcp]'") from _exc

from memkern.mcp.server import build_server, http_app, main, serve

__all__ = ["build_server", "http_app", "main", "serve"]
