"""Inverse-cloze pairs (Lee et al. 2019, "Latent Retrieval for Weakly Supervised Open Domain
Question Answering"): training pairs made from passages alone, without questions. A sentence of
a passage is the query and the rest of the passage its positive, so an encoder learns what text
of a domain goes with what, where no one has written questions about it. The sentence is left in
its passage one time in ten (as Lee et al. do), so that the encoder still rewards word overlap.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable
from dataclasses import dataclass

from qa.index import Passage
from qa.index.store import retrieval_text

SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
MIN_WORDS = 8  # a shorter sentence (a heading, a figure label) says too little to find its passage by
MIN_SENTENCES = 3  # the passage keeps at least two sentences without its query
KEEP_SENTENCE = 0.1


@dataclass(frozen=True)
class ClozePair:
    query: str
    """A sentence of ``passage``."""
    positive: str
    """What the encoder sees as the passage: its title, then its text without the sentence (mostly)."""
    passage: Passage


def cloze_pairs(passages: Iterable[Passage], count: int, seed: int = 0) -> list[ClozePair]:
    """Up to ``count`` pairs, at most one per passage, passages in an order drawn with ``seed``;
    passages with fewer than ``MIN_SENTENCES`` sentences of ``MIN_WORDS`` words give none."""
    rng = random.Random(seed)
    order = sorted(passages, key=lambda p: p.idx)
    rng.shuffle(order)
    pairs: list[ClozePair] = []
    for passage in order:
        if len(pairs) >= count:
            break
        sentences = [s for s in SENTENCE_END.split(passage.text) if len(s.split()) >= MIN_WORDS]
        if len(sentences) < MIN_SENTENCES:
            continue
        sentence = rng.choice(sentences)
        text = passage.text if rng.random() < KEEP_SENTENCE else " ".join(passage.text.replace(sentence, " ", 1).split())
        pairs.append(ClozePair(sentence, retrieval_text(passage.title, text), passage))
    return pairs
