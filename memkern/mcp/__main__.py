"""``python -m memkern.mcp``: run the MCP server (see ``memkern.mcp.server.main``)."""

from memkern.mcp.server import main

main()
