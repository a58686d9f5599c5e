"""Training data for reading what the retriever returns (``qa train open-data``, issue 17): each
training question with the passages an index gives it, as a SQuAD v2.0 file that ``qa train
reader`` takes as it is.

The reader is trained on gold paragraphs, then asked to choose among ten retrieved passages, most
of which do not answer. Here every question gets its gold passage (the index passage of its
paragraph that holds the first gold answer, labelled with the answer's offset in that passage) and
up to ``negatives`` of the passages the retriever ranks highest that hold none of its gold answers,
labelled unanswerable (``is_impossible``: the reader learns to point at [CLS] there). Retrieved
passages that contain an answer's text but are not the gold passage are left out: they may or may
not answer (distant supervision would guess). The question's paragraph is found in the index by
its content, so any index built from the training file serves.
"""

from __future__ import annotations

import functools
import json
from collections import Counter
from pathlib import Path

from qa.corpora.squad import NEGATIVE_MARK, Example, load_squad
from qa.errors import QAError
from qa.index import Index, Passage
from qa.progress import progress_bar
from qa.retriever.retrievers import make_retriever

SEARCH_BATCH = 256


def gold_passage(passages: list[Passage], example: Example) -> Passage | None:
    """Of a paragraph's index passages, the first that holds ``example``'s first gold answer
    whole (None when the windows cut it, or the example has no offset)."""
    start = example.answer_starts[0] if example.answer_starts else -1
    end = start + len(example.answers[0])
    return next((p for p in passages if 0 <= start and p.start <= start and end <= p.end), None)


def open_training_data(
    train: str | Path,
    index: Index,
    negatives: int = 2,
    retriever: str = "hybrid",
    depth: int = 10,
    limit: int | None = None,
    skip: int = 0,
    show_progress: bool = False,
) -> tuple[dict, Counter]:
    """The SQuAD v2.0 data (one paragraph per passage used, its questions under it) and the
    count of what was kept and left out: ``limit`` answerable questions after the first ``skip``
    (so that a later run can take the questions an earlier one did not)."""
    data = load_squad(train)
    documents = {d.id: d for d in data.documents}
    examples = [e for e in data.examples if e.answerable][skip:][:limit]
    search = make_retriever(index, retriever)
    passages_of = functools.cache(index.store.passages_with_content)  # a paragraph has several questions
    paragraphs: dict[int, dict] = {}
    counts: Counter = Counter()

    def add(passage, qa: dict) -> None:
        paragraph = paragraphs.setdefault(passage.idx, {"title": passage.title, "context": passage.text, "qas": []})
        paragraph["qas"].append(qa)

    with progress_bar("questions", disable=not show_progress) as progress:
        task = progress.add_task("Retrieving passages for training questions", total=len(examples))
        for first in range(0, len(examples), SEARCH_BATCH):
            group = examples[first : first + SEARCH_BATCH]
            hit_lists = search.search_batch([e.question for e in group], depth, evidence=False)
            for e, hits in zip(group, hit_lists):
                gold = passages_of(documents[e.doc_id].sha256)
                positive = gold_passage(gold, e)
                if positive is None:
                    counts["questions left out: the gold answer is not inside one index passage"] += 1
                    continue
                counts["questions"] += 1
                add(positive, {"id": e.id, "question": e.question, "is_impossible": False,
                               "answers": [{"text": e.answers[0], "answer_start": e.answer_starts[0] - positive.start}]})
                gold_ids = {p.idx for p in gold}
                answers = [a.lower() for a in e.answers]
                taken = 0
                for hit in hits:
                    if taken == negatives:
                        break
                    if hit.passage.idx in gold_ids:
                        continue  # another window of the gold paragraph: it may overlap the answer
                    if any(a in hit.passage.text.lower() for a in answers):
                        counts["retrieved passages left out: they contain an answer's text"] += 1
                        continue
                    taken += 1
                    add(hit.passage, {"id": f"{e.id}{NEGATIVE_MARK}{taken}", "question": e.question, "is_impossible": True, "answers": []})
                counts["negative passages"] += taken
            progress.update(task, advance=len(group))
    if not counts["questions"]:
        raise QAError(f"no question of {str(train)!r} has its paragraph in the index {str(index.path)!r}: index the training file itself")
    articles: dict[str, list] = {}
    for paragraph in paragraphs.values():
        articles.setdefault(paragraph.pop("title"), []).append(paragraph)
    out = {
        "version": "v2.0",
        "source": {"train": str(train), "train_sha256": data.sha256, "index": str(index.path), "retriever": retriever,
                   "depth": depth, "negatives": negatives},
        "data": [{"title": title, "paragraphs": ps} for title, ps in articles.items()],
    }
    return out, counts


def write_open_training_data(data: dict, path: str | Path) -> None:
    Path(path).write_text(json.dumps(data, ensure_ascii=False))
