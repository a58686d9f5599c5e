"""The HTTP layer of `qa serve` (FastAPI): the routes, their limits, the token, errors as JSON.

Every answer comes from :class:`Service` (the same :class:`Pipeline` as `qa ask`); this module
only checks requests and turns predictions into the JSON of `qa ask --json`.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from dataclasses import dataclass
from importlib import resources
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException
from starlette.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

import qa
from qa.errors import QAError
from qa.index.where import parse_where
from qa.pipeline import DEFAULT_ANSWERS, DEFAULT_TOP_K
from qa.retriever import DEFAULT_RETRIEVER, RETRIEVERS
from qa.server.batcher import Overloaded, Question
from qa.server.metrics import Metrics
from qa.server.service import Service, ServiceOptions

MAX_TOP_K = 100
MAX_ANSWERS = 20
MAX_CONDITIONS = 16
RETRY_AFTER_S = 1
# What anyone may fetch without the token: the page's own files (nothing from the index), liveness,
# and the API's description.
OPEN_PATHS = ("/", "/health", "/docs", "/openapi.json", "/favicon.ico")
STATIC = resources.files("qa.server").joinpath("static")
DOCS_ASSETS = "/docs-assets"


@dataclass(frozen=True)
class ServerSettings:
    token: str | None = None
    cors_origins: tuple[str, ...] = ()
    timeout: float = 30.0
    max_question_chars: int = 1000
    max_body_bytes: int = 16 * 1024


class AskRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    question: str = Field(min_length=1, description="The question.")
    top_k: int = Field(DEFAULT_TOP_K, ge=1, le=MAX_TOP_K, description="Passages to retrieve and read.")
    answers: int = Field(DEFAULT_ANSWERS, ge=1, le=MAX_ANSWERS, description="Answers to return.")
    retriever: str = Field(DEFAULT_RETRIEVER, description=f"One of {', '.join(RETRIEVERS)}.")
    where: list[str] = Field(default_factory=list, max_length=MAX_CONDITIONS,
                             description="Search only the documents that meet all these conditions, each FIELD OP VALUE "
                                         "(OP: = != ~ < <= > >=), e.g. publish_time>=2021 or journal=Lancet*.")


def error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"status": status, "message": message}}, status_code=status, headers=headers)


def create_app(options: ServiceOptions, settings: ServerSettings = ServerSettings(), *, on_ready=None) -> FastAPI:
    """The application; the models load on a thread when it starts (``/ready`` says when, and
    ``on_ready(service)`` is called once they are loaded or have failed to)."""
    metrics = Metrics()
    service = Service(options, on_batch=metrics.observe_batch, on_ready=on_ready)
    metrics.watch(service)

    async def lifespan(app):
        service.start()
        yield
        service.close()

    app = FastAPI(title="qa", version=qa.__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Answers, with evidence, from a document collection.")
    app.state.service = service
    if settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins), allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type"])

    @app.middleware("http")
    async def guard(request: Request, call_next):
        started = time.perf_counter()
        path = request.url.path
        if settings.token and not (path in OPEN_PATHS or path.startswith(("/static/", DOCS_ASSETS + "/"))) and request.method != "OPTIONS":
            sent = request.headers.get("authorization", "")
            scheme, _, token = sent.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(token.encode(), settings.token.encode()):
                response = error(401, "a token is required: send the header 'Authorization: Bearer TOKEN'",
                                 {"WWW-Authenticate": "Bearer"})
                metrics.observe_request(request, response.status_code, time.perf_counter() - started)
                return response
        response = await call_next(request)
        metrics.observe_request(request, response.status_code, time.perf_counter() - started)
        return response

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        message = {404: f"no such path: {request.url.path}", 405: f"{request.method} is not allowed here"}.get(exc.status_code, str(exc.detail))
        return error(exc.status_code, message)

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError):
        return error(400, _describe(exc.errors()))

    @app.exception_handler(ValidationError)
    async def invalid_body(request: Request, exc: ValidationError):
        return error(400, _describe(exc.errors()))

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception):
        return error(500, f"internal error ({type(exc).__name__}); the server log has the details")

    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(str(STATIC.joinpath("index.html")), headers={"Cache-Control": "no-cache"})

    @app.get("/static/{name}", include_in_schema=False)
    async def static(name: str):
        if name not in ("app.js", "style.css"):
            return error(404, f"no such file: {name}")
        return FileResponse(str(STATIC.joinpath(name)), headers={"Cache-Control": "no-cache"})

    # The API's documentation, with Swagger UI's files from the swagger-ui-bundle package (no CDN).
    app.mount(DOCS_ASSETS, StaticFiles(directory=swagger_ui_path), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs():
        return get_swagger_ui_html(openapi_url="/openapi.json", title="qa API", swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css", swagger_favicon_url=f"{DOCS_ASSETS}/favicon-32x32.png")

    @app.get("/health", summary="Liveness: the process answers")
    async def health():
        return {"status": "ok"}

    @app.get("/ready", summary="Readiness: index and models loaded")
    async def ready():
        if service.error:
            return error(503, f"cannot serve: {service.error}")
        if not service.ready:
            return error(503, "loading the index and models", {"Retry-After": str(RETRY_AFTER_S)})
        return {"status": "ready", **_describe_service(service, settings)}

    @app.get("/metrics", summary="Prometheus metrics")
    async def prometheus():
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    @app.post("/ask", summary="Answer a question: the JSON of `qa ask --json`",
              openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": AskRequest.model_json_schema()}}}})
    async def ask(request: Request):
        ask = AskRequest.model_validate_json(await _read_body(request, settings.max_body_bytes))
        question = ask.question.strip()
        if not question:
            return error(400, "the question is empty")
        if len(question) > settings.max_question_chars:
            return error(400, f"the question is {len(question)} characters long; at most {settings.max_question_chars} are taken")
        if ask.retriever not in RETRIEVERS:
            return error(400, f"unknown retriever {ask.retriever!r}: choose from {', '.join(RETRIEVERS)}")
        if not service.ready:
            return error(503, service.error or "loading the index and models", {"Retry-After": str(RETRY_AFTER_S)})
        try:
            where = tuple(str(c) for c in parse_where(ask.where))
        except QAError as unreadable:
            return error(400, str(unreadable))
        try:
            future = service.batcher.submit(Question(question, ask.top_k, ask.answers, ask.retriever, where))
        except Overloaded as overloaded:
            metrics.shed.inc()
            return error(503, f"busy: {overloaded}; try again shortly", {"Retry-After": str(RETRY_AFTER_S)})
        try:
            prediction = await asyncio.wait_for(asyncio.wrap_future(future), settings.timeout)
        except asyncio.TimeoutError:
            future.cancel()  # dropped if not read yet
            metrics.timeouts.inc()
            return error(503, f"no answer within {settings.timeout:g} s: the server is busy; try again shortly",
                         {"Retry-After": str(RETRY_AFTER_S)})
        except QAError as failure:
            return error(400, str(failure))
        metrics.questions.inc()
        return JSONResponse(prediction.as_dict())

    @app.get("/documents/{doc_id:path}", summary="A document, with optional highlight offsets")
    async def document(doc_id: str, start: int | None = None, end: int | None = None):
        if not service.ready:
            return error(503, service.error or "loading the index and models", {"Retry-After": str(RETRY_AFTER_S)})
        found = await asyncio.to_thread(service.index.store.document, doc_id)  # a key in the store, never a file path
        if found is None:
            return error(404, f"no document {doc_id!r} in the index")
        highlight = None
        if start is not None or end is not None:
            if start is None or end is None or not 0 <= start <= end <= len(found.text):
                return error(400, f"highlight offsets must satisfy 0 <= start <= end <= {len(found.text)}")
            highlight = {"start": start, "end": end}
        return {"document": found.id, "title": found.title, "source": found.source, "metadata": found.metadata,
                "text": found.text, "highlight": highlight}

    @app.get("/info", summary="What this server offers: retrievers, defaults and limits")
    async def info():
        return {"version": qa.__version__, "ready": service.ready, **(_describe_service(service, settings) if service.ready else {})}

    return app


async def _read_body(request: Request, limit: int) -> bytes:
    """The request body, refused (413) beyond ``limit`` bytes, however it is sent."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"the request body is {declared} bytes; at most {limit} are taken")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise HTTPException(413, f"the request body is over {limit} bytes")
    if not body:
        raise HTTPException(400, 'send a JSON body: {"question": "..."}')
    return bytes(body)


def _describe(errors: list[dict[str, Any]]) -> str:
    parts = []
    for e in errors[:3]:
        where = ".".join(str(x) for x in e.get("loc", ()) if x != "body")
        parts.append(f"{where}: {e.get('msg')}" if where else str(e.get("msg")))
    return "bad request: " + "; ".join(parts)


def _describe_service(service: Service, settings: ServerSettings) -> dict[str, Any]:
    index = service.index
    return {
        "index": {"path": str(index.path), "generation": index.generation, "documents": index.manifest["counts"]["documents"],
                  "passages": len(index), "embedding_model": index.manifest["dense"]["model"]},
        "reader": service.reader.name if service.reader else None,
        "retrievers": list(RETRIEVERS),
        "defaults": {"top_k": DEFAULT_TOP_K, "answers": DEFAULT_ANSWERS, "retriever": DEFAULT_RETRIEVER},
        "limits": {"top_k": MAX_TOP_K, "answers": MAX_ANSWERS, "where": MAX_CONDITIONS, "question_chars": settings.max_question_chars,
                   "body_bytes": settings.max_body_bytes, "timeout_s": settings.timeout},
    }

