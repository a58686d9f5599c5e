"""`qa serve-shard`: one index served as a shard of an index that lives on another machine (one
made by ``qa index --join``, which `qa ask`, `qa serve` and `qa evaluate` open as any other).

The shard server holds no reader and no question encoder: questions come to it as analysed
terms (BM25) and vectors (dense), computed once by the machine that asks. BM25 is scored with
the statistics of the whole collection that the asking machine gathered from every shard
(:class:`qa.index.shards.BM25Stats`), so the scores are those of one index. Every answer names
the build served (``build_id``); when ``qa index`` replaces the index here, the next request is
answered from the new build, and the asking machine refuses it until the shards are joined again.
The client is :mod:`qa.index.remote`.
"""

from __future__ import annotations

import hmac
import threading
from pathlib import Path
from typing import Any, Optional

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException

import qa
from qa.errors import QAError
from qa.index import Index, check_index
from qa.index.shards import BM25Stats
from qa.index.where import parse_where

OPEN_PATHS = ("/health",)


class Ids(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ids: list[int]


class Terms(BaseModel):
    model_config = ConfigDict(extra="forbid")
    terms: list[str]


class Stats(BaseModel):
    passages: int
    average_length: Optional[float]
    holding: dict[str, int]


class BM25Query(BaseModel):
    model_config = ConfigDict(extra="forbid")
    counts: dict[str, int]
    stats: Stats
    ids: list[int] = []


class BM25Top(BaseModel):
    model_config = ConfigDict(extra="forbid")
    queries: list[BM25Query]
    k: int


class BM25At(BaseModel):
    model_config = ConfigDict(extra="forbid")
    queries: list[BM25Query]


class DenseQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    queries: list[list[float]]
    k: int


class DocumentId(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str


class Content(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sha256: str


class DocumentIds(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ids: list[str]


class Where(BaseModel):
    model_config = ConfigDict(extra="forbid")
    where: list[str]


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": {"status": status, "message": message}}, status_code=status)


class ServedShard:
    """The index served, opened again (search parts loaded) when ``qa index`` replaces it."""

    def __init__(self, path: Path):
        self.path = path
        self.index = Index(path).load_search_parts()
        self._lock = threading.Lock()

    def current(self) -> Index:
        index = self.index
        if index.is_current():
            return index
        with self._lock:
            if not self.index.is_current():
                self.index = self.index.reopen().load_search_parts()
            return self.index


def create_shard_app(index_path: str | Path, token: str | None = None) -> FastAPI:
    """The shard server's application over the index at ``index_path`` (opened now: a missing or
    damaged index is a :class:`QAError` before anything listens)."""
    served = ServedShard(Path(index_path))
    app = FastAPI(title="qa shard", version=qa.__version__, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.served = served

    @app.middleware("http")
    async def guard(request: Request, call_next):
        if token and request.url.path not in OPEN_PATHS:
            scheme, _, sent = request.headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(sent.encode(), token.encode()):
                return _error(401, "a token is required: send the header 'Authorization: Bearer TOKEN'")
        return await call_next(request)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        return _error(exc.status_code, f"no such path: {request.url.path}" if exc.status_code == 404 else str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(x) for x in first.get("loc", ()) if x != "body")
        return _error(400, f"bad request: {where}: {first.get('msg')}" if where else "bad request")

    @app.exception_handler(QAError)
    async def refused(request: Request, exc: QAError):
        return _error(400, str(exc))

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception):
        return _error(500, f"internal error ({type(exc).__name__}); the shard server's log has the details")

    def answer(index: Index, **content: Any) -> dict[str, Any]:
        return {"build_id": index.build_id, **content}

    def checked(index: Index, ids: list[int]) -> list[int]:
        if any(not 0 <= i < len(index) for i in ids):
            raise QAError(f"passage numbers of this shard lie in 0..{len(index) - 1}")
        return ids

    def bm25(index: Index, query: BM25Query):
        stats = BM25Stats(query.stats.passages, query.stats.average_length, query.stats.holding)
        return index.bm25_part.scores(query.counts, stats)

    @app.get("/health")
    def health():
        return {"status": "ok"}

    @app.get("/shard")
    def shard():
        index = served.current()
        manifest = {key: index.manifest[key] for key in ("counts", "passages", "bm25", "dense", "generation") if key in index.manifest}
        part = index.bm25_part
        return answer(index, manifest=manifest, bm25={"passages": part.passages, "total_length": part.total_length},
                      qa_version=qa.__version__)

    @app.post("/shard/passages")
    def passages(body: Ids):
        index = served.current()
        return answer(index, passages=[p.as_dict() for p in index.store.get(checked(index, body.ids))])

    @app.post("/shard/passages/with-content")
    def passages_with_content(body: Content):
        index = served.current()
        return answer(index, passages=[p.as_dict() for p in index.store.passages_with_content(body.sha256)])

    @app.post("/shard/document")
    def document(body: DocumentId):
        index = served.current()
        found = index.store.document(body.id)
        record = None if found is None else {"id": found.id, "text": found.text, "title": found.title, "source": found.source,
                                              "metadata": found.metadata}
        return answer(index, document=record)

    @app.post("/shard/metadata")
    def metadata(body: DocumentIds):
        index = served.current()
        return answer(index, metadata=index.store.metadata(body.ids))

    @app.post("/shard/passages/where")
    def passages_where(body: Where):
        index = served.current()
        return answer(index, ids=index.store.passages_where(parse_where(body.where)).tolist())

    @app.post("/shard/metadata/fields")
    def metadata_fields():
        index = served.current()
        return answer(index, fields=sorted(index.store.metadata_fields()))

    @app.post("/shard/vectors")
    def vectors(body: Ids):
        index = served.current()
        rows = np.asarray(checked(index, body.ids), dtype=np.int64)
        return answer(index, vectors=np.asarray(index.vectors[rows], dtype=np.float32).tolist())

    @app.post("/shard/dense")
    def dense(body: DenseQuery):
        index = served.current()
        dim = int(index.manifest["dense"]["dim"])
        if any(len(q) != dim for q in body.queries) or not 1 <= body.k:
            raise QAError(f"queries are vectors of {dim} values, k at least 1")
        if not body.queries:
            return answer(index, scores=[], ids=[])
        scores, ids = index.faiss.search(np.asarray(body.queries, dtype=np.float32), min(body.k, len(index)))
        return answer(index, scores=scores.tolist(), ids=ids.tolist())

    @app.post("/shard/bm25/holding")
    def holding(body: Terms):
        index = served.current()
        return answer(index, holding=index.bm25_part.holding(body.terms))

    @app.post("/shard/bm25/top")
    def bm25_top(body: BM25Top):
        index = served.current()
        results = []
        for query in body.queries:
            scores = bm25(index, query)
            found = [] if scores is None else scores.top(body.k)
            results.append({"ids": [i for i, _ in found], "scores": [s for _, s in found]})
        return answer(index, results=results)

    @app.post("/shard/bm25/at")
    def bm25_at(body: BM25At):
        index = served.current()
        results = []
        for query in body.queries:
            ids = checked(index, query.ids)
            scores = bm25(index, query)
            results.append([0.0] * len(ids) if scores is None else scores.at(ids).tolist())
        return answer(index, scores=results)

    @app.post("/shard/check")
    def check():
        index = served.current()
        return {**check_index(index.path).as_dict(), "build_id": index.build_id}

    return app
