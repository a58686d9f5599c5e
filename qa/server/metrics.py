"""Prometheus metrics of `qa serve` (``GET /metrics``), in a registry of the app's own."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, generate_latest
from starlette.requests import Request
from starlette.routing import Match

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)


disable_created_metrics()  # no `_created` series: they double the output and few dashboards read them


class Metrics:
    def __init__(self):
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("qa_http_requests", "HTTP requests by route and status", ["method", "route", "status"], registry=r)
        self.latency = Histogram("qa_http_request_seconds", "Time to answer an HTTP request", ["route"], buckets=LATENCY_BUCKETS, registry=r)
        self.questions = Counter("qa_questions", "Questions answered", registry=r)
        self.shed = Counter("qa_questions_shed", "Questions refused with 503 because the queue was full", registry=r)
        self.timeouts = Counter("qa_questions_timed_out", "Questions not answered within the time-out", registry=r)
        self.batch_size = Histogram("qa_batch_size", "Questions read in one batch", buckets=BATCH_BUCKETS, registry=r)
        self.batch_seconds = Histogram("qa_batch_seconds", "Time to answer one batch", buckets=LATENCY_BUCKETS, registry=r)
        self.queue_depth = Gauge("qa_queue_depth", "Questions waiting for the reader", registry=r)
        self.generation = Gauge("qa_index_generation", "Generation of the index being served", registry=r)
        self.ready = Gauge("qa_ready", "1 when the index and models are loaded", registry=r)

    def watch(self, service) -> None:
        """Read the queue depth, index generation and readiness from ``service`` at each scrape."""
        self.queue_depth.set_function(lambda: service.batcher.depth if service.batcher else 0)
        self.generation.set_function(lambda: service.index.generation if service.index else 0)
        self.ready.set_function(lambda: 1 if service.ready else 0)

    def observe_batch(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.batch_seconds.observe(seconds)

    def observe_request(self, request: Request, status: int, seconds: float) -> None:
        route = _route(request)
        self.requests.labels(request.method, route, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def _route(request: Request) -> str:
    """The route's template (``/documents/{doc_id:path}``), not the path: one series per route."""
    for route in request.app.router.routes:
        match, _ = route.matches(request.scope)
        if match == Match.FULL:
            return getattr(route, "path", "other")
    return "other"
