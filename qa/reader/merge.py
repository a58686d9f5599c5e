"""Average two readers' weights: ``qa train merge``.

Weight-space ensembling (WiSE-FT, Wortsman et al. 2022): a reader fine-tuned further from another
(``biomed``, trained from the default with COVID-QA mixed in) lies in the same basin as its base,
and the readers between the two often keep most of what each is good at, at the cost of one. The
merged weights are ``(1 - weight) * first + weight * second``, tensor by tensor in float32; the
configuration and tokenizer are the first reader's (both must have the same ones).
"""

from __future__ import annotations

import hashlib
import json
import shlex
import time
from pathlib import Path
from typing import Any

import torch

from qa import training
from qa.device import cpu_name, pick_device
from qa.errors import QAError
from qa.fsutil import absolute, replace_directory, staging_dir
from qa.hub import load_error, quiet_transformers, resolve_model
from qa.reader.distill import same_tokenizer
from qa.reader.reader import reader_folder
from qa.reader.saved import MERGE_MARK, SAVE_DTYPES, gold_scores, gold_scores_lines, qa_card, save_reader, without_repeat


def merge_readers(
    first: str,
    second: str,
    weight: float,
    output: str | Path,
    eval_file: str | None = None,
    eval_limit: int | None = None,
    save_dtype: str = "float16",
    device: str | None = None,
) -> dict[str, Any]:
    """Write ``(1 - weight) * first + weight * second`` to ``output`` with a model card (both
    readers' cards below it) and ``metrics.json``; return the metrics. ``output`` must be new,
    empty, or a reader ``qa train`` wrote: it is replaced whole once the new one is complete."""
    quiet_transformers()
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    if not 0.0 <= weight <= 1.0:
        raise QAError(f"--weight must be between 0 and 1 (the share of the second reader), not {weight:g}")
    if save_dtype not in SAVE_DTYPES:
        raise QAError(f"--save-dtype must be float32, float16 or bfloat16, not {save_dtype!r}")
    target = absolute(output)
    _check_output(target)
    started = time.perf_counter()
    sources = [resolve_model(reader_folder(name)) for name in (first, second)]
    try:
        models = [AutoModelForQuestionAnswering.from_pretrained(s, dtype=torch.float32) for s in sources]
        tokenizers = [AutoTokenizer.from_pretrained(s) for s in sources]
    except (OSError, ValueError) as err:
        raise load_error("reader", f"{first} or {second}", err) from err
    if not same_tokenizer(*tokenizers):
        raise QAError(f"{first!r} and {second!r} tokenise differently: only readers with the same tokenizer can be merged")
    models[0].load_state_dict(_interpolate(models[0].state_dict(), models[1].state_dict(), weight, first, second))

    with staging_dir(target) as staging:
        save_reader(staging, models[0], tokenizers[0], save_dtype)
        metrics: dict[str, Any] = {
            "first": first, "second": second, "weight": weight,
            "first_weights_sha256": _weights_sha256(sources[0]), "second_weights_sha256": _weights_sha256(sources[1]),
            "merge_seconds": round(time.perf_counter() - started, 1), "device": cpu_name(),
        }
        if eval_file:
            metrics.update(gold_scores(staging, eval_file, eval_limit, pick_device(device)))
        (staging / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        command = _command(first, second, weight, output, eval_file, eval_limit, save_dtype)
        (staging / "README.md").write_text(_model_card(metrics, save_dtype, command))
        replace_directory(staging, target)
    return metrics


def _check_output(target: Path) -> None:
    """Raise unless ``target`` may be replaced: new, empty, or a reader ``qa train`` wrote (without
    a checkpoint: a training run in progress is not lost to a merge)."""
    if target.is_file():
        raise QAError(f"--output {str(target)!r} is a file: choose a folder")
    if not target.is_dir() or not any(target.iterdir()):
        return
    if not (training.is_training_output(target, "merge") or training.is_training_output(target, "reader")):
        raise QAError(f"--output {str(target)!r} is not empty and was not written by qa train: it would be replaced whole, "
                      "so choose a new folder")
    if (target / "checkpoint").exists():
        raise QAError(f"--output {str(target)!r} holds a checkpoint of qa train reader: choose another folder")


def _interpolate(first: dict, second: dict, weight: float, first_name: str, second_name: str) -> dict:
    """``(1 - weight) * first + weight * second`` for every tensor (float32 arithmetic, each
    result in its first tensor's dtype); raises unless both have the same tensors and shapes."""
    if first.keys() != second.keys() or any(first[k].shape != second[k].shape for k in first):
        raise QAError(f"{first_name!r} and {second_name!r} are not the same architecture (their weights differ in names or "
                      "shapes): only readers of one architecture, e.g. one fine-tuned from the other, can be merged")
    return {k: torch.lerp(first[k].float(), second[k].float(), weight).to(first[k].dtype) for k in first}


def _weights_sha256(source: str) -> str | None:
    """The sha256 of a local reader's ``model.safetensors`` (None for a hub id or another format)."""
    path = Path(source) / "model.safetensors"
    if not path.is_file():
        return None
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _command(first, second, weight, output, eval_file, eval_limit, save_dtype) -> str:
    args = ["qa", "train", "merge", first, second, "--weight", f"{weight:g}", "--output", str(output)]
    args += ["--eval", eval_file] if eval_file else []
    args += ["--eval-limit", str(eval_limit)] if eval_limit else []
    args += ["--save-dtype", save_dtype] if save_dtype != "float16" else []
    return shlex.join(args)


def _model_card(metrics: dict[str, Any], save_dtype: str, command: str) -> str:
    first, second, weight = metrics["first"], metrics["second"], metrics["weight"]

    def described(name: str, key: str) -> str:
        sha = metrics[key]
        return f"`{name}`" + (f" (model.safetensors sha256 `{sha}`)" if sha else "")

    lines = [
        f"# Extractive QA reader: `{first}` and `{second}` averaged, weight {weight:g} on the second",
        "",
        MERGE_MARK,
        "",
        f"- Weights: {1 - weight:g} × {described(first, 'first_weights_sha256')} + {weight:g} × "
        f"{described(second, 'second_weights_sha256')}, tensor by tensor in float32 (weight-space ensembling, WiSE-FT), "
        f"saved as {save_dtype}",
        f"- Configuration and tokenizer: `{first}`'s (the tokenizers are the same)",
        f"- Merged in {metrics['merge_seconds']:.1f} s on {metrics['device']}",
        "",
        "Command:",
        "",
        "```bash",
        command,
        "```",
        "",
    ]
    lines += gold_scores_lines(metrics)
    cards = {name: qa_card(name) for name in (first, second)}
    sections = [
        training.card_section(f"How the {role} reader `{name}` was trained", cards[name]) if cards[name] else [
            f"## The {role} reader `{name}`", "", "Not made by `qa train`: see its own documentation.", ""]
        for name, role in ((first, "first"), (second, "second"))
    ]
    if cards[first]:  # the second reader trained from the first: its chain holds the first's card
        sections[1] = without_repeat(sections[1], sections[0], first)
    return "\n".join(lines + sections[0] + sections[1])
