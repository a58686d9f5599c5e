"""Knowledge distillation for ``qa train reader --teacher``: the teacher's start and end logits for
every training feature, computed once and kept on disk, and the loss that mixes them with the hard
labels.

The logits are stored as the features are, token after token: a float16 ``(tokens, 2)`` array in
a ``.npy`` file (memory-mapped, written in chunks: memory does not grow with the data, and nothing
is pickled), beside a JSON record of the teacher and of the features it was computed for, so that
a resumed run reuses it and a changed run computes it again. A student epoch then costs no teacher
passes. Teacher and student must share a tokenizer: the logits are per token of the student's
features.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from qa.errors import QAError
from qa.progress import progress_bar
from qa.reader.features import TOKENIZER_PROBE, Features

LOGITS = "teacher_logits.npy"
RECORD = "teacher.json"
TEACHER_BATCH = 16  # features per teacher forward pass


def features_digest(features: Features) -> str:
    """What identifies a set of features: their token ids and where each starts."""
    digest = hashlib.sha256(features.ids.tobytes())
    digest.update(features.offsets.tobytes())
    return digest.hexdigest()


def same_tokenizer(first, second) -> bool:
    """Whether two tokenizers tokenise alike (same vocabulary, same ids for a probe of the hard cases)."""
    return first.get_vocab() == second.get_vocab() and first(TOKENIZER_PROBE)["input_ids"] == second(TOKENIZER_PROBE)["input_ids"]


def check_same_tokenizer(student, teacher, teacher_name: str) -> None:
    """Raise unless ``teacher`` tokenises as ``student`` does."""
    if not same_tokenizer(student, teacher):
        raise QAError(
            f"the teacher {teacher_name!r} tokenises differently from the student: its logits cannot be matched to the "
            "student's tokens. Choose a teacher with the student's tokenizer (e.g. a larger model of the same family), "
            "or train the student from the teacher's base"
        )


def teacher_logits(teacher: str, features: Features, pad_id: int, folder: Path, device: str, show_progress: bool = False) -> np.ndarray:
    """The teacher's (start, end) logits of every token of ``features``, float16, memory-mapped
    from ``folder`` (computed there first unless a record shows they already were)."""
    from transformers import AutoModelForQuestionAnswering

    from qa.device import autocast, default_precision

    folder.mkdir(parents=True, exist_ok=True)
    record = {"teacher": teacher, "features": features_digest(features), "tokens": int(features.offsets[-1])}
    path, record_path = folder / LOGITS, folder / RECORD
    if record_path.is_file() and path.is_file() and json.loads(record_path.read_text()) == record:
        return np.load(path, mmap_mode="r")
    record_path.unlink(missing_ok=True)  # the record is written last: without it the logits are not trusted
    try:
        model = AutoModelForQuestionAnswering.from_pretrained(teacher, dtype=torch.float32).to(device).eval()
    except (OSError, ValueError) as err:
        raise QAError(f"cannot load the teacher {teacher!r}: {str(err).splitlines()[0] if str(err) else type(err).__name__}") from None
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float16, shape=(record["tokens"], 2))
    order = np.argsort(features.lengths, kind="stable")  # similar lengths together: little padding
    precision = default_precision(device)
    with progress_bar("features", disable=not show_progress) as progress:
        task = progress.add_task("Teacher logits", total=len(order))
        for first in range(0, len(order), TEACHER_BATCH):
            indices = order[first : first + TEACHER_BATCH]
            batch = {k: torch.from_numpy(v).to(device) for k, v in features.batch(indices, pad_id).items() if not k.endswith("_positions")}
            with torch.inference_mode(), autocast(device, precision):
                result = model(**batch)
            logits = torch.stack([result.start_logits, result.end_logits], dim=-1).float().cpu().numpy()
            for row, i in enumerate(indices):
                lo, hi = features.offsets[i], features.offsets[i + 1]
                out[lo:hi] = logits[row, : hi - lo]
            progress.update(task, advance=len(indices))
    out.flush()
    del out
    record_path.write_text(json.dumps(record))
    return np.load(path, mmap_mode="r")


def batch_logits(logits: np.ndarray, features: Features, indices) -> np.ndarray:
    """The stored logits of ``indices`` as a ``(batch, width, 2)`` array padded as
    :meth:`Features.batch` pads (padding: 0, masked out by the loss)."""
    lengths = features.lengths[indices]
    out = np.zeros((len(indices), int(lengths.max()), 2), dtype=np.float32)
    for row, (i, n) in enumerate(zip(indices, lengths)):
        lo = features.offsets[i]
        out[row, :n] = logits[lo : lo + n]
    return out


def distillation_loss(start: torch.Tensor, end: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL divergence from the teacher's start and end distributions to the student's, both
    softened by ``temperature`` and taken over the real tokens (``mask``), times
    ``temperature ** 2`` (Hinton et al., 2015), averaged over start and end."""
    hidden = ~mask.bool()
    total = start.new_zeros(())
    for student_logits, teacher_logits in ((start, teacher[..., 0]), (end, teacher[..., 1])):
        s = (student_logits.float() / temperature).masked_fill(hidden, -1e4)
        t = (teacher_logits.float() / temperature).masked_fill(hidden, -1e4)
        total = total + F.kl_div(F.log_softmax(s, -1), F.log_softmax(t, -1), log_target=True, reduction="batchmean")
    return total / 2 * temperature**2


def keep_layers(model, layers: int) -> list[int]:
    """Keep ``layers`` of a BERT-family model's transformer layers, evenly spaced, first and last
    included (a student that starts from its teacher's weights); returns the kept layers."""
    encoder = getattr(getattr(model, model.base_model_prefix, None), "encoder", None)
    blocks = getattr(encoder, "layer", None)
    if blocks is None:
        raise QAError(f"--layers works on BERT-family readers (an encoder with .layer); {type(model).__name__} has none")
    if not 1 <= layers <= len(blocks):
        raise QAError(f"--layers must be between 1 and the base's {len(blocks)} layers, got {layers}")
    kept = sorted({int(round(x)) for x in np.linspace(0, len(blocks) - 1, layers)})
    encoder.layer = torch.nn.ModuleList(blocks[i] for i in kept)
    model.config.num_hidden_layers = len(kept)
    return kept
