"""`qa train`: the reader, the retriever's encoder, averaged readers, and open-domain training data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from qa.cli.common import DeviceOption, JsonOption, RetrieverChoice, app, err, friendly_errors, out
from qa.errors import QAError
from qa.pipeline import DEFAULT_TOP_K
from qa.reader.train_config import TrainConfig
from qa.retriever import DEFAULT_RETRIEVER
from qa.retriever.train_config import RetrieverTrainConfig


train_app = typer.Typer(help="Train models.", no_args_is_help=True)
TRAIN_DEFAULTS = TrainConfig(train="", base="", output="")
RETRIEVER_DEFAULTS = RetrieverTrainConfig(train=[], index=[], output="")
app.add_typer(train_app, name="train")
StopAfterOption = Annotated[Optional[float], typer.Option(help="Checkpoint and stop after this many minutes; continue with --resume.")]
ResumeOption = Annotated[bool, typer.Option("--resume", help="Continue the checkpoint in --output.")]


def _printed_as_stopped_or_json(metrics, as_json: bool, command: str, output: Path, checkpoint: Path) -> bool:
    """Print what ``qa train COMMAND`` says when it stopped at a checkpoint (``metrics`` None) or
    when --json asks for the metrics; True when it printed, leaving only the text summary to print."""
    if metrics is None:
        if as_json:
            print(json.dumps({"stopped": True, "checkpoint": str(checkpoint)}))
        else:
            out.print(escape(f"Stopped with a checkpoint in {checkpoint}: continue with `qa train {command} --output {output} --resume`"))
        return True
    if as_json:
        print(json.dumps(metrics))
        return True
    return False


@train_app.command("reader")
@friendly_errors
def train_reader(
    train: Annotated[
        Optional[list[str]],
        typer.Option(help="Training data: SQuAD v1.1/v2.0 or COVID-QA JSON (.json or .json.gz); repeatable (mixed in one run)."),
    ] = None,
    train_repeat: Annotated[
        Optional[list[int]],
        typer.Option(min=1, help="Use each --train file's questions this many times an epoch (once per --train, in order), "
                     "e.g. to mix COVID-QA into SQuAD."),
    ] = None,
    base: Annotated[Optional[str], typer.Option(help="Model to start from: a folder or hub id.")] = None,
    output: Annotated[Path, typer.Option(help="Where the model, model card and checkpoints go.")] = Path("reader"),
    eval_file: Annotated[Optional[str], typer.Option("--eval", help="SQuAD-format file for EM/F1 on gold paragraphs at the end.")] = None,
    max_length: Annotated[int, typer.Option(min=32, help="Tokens per feature (question + passage window).")] = TRAIN_DEFAULTS.max_length,
    stride: Annotated[int, typer.Option(min=0, help="Tokens shared by consecutive windows of a long passage.")] = TRAIN_DEFAULTS.stride,
    batch_size: Annotated[int, typer.Option(min=1)] = TRAIN_DEFAULTS.batch_size,
    grad_accum: Annotated[int, typer.Option(min=1, help="Batches per optimizer step.")] = TRAIN_DEFAULTS.grad_accum,
    lr: Annotated[float, typer.Option(help="Peak learning rate.")] = TRAIN_DEFAULTS.lr,
    epochs: Annotated[float, typer.Option(help="Passes over the training features.")] = TRAIN_DEFAULTS.epochs,
    warmup: Annotated[float, typer.Option(help="Fraction of steps with linear warmup.")] = TRAIN_DEFAULTS.warmup,
    weight_decay: Annotated[float, typer.Option()] = TRAIN_DEFAULTS.weight_decay,
    seed: Annotated[int, typer.Option()] = TRAIN_DEFAULTS.seed,
    freeze_embeddings: Annotated[bool, typer.Option(help="Keep the word embeddings fixed.")] = False,
    negative_fraction: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Keep this fraction of the windows without an answer (long documents).")
    ] = TRAIN_DEFAULTS.negative_fraction,
    checkpoint_every: Annotated[int, typer.Option(min=1, help="Optimizer steps between checkpoints.")] = TRAIN_DEFAULTS.checkpoint_every,
    max_minutes: Annotated[Optional[float], typer.Option(help="Fit the schedule into this many minutes of training.")] = None,
    stop_after_minutes: StopAfterOption = None,
    limit: Annotated[Optional[int], typer.Option(min=1, help="Train on the first N questions only.")] = None,
    eval_limit: Annotated[Optional[int], typer.Option(min=1, help="Evaluate on N questions (seed 1).")] = None,
    save_dtype: Annotated[str, typer.Option(help="float32, float16 or bfloat16 for the saved weights.")] = TRAIN_DEFAULTS.save_dtype,
    teacher: Annotated[
        Optional[str], typer.Option(help="Distil from this reader (same tokenizer): its logits are computed once and kept with the run.")
    ] = None,
    alpha: Annotated[float, typer.Option(min=0.0, max=1.0, help="Weight of the teacher's soft targets (hard labels: 1 - alpha).")] = TRAIN_DEFAULTS.alpha,
    temperature: Annotated[float, typer.Option(min=0.01, help="Softening of both distributions for distillation.")] = TRAIN_DEFAULTS.temperature,
    layers: Annotated[Optional[int], typer.Option(min=1, help="Start from this many of --base's layers, evenly spaced (a smaller student).")] = None,
    shared_norm: Annotated[
        bool,
        typer.Option("--shared-norm", help="Batch each question's windows and retrieved passages (qa train open-data) together, "
                     "with one softmax over all of them, so that span scores compare across passages."),
    ] = False,
    unanswerable_fraction: Annotated[
        float,
        typer.Option(min=0.0, max=1.0, help="With --shared-norm: this fraction of the questions lose their gold passage each epoch "
                     "and learn [CLS] over their retrieved negatives (the no-answer signal for abstention)."),
    ] = TRAIN_DEFAULTS.unanswerable_fraction,
    resume: ResumeOption = False,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Write into a non-empty --output that is not a qa training output (its model files are replaced).")
    ] = False,
    device: DeviceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Fine-tune an extractive QA reader (e.g. from all-MiniLM-L6-v2 on SQuAD v1.1 train)."""
    from qa.reader.train import TrainConfig, train_reader as run

    if save_dtype not in ("float32", "float16", "bfloat16"):
        raise QAError(f"--save-dtype must be float32, float16 or bfloat16, not {save_dtype!r}")
    if not resume and not (train and base):
        raise QAError("--train and --base are required (or --resume to continue a checkpoint)")
    config = TrainConfig(
        train=list(train or []), base=base or "", output=str(output), eval=eval_file, max_length=max_length, stride=stride,
        batch_size=batch_size, grad_accum=grad_accum, lr=lr, epochs=epochs, warmup=warmup,
        weight_decay=weight_decay, seed=seed, freeze_embeddings=freeze_embeddings, negative_fraction=negative_fraction,
        checkpoint_every=checkpoint_every, max_minutes=max_minutes, limit=limit, eval_limit=eval_limit,
        save_dtype=save_dtype, teacher=teacher, alpha=alpha, temperature=temperature, layers=layers,
        shared_norm=shared_norm, unanswerable_fraction=unanswerable_fraction, train_repeat=list(train_repeat) if train_repeat else None,
        device=device,
    )
    metrics = run(
        config,
        resume=resume,
        overwrite=overwrite,
        show_progress=not as_json and err.is_terminal,
        stop_after_minutes=stop_after_minutes,
        log=None if err.is_terminal else lambda line: err.print(line, highlight=False),
    )
    if _printed_as_stopped_or_json(metrics, as_json, "reader", output, output / "checkpoint"):
        return
    scores = f", EM {metrics['exact_match']:.2f} / F1 {metrics['f1']:.2f}" if "exact_match" in metrics else ""
    out.print(f"Trained {metrics['steps']} steps in {metrics['train_seconds'] / 60:.1f} min{scores}; model in {escape(str(output))}")


