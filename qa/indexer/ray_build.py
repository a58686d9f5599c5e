"""The build's reading, splitting and embedding on a Ray cluster (``qa index --ray``).

Ray runs the stages that cost, with the functions the single-process build uses: Ray Data reads
the corpus's parts (:func:`qa.corpora.readers.read_part` on each file or CORD-19 release, in
parallel tasks), and a pool of actors splits the documents into passages and embeds them (one actor per GPU, or
per ``cpus_per_worker`` CPUs). Their results stream back to this process in corpus order, where
:class:`qa.corpora.readers.DocumentFilter` keeps what can be indexed and the build's own ``_ingest``
and ``Parts.add_document`` (:mod:`qa.indexer.stages`) write them through the same :class:`qa.index.IndexWriter` as ``qa index``: the passage store, the BM25 postings and the
vectors, then the BM25 and dense indexes. The result is the very index the single-process build
makes, and its guarantees hold (a staging folder replaces the old index only when complete).

With shards (``--shard-passages``), the driver does not write them itself: each shard gets a writer
actor (:class:`_ShardWriter`) that stores, analyses and writes it
(:func:`qa.indexer.sharding.finish_shard`) while the build goes on, so shards are written in
parallel and the driver only filters documents and hands them on. The writers run on the driver's
machine, whose disk holds the staging folder, or (``--ray-shard-writers cluster``) on the cluster's
nodes in turn, each writing on its node's disk and copying the finished shard into the staging
folder, which then lies on a file system all nodes mount.

The driver holds the batches in flight, never the corpus. Ray restarts an actor that dies and
retries a reading task whose worker dies, so a killed worker costs time, not the build. On a
cluster of several machines, the corpus path and a model given as a folder must exist at the same
path on every node (a shared file system), or the model be a hub id the nodes can download.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from qa.corpora import Document, ReadReport
from qa.corpora.readers import CorpusPart, DocumentFilter, corpus_parts, read_part
from qa.errors import QAError, first_line
from qa.fsutil import share_like_mkdir
from qa.hub import resolve_model
from qa.indexer.options import EmbeddingOptions, RayOptions, ReadOptions
from qa.indexer.sharding import ShardSettings, finish_shard
from qa.indexer.stages import Parts, splitter

logger = logging.getLogger(__name__)

READ_CPUS = 0.5  # logical CPUs a reading task holds; an actor holds cpus_per_worker - READ_CPUS
SEND_DOCUMENTS = 64  # documents the driver hands a shard writer at a time
SENDS_IN_FLIGHT = 4  # per writer: then the driver waits (its memory stays bounded)


def documents_with_ray(
    corpus: str | os.PathLike,
    report: ReadReport,
    *,
    reading: ReadOptions,
    passage_config: dict[str, Any],
    model: str,
    embedding: EmbeddingOptions,
    ray: RayOptions,
    embedded: set[str] | None = None,
) -> Iterator[tuple[Document, list[tuple[int, int]], np.ndarray | None]]:
    """Read, split and embed ``corpus`` on Ray: each document to index, in corpus order, with its
    windows and their vectors (None when it has no window), for the build's ``_ingest``. The
    precisions the actors embedded in are added to ``embedded``."""
    resolve_model(model)  # a model folder that does not exist fails here, before Ray starts
    ray_data = _start(ray.address)
    listing = corpus_parts(corpus, report, include=reading.include, exclude=reading.exclude)
    if not listing:
        return
    dataset = _pipeline(ray_data, listing, reading, passage_config, model, embedding, ray)
    keep = DocumentFilter(report)
    parts_done = 0
    for row in _rows(dataset):
        if row["report"]:
            parts_done += 1
            _merge(report, json.loads(row["report"]))
            if report.on_file is not None:
                report.on_file(parts_done, len(listing))
            continue
        doc = Document(row["id"], row["text"], row["title"], row["source"], json.loads(row["metadata"]))
        if keep(doc):
            windows = np.frombuffer(row["windows"], dtype=np.int64).reshape(-1, 2).tolist()
            vectors = np.frombuffer(row["vectors"], dtype=np.float16).reshape(len(windows), -1)
            if windows and embedded is not None:
                embedded.add(row["precision"])
            yield doc, windows, vectors if windows else None


def _rows(dataset):
    """The dataset's rows; a failure on a worker (a model that does not load there, say) becomes a
    :class:`QAError` naming its cause, instead of Ray's traceback."""
    try:
        yield from dataset.iter_rows()
    except Exception as err:
        if not type(err).__module__.startswith("ray"):
            raise
        raise QAError(f"the Ray build failed on a worker: {_worker_error(err)}") from None


