"""A shard served by another machine (``qa serve-shard``), opened as a shard of an index whose
manifest lists it by URL (``qa index --join``).

:class:`RemoteShard` offers what :class:`qa.index.Index` uses of a shard on this machine — its
passage store, vectors, dense search and BM25 part — each a JSON request to the shard's server
(standard library only). Every answer names the build the server serves; an answer from another
build than the one the index joined is refused, so that one question never mixes two versions of
a shard. The token of the shard servers, if they need one, is taken from ``$QA_SHARD_TOKEN``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from qa.corpora import Document
from qa.errors import QAError
from qa.http import TIMEOUT_S, request_json
from qa.index.shards import BM25Stats
from qa.index.store import Passage
from qa.index.where import Condition

SHARD_TOKEN_ENV = "QA_SHARD_TOKEN"


class ShardClient:
    """Requests to one shard server; ``build_id``: the build every answer must come from."""

    def __init__(self, url: str, build_id: str | None = None, token: str | None = None, timeout: float = TIMEOUT_S):
        if not url.startswith(("http://", "https://")):
            raise QAError(f"a shard is joined by its server's URL, such as http://10.0.0.2:8100, not {url!r}")
        self.url, self.build_id, self.timeout = url.rstrip("/"), build_id, timeout
        self.token = token if token is not None else os.environ.get(SHARD_TOKEN_ENV) or None

    def call(self, route: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """The server's answer to ``route`` (GET without a body, else POST of ``body`` as JSON)."""
        answer = request_json(self.url, route, body, token=self.token, timeout=self.timeout, server="shard server",
                              command="qa serve-shard", on_401=f" (set ${SHARD_TOKEN_ENV} to the shard servers' token)")
        if not isinstance(answer, dict) or "build_id" not in answer:
            raise QAError(f"the server at {self.url} is not a `qa serve-shard` server (its answer names no build)")
        if self.build_id is not None and answer["build_id"] != self.build_id:
            raise QAError(
                f"the shard server at {self.url} now serves another build of its shard ({answer['build_id']}; the index "
                f"joined {self.build_id}): its index was rebuilt or added to; join the shards again with `qa index --join`"
            )
        return answer


def shard_info(url: str, token: str | None = None) -> dict[str, Any]:
    """What a shard server serves: its build id, its index's manifest and BM25 statistics."""
    return ShardClient(url, token=token).call("/shard")


class RemoteShard:
    """A shard listed by URL in an index's manifest, checked to serve the build that was joined."""

    shards: tuple = ()  # a served shard is searched as one index, whatever its own layout

    def __init__(self, entry: dict[str, Any], token: str | None = None):
        self.url = entry["url"]
        self.client = ShardClient(self.url, entry.get("build_id"), token)
        info = self.client.call("/shard")
        self.build_id, self.manifest = info["build_id"], info["manifest"]
        passages, dim = len(self), int(self.manifest["dense"]["dim"])
        self.store = RemoteStore(self.client, passages)
        self.vectors = RemoteVectors(self.client, passages, dim)
        self.faiss = RemoteSearch(self.client, passages, dim)
        self.bm25_part = RemoteBM25(self.client, passages, info["bm25"]["total_length"])

    def __len__(self) -> int:
        return int(self.manifest["counts"]["passages"])

    def check(self) -> dict[str, Any]:
        """The shard server's own check of its index (``qa index --check`` there)."""
        return self.client.call("/shard/check", {})


def _passage(record: dict[str, Any]) -> Passage:
    return Passage(idx=record["passage"], text=record["text"], start=record["start"], end=record["end"],
                   doc_id=record["document"], title=record["title"], source=record["source"])


class RemoteStore:
    """A served shard's passage store (read-only, as a sharded index's stores are)."""

    def __init__(self, client: ShardClient, passages: int):
        self.client, self.passages = client, passages

    def count(self) -> int:
        return self.passages

    def get(self, indices: Sequence[int]) -> list[Passage]:
        answer = self.client.call("/shard/passages", {"ids": [int(i) for i in indices]})
        return [_passage(record) for record in answer["passages"]]

    def passages_with_content(self, sha256: str) -> list[Passage]:
        return [_passage(record) for record in self.client.call("/shard/passages/with-content", {"sha256": sha256})["passages"]]

    def document(self, doc_id: str) -> Document | None:
        found = self.client.call("/shard/document", {"id": doc_id})["document"]
        return None if found is None else Document(**found)

    def metadata(self, doc_ids: Iterable[str]) -> dict[str, dict]:
        return self.client.call("/shard/metadata", {"ids": list(doc_ids)})["metadata"]

    def passages_where(self, conditions: Sequence[Condition]) -> np.ndarray:
        ids = self.client.call("/shard/passages/where", {"where": [str(c) for c in conditions]})["ids"]
        return np.asarray(ids, dtype=np.int64)

    def metadata_fields(self) -> set[str]:
        return set(self.client.call("/shard/metadata/fields", {})["fields"])

    def holds(self, doc: Document) -> str | None:
        raise QAError(f"the shard at {self.client.url} is served by another machine: add documents there (qa index --add)")

    holds_content = holds

    def close(self) -> None:
        pass


