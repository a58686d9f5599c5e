"""The named question sets: which questions, and which corpus they are asked over."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from qa.corpora import Document
from qa.errors import QAError
from qa.eval import datasets
from qa.corpora.squad import Example, load_squad

QUESTION_SETS = ("open-squad", "open-squad-v2", "squad-gold", "covid-qa", "squad-json")


@dataclass
class QuestionSet:
    """Questions with the paragraphs they were written on (``documents``); ``corpus``, the
    documents to index and search (None: each question is read on its gold paragraph)."""

    name: str
    examples: list[Example]
    documents: list[Document]
    corpus: list[Document] | None
    sources: dict[str, str] = field(default_factory=dict)  # file path -> sha256
    squad_v2: bool = False

    @property
    def gold(self) -> bool:
        return self.corpus is None


def load_question_set(
    name: str, *, path: str | Path | None = None, data: str | Path | None = None, gold: bool = False
) -> QuestionSet:
    """The benchmark ``name``; ``path`` is the file for ``squad-json``; ``data`` a data directory.

    - ``open-squad``: SQuAD v1.1 dev questions over every v1.1 paragraph (train + dev);
    - ``open-squad-v2``: SQuAD v2.0 dev questions over the v1.1 train and v2.0 dev paragraphs;
    - ``squad-gold``: SQuAD v1.1 dev questions, each on its gold paragraph;
    - ``covid-qa``: COVID-QA dev questions over all COVID-QA articles (train + dev), or with
      ``gold`` on their gold article;
    - ``squad-json``: any SQuAD-format file over its own paragraphs, or with ``gold`` on them.
    """
    if name not in QUESTION_SETS:
        raise QAError(f"unknown evaluation {name!r}: choose one of {', '.join(QUESTION_SETS)}")
    if (path is not None) != (name == "squad-json"):
        raise QAError("a PATH is given with squad-json, and only with it")
    if name in ("open-squad", "open-squad-v2"):
        if gold:
            raise QAError(f"{name} is open-domain; use squad-gold for the gold paragraphs")
        train = load_squad(datasets.resolve("squad-v1.1-train", data), id_prefix="train/")
        key = "squad-v1.1-dev" if name == "open-squad" else "squad-v2.0-dev"
        dev = load_squad(datasets.resolve(key, data), id_prefix="dev/")
        return QuestionSet(
            name,
            dev.examples,
            dev.documents,
            train.documents + dev.documents,
            {str(train.path): train.sha256, str(dev.path): dev.sha256},
            squad_v2=name == "open-squad-v2",
        )
    if name == "squad-gold":
        dev = load_squad(datasets.resolve("squad-v1.1-dev", data))
        return QuestionSet(name, dev.examples, dev.documents, None, {str(dev.path): dev.sha256})
    if name == "covid-qa":
        train = load_squad(datasets.resolve("covid-qa-train", data))
        dev = load_squad(datasets.resolve("covid-qa-dev", data))
        corpus = None if gold else train.documents + dev.documents
        sources = {str(dev.path): dev.sha256} if gold else {str(train.path): train.sha256, str(dev.path): dev.sha256}
        return QuestionSet(name, dev.examples, dev.documents, corpus, sources)
    own = load_squad(Path(path))
    squad_v2 = any(not e.answerable for e in own.examples)
    corpus = None if gold else own.documents
    return QuestionSet(name, own.examples, own.documents, corpus, {str(own.path): own.sha256}, squad_v2)