def _worker_error(err: BaseException) -> str:
    """The error a worker raised, from the traceback text Ray puts in its exceptions' messages:
    a QAError's own message, else the last ``SomeError: message`` line."""
    found = None
    chain = err
    while chain is not None:
        for line in str(chain).splitlines():
            if match := _ERROR_LINE.match(line.strip()):
                found = match
        chain = chain.__cause__ or chain.__context__
    if found is None:
        return first_line(err)
    name, message = found.group(1), found.group(2)
    return message if name.endswith("QAError") else f"{name.rsplit('.', 1)[-1]}: {message}"


_ERROR_LINE = re.compile(r"^([\w.]*(?:Error|Exception)): (.+)$")


def _start(address: str | None):
    """Connect to the cluster at ``address``, or start a local Ray instance; returns ``ray.data``."""
    try:
        import ray
        import ray.data
    except ImportError:
        raise QAError('--ray needs Ray: pip install "qa[ray]" (or pip install "ray[data]")') from None
    if not ray.is_initialized():
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
        except ConnectionError as err:
            raise QAError(f"cannot reach a Ray cluster at {address!r} ({err}): start one (`ray start --head`) or leave out the address") from None
        except Exception as err:  # a malformed address, a temp folder Ray cannot write, a version mismatch, ...
            where = "start a local Ray instance" if address is None else f"connect to Ray at {address!r}"
            raise QAError(f"cannot {where}: {first_line(err)}") from None
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True  # the index is written in corpus order
    context.enable_progress_bars = False  # qa's own progress bar counts what arrives
    return ray.data


