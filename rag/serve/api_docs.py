"""Search and documents over HTTP, so a script can use and manage a knowledge base:

- `POST /api/search`: `{"query", "top_k"?, "knowledge_base"?, "filters"?}` -> the hits,
  each with its relevance, document, title, location, date, file and offsets.
- `GET /api/documents?knowledge_base=`: the documents, most recently indexed first.
- `POST /api/documents?knowledge_base=` (multipart, one or more `files`): each file
  stored and ingested as the chat UI's upload does (`rag.serve.ui.library.Library`),
  with one result per file (per record for JSON lines); a failure names its reason.
- `DELETE /api/documents?doc_id=A&doc_id=B`: removes documents, one result per id.

`filters` (here and on `/v1/chat/completions`) keeps documents by id, date and metadata:
`{"doc_ids": [...], "date_from": "2023", "date_to": "2023-06", "doc_number":
"青政发〔2023〕5号", "issuer": "青岛市人民政府", "where": {"FIELD": "VALUE"}}`, built as
the CLI's flags are (`rag.serve.filters.make_filters`). Keys, limits and errors are the
app's (`rag.serve.api`); every route asks `Service.knowledge_base` for what it reads.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from pathlib import Path

from fastapi import APIRouter, File, Query, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from rag.serve.filters import make_filters
from rag.serve.passages import documents, passages
from rag.types import Filters

router = APIRouter(prefix="/api", tags=["检索与文档管理"])
MAX_TOP_K = 50


class FilterSpec(BaseModel):
    """Which documents may be used (every field optional; all given must hold)."""

    model_config = ConfigDict(extra="forbid")
    doc_ids: list[str] | None = Field(default=None, description="只用这些文档（doc_id）")
    date_from: str | None = Field(default=None, description="文档日期不早于，如 2023、2023-05")
    date_to: str | None = Field(default=None, description="文档日期不晚于（含），如 2023")
    doc_number: str | None = Field(default=None, description="发文字号，如 青政发〔2023〕5号")
    issuer: str | None = Field(default=None, description="发文机关")
    where: dict[str, str] | None = Field(default=None, description="元数据字段 = 值")

    def build(self) -> Filters:
        return make_filters(
            doc_ids=self.doc_ids,
            date_from=self.date_from,
            date_to=self.date_to,
            doc_number=self.doc_number,
            issuer=self.issuer,
            where=self.where,
            names={f: f"filters.{f}" for f in ("date_from", "date_to", "where")},
        )


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    query: str = Field(min_length=1)
    top_k: int = Field(default=5, ge=1, le=MAX_TOP_K)
    knowledge_base: str | None = None
    filters: FilterSpec | None = None


def _service(request: Request):
    return request.app.state.service


@router.post("/search", summary="检索：返回相关段落（相关度、文档、位置）")
async def search(req: SearchRequest, request: Request) -> dict:
    service = _service(request)
    kb = service.knowledge_base(req.knowledge_base, request.state.caller)
    filters = req.filters.build() if req.filters else None
    hits, scores = await service.search(kb.system, req.query, req.top_k, filters)
    return {
        "knowledge_base": kb.name,
        "query": req.query,
        "hits": [p.to_json() for p in passages(kb.system, hits, scores)],
    }


@router.get("/documents", summary="列出知识库中的文档")
def list_documents(request: Request, knowledge_base: str | None = None) -> dict:
    kb = _service(request).knowledge_base(knowledge_base, request.state.caller)
    docs = documents(kb.library)
    return {"knowledge_base": kb.name, "documents": [d.to_json() for d in docs]}


@router.post("/documents", summary="上传并入库一个或多个文件（每个文件一条结果）")
async def upload_documents(
    request: Request,
    files: list[UploadFile] = File(..., description="要入库的文件，可多个"),
    knowledge_base: str | None = None,
):
    service = _service(request)
    caller = request.state.caller
    kb = service.knowledge_base(knowledge_base, caller, edit=True)  # 403 for a reader
    mb = sum(f.size or 0 for f in files) / 2**20
    if not service.uploads.allow(f"key:{caller}", len(files), mb):
        wait = max(math.ceil(service.uploads.retry_after(f"key:{caller}")), 1)
        error = {"message": service.uploads.message(), "type": "rate_limit_error",
                 "param": None, "code": "rate_limit_exceeded"}  # fmt: skip
        return JSONResponse({"error": error}, 429, headers={"Retry-After": str(wait)})
    results = await run_in_threadpool(_ingest_uploads, kb, files, caller)
    return {"knowledge_base": kb.name, "results": results}


def _ingest_uploads(kb, files: list[UploadFile], caller) -> list[dict]:
    """Copy the request's files beside the index (not the system temp folder) and ingest
    them through the knowledge base's `Library`, as the chat UI does."""
    from rag.serve.ui.library import data_dir

    root = data_dir(kb.system.settings)
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".api-upload-", dir=root) as tmp:
        pairs = []
        for i, f in enumerate(files):
            path = Path(tmp) / f"{i:04d}"
            with open(path, "wb") as out:
                f.file.seek(0)
                shutil.copyfileobj(f.file, out)
            pairs.append((path, f.filename or "file"))
        done = kb.library.add_files(pairs, log=lambda m: None, user=str(caller))
    return [
        {
            "file": r.name,
            "status": r.status,
            "reason": r.reason,
            "doc_id": r.doc_id,
            "chunks": r.chunks,
        }  # fmt: skip
        for r in done
    ]


@router.delete("/documents", summary="从知识库删除文档（按 doc_id，可多个）")
def delete_documents(
    request: Request,
    doc_id: list[str] = Query(..., min_length=1, description="要删除的文档 doc_id，可重复"),
    knowledge_base: str | None = None,
) -> dict:
    kb = _service(request).knowledge_base(knowledge_base, request.state.caller, edit=True)
    order = {d: i for i, d in reversed(list(enumerate(doc_id)))}
    done = sorted(kb.library.remove(doc_id), key=lambda r: order.get(r.doc_id, len(order)))
    return {
        "knowledge_base": kb.name,
        "results": [
            {"doc_id": r.doc_id, "title": r.name, "status": r.status, "reason": r.reason}
            for r in done
        ],
    }
