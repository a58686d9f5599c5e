"""Joining shards served by other machines into one index (``qa index --join URL ...``).

Each machine builds its part of a collection as an ordinary index (``qa index``, sharded or not)
and serves it with ``qa serve-shard``. The joined index is a folder holding only a manifest (format
version 2) that lists the shard servers by URL with the build each serves and its size; `qa ask`,
`qa serve` and `qa evaluate` open it as any sharded index and send each question to every shard.
The shards must have been embedded with the same model and split and analysed the same way.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from qa.corpora import ReadReport
from qa.errors import QAError
from qa.index import IndexWriter, default_index_dir
from qa.index.remote import shard_info
from qa.indexer.build import BuildResult

# Manifest settings every shard must share for their answers to be comparable.
SHARED = {"dense": ("model", "dim", "normalized", "metric"), "bm25": ("k1", "b", "analyzer", "fields"), "passages": None}


def join_shards(urls: Sequence[str], index_dir: str | Path | None = None, token: str | None = None) -> BuildResult:
    """Write at ``index_dir`` an index whose shards are the indexes served at ``urls`` (in that
    order: passage numbers follow it). A folder that is not a qa index is never replaced."""
    started = time.perf_counter()
    if not urls:
        raise QAError("qa index --join needs the URL of at least one shard server (qa serve-shard)")
    if len(set(urls)) != len(urls):
        raise QAError("a shard server is listed twice: each --join URL must be another shard")
    infos = [shard_info(url, token) for url in urls]
    first = infos[0]["manifest"]
    for url, info in zip(urls[1:], infos[1:]):
        for section, keys in SHARED.items():
            ours, theirs = first.get(section) or {}, info["manifest"].get(section) or {}
            differing = [k for k in (keys or sorted(set(ours) | set(theirs))) if ours.get(k) != theirs.get(k)]
            if differing:
                raise QAError(
                    f"the shard at {url} was built unlike the one at {urls[0]} ({section}: {', '.join(differing)} differ): "
                    "shards joined as one index need the same embedding model, passage settings and BM25 analysis"
                )
    shards = [{"url": url.rstrip("/"), "build_id": info["build_id"], **info["manifest"]["counts"]} for url, info in zip(urls, infos)]
    counts = {key: sum(shard[key] for shard in shards) for key in ("documents", "passages")}
    kinds = sorted({info["manifest"]["dense"].get("faiss_index", "IndexFlatIP") for info in infos})
    content = {
        "corpus": {"joined": [shard["url"] for shard in shards]},
        "counts": counts,
        "passages": first["passages"],
        "bm25": first["bm25"],
        "dense": {**{k: v for k, v in first["dense"].items() if k != "precision"}, "faiss_index": ", ".join(kinds), **_precision(infos)},
        "shards": shards,
    }
    with IndexWriter(index_dir if index_dir is not None else default_index_dir()) as writer:
        manifest = writer.commit(content)
    return BuildResult(writer.target, manifest, ReadReport(), time.perf_counter() - started)


def _precision(infos: Sequence[dict]) -> dict[str, str]:
    """``dense.precision`` of the joined index: every precision its shards' passages were embedded
    in, when all of them record it."""
    recorded = [info["manifest"]["dense"].get("precision") for info in infos]
    if any(p is None for p in recorded):
        return {}
    return {"precision": ", ".join(sorted({p for each in recorded for p in each.split(", ")}))}