def actor_plan(resources: dict, nodes: list[dict], device: str | None, options: RayOptions) -> tuple[int, dict, int | None]:
    """How many embedding actors, the resources each asks Ray for, and the threads each runs on,
    for a cluster of ``resources`` (``ray.cluster_resources()``) and ``nodes`` (``ray.nodes()``).

    One actor per GPU (or ``options.workers``), tokenising on its share of its node's CPUs (the
    node's CPUs over its GPUs, the smallest share of any GPU node): on a node of 8 GPUs and 16 cores
    two threads each, not 16. Without GPUs (or with ``device`` a CPU), actors run torch on
    ``cpus_per_worker`` CPUs each (or the cluster's CPUs shared by ``options.workers``), less what
    reading tasks hold."""
    alive = [node["Resources"] for node in nodes if node.get("Alive")]
    gpus = int(resources.get("GPU", 0)) if device is None or device.startswith("cuda") else 0
    if gpus:
        shares = [int(node.get("CPU", 1) // node["GPU"]) for node in alive if node.get("GPU", 0) >= 1]
        return options.workers or gpus, {"num_gpus": 1, "num_cpus": 1}, max(1, min(shares, default=1))
    cpus = int(resources.get("CPU", 1))
    workers = options.workers or max(1, cpus // options.cpus_per_worker)
    threads = options.cpus_per_worker if options.workers is None else max(1, cpus // workers)
    largest = max((node.get("CPU", 0) for node in alive), default=1)
    threads = max(1, min(threads, int(largest)))  # an actor must fit on one node
    return workers, {"num_cpus": max(threads - READ_CPUS, READ_CPUS)}, threads


def _pipeline(ray_data, listing: list[CorpusPart], reading: ReadOptions, passage_config, model, embedding, options: RayOptions):
    import ray

    resources = ray.cluster_resources()
    cpus = int(resources.get("CPU", 1))
    workers, actor, threads = actor_plan(resources, ray.nodes(), embedding.device, options)
    gpus = "num_gpus" in actor
    logger.info("Ray build: %d parts, %d embedding actor(s) %s, cluster %s", len(listing), workers, actor, resources)
    items = [{"kind": p.kind, "path": str(p.path), "base": str(p.base)} for p in listing]
    fields = (reading.id_field, reading.title_field, reading.text_field)
    return (
        ray_data.from_items(items, override_num_blocks=min(len(items), 4 * cpus))  # parts read in parallel
        .flat_map(_read_rows, fn_kwargs={"fields": fields, "max_file_mb": reading.max_file_mb}, num_cpus=READ_CPUS)
        .map_batches(
            _SplitAndEmbed,
            fn_constructor_kwargs={
                "model": model, "passage_config": passage_config, "device": embedding.device if gpus else "cpu",
                "batch_size": embedding.batch_size, "backend": embedding.backend, "precision": embedding.precision, "threads": threads,
            },
            batch_size=options.documents_per_batch,
            batch_format="pandas",
            compute=ray_data.ActorPoolStrategy(size=workers),
            **actor,
        )
    )


def _read_rows(item: dict[str, str], fields, max_file_mb: float) -> Iterator[dict[str, Any]]:
    """One part's documents as rows, as they are read (Ray cuts a task's output into blocks as it
    comes, so a large part, a CORD-19 release say, is never held whole), then a row holding what
    the part's read report says."""
    part = CorpusPart(item["kind"], Path(item["path"]), Path(item["base"]))
    report = ReadReport()
    for doc in read_part(part, report, fields, max_file_mb):
        yield _row(doc)
    summary = {"files_read": report.files_read, "skipped": [[r, n] for r, n in report.skipped.items()], "warnings": report.warnings}
    yield {**_row(None), "report": json.dumps(summary)}


def _row(doc: Document | None) -> dict[str, Any]:
    if doc is None:
        return {"id": "", "text": "", "title": "", "source": "", "metadata": "{}", "report": ""}
    return {"id": doc.id, "text": doc.text, "title": doc.title, "source": doc.source,
            "metadata": json.dumps(doc.metadata, ensure_ascii=False), "report": ""}


def _merge(report: ReadReport, part: dict[str, Any]) -> None:
    report.files_read += part["files_read"]
    for reason, count in part["skipped"]:
        report.skipped[reason] += count
    report.warnings += part["warnings"]


class _SplitAndEmbed:
    """A Ray actor: the embedding model, loaded once; each batch of document rows comes back
    with its passages' character spans (``windows``) and float16 vectors, as bytes, and the
    precision they were embedded in."""

    def __init__(self, model: str, passage_config: dict[str, Any], device: str | None, batch_size: int | None, backend: str,
                 precision: str, threads: int | None):
        import torch

        from qa.embedding import Embedder

        if threads:
            torch.set_num_threads(threads)
        self.embedder = Embedder(model, device=device, batch_size=batch_size, backend=backend, precision=precision, threads=threads)
        self.split = splitter(passage_config, self.embedder)

    def __call__(self, batch):
        from qa.index.store import retrieval_text

        spans, texts = [], []
        for text, title, report in zip(batch["text"], batch["title"], batch["report"]):
            windows = [] if report or not text or text.isspace() else [(w.start, w.end) for w in self.split(text)]
            spans.append(windows)
            texts += [retrieval_text(title, text[start:end]) for start, end in windows]
        vectors = self.embedder.encode(texts).astype(np.float16) if texts else np.zeros((0, 0), np.float16)
        windows_column, vectors_column, first = [], [], 0
        for windows in spans:
            windows_column.append(np.asarray(windows, dtype=np.int64).reshape(-1, 2).tobytes())
            vectors_column.append(vectors[first : first + len(windows)].tobytes())
            first += len(windows)
        batch = batch.copy()
        batch["windows"], batch["vectors"] = windows_column, vectors_column
        batch["precision"] = self.embedder.precision
        return batch


def shard_writers(settings: ShardSettings, where: str = "here"):
    """``open_shard(folder, dim)`` for :class:`qa.indexer.sharding.ShardedParts`: a writer actor per
    shard, on this machine (``where="here"``), or on the cluster's nodes in turn (``"cluster"``:
    :class:`qa.indexer.options.RayOptions`). Writers that are still writing hold no CPU
    reservation, so that they never wait for the embedding actors' resources."""
    dealt = itertools.count()

    def open_shard(folder: Path, dim: int | None) -> _RemoteShard:  # called once Ray runs (the first document read)
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        if where == "here":
            node, wait = ray.get_runtime_context().get_node_id(), 0.0
        else:  # in turn over the nodes alive now (pinned: Ray's soft affinity moves actors off busy nodes)
            nodes = sorted(n["NodeID"] for n in ray.nodes() if n["Alive"])
            node, wait = nodes[next(dealt) % len(nodes)], FOLDER_WAIT_S
        writer = ray.remote(_ShardWriter).options(num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False))
        return _RemoteShard(writer.remote(str(folder), dim, settings, where == "cluster", wait), f"{folder.parent.name}/{folder.name}")

    return open_shard


FOLDER_WAIT_S = 30.0  # how long a writer on another node waits for the shard folder to appear there (NFS caches)


class _ShardWriter:
    """A Ray actor that writes one shard: documents with their windows and vectors come in order;
    ``finish`` writes its BM25 and dense indexes and manifest and returns its entry with what the
    store refused (the build's read report gets it) and the node it was written on.

    With ``local_copy``, the shard is written in a folder of this node's temporary directory
    (``$TMPDIR``) and copied into ``folder`` when complete: a shared file system then sees one
    sequential copy, not a database's many small writes."""

    def __init__(self, folder: str, dim: int | None, settings: ShardSettings, local_copy: bool = False, wait: float = 0.0):
        import ray

        context = ray.get_runtime_context()
        self.node = {"node_id": context.get_node_id(), "address": ray.util.get_node_ip_address()}
        self.folder = Path(folder)
        deadline = time.monotonic() + wait
        while not self.folder.is_dir():
            if time.monotonic() >= deadline:
                raise QAError(
                    f"the shard folder {str(self.folder)!r} is not visible on the Ray node at {self.node['address']}: with "
                    "--ray-shard-writers cluster, the index folder must be on a file system that every node mounts at the same path"
                )
            time.sleep(0.5)
        self.scratch = None
        if local_copy:
            self.scratch = Path(tempfile.mkdtemp(prefix="qa-shard-"))
            share_like_mkdir(self.scratch)  # so that the copied folder gets the mode mkdir gives
        self.parts = Parts(self.scratch or self.folder, dim, None)
        self.settings, self.report = settings, ReadReport()

    def add(self, documents: list[tuple[Document, list[tuple[int, int]], np.ndarray | None]]) -> None:
        for doc, windows, vectors in documents:
            self.parts.add_document(doc, windows, self.report, vectors)

    def finish(self, precision: str | None = None) -> dict[str, Any]:
        try:
            entry = finish_shard(self.parts, self.settings, precision=precision)
            if self.scratch is not None:
                if entry is None:  # no passages: finish_shard removed the scratch folder; the empty shard folder goes too
                    self.folder.rmdir()
                else:
                    shutil.copytree(self.scratch, self.folder, dirs_exist_ok=True)
        finally:
            if self.scratch is not None:
                shutil.rmtree(self.scratch, ignore_errors=True)
        refused = {"documents": self.report.documents, "skipped": list(self.report.skipped.items()), "warnings": self.report.warnings}
        return {"entry": entry, "refused": refused, "node": self.node}


class _RemoteShard:
    """The driver's side of a writer actor: documents are sent in groups, a few groups in flight."""

    def __init__(self, actor, folder_name: str):
        self.actor, self.folder_name, self.group, self.sent, self.passages = actor, folder_name, [], [], 0
        self.report: ReadReport | None = None

    def add_document(self, doc: Document, windows, report: ReadReport, vectors: np.ndarray | None = None) -> bool:
        windows = list(windows)
        self.report = report
        self.group.append((doc, windows, vectors))
        self.passages += len(windows)
        if len(self.group) == SEND_DOCUMENTS:
            self._send()
        return True  # what the store refuses is counted when the shard is finished

    def _send(self) -> None:
        self.sent.append(self.actor.add.remote(self.group))
        self.group = []
        if len(self.sent) > SENDS_IN_FLIGHT:
            _written(self.sent.pop(0))

    def finish(self, precision: str | None = None):
        import ray

        if self.group:
            self._send()
        finished = self.actor.finish.remote(precision)

        def result() -> dict[str, Any] | None:
            _written(self.sent)
            outcome = _written(finished)
            ray.kill(self.actor)
            logger.info("shard %s written on the Ray node at %s (%s)", self.folder_name, outcome["node"]["address"], outcome["node"]["node_id"])
            refused = outcome["refused"]
            if self.report is not None:
                self.report.documents += refused["documents"]
                for reason, count in refused["skipped"]:
                    self.report.skipped[reason] += count
                self.report.warnings += refused["warnings"]
            return outcome["entry"]

        return result


def _written(refs):
    """``ray.get`` of a shard writer's calls; a writer that failed or died is a :class:`QAError`
    (the build stops and the previous index stays)."""
    import ray

    try:
        return ray.get(refs)
    except Exception as err:
        if not type(err).__module__.startswith("ray"):
            raise
        raise QAError(f"the Ray build failed writing a shard: {_worker_error(err)}") from None