@train_app.command("merge")
@friendly_errors
def train_merge(
    first: Annotated[str, typer.Argument(metavar="FIRST", help="A reader: folder, hub id, or packaged name (default, biomed).")],
    second: Annotated[str, typer.Argument(metavar="SECOND", help="A reader of the same architecture and tokenizer, e.g. one trained from FIRST.")],
    weight: Annotated[float, typer.Option(min=0.0, max=1.0, help="The share of SECOND: (1 - weight) x FIRST + weight x SECOND.")] = 0.5,
    output: Annotated[Path, typer.Option(help="Where the merged reader and its model card go.")] = Path("reader"),
    eval_file: Annotated[Optional[str], typer.Option("--eval", help="SQuAD-format file for EM/F1 on gold paragraphs at the end.")] = None,
    eval_limit: Annotated[Optional[int], typer.Option(min=1, help="Evaluate on N questions (seed 1).")] = None,
    save_dtype: Annotated[str, typer.Option(help="float32, float16 or bfloat16 for the saved weights.")] = "float16",
    device: DeviceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Average two readers' weights (weight-space ensembling): a reader between a base and one
    fine-tuned from it, e.g. the default and biomed."""
    from qa.reader.merge import merge_readers

    metrics = merge_readers(first, second, weight, output, eval_file=eval_file, eval_limit=eval_limit,
                            save_dtype=save_dtype, device=device)
    if as_json:
        print(json.dumps(metrics))
        return
    scores = f", EM {metrics['exact_match']:.2f} / F1 {metrics['f1']:.2f}" if "exact_match" in metrics else ""
    out.print(escape(f"Merged {first} and {second} (weight {weight:g} on the second){scores}; reader in {output}"))


@train_app.command("retriever")
@friendly_errors
def train_retriever(
    train: Annotated[
        Optional[list[str]], typer.Option(help="SQuAD-format training data (repeatable): SQuAD v1.1 train, COVID-QA train.")
    ] = None,
    index_dir: Annotated[
        Optional[list[str]],
        typer.Option("--index", help="An index holding the training paragraphs (its passages are the positives and hard negatives): one for all --train files, or one per file, in order."),
    ] = None,
    output: Annotated[Path, typer.Option(help="Where the sentence-transformers model, its card and checkpoints go.")] = Path("retriever"),
    base: Annotated[str, typer.Option(help="Encoder to start from: a folder or hub id.")] = RETRIEVER_DEFAULTS.base,
    batch_size: Annotated[int, typer.Option(min=2, help="Questions per batch: each is a negative for the others.")] = RETRIEVER_DEFAULTS.batch_size,
    mini_batch_size: Annotated[
        int, typer.Option(min=0, help="Cached MNRL: compute a batch in mini-batches of this many (memory); 0: plain MNRL.")
    ] = RETRIEVER_DEFAULTS.mini_batch_size,
    negatives: Annotated[int, typer.Option(min=0, help="BM25 hard negatives per question.")] = RETRIEVER_DEFAULTS.negatives,
    negative_depth: Annotated[int, typer.Option(min=1, help="BM25 passages searched for hard negatives.")] = RETRIEVER_DEFAULTS.negative_depth,
    lr: Annotated[float, typer.Option(help="Peak learning rate.")] = RETRIEVER_DEFAULTS.lr,
    epochs: Annotated[float, typer.Option(help="Passes over the training questions.")] = RETRIEVER_DEFAULTS.epochs,
    warmup: Annotated[float, typer.Option(help="Fraction of steps with linear warmup.")] = RETRIEVER_DEFAULTS.warmup,
    seed: Annotated[int, typer.Option()] = RETRIEVER_DEFAULTS.seed,
    checkpoint_every: Annotated[int, typer.Option(min=1, help="Steps between checkpoints.")] = RETRIEVER_DEFAULTS.checkpoint_every,
    limit: Annotated[
        Optional[list[int]], typer.Option(min=0, help="Train on the first N questions only (0: none, e.g. for inverse cloze alone): one N for all --train files, or one per file, in order.")
    ] = None,
    inverse_cloze: Annotated[
        Optional[list[int]],
        typer.Option(min=0, help="Also train on N inverse-cloze pairs (a sentence as the query, the rest of its passage as the positive) "
                     "from the passages of each file's own documents: one N for all --train files, or one per file, in order."),
    ] = None,
    held_out: Annotated[int, typer.Option(min=0, help="Questions kept out to measure recall before and after.")] = RETRIEVER_DEFAULTS.held_out,
    stop_after_minutes: StopAfterOption = None,
    resume: ResumeOption = False,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Write into a non-empty --output that is not a qa training output.")
    ] = False,
    device: DeviceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Fine-tune the retriever's encoder on questions and the passages that answer them, with BM25 hard negatives."""
    from qa.retriever.train import RetrieverTrainConfig, train_retriever as run

    if not resume and not (train and index_dir):
        raise QAError("--train and --index are required (or --resume to continue a checkpoint)")
    config = RetrieverTrainConfig(
        train=list(train or []), index=list(index_dir or []), output=str(output), base=base, batch_size=batch_size,
        mini_batch_size=mini_batch_size, negatives=negatives, negative_depth=negative_depth, lr=lr, epochs=epochs,
        warmup=warmup, seed=seed, checkpoint_every=checkpoint_every, limit=limit or None, inverse_cloze=inverse_cloze or None,
        held_out=held_out, device=device,
    )
    metrics = run(config, resume=resume, overwrite=overwrite, show_progress=not as_json and err.is_terminal,
                  stop_after_minutes=stop_after_minutes, log=lambda line: err.print(escape(line), highlight=False))
    if _printed_as_stopped_or_json(metrics, as_json, "retriever", output, output / "checkpoints"):
        return
    after = metrics["recall_after"]
    scores = f"; held-out recall@10 {metrics['recall_before']['recall@10']} -> {after['recall@10']}" if after else ""
    out.print(f"Trained {metrics['steps']} steps in {metrics['train_seconds'] / 60:.1f} min{scores}; model in {escape(str(output))} "
              f"(build an index with it: qa index CORPUS --embedding-model {escape(str(output))})")


@train_app.command("open-data")
@friendly_errors
def train_open_data(
    train: Annotated[str, typer.Option(help="SQuAD-format training data (e.g. SQuAD v1.1 train).")],
    index_dir: Annotated[str, typer.Option("--index", help="An index holding the training paragraphs (e.g. the open-squad one).")],
    output: Annotated[Path, typer.Option(help="The SQuAD v2.0 file to write, for qa train reader --train.")],
    negatives: Annotated[int, typer.Option(min=0, help="Retrieved passages without an answer per question, labelled unanswerable.")] = 2,
    retriever: Annotated[RetrieverChoice, typer.Option(help="How passages are retrieved.")] = RetrieverChoice(DEFAULT_RETRIEVER),
    depth: Annotated[int, typer.Option(min=1, help="Retrieved passages searched for negatives.")] = DEFAULT_TOP_K,
    limit: Annotated[Optional[int], typer.Option(min=1, help="The first N answerable questions only (after --skip).")] = None,
    skip: Annotated[int, typer.Option(min=0, help="Leave out the first N answerable questions (e.g. those an earlier run trained on).")] = 0,
    as_json: JsonOption = False,
) -> None:
    """Write training data for reading retrieved passages: each question with its gold passage and
    the retriever's passages that do not answer it (a SQuAD v2.0 file for qa train reader)."""
    from qa.index import Index
    from qa.retriever.open_data import open_training_data, write_open_training_data

    if output.exists():
        raise QAError(f"{str(output)!r} exists: choose a new file (qa never overwrites what it did not write)")
    data, counts = open_training_data(train, Index(index_dir), negatives=negatives, retriever=retriever.value, depth=depth,
                                      limit=limit, skip=skip, show_progress=not as_json and err.is_terminal)
    write_open_training_data(data, output)
    if as_json:
        print(json.dumps({"output": str(output), **counts}))
        return
    out.print(f"Wrote {escape(str(output))}: {counts['questions']} questions with their gold passage and "
              f"{counts['negative passages']} retrieved passages without an answer")
    for what, n in counts.items():
        if what.endswith("left out: the gold answer is not inside one index passage") or "retrieved passages left out" in what:
            out.print(f"  {n} {escape(what)}")
