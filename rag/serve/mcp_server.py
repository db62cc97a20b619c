"""The knowledge base as MCP tools (`rag.serve.mcp_tools`), with the official `mcp` package.

    rag mcp [--index DIR] [--config FILE]   # stdio: an assistant starts it as a subprocess
    rag serve ...                           # the same tools over streamable HTTP at /mcp

Tools: `search_documents(query, knowledge_base?, top_k?)` returns passages with their
relevance (0..1), document, title, location and offsets; `ask(question, knowledge_base?)`
the answer with `[n]` markers, `refused` and the cited passages; `list_documents
(knowledge_base?)` the documents. Over HTTP /mcp takes the same `Authorization: Bearer
KEY` as the other APIs (checked before the request reaches MCP, as are the rate and body
limits), and the caller's key decides which knowledge bases it may use
(`rag.serve.service.Service.knowledge_base`). A failure is a tool error in Chinese,
never a traceback or a server path.

This module imports `mcp` only when a server is built: the `rag` command registers
`rag mcp` from here on every start.
"""

from __future__ import annotations

import argparse
import contextlib

MCP_PATH = "/mcp"
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def mount_mcp(app, service, host: str = "127.0.0.1"):
    """Serve the tools over streamable HTTP at `/mcp` of the FastAPI `app`.

    Stateless: each request stands alone, so any number of clients need no session
    state. On a loopback address the SDK also checks the Host and Origin headers
    (DNS rebinding: a web page must not reach a key-less local server through its own
    name); elsewhere every request needs a key, which a browser page cannot send.
    """
    from mcp.server.transport_security import TransportSecuritySettings

    from rag.serve.mcp_tools import build_server

    server = build_server(service)
    security = None
    if host in LOOPBACK:
        origins = ["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"]
        security = TransportSecuritySettings(
            allowed_hosts=["127.0.0.1:*", "localhost:*", "[::1]:*"],
            allowed_origins=origins + list(service.system.settings.cors_origins),
        )
    sub = server.streamable_http_app(
        streamable_http_path=MCP_PATH,
        stateless_http=True,
        json_response=True,  # the tools answer once: no stream to keep open
        transport_security=security,
        host=host,
    )
    app.router.routes.extend(sub.routes)  # /mcp itself: a mount would answer at /mcp/
    outer = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(a):
        async with server.session_manager.run():
            async with outer(a) as state:
                yield state

    app.router.lifespan_context = lifespan
    return server


# ---------------------------------------------------------------------------- rag mcp
def cmd_mcp(args) -> int:
    """`rag mcp`: load the index as `rag ask` does and serve the tools over stdio."""
    import sys

    from rag.config import Settings
    from rag.serve.mcp_tools import build_server
    from rag.serve.service import Service
    from rag.system import load_system

    settings = Settings.load(args.config, index_dir=args.index, embed_model=args.embed_model)
    system = load_system(settings)
    system.embedder.embed_query("预热")  # the first tool call should not wait for the model
    print(f"rag mcp: serving {system.settings.index_path} over stdio", file=sys.stderr)
    build_server(Service(system, no_auth=True)).run("stdio")
    return 0


def add_mcp_parser(sub, common: argparse.ArgumentParser) -> None:
    """Register `rag mcp` on the CLI's subcommands."""
    p = sub.add_parser(
        "mcp", parents=[common], help="serve the index as MCP tools over stdio (for assistants)"
    )
    p.set_defaults(func=cmd_mcp)
