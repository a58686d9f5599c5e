"""What defines a training run of `qa train reader`: the one place its defaults live (the
command line reads them from here without importing torch)."""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from qa.errors import QAError
from qa.training import changed_options


@dataclass
class TrainConfig:
    """Everything that defines a training run; saved with every checkpoint and the model card."""

    train: list[str] | str
    """SQuAD-format files (a single path is taken as a list of one)."""
    base: str
    output: str
    eval: str | None = None
    max_length: int = 384
    stride: int = 128
    batch_size: int = 32
    grad_accum: int = 1
    lr: float = 5e-5
    epochs: float = 2.0
    warmup: float = 0.1
    weight_decay: float = 0.01
    clip: float = 1.0
    seed: int = 0
    freeze_embeddings: bool = False
    negative_fraction: float = 1.0
    checkpoint_every: int = 500
    max_minutes: float | None = None
    limit: int | None = None
    eval_limit: int | None = None
    save_dtype: str = "float32"
    teacher: str | None = None
    """A reader whose start/end logits the student learns from (same tokenizer); see qa.reader.distill."""
    alpha: float = 0.5
    """Weight of the teacher's soft targets in the loss; the hard labels get 1 - alpha."""
    temperature: float = 2.0
    shared_norm: bool = False
    """Batch each question's windows and retrieved passages together and normalise its span
    scores over all of them (see qa.reader.shared_norm)."""
    unanswerable_fraction: float = 0.0
    """With shared_norm: this fraction of the questions lose their gold passage each epoch and
    learn [CLS] over their retrieved negatives (the no-answer signal for abstention)."""
    layers: int | None = None
    """Start from this many of the base's layers (evenly spaced): a smaller, faster student."""
    train_repeat: list[int] | None = None
    """How many times each ``train`` file's questions are used in an epoch (default: once each),
    to mix a small in-domain set (COVID-QA) into a large one (SQuAD)."""
    device: str | None = None

    def __post_init__(self):
        if isinstance(self.train, str):
            self.train = [self.train] if self.train else []
        if self.train_repeat is not None and (len(self.train_repeat) != len(self.train) or min(self.train_repeat, default=1) < 1):
            raise QAError(f"--train-repeat takes a whole number of at least 1 for each --train file ({len(self.train)}), "
                          f"got {self.train_repeat}")

    def command(self) -> str:
        """The `qa train reader` command line that runs this configuration."""
        args = ["qa", "train", "reader"]
        for path in self.train:
            args += ["--train", path]
        args += ["--base", self.base, "--output", self.output]
        args += changed_options(self, TrainConfig(self.train, self.base, self.output), skip=("train", "base", "output", "train_repeat"))
        for repeat in self.train_repeat or []:
            args += ["--train-repeat", str(repeat)]
        return shlex.join(args)
