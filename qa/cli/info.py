"""`qa info`: what an index holds, how it was built, and the fields `qa ask --where` can use."""

from __future__ import annotations

import json
from typing import Any

from rich.markup import escape

from qa.cli.common import IndexOption, JsonOption, app, friendly_errors, out


@app.command()
@friendly_errors
def info(index_dir: IndexOption = None, as_json: JsonOption = False) -> None:
    """Describe an index: its documents and passages, how it was built, and the fields --where can use."""
    from qa.index import Index
    from qa.index.store import FIELD_SAMPLE
    from qa.index.where import searchable_fields

    index = Index(index_dir)
    m = index.manifest
    described: dict[str, Any] = {
        "path": str(index.path),
        "generation": index.generation,
        "created": m.get("created"),
        "qa_version": m.get("qa_version"),
        "counts": m["counts"],
        "corpus": (m.get("corpus") or {}).get("path"),
        "additions": len(m.get("additions") or []),
        "passages": m.get("passages"),
        "bm25": m.get("bm25"),
        "dense": m.get("dense"),
        "shards": len(index.shards),
        "served_shards": sum(1 for entry in m.get("shards") or [] if "url" in entry),
        "fields": searchable_fields(index.store.metadata_fields()),
    }
    if as_json:
        print(json.dumps(described, ensure_ascii=False))
        return
    counts, windows, bm25, dense = described["counts"], described["passages"] or {}, described["bm25"] or {}, described["dense"] or {}
    out.print(f"[bold]{escape(described['path'])}[/]: generation {described['generation']}, built {described['created']} "
              f"by qa {described['qa_version']}" + (f", added to {described['additions']} time(s)" if described["additions"] else ""))
    source = f" from {escape(str(described['corpus']))}" if described["corpus"] else ""
    out.print(f"  {counts['documents']:,} documents, {counts['passages']:,} passages{source}")
    if windows.get("unit") == "tokens":
        out.print(f"  passages: windows of at most {windows.get('max_tokens')} tokens, {windows.get('overlap_tokens')} shared")
    elif windows.get("unit") == "words":
        out.print(f"  passages: windows of at most {windows.get('max_words')} words, {windows.get('overlap_words')} shared")
    out.print(f"  BM25: {bm25.get('engine')} {bm25.get('engine_version', '')}, k1 {bm25.get('k1')}, b {bm25.get('b')}, "
              f"analyser {bm25.get('analyzer')}")
    out.print(f"  dense: {escape(str(dense.get('model')))} ({dense.get('dim')} dimensions, {dense.get('faiss_index', 'IndexFlatIP')}, "
              f"embedded in {dense.get('precision', 'fp32')})")
    if described["shards"]:
        served = f", {described['served_shards']} served by other machines" if described["served_shards"] else ""
        out.print(f"  shards: {described['shards']}{served}")
    out.print(f"  fields for --where: {', '.join(described['fields'])} "
              f"[dim](metadata keys of the first {FIELD_SAMPLE:,} documents)[/]")
