"""SQuAD-format question sets (SQuAD v1.1, v2.0, COVID-QA): questions, gold answers with their
character offsets, and each paragraph as a :class:`Document` for an index or a reader."""

from __future__ import annotations

import gzip
import hashlib
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from qa.corpora.documents import Document
from qa.errors import QAError


@dataclass(frozen=True)
class Example:
    """One question with its gold answers (empty when unanswerable), their character offsets in
    the gold paragraph, and the gold paragraph's id."""

    id: str
    question: str
    answers: tuple[str, ...]
    doc_id: str
    title: str
    answer_starts: tuple[int, ...] = ()

    @property
    def answerable(self) -> bool:
        return bool(self.answers)

    @property
    def question_key(self) -> str:
        """What the training data's entries of one question share: the id without the
        ``#negative-N`` suffix that ``qa train open-data`` gives a question's retrieved passages."""
        return self.id.split(NEGATIVE_MARK, 1)[0]


NEGATIVE_MARK = "#negative-"  # an entry of the same question over another (retrieved) passage


@dataclass
class QASet:
    """A question set and the paragraphs its questions were written on."""

    name: str
    path: Path
    sha256: str
    examples: list[Example]
    documents: list[Document]


def read_json(path: Path) -> tuple[dict, str]:
    """A ``.json`` or ``.json.gz`` file, parsed, and the sha256 of its bytes as stored."""
    try:
        raw = Path(path).read_bytes()
        text = gzip.decompress(raw) if str(path).endswith(".gz") else raw
        return json.loads(text), hashlib.sha256(raw).hexdigest()
    except (OSError, EOFError, ValueError) as err:  # gzip and JSON errors are ValueErrors
        raise QAError(f"cannot read {str(path)!r}: {err}") from err


def is_squad(data: object) -> bool:
    """True for parsed JSON in the SQuAD layout: ``{"data": [{"paragraphs": [...]}, ...]}``."""
    articles = data.get("data") if isinstance(data, dict) else None
    return isinstance(articles, list) and bool(articles) and all(
        isinstance(a, dict) and isinstance(a.get("paragraphs"), list) for a in articles
    )


def squad_documents(data: dict, source: str = "") -> list[Document]:
    """Each paragraph of parsed SQuAD-layout JSON as a document, with its article's title; ids as
    in :func:`load_squad`. Paragraphs without a ``context`` string are left out."""
    documents = []
    for article in data["data"]:
        title = str(article.get("title", ""))
        for i, paragraph in enumerate(article["paragraphs"]):
            if isinstance(paragraph, dict) and isinstance(paragraph.get("context"), str):
                doc_id = str(paragraph.get("document_id", f"{title}/{i}"))
                metadata = {"questions": len(paragraph.get("qas") or [])}
                documents.append(Document(doc_id, paragraph["context"], title.replace("_", " "), source, metadata))
    return documents


def load_squad(path: str | Path, name: str | None = None, id_prefix: str = "") -> QASet:
    """Read a SQuAD-layout file. Paragraph ids are ``document_id`` when present (COVID-QA),
    else ``TITLE/N`` (N: the paragraph's position in its article), prefixed by ``id_prefix``."""
    path = Path(path)
    data, sha256 = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise QAError(f"{str(path)!r} is not a SQuAD-format file (no top-level 'data' list)")
    examples: list[Example] = []
    documents: list[Document] = []
    try:
        for article in data["data"]:
            title = str(article.get("title", ""))
            for i, paragraph in enumerate(article["paragraphs"]):
                context = paragraph["context"]
                doc_id = id_prefix + str(paragraph.get("document_id", f"{title}/{i}"))
                documents.append(Document(id=doc_id, text=context, title=title.replace("_", " ")))
                for qa in paragraph["qas"]:
                    answers = tuple(a["text"] for a in qa.get("answers", []))
                    starts = tuple(int(a.get("answer_start", -1)) for a in qa.get("answers", []))
                    if not answers and not qa.get("is_impossible", False):
                        raise QAError(
                            f"{str(path)!r}: question {qa.get('id')!r} has no answers and is not "
                            "marked is_impossible"
                        )
                    examples.append(Example(str(qa["id"]), qa["question"], answers, doc_id, title, starts))
    except (KeyError, TypeError) as err:
        raise QAError(f"{str(path)!r} is not a valid SQuAD-format file (missing {err})") from err
    ids = [e.id for e in examples]
    if len(set(ids)) != len(ids):
        raise QAError(f"{str(path)!r} has duplicate question ids")
    return QASet(name or path.name, path, sha256, examples, documents)


def sample_examples(examples: Sequence[Example], limit: int | None, seed: int) -> list[Example]:
    """``limit`` questions drawn with ``seed`` (all, in file order, without a limit)."""
    chosen = list(examples)
    if limit is not None and limit < len(chosen):
        random.Random(seed).shuffle(chosen)
        chosen = chosen[:limit]
    return chosen
