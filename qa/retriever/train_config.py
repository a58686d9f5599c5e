"""What defines a run of `qa train retriever`: the one place its defaults live (the command line
reads them from here without importing torch)."""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from qa.embedding import DEFAULT_EMBEDDING_MODEL
from qa.training import changed_options


@dataclass
class RetrieverTrainConfig:
    """Everything that defines a training run of the question/passage encoder; saved with the
    model card. ``train`` are SQuAD-format files; ``index`` the indexes holding their documents
    (positives and BM25 hard negatives are their passages): one for all the files, or one per file."""

    train: list[str]
    index: list[str]
    output: str
    base: str = DEFAULT_EMBEDDING_MODEL
    batch_size: int = 64
    mini_batch_size: int = 16
    """Cached MultipleNegativesRankingLoss (GradCache): the batch's in-batch negatives at the memory
    of this many; 0 for the plain loss (the whole batch in memory)."""
    negatives: int = 1
    """BM25 hard negatives per question: top passages of the same training file that hold none of
    its gold answers."""
    negative_depth: int = 30
    lr: float = 2e-5
    epochs: float = 1.0
    warmup: float = 0.1
    seed: int = 0
    checkpoint_every: int = 500
    limit: list[int] | None = None
    """Train on the first N questions of each file only: one N for all the files, or one per file."""
    inverse_cloze: list[int] | None = None
    """Inverse-cloze pairs (:mod:`qa.retriever.cloze`) from the passages of each file's own documents,
    trained on beside its questions: one N for all the files, or one per file; None: none."""
    held_out: int = 500
    """Questions kept out of training to measure recall before and after."""
    device: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.limit, int):  # a configuration saved when one limit served every file
            self.limit = [self.limit]

    def index_of(self, i: int) -> str:
        """The index of training file ``i``."""
        return _of_file(self.index, i)

    def limit_of(self, i: int) -> int | None:
        """How many questions of training file ``i`` to take (None: all)."""
        return _of_file(self.limit, i) if self.limit else None

    def inverse_cloze_of(self, i: int) -> int:
        """How many inverse-cloze pairs to draw from training file ``i``'s passages."""
        return _of_file(self.inverse_cloze, i) if self.inverse_cloze else 0

    def command(self) -> str:
        """The `qa train retriever` command line that runs this configuration."""
        args = ["qa", "train", "retriever"]
        for path in self.train:
            args += ["--train", path]
        for path in self.index:
            args += ["--index", path]
        args += ["--output", self.output]
        args += changed_options(self, RetrieverTrainConfig([], [], ""), skip=("train", "index", "output", "limit", "inverse_cloze"))
        for n in self.limit or []:
            args += ["--limit", str(n)]
        for n in self.inverse_cloze or []:
            args += ["--inverse-cloze", str(n)]
        return shlex.join(args)


def _of_file(values: list, i: int):
    """Training file ``i``'s value of an option given once for all the files or once per file."""
    return values[0] if len(values) == 1 else values[i]
