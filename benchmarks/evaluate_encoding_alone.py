"""`qa evaluate` with the question encoder called once per question, as before `ask_batch`
encoded a batch of questions together: tells the effect of batched question encoding from the
rest of a change (docs/BENCHMARKS.md, "The one question path").

    python benchmarks/evaluate_encoding_alone.py open-squad --limit 1000 --out qa-eval/alone
"""

import sys

import numpy as np

import qa.embedding
from qa.cli import main

batched = qa.embedding.Embedder.encode


def one_at_a_time(self, texts, on_batch=None):
    if len(texts) <= 1:
        return batched(self, texts, on_batch)
    return np.concatenate([batched(self, [text]) for text in texts])


if __name__ == "__main__":
    qa.embedding.Embedder.encode = one_at_a_time
    sys.argv = ["qa", "evaluate", *sys.argv[1:]]
    sys.exit(main())
