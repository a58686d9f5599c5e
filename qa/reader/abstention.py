"""When a reader says that the passages it read do not answer the question.

A reader scores a no-answer ([CLS]) beside its spans. The rule compares the best span's score with
the no-answer score and abstains when the span does not beat it by ``threshold``:

- ``scope="passage"``: the no-answer score of the best span's own passage (its [CLS] start + end,
  lowest over its windows), as readers trained one paragraph at a time on SQuAD 2.0 are used;
- ``scope="question"``: the no-answer score of all the passages read together, as readers trained
  with ``qa train reader --shared-norm`` learn it (log-sum-exp of the [CLS] start logits of every
  window, plus the same of the end logits: the probability that the start and the end are both a
  [CLS], against one span's, under the softmax training normalises over all the passages).

A reader folder may carry its tuned rule in ``abstention.json`` (written by
``benchmarks/tune_abstention.py``); the pipeline then abstains by default.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from qa.errors import QAError

SCOPES = ("passage", "question")
FILENAME = "abstention.json"


@dataclass(frozen=True)
class Abstention:
    """Abstain when the best span's score minus the no-answer score (of ``scope``) is below ``threshold``."""

    threshold: float
    scope: str = "passage"

    def __post_init__(self):
        if self.scope not in SCOPES:
            raise QAError(f"unknown no-answer scope {self.scope!r}: choose from {', '.join(SCOPES)}")


def load_abstention(folder: str | Path) -> Abstention | None:
    """The rule in ``folder/abstention.json``, or None when the folder has none (or is a hub id)."""
    path = Path(folder) / FILENAME
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        return Abstention(float(data["threshold"]), str(data.get("scope", "passage")))
    except (ValueError, KeyError, TypeError) as err:
        raise QAError(f"{path} is not a valid abstention rule ({err}): fix or delete it") from err


def save_abstention(folder: str | Path, rule: Abstention, provenance: dict[str, Any]) -> Path:
    """Write ``rule`` and how it was chosen (``provenance``) to ``folder/abstention.json``."""
    path = Path(folder) / FILENAME
    path.write_text(json.dumps({**asdict(rule), **provenance}, indent=2) + "\n")
    return path
