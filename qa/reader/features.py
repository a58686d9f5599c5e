"""Training features for an extractive reader, stored compactly.

Each (question, context) pair is tokenised with ``truncation="only_second"`` into windows of
``max_length`` tokens overlapping by ``stride``; a window's label is the token span of the first
gold answer, or the [CLS] position (0) when the answer is not wholly inside the window or the
question is unanswerable (as in Hugging Face's ``run_qa.py``). Each feature also records its
question, so that a question's windows and retrieved passages can be batched and normalised
together (``--shared-norm``). Token ids of all features live in
one flat ``uint16``/``int32`` array with offsets, so SQuAD's ~90k features take tens of MB, and
tokenisation runs in chunks of at most ``chunk`` questions and ``chunk_chars`` characters of
context, so memory stays bounded by the chunk whatever the length of the documents (a COVID-QA
article is tokenised whole for each of its questions, into ~25 windows).

A run keeps its features on disk (:func:`save_features`: one ``.npy`` file per array, nothing
pickled, with a record of what they were computed from), so that a resumed run loads them
(:func:`load_features`) instead of reading and tokenising its training files again.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from qa.corpora.squad import Example

CHUNK_CHARS = 1_000_000  # context characters tokenised at once (see featurize)
LENGTH_SORT_BATCHES = 50  # batches' worth of features (or questions) sorted by length together, to pad little
#: Part of what stored features are checked against: raise it when :func:`featurize` changes what it
#: makes of the same data, so that features stored by an earlier version are made again.
FEATURIZE_VERSION = 1
RECORD = "features.json"
#: A text of the hard cases of tokenisation (case, accents, ligatures, numbers): two tokenizers that
#: share a vocabulary and tokenise it alike are taken to tokenise alike.
TOKENIZER_PROBE = "What cytokines are elevated in severe COVID-19? IL-6, TNF-α and ﬁbrinogen (3.5 g/L) in 2020."


@dataclass
class Features:
    ids: np.ndarray  # all features' token ids, concatenated
    type_ids: np.ndarray  # token type ids, same layout (uint8)
    offsets: np.ndarray  # feature i is ids[offsets[i]:offsets[i + 1]]
    starts: np.ndarray  # label token positions (int16)
    ends: np.ndarray
    questions: np.ndarray  # the question each feature belongs to (int32; see Example.question_key)
    answerable: np.ndarray  # whether the feature's entry has an answer (bool; False: unanswerable, a retrieved negative)

    def __len__(self) -> int:
        return len(self.starts)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def batch(self, indices: Sequence[int], pad_id: int) -> dict[str, np.ndarray]:
        """Padded ``input_ids``, ``token_type_ids``, ``attention_mask`` and labels for ``indices``."""
        lengths = self.lengths[indices]
        width = int(lengths.max())
        ids = np.full((len(indices), width), pad_id, dtype=np.int64)
        types = np.zeros((len(indices), width), dtype=np.int64)
        mask = np.zeros((len(indices), width), dtype=np.int64)
        for row, (i, n) in enumerate(zip(indices, lengths)):
            lo = self.offsets[i]
            ids[row, :n] = self.ids[lo : lo + n]
            types[row, :n] = self.type_ids[lo : lo + n]
            mask[row, :n] = 1
        return {
            "input_ids": ids,
            "token_type_ids": types,
            "attention_mask": mask,
            "start_positions": self.starts[indices].astype(np.int64),
            "end_positions": self.ends[indices].astype(np.int64),
        }


def featurize(
    examples: Sequence[Example],
    contexts: dict[str, str],
    tokenizer,
    max_length: int = 384,
    stride: int = 128,
    chunk: int = 1000,
    on_chunk: Callable[[int], None] | None = None,
    negative_fraction: float = 1.0,
    seed: int = 0,
    chunk_chars: int = CHUNK_CHARS,
) -> Features:
    """Features for ``examples``, whose paragraphs are ``contexts[example.doc_id]``.

    ``negative_fraction`` < 1 keeps only that fraction (drawn with ``seed``) of the windows
    without an answer of *answerable* questions, labelled [CLS]: long documents (COVID-QA's
    articles give ~25 windows per question) are otherwise mostly such windows. The windows of
    unanswerable entries (SQuAD 2.0's, or the retrieved passages of ``qa train open-data``) are
    all kept: they are the no-answer examples themselves.
    """
    if not 0.0 <= negative_fraction <= 1.0:
        raise ValueError("negative_fraction must be between 0 and 1")
    if hasattr(tokenizer, "backend_tokenizer"):  # a fast tokenizer: windows cut by the tokenizers library
        from qa.bert import check_windows, copy_tokenizer

        check_windows(copy_tokenizer(tokenizer.backend_tokenizer))  # a copy: transformers' own keeps its settings
    rng = np.random.default_rng(seed)
    id_dtype = np.uint16 if len(tokenizer) <= np.iinfo(np.uint16).max else np.int32
    ids, types, lengths, starts, ends, questions, answerable = [], [], [], [], [], [], []
    question_number: dict[str, int] = {}
    for part in _chunks(examples, contexts, chunk, chunk_chars):
        enc = tokenizer(
            [e.question.lstrip() for e in part],
            [contexts[e.doc_id] for e in part],
            truncation="only_second",
            max_length=max_length,
            stride=stride,
            return_overflowing_tokens=True,
            return_offsets_mapping=True,
            padding=False,
        )
        for f, input_ids in enumerate(enc["input_ids"]):
            example = part[enc["overflow_to_sample_mapping"][f]]
            start, end = _label(example, enc.sequence_ids(f), enc["offset_mapping"][f])
            if negative_fraction < 1.0 and start == 0 and example.answerable and rng.random() >= negative_fraction:
                continue
            ids.append(np.asarray(input_ids, dtype=id_dtype))
            types.append(np.asarray(enc["token_type_ids"][f], dtype=np.uint8))
            lengths.append(len(input_ids))
            starts.append(start)
            ends.append(end)
            questions.append(question_number.setdefault(example.question_key, len(question_number)))
            answerable.append(example.answerable)
        if on_chunk:
            on_chunk(len(part))
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return Features(
        np.concatenate(ids) if ids else np.zeros(0, id_dtype),
        np.concatenate(types) if types else np.zeros(0, np.uint8),
        offsets,
        np.asarray(starts, dtype=np.int16),
        np.asarray(ends, dtype=np.int16),
        np.asarray(questions, dtype=np.int32),
        np.asarray(answerable, dtype=bool),
    )


def _chunks(examples: Sequence[Example], contexts: dict[str, str], most: int, chars: int) -> Iterator[Sequence[Example]]:
    """``examples`` in order, cut into runs of at most ``most`` questions whose contexts hold at
    most ``chars`` characters (or one question, when its own context is longer)."""
    first, size = 0, 0
    for i, example in enumerate(examples):
        n = len(contexts[example.doc_id])
        if i > first and (i - first == most or size + n > chars):
            yield examples[first:i]
            first, size = i, 0
        size += n
    if first < len(examples):
        yield examples[first:]


def tokenizer_digest(tokenizer) -> str:
    """What identifies how a tokenizer tokenises: its class, vocabulary and the ids of
    :data:`TOKENIZER_PROBE`."""
    import hashlib

    digest = hashlib.sha256(type(tokenizer).__name__.encode())
    digest.update(json.dumps(sorted(tokenizer.get_vocab().items())).encode())
    digest.update(json.dumps(tokenizer(TOKENIZER_PROBE)["input_ids"]).encode())
    return digest.hexdigest()


def array_files() -> tuple[str, ...]:
    """The names of the files :func:`save_features` writes besides its record, one per array."""
    return tuple(f"{f.name}.npy" for f in fields(Features))


def save_features(features: Features, folder: Path, record: dict) -> None:
    """Store ``features`` in ``folder``, one ``.npy`` file per array, and ``record`` (what they
    were computed from, and what a resumed run needs to know of the data) written last: without it
    the arrays are not trusted."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / RECORD).unlink(missing_ok=True)
    for field, name in zip(fields(Features), array_files()):
        np.save(folder / name, getattr(features, field.name), allow_pickle=False)
    (folder / RECORD).write_text(json.dumps(record))


def load_features(folder: Path, inputs: dict) -> tuple[Features, dict] | None:
    """The features stored in ``folder`` and their record, when they were computed from ``inputs``
    (``record["inputs"]``); None when there are none, or they were computed from anything else."""
    try:
        record = json.loads((folder / RECORD).read_text())
        if record.get("inputs") != inputs:
            return None
        arrays = {f.name: np.load(folder / name, allow_pickle=False) for f, name in zip(fields(Features), array_files())}
    except (OSError, ValueError, EOFError):
        return None
    return Features(**arrays), record


def _label(example: Example, sequence_ids: list, offsets: list) -> tuple[int, int]:
    """Token positions of the first gold answer in this window, or (0, 0)."""
    if not example.answers or not example.answer_starts or example.answer_starts[0] < 0:
        return 0, 0
    char_start = example.answer_starts[0]
    char_end = char_start + len(example.answers[0])
    context = [i for i, s in enumerate(sequence_ids) if s == 1]
    if not context or offsets[context[0]][0] > char_start or offsets[context[-1]][1] < char_end:
        return 0, 0
    start = next(i for i in context if offsets[i][1] > char_start)
    end = next(i for i in reversed(context) if offsets[i][0] < char_end)
    return start, end