class RemoteVectors:
    """A served shard's stored vectors (float16, unit length): ``vectors[ids]`` fetches rows."""

    dtype = np.dtype(np.float16)

    def __init__(self, client: ShardClient, passages: int, dim: int):
        self.client, self.shape = client, (passages, dim)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.int64)
        found = self.client.call("/shard/vectors", {"ids": rows.reshape(-1).tolist()})["vectors"]
        return np.asarray(found, dtype=self.dtype).reshape(*rows.shape, self.shape[1])


class RemoteSearch:
    """A served shard's dense index, searched by the question vectors this machine computed."""

    def __init__(self, client: ShardClient, passages: int, dim: int):
        self.client, self.ntotal, self.d = client, passages, dim

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        queries = np.asarray(queries, dtype=np.float32)
        answer = self.client.call("/shard/dense", {"queries": queries.tolist(), "k": int(k)})
        shape = (len(queries), -1)
        return np.asarray(answer["scores"], dtype=np.float32).reshape(shape), np.asarray(answer["ids"], dtype=np.int64).reshape(shape)


class RemoteBM25:
    """A served shard's BM25 part: the passages holding each term, and scores computed there
    with the collection's statistics (:class:`RemoteScores`)."""

    def __init__(self, client: ShardClient, passages: int, total_length: float | None):
        self.client, self.passages, self.total_length = client, passages, total_length

    def holding(self, terms: Iterable[str]) -> dict[str, int]:
        return self.client.call("/shard/bm25/holding", {"terms": list(terms)})["holding"]

    def scores(self, counts: dict[str, int], stats: BM25Stats) -> RemoteScores:
        return RemoteScores(self.client, {"counts": dict(counts), "stats": stats.as_dict()})


class RemoteScores:
    """A query's BM25 scores on a served shard: its best passages and given passages' scores,
    each computed by the server (the scores of all its passages never travel); a batch of
    questions' scores is asked in one request (:meth:`top_many`, :meth:`at_many`). Scores already
    returned are kept: when the best ``k`` came back fewer than ``k``, every passage with a score
    is known, and the others score 0 without asking."""

    def __init__(self, client: ShardClient, query: dict[str, Any]):
        self.client, self.query = client, query
        self.known: dict[int, float] = {}
        self.complete = False

    def top(self, k: int) -> list[tuple[int, float]]:
        return self.top_many([self], k)[0]

    def at(self, ids: Sequence[int]) -> np.ndarray:
        return self.at_many([self], [ids])[0]

    @staticmethod
    def top_many(batch: Sequence[RemoteScores], k: int) -> list[list[tuple[int, float]]]:
        found: list[list[tuple[int, float]]] = [[] for _ in batch]
        for client, asking in _by_client(batch):
            answer = client.call("/shard/bm25/top", {"queries": [batch[q].query for q in asking], "k": int(k)})
            for q, result in zip(asking, answer["results"]):
                found[q] = [(int(i), float(s)) for i, s in zip(result["ids"], result["scores"])]
                batch[q].known.update(found[q])
                batch[q].complete = batch[q].complete or len(found[q]) < k
        return found

    @staticmethod
    def at_many(batch: Sequence[RemoteScores], ids: Sequence[Sequence[int]]) -> list[np.ndarray]:
        ids = [[int(i) for i in mine] for mine in ids]
        missing = [[] if scores.complete else list(dict.fromkeys(i for i in mine if i not in scores.known))
                   for scores, mine in zip(batch, ids)]
        for client, asking in _by_client(batch, where=[bool(m) for m in missing]):
            queries = [{**batch[q].query, "ids": missing[q]} for q in asking]
            answer = client.call("/shard/bm25/at", {"queries": queries})
            for q, scores in zip(asking, answer["scores"]):
                batch[q].known.update(zip(missing[q], map(float, scores)))
        return [np.asarray([scores.known.get(i, 0.0) for i in mine], dtype=np.float32) for scores, mine in zip(batch, ids)]


def _by_client(batch: Sequence[RemoteScores], where: Sequence[bool] | None = None) -> list[tuple[ShardClient, list[int]]]:
    """The positions in ``batch`` (those ``where`` is true) grouped by the server that answers them."""
    groups: dict[int, tuple[ShardClient, list[int]]] = {}
    for q, scores in enumerate(batch):
        if where is None or where[q]:
            groups.setdefault(id(scores.client), (scores.client, []))[1].append(q)
    return list(groups.values())
