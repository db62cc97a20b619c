"""The MCP tools over a `rag.serve.service.Service`: `search_documents`, `ask`,
`list_documents` (what they return: `rag.serve.passages`). Served by `rag.serve.mcp_server`
over stdio and streamable HTTP; imported only there, since `mcp` takes a second to import.
"""

from __future__ import annotations

import contextlib

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import BaseModel, Field

from rag.serve.passages import DocumentInfo, Passage, answer_json, documents, passages
from rag.serve.service import Conversation

STDIO_CALLER = "stdio"  # whoever started `rag mcp` can read the index's files anyway
MAX_TOP_K = 50

INSTRUCTIONS = (
    "检索并回答本机构文档中的问题。先用 search_documents 找相关段落，或用 ask 直接得到带 [n] "
    "引用的回答；refused 为 true 表示文档中没有依据，不要自行编造。list_documents 列出知识库中的文档。"
)


class SearchOutput(BaseModel):
    knowledge_base: str
    query: str
    passages: list[Passage]


class Citation(BaseModel):
    n: int
    doc_id: str
    title: str
    location: str
    text: str
    score: float | None


class AskOutput(BaseModel):
    knowledge_base: str
    answer: str = Field(description="带 [n] 引用标记的回答")
    refused: bool = Field(description="true：文档中没有依据，answer 是拒答说明")
    short_answer: str | None = None
    confidence: str = ""
    citations: list[Citation]


class DocumentsOutput(BaseModel):
    knowledge_base: str
    documents: list[DocumentInfo]


def _caller(ctx: Context | None):
    """Who calls: over HTTP the key's name the API's key check left on the request;
    over stdio the local user."""
    try:
        request = ctx.request_context.request if ctx is not None else None
    except ValueError:
        request = None
    state = getattr(request, "state", None)
    return getattr(state, "caller", None) or STDIO_CALLER


@contextlib.contextmanager
def _tool_errors():
    """Any failure as a tool error the caller may read (`public_error`): our own errors
    in Chinese with paths hidden, anything else as a reference number in the log."""
    from rag.serve.public import public_error

    try:
        yield
    except ToolError:
        raise
    except Exception as e:  # noqa: BLE001 -- every failure reaches the caller as text
        raise ToolError(public_error(e)) from None


def build_server(service) -> MCPServer:
    """An MCP server whose tools read the knowledge bases of `service`
    (a `rag.serve.service.Service`)."""
    server = MCPServer("rag", instructions=INSTRUCTIONS, version="0.1.0")
    read_only = ToolAnnotations(readOnlyHint=True, openWorldHint=False)

    @server.tool(annotations=read_only)
    async def search_documents(
        query: str,
        knowledge_base: str | None = None,
        top_k: int = Field(default=5, ge=1, le=MAX_TOP_K),
        ctx: Context = None,
    ) -> SearchOutput:
        """检索知识库中与 query 最相关的段落：每段带相关度 score（0–1）、文档 doc_id、标题、
        位置（页、工作表行）和原文。knowledge_base 省略时用默认知识库。"""
        with _tool_errors():
            kb = service.knowledge_base(knowledge_base, _caller(ctx))
            hits, scores = await service.search(kb.system, query, top_k)
            return SearchOutput(
                knowledge_base=kb.name, query=query, passages=passages(kb.system, hits, scores)
            )

    @server.tool(annotations=read_only)
    async def ask(
        question: str, knowledge_base: str | None = None, ctx: Context = None
    ) -> AskOutput:
        """根据知识库回答 question：answer 带 [n] 引用标记，citations 是被引用的段落；
        refused 为 true 表示文档中没有依据。"""
        with _tool_errors():
            caller = _caller(ctx)
            kb = service.knowledge_base(knowledge_base, caller)
            conv = Conversation(question, question)
            ans = await service.answer(conv, system=kb.system, caller=caller)
            return AskOutput(knowledge_base=kb.name, **answer_json(kb.system, ans))

    @server.tool(annotations=read_only)
    def list_documents(knowledge_base: str | None = None, ctx: Context = None) -> DocumentsOutput:
        """列出知识库中的文档（最近入库的在前）：doc_id、标题、日期、类型、篇幅、片段数、来源、
        发文字号与发文机关。"""
        with _tool_errors():
            kb = service.knowledge_base(knowledge_base, _caller(ctx))
            return DocumentsOutput(knowledge_base=kb.name, documents=documents(kb.library))

    return server
