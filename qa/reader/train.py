"""Fine-tune an extractive reader on SQuAD-format data: ``qa train reader``.

One loop a reader can hold in their head: length-bucketed batches with dynamic padding, AdamW
with linear warmup and linear decay, bf16 autocast on CPU (fp16 with loss scaling on CUDA),
gradient accumulation and clipping, a checkpoint every N steps that ``resume`` continues from
exactly, and an optional time budget that sets the number of steps after measuring the first
ones. Checkpoints are safetensors and JSON: nothing is pickled.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from qa.corpora.squad import Example, load_squad
from qa import training
from qa.device import cpu_prefers_bf16, pick_device
from qa.errors import QAError
from qa.fsutil import recover_directory, replace_directory, share_like_create, staging_dir
from qa.hub import load_error, quiet_transformers, resolve_model
from qa.progress import progress_bar
from qa.reader.features import (
    FEATURIZE_VERSION, LENGTH_SORT_BATCHES, RECORD as FEATURES_RECORD, Features, array_files, featurize, load_features,
    save_features, tokenizer_digest,
)
from qa.reader.reader import reader_folder
from qa.reader.saved import CARD_MARK, gold_scores, gold_scores_lines, qa_card, save_reader
from qa.reader.train_config import TrainConfig

STATE = "trainer_state.json"
TEACHER_DIR = "checkpoint-teacher"  # the teacher's logits while a run lasts (named so that the folder reads as this command's)
FEATURES_DIR = "checkpoint-features"  # the run's features while it lasts, for a resumed run
OPTIMIZER = "optimizer.safetensors"
CALIBRATION_STEPS = 20
PLAN_WINDOW = 50  # steps whose speed sets the plan
TRIM_EVERY = 10  # steps between giving freed memory back (training.release_freed_memory); 0: never


@dataclass
class TrainState:
    """Where a run is: optimizer steps done, the schedule, and the position in the data."""

    step: int = 0
    total_steps: int = 0
    warmup_steps: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    seconds: float = 0.0
    teacher_seconds: float = 0.0  # computing the teacher's logits (not in ``seconds``, which counts steps)
    losses: list[float] = field(default_factory=list)


def batches(lengths: np.ndarray, batch_size: int, seed: int, epoch: int) -> list[np.ndarray]:
    """The batches of one epoch: a seeded shuffle, sorted by length within windows of 50 batches
    so that padding is small, then the batches themselves shuffled. Same seed, same batches."""
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(lengths))
    window = batch_size * LENGTH_SORT_BATCHES
    out: list[np.ndarray] = []
    for first in range(0, len(order), window):
        chunk = order[first : first + window]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        out += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    rng.shuffle(out)
    return out


def _epoch_batches(features: Features, config: TrainConfig, epoch: int) -> list[np.ndarray]:
    if config.shared_norm:
        from qa.reader.shared_norm import question_batches

        return question_batches(features.questions, features.lengths, config.batch_size, config.seed, epoch,
                                features.answerable, config.unanswerable_fraction)
    return batches(features.lengths, config.batch_size, config.seed, epoch)


def learning_rate(config: TrainConfig, state: TrainState) -> float:
    """Linear warmup to ``config.lr``, then linear decay to 0 at ``state.total_steps``."""
    if state.step < state.warmup_steps:
        return config.lr * (state.step + 1) / state.warmup_steps
    remaining = state.total_steps - state.step
    return config.lr * max(0.0, remaining / max(1, state.total_steps - state.warmup_steps))


def train_reader(
    config: TrainConfig,
    resume: bool = False,
    overwrite: bool = False,
    show_progress: bool = False,
    stop_after_steps: int | None = None,
    stop_after_minutes: float | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any] | None:
    """Train, save the model, tokenizer and model card to ``config.output``; return the metrics.

    ``config.output`` must be new, empty, or a folder ``qa train reader`` wrote (a model with its
    model card, or a checkpoint); any other folder is refused unless ``overwrite`` is set, since
    the model's files (README.md, config.json, ...) would replace files of the same names there.

    With ``stop_after_steps`` or ``stop_after_minutes``, the run checkpoints and returns None
    when that much is done (this call's part), to be continued with ``resume=True``.
    ``log`` receives a line of progress at every checkpoint (for logs, where no bar is drawn).
    """
    quiet_transformers()
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    if config.unanswerable_fraction and not config.shared_norm:
        raise QAError("--unanswerable-fraction needs --shared-norm (a question's passages are trained together)")

    output = Path(config.output)
    checkpoint = output / "checkpoint"
    device = pick_device(config.device)
    # A run killed while saving leaves a half-built checkpoint, or its last one moved aside:
    # put that back and remove the half-built one, before looking for a checkpoint.
    recover_directory(checkpoint)
    if resume:
        if not (checkpoint / STATE).is_file():
            raise QAError(f"nothing to resume: no checkpoint in {str(checkpoint)!r}")
        saved = json.loads((checkpoint / STATE).read_text())
        config = TrainConfig(**{**saved["config"], "device": config.device})
        source = str(checkpoint)
    else:
        if (checkpoint / STATE).is_file():
            raise QAError(f"{str(output)!r} holds a checkpoint: pass --resume to continue it, or choose another --output")
        if not overwrite:
            check_output(output)
        source = resolve_model(reader_folder(config.base))
    from qa.reader.distill import LOGITS, RECORD

    training.check_work_folder(output / TEACHER_DIR, (LOGITS, RECORD), "reader")  # removed at the end
    training.check_work_folder(output / FEATURES_DIR, (*array_files(), FEATURES_RECORD), "reader")  # removed at the end
    torch.manual_seed(config.seed)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModelForQuestionAnswering.from_pretrained(source, dtype=torch.float32)
    except (OSError, ValueError) as err:
        raise load_error("base model", config.base, err) from err
    if config.layers and not resume:  # a resumed student already has its layers
        from qa.reader.distill import keep_layers

        keep_layers(model, config.layers)
    model.to(device).train()
    if config.freeze_embeddings:
        model.get_input_embeddings().weight.requires_grad_(False)

    started = time.perf_counter()
    features, train_examples, sources = _training_features(config, tokenizer, output / FEATURES_DIR, log)
    featurize_seconds = time.perf_counter() - started
    if len(features) == 0:
        raise QAError(f"no training examples in {', '.join(config.train)}")
    teacher, teacher_seconds = None, 0.0
    if config.teacher:
        from qa.reader.distill import check_same_tokenizer, teacher_logits

        teacher_source = resolve_model(reader_folder(config.teacher))
        try:
            check_same_tokenizer(tokenizer, AutoTokenizer.from_pretrained(teacher_source), config.teacher)
        except (OSError, ValueError) as err:
            raise load_error("teacher", config.teacher, err) from err
        teacher_started = time.perf_counter()
        teacher = teacher_logits(teacher_source, features, tokenizer.pad_token_id or 0, output / TEACHER_DIR, device, show_progress)
        teacher_seconds = time.perf_counter() - teacher_started  # about 0 when a resumed run finds them computed

    optimizer = _optimizer(model, config)
    per_epoch = math.ceil(len(_epoch_batches(features, config, 0)) / config.grad_accum)
    epoch_steps = max(1, math.ceil(config.epochs * per_epoch))
    state = TrainState(total_steps=epoch_steps)
    state.warmup_steps = max(1, round(config.warmup * state.total_steps))
    if resume:
        state = TrainState(**saved["state"])
        _load_optimizer(optimizer, checkpoint / OPTIMIZER, model)
        torch.set_rng_state(load_file(checkpoint / OPTIMIZER)["rng.torch"])
    state.teacher_seconds += teacher_seconds

    scaler = torch.amp.GradScaler("cuda") if device.startswith("cuda") else None
    autocast = _train_autocast(device)
    pad_id = tokenizer.pad_token_id or 0
    run_started = time.perf_counter() - state.seconds
    call_started, call_steps = time.perf_counter(), 0
    step_times = [call_started]
    with progress_bar("steps", disable=not show_progress) as progress:
        task = progress.add_task("Training", total=state.total_steps, completed=state.step)
        while state.step < state.total_steps:
            epoch_batches = _epoch_batches(features, config, state.epoch)
            groups = [epoch_batches[i : i + config.grad_accum] for i in range(0, len(epoch_batches), config.grad_accum)]
            while state.batch_in_epoch < len(groups) and state.step < state.total_steps:
                loss = _step(model, optimizer, scaler, autocast, features, groups[state.batch_in_epoch], pad_id, device, config, state, teacher)
                state.batch_in_epoch += 1
                state.step += 1
                state.losses.append(round(loss, 4))
                if TRIM_EVERY and state.step % TRIM_EVERY == 0:
                    training.release_freed_memory()
                state.seconds = time.perf_counter() - run_started
                step_times.append(time.perf_counter())
                if config.max_minutes and (call_steps + 1 == CALIBRATION_STEPS or state.step % config.checkpoint_every == 0):
                    recent = step_times[-PLAN_WINDOW:]
                    _plan(config, state, (recent[-1] - recent[0]) / max(1, len(recent) - 1), epoch_steps)
                    progress.update(task, total=state.total_steps)
                progress.update(task, completed=state.step, description=f"Training (loss {np.mean(state.losses[-50:]):.3f})")
                if state.step % config.checkpoint_every == 0 and state.step < state.total_steps:
                    _save_checkpoint(checkpoint, model, tokenizer, optimizer, config, state)
                    if log:
                        log(
                            f"step {state.step}/{state.total_steps}, loss {np.mean(state.losses[-50:]):.3f}, "
                            f"lr {learning_rate(config, state):.2e}, {state.seconds / 60:.1f} min, checkpoint saved"
                        )
                call_steps += 1
                if state.step < state.total_steps and (
                    (stop_after_steps and call_steps >= stop_after_steps)
                    or (stop_after_minutes and time.perf_counter() - call_started >= 60 * stop_after_minutes)
                ):
                    if state.batch_in_epoch >= len(groups):
                        state.epoch, state.batch_in_epoch = state.epoch + 1, 0
                    _save_checkpoint(checkpoint, model, tokenizer, optimizer, config, state)
                    return None
            if state.batch_in_epoch >= len(groups):
                state.epoch += 1
                state.batch_in_epoch = 0

    metrics: dict[str, Any] = {
        "train_examples": train_examples,
        "train_features": len(features),
        "steps": state.step,
        "epochs": round(state.step / per_epoch, 3),
        "train_seconds": round(state.seconds, 1),
        "featurize_seconds": round(featurize_seconds, 1),
        **({"teacher_seconds": round(state.teacher_seconds, 2)} if config.teacher else {}),
        "final_loss": float(np.mean(state.losses[-50:])) if state.losses else None,
        "device": training.hardware(device),
    }
    save_reader(output, model, tokenizer, config.save_dtype)
    if config.eval:
        metrics.update(gold_scores(output, config.eval, config.eval_limit, device))
    (output / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    (output / "README.md").write_text(_model_card(config, metrics, sources, base_card=qa_card(config.base)))
    shutil.rmtree(checkpoint, ignore_errors=True)
    shutil.rmtree(output / TEACHER_DIR, ignore_errors=True)
    shutil.rmtree(output / FEATURES_DIR, ignore_errors=True)
    return metrics


def _training_features(config: TrainConfig, tokenizer, folder: Path, log: Callable[[str], None] | None) -> tuple[Features, int, list[str]]:
    """The features of the run's training data, its number of questions, and its files described for
    the model card: loaded from ``folder`` where this run stored them from the same files and
    settings (a resumed run), else made from the files and stored there."""
    inputs = _features_inputs(config, tokenizer)
    stored = load_features(folder, inputs)
    if stored is not None:
        features, record = stored
        if log:
            log(f"{len(features)} training features loaded from {folder}")
        return features, record["train_examples"], record["sources"]
    examples, contexts, sources = _training_examples(config)
    features = featurize(
        examples, contexts, tokenizer, config.max_length, config.stride,
        negative_fraction=config.negative_fraction, seed=config.seed,
    )
    if len(features):
        save_features(features, folder, {"inputs": inputs, "train_examples": len(examples), "sources": sources})
    return features, len(examples), sources


def _features_inputs(config: TrainConfig, tokenizer) -> dict[str, Any]:
    """What a run's features are made from: the training files' bytes, the settings that
    :func:`featurize` and :func:`_training_examples` take, and the tokenizer."""
    files = []
    for path in config.train:
        try:
            with open(path, "rb") as f:
                files.append(hashlib.file_digest(f, "sha256").hexdigest())
        except OSError as err:
            raise QAError(f"cannot read the training file {path!r}: {err.strerror or err}") from None
    return {
        "version": FEATURIZE_VERSION, "train": files, "train_repeat": config.train_repeat, "limit": config.limit,
        "max_length": config.max_length, "stride": config.stride, "negative_fraction": config.negative_fraction,
        "seed": config.seed, "tokenizer": tokenizer_digest(tokenizer),
    }


def _training_examples(config: TrainConfig) -> tuple[list[Example], dict[str, str], list[str]]:
    """The questions of the ``config.train`` files (the first ``config.limit`` of each), each file's
    repeated ``config.train_repeat`` times; their paragraphs by id; and each file described for the
    model card (path, sha256, repeats). With several files or copies, ids get a prefix per file
    and copy, so that neither paragraphs nor questions of different files or copies merge."""
    repeats = config.train_repeat or [1] * len(config.train)  # checked by TrainConfig
    several = len(config.train) > 1
    examples: list[Example] = []
    contexts: dict[str, str] = {}
    sources: list[str] = []
    for i, (path, repeat) in enumerate(zip(config.train, repeats)):
        data = load_squad(path, id_prefix=f"{i}/" if several else "")
        chosen = data.examples[: config.limit] if config.limit else data.examples
        for copy in range(repeat):
            prefix = f"{i}.{copy}/" if several or repeat > 1 else ""
            examples += [replace(e, id=prefix + e.id) for e in chosen] if prefix else chosen
        contexts.update((d.id, d.text) for d in data.documents)
        sources.append(f"`{path}` (sha256 `{data.sha256}`)" + (f" × {repeat}" if repeat > 1 else ""))
    return examples, contexts, sources


def is_training_output(folder: Path) -> bool:
    """True for a folder ``qa train reader`` wrote (see :func:`qa.training.is_training_output`)."""
    return training.is_training_output(folder, "reader", f"checkpoint/{STATE}")


def check_output(output: Path) -> None:
    """Raise unless training may write to ``output`` (see :func:`train_reader`)."""
    training.check_output(output, "reader", f"checkpoint/{STATE}")


def _optimizer(model, config: TrainConfig) -> torch.optim.AdamW:
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (no_decay if param.ndim < 2 or "LayerNorm" in name or "norm" in name.lower() else decay).append(param)
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=config.lr)


def _train_autocast(device: str):
    if device.startswith("cuda"):
        return lambda: torch.autocast("cuda", dtype=torch.float16)
    if device == "cpu" and cpu_prefers_bf16():
        return lambda: torch.autocast("cpu", dtype=torch.bfloat16)
    return lambda: torch.autocast("cpu", enabled=False)


def _step(model, optimizer, scaler, autocast, features: Features, group, pad_id, device, config, state, teacher=None) -> float:
    """One optimizer step over ``group`` (its batches accumulated): cross-entropy on the hard
    labels (per window, or per question with ``config.shared_norm``), mixed with the
    distillation loss (weight ``config.alpha``) when there is a teacher."""
    for g in optimizer.param_groups:
        g["lr"] = learning_rate(config, state)
    total = 0.0
    for indices in group:
        batch = {k: torch.from_numpy(v).to(device) for k, v in features.batch(indices, pad_id).items()}
        with autocast():
            if config.shared_norm:
                from qa.reader.shared_norm import shared_norm_loss

                starts, ends = batch.pop("start_positions"), batch.pop("end_positions")
                out = model(**batch)
                loss = shared_norm_loss(out.start_logits, out.end_logits, batch["attention_mask"], starts, ends,
                                        torch.from_numpy(features.questions[indices]).to(device),
                                        torch.from_numpy(features.answerable[indices]).to(device))
            else:
                out = model(**batch)
                loss = out.loss
            if teacher is not None:
                from qa.reader.distill import batch_logits, distillation_loss

                soft = distillation_loss(out.start_logits, out.end_logits, torch.from_numpy(batch_logits(teacher, features, indices)).to(device),
                                         batch["attention_mask"], config.temperature)
                loss = (1 - config.alpha) * loss + config.alpha * soft
            loss = loss / len(group)
        (scaler.scale(loss) if scaler else loss).backward()
        total += float(loss.detach())
    if scaler:
        scaler.unscale_(optimizer)
    torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip)
    if scaler:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return total


def _plan(config: TrainConfig, state: TrainState, seconds_per_step: float, epoch_steps: int) -> None:
    """Fit the schedule to ``config.max_minutes`` from the speed of the latest steps.

    Called after the first steps of every run or resumed part, and at every checkpoint, so that
    the run ends on time even when its speed changes (another job on the machine, a resume on a
    different one). The decay then aims at the new end; warmup is re-planned only while it lasts.
    """
    remaining = config.max_minutes * 60 - state.seconds
    planned = state.step + max(1, int(remaining / max(seconds_per_step, 1e-9)))
    state.total_steps = max(state.step + 1, min(epoch_steps, planned))
    if state.step < state.warmup_steps:
        state.warmup_steps = max(1, min(state.warmup_steps, round(config.warmup * state.total_steps)))


def _save_checkpoint(path: Path, model, tokenizer, optimizer, config: TrainConfig, state: TrainState) -> None:
    with staging_dir(path) as staging:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        tensors = {"rng.torch": torch.get_rng_state()}
        params = [p for g in optimizer.param_groups for p in g["params"]]
        for i, param in enumerate(params):
            for key, value in optimizer.state.get(param, {}).items():
                tensors[f"{i}.{key}"] = value.detach().cpu().contiguous().reshape(value.shape)
        save_file(tensors, staging / OPTIMIZER)
        (staging / STATE).write_text(json.dumps({"config": asdict(config), "state": asdict(state)}))
        share_like_create(staging)
        replace_directory(staging, path)


def _load_optimizer(optimizer, path: Path, model) -> None:
    tensors = load_file(path)
    params = [p for g in optimizer.param_groups for p in g["params"]]
    for i, param in enumerate(params):
        state = {key.split(".", 1)[1]: value.to(param.device) for key, value in tensors.items() if key.startswith(f"{i}.")}
        if state:
            optimizer.state[param] = state


def _model_card(config: TrainConfig, metrics: dict[str, Any], sources: list[str], base_card: str | None = None) -> str:
    """The README.md written beside the model. When the base was itself trained by ``qa train
    reader``, its card follows under a heading of its own, so a chain of runs (a resumed budget,
    domain adaptation) reads back to the first base model."""
    hyper = {k: v for k, v in asdict(config).items() if k not in ("train", "base", "output", "eval", "device")}
    lines = [
        f"# Extractive QA reader fine-tuned from `{config.base}`",
        "",
        CARD_MARK,
        "",
        f"- Base model: `{config.base}`" + (f", {config.layers} of its layers kept (evenly spaced)" if config.layers else ""),
        *([f"- Distilled from `{config.teacher}`: soft start/end targets at temperature {config.temperature:g}, weight "
           f"{config.alpha:g} (hard labels {1 - config.alpha:g}); the teacher's logits took "
           f"{metrics.get('teacher_seconds', 0) / 60:.1f} minutes, besides the training time below"] if config.teacher else []),
        *(["- Loss: shared normalisation: each question's windows and retrieved passages in one batch, one softmax over "
           "all their tokens for the start and for the end"
           + (f"; {config.unanswerable_fraction:g} of the questions without their gold passage each epoch, "
              "with [CLS] as the target" if config.unanswerable_fraction else "")] if config.shared_norm else []),
        f"- Training data: {'; '.join(sources)}: {metrics['train_examples']} questions, "
        f"{metrics['train_features']} features of at most {config.max_length} tokens (stride {config.stride})",
        f"- Trained {metrics['steps']} optimizer steps ({metrics['epochs']} epochs) in {metrics['train_seconds'] / 60:.1f} minutes "
        f"on {metrics['device']}; final loss {metrics['final_loss']:.3f}",
        *training.card_footer(hyper, config.command()),
    ]
    lines += gold_scores_lines(metrics)
    if base_card:
        lines += training.card_section(f"How the base model `{config.base}` was trained", base_card)
    return "\n".join(lines)
