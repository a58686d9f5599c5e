"""Fine-tune the question and passage encoder: ``qa train retriever``.

sentence-transformers' own trainer and loss do the training: (Cached)MultipleNegativesRankingLoss
on (question, passage that answers it, hard negative) triples, so every other passage of a batch
is a negative too. The passages are an index's, as the index embedded them (title, then text):
a question's positive is the passage of its gold paragraph (found in the index by its content,
whatever id the index gave it) that holds the first gold answer, and its hard negatives are the
passages of the same training file that BM25 ranks highest for it and that hold none of its gold
answers (the index may hold other documents too, such as a benchmark's dev set: they are never
used). Checkpoints are the trainer's; ``--stop-after-minutes`` saves one and stops, ``--resume``
continues it.

Whole documents of the training files (a SQuAD paragraph, a COVID-QA article) are kept out of
training until they hold ``held_out`` questions (SQuAD asks about five questions per paragraph,
so a held-out question's own passage would otherwise be trained on as its neighbours' positive);
the model card reports their recall@1/5/10 and MRR@10 among all held-out passages (positives and
hard negatives) before and after training. End-to-end retrieval on benchmark corpora is
``qa evaluate``'s job.
"""

from __future__ import annotations

import functools
import json
import random
import shutil
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from qa import training
from qa.corpora.squad import load_squad
from qa.device import cpu_prefers_bf16, pick_device
from qa.errors import QAError
from qa.hub import load_error, resolve_model
from qa.index import Index
from qa.progress import progress_bar
from qa.retriever.cloze import cloze_pairs
from qa.retriever.open_data import gold_passage
from qa.retriever.retrievers import make_retriever
from qa.retriever.train_config import RetrieverTrainConfig

COMMAND = "retriever"
CHECKPOINTS = "checkpoints"
CONFIG = "qa_train_config.json"
TRIPLES = "qa_triples.json"  # the mined rows, kept for --resume
SECONDS = "qa_train_seconds.json"  # training time up to the last checkpoint: a resumed run's card gives the whole
CHECKPOINT_STATE = f"{CHECKPOINTS}/checkpoint-*/trainer_state.json"
CARD_MARK = training.card_mark(COMMAND)
SEARCH_BATCH = 256  # questions per BM25 search call while mining


@dataclass
class Triples:
    """Training rows: ``anchor`` (question, or an inverse-cloze sentence), ``positive`` and
    ``negative_1..n`` (passage texts), the document each row is about (``documents``: file and
    paragraph id) and which rows are inverse-cloze pairs (``cloze``; empty: none)."""

    columns: dict[str, list[str]] = field(default_factory=dict)
    skipped: Counter = field(default_factory=Counter)
    sha256: dict[str, str] = field(default_factory=dict)
    documents: list[str] = field(default_factory=list)
    cloze: list[bool] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.columns.get("anchor", []))

    def is_cloze(self, i: int) -> bool:
        return bool(self.cloze) and self.cloze[i]

    def rows(self, indices) -> dict[str, list[str]]:
        return {name: [values[i] for i in indices] for name, values in self.columns.items()}


@dataclass(frozen=True)
class _Query:
    """A row waiting for its hard negatives: none may contain one of ``unwanted`` (lower case)."""

    text: str
    positive: int
    """The positive passage's id in the index."""
    positive_text: str
    unwanted: list[str]
    document: str
    cloze: bool


def mine_triples(config: RetrieverTrainConfig, show_progress: bool = False) -> Triples:
    """The (question, positive, hard negatives) rows of ``config.train`` over their indexes, and
    the inverse-cloze rows of their passages that ``config.inverse_cloze`` asks for."""
    if len(config.index) not in (1, len(config.train)):
        raise QAError(f"give one --index for all --train files, or one per file: {len(config.train)} files, {len(config.index)} indexes")
    for name, values in (("--limit", config.limit), ("--inverse-cloze", config.inverse_cloze)):
        if values and len(values) not in (1, len(config.train)):
            raise QAError(f"give one {name} for all --train files, or one per file: {len(config.train)} files, {len(values)} values")
    triples = Triples(columns={"anchor": [], "positive": [], **{f"negative_{i + 1}": [] for i in range(config.negatives)}})
    for file_number, path in enumerate(config.train):
        index = Index(config.index_of(file_number))
        bm25 = make_retriever(index, "bm25")
        data = load_squad(path)
        triples.sha256[path] = data.sha256
        documents = {d.id: d for d in data.documents}
        examples = [e for e in data.examples if e.answerable][: config.limit_of(file_number)]
        passages_of = functools.cache(index.store.passages_with_content)  # a paragraph has several questions
        # This file's own passages, each with its document. Negatives and inverse-cloze rows come from
        # them alone: an index may also hold evaluation documents (open-squad holds SQuAD dev, covid-qa
        # its dev articles), which training must not see.
        own = {p.idx: (p, d.id) for d in data.documents for p in passages_of(d.sha256)}
        queries: list[_Query] = []
        for e in examples:
            passages = passages_of(documents[e.doc_id].sha256)
            if not passages:
                triples.skipped["its paragraph is not in the index"] += 1
                continue
            positive = gold_passage(passages, e)
            if positive is None:
                triples.skipped["its answer is not inside one passage"] += 1
                continue
            queries.append(_Query(e.question, positive.idx, positive.retrieval_text, [a.lower() for a in e.answers],
                                  f"{Path(path).name}: {e.doc_id}", cloze=False))
        if config.inverse_cloze_of(file_number):
            pairs = cloze_pairs([p for p, _ in own.values()], config.inverse_cloze_of(file_number), seed=config.seed + file_number)
            for pair in pairs:
                queries.append(_Query(pair.query, pair.passage.idx, pair.positive, [pair.query.lower()],
                                      f"{Path(path).name}: {own[pair.passage.idx][1]}", cloze=True))
        with progress_bar("rows", disable=not show_progress) as progress:
            task = progress.add_task(f"Mining hard negatives ({Path(path).name})", total=len(queries))
            for first in range(0, len(queries), SEARCH_BATCH):
                group = queries[first : first + SEARCH_BATCH]
                hit_lists = bm25.search_batch([q.text for q in group], config.negative_depth, evidence=False) if config.negatives else [[]] * len(group)
                for query, hits in zip(group, hit_lists):
                    negatives = [
                        h.passage for h in hits
                        if h.passage.idx != query.positive and h.passage.idx in own
                        and not any(u in h.passage.text.lower() for u in query.unwanted)
                    ][: config.negatives]
                    if len(negatives) < config.negatives:
                        triples.skipped["inverse-cloze sentences with too few hard negatives" if query.cloze
                                        else "too few hard negatives in BM25's top passages"] += 1
                        continue
                    triples.documents.append(query.document)
                    triples.cloze.append(query.cloze)
                    triples.columns["anchor"].append(query.text)
                    triples.columns["positive"].append(query.positive_text)
                    for i, negative in enumerate(negatives):
                        triples.columns[f"negative_{i + 1}"].append(negative.retrieval_text)
                progress.update(task, advance=len(group))
    if not any(triples.cloze):
        triples.cloze = []  # rows as a run without inverse cloze saves them
    return triples


def split_held_out(triples: Triples, questions: int, seed: int) -> tuple[list[int], list[int]]:
    """Rows held out and rows trained on: whole documents, in an order drawn with ``seed``, until
    they hold at least ``questions`` questions, so that no held-out document's questions are
    trained on, nor its passages as positives (nor its inverse-cloze rows, which are never held out:
    recall is measured on questions). Rows mined before documents were recorded (an older run
    resumed) are held out one question at a time, as that run did."""
    order = list(range(len(triples)))
    random.Random(seed).shuffle(order)
    if not triples.documents or not questions:
        return order[:questions], order[questions:]
    question_rows = [i for i in order if not triples.is_cloze(i)]
    size = Counter(triples.documents[i] for i in question_rows)
    held, count = set(), 0
    for document in dict.fromkeys(triples.documents[i] for i in question_rows):
        if count >= questions:
            break
        held.add(document)
        count += size[document]
    return [i for i in question_rows if triples.documents[i] in held], [i for i in order if triples.documents[i] not in held]


def recall(model, rows: dict[str, list[str]], batch_size: int = 64) -> dict[str, float]:
    """Recall@1/5/10 and MRR@10 of each question's positive among all the passages of ``rows``
    (positives and negatives, duplicates merged), by cosine of the model's embeddings."""
    passages = list(dict.fromkeys(p for name, values in rows.items() if name != "anchor" for p in values))
    where = {p: i for i, p in enumerate(passages)}
    q = model.encode(rows["anchor"], batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True)
    p = model.encode(passages, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True)
    scores = q @ p.T
    gold = np.array([where[x] for x in rows["positive"]])
    ranks = (scores > scores[np.arange(len(gold)), gold][:, None]).sum(1) + 1  # 1 = first
    out = {f"recall@{k}": round(100 * float((ranks <= k).mean()), 2) for k in (1, 5, 10)}
    out["mrr@10"] = round(float(np.where(ranks <= 10, 1 / ranks, 0).mean()), 4)
    out["questions"], out["passages"] = len(gold), len(passages)
    return out


def train_retriever(
    config: RetrieverTrainConfig,
    resume: bool = False,
    overwrite: bool = False,
    show_progress: bool = False,
    stop_after_minutes: float | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any] | None:
    """Train, save the sentence-transformers model and its model card to ``config.output``, and
    return the metrics; None when ``stop_after_minutes`` stopped the run at a checkpoint."""
    try:
        from datasets import Dataset
        from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer, SentenceTransformerTrainingArguments
        from sentence_transformers.base.sampler import BatchSamplers
        from sentence_transformers.sentence_transformer.losses import (
            CachedMultipleNegativesRankingLoss,
            MultipleNegativesRankingLoss,
        )
        from transformers import TrainerCallback
        from transformers.trainer_callback import PrinterCallback
    except ImportError as err:
        raise QAError(f"qa train retriever needs the training extra ({err.name} is missing): pip install 'qa[train]'") from None

    output = Path(config.output)
    checkpoints = output / CHECKPOINTS
    if resume:
        if not (checkpoints / CONFIG).is_file() or not any(output.glob(CHECKPOINT_STATE)):
            raise QAError(f"nothing to resume: no checkpoint in {str(checkpoints)!r}")
        saved = json.loads((checkpoints / CONFIG).read_text())
        config = RetrieverTrainConfig(**{**saved, "device": config.device})
    else:
        if any(output.glob(CHECKPOINT_STATE)):
            raise QAError(f"{str(output)!r} holds a checkpoint: pass --resume to continue it, or choose another --output")
        if not overwrite:
            training.check_output(output, COMMAND, CHECKPOINT_STATE)
    training.check_work_folder(checkpoints, (CONFIG, TRIPLES, SECONDS, "checkpoint-*"), COMMAND)  # removed at the end
    device = pick_device(config.device)
    started = time.perf_counter()
    mined = checkpoints / TRIPLES
    if resume and mined.is_file():  # mined once per run: a resume does not search again
        saved_triples = json.loads(mined.read_text())
        triples = Triples(saved_triples["columns"], Counter(saved_triples["skipped"]), saved_triples["sha256"],
                          saved_triples.get("documents", []), saved_triples.get("cloze", []))
    else:
        triples = mine_triples(config, show_progress)
    if not len(triples):
        raise QAError(f"nothing to train on: no question or inverse-cloze row was found ({dict(triples.skipped) or 'none left out'}); "
                      "see --limit and --inverse-cloze")
    held_out_rows, train_indices = split_held_out(triples, config.held_out, config.seed)
    if not train_indices:
        raise QAError(f"only {len(triples)} training questions were found ({dict(triples.skipped)}), all of them held out: "
                      "too few to train on (lower --held-out)")
    held_out, train_rows = triples.rows(held_out_rows), triples.rows(train_indices)
    held_out_documents = len({triples.documents[i] for i in held_out_rows}) if triples.documents else None
    try:
        model = SentenceTransformer(resolve_model(config.base), device=device)
    except OSError as err:
        raise load_error("base model", config.base, err) from err
    model.model_card_data.generate_widget_examples = False  # qa writes its own card; this only printed a bar
    before = recall(model, held_out) if held_out_rows else None
    if log and before:
        log(f"held-out recall before training: {before}")

    checkpoints.mkdir(parents=True, exist_ok=True)
    (checkpoints / CONFIG).write_text(json.dumps(asdict(config)))
    if not (resume and mined.is_file()):  # a fresh run replaces what an interrupted one may have left
        mined.write_text(json.dumps({"columns": triples.columns, "skipped": triples.skipped, "sha256": triples.sha256,
                                     "documents": triples.documents, "cloze": triples.cloze}))
    budget = stop_after_minutes * 60 if stop_after_minutes is not None else None
    seconds_file = checkpoints / SECONDS
    seconds_before = json.loads(seconds_file.read_text())["seconds"] if resume and seconds_file.is_file() else 0.0
    stopped = {"early": False}

    class StopAfter(TrainerCallback):
        """Save a checkpoint and stop once this call's time budget is spent; pass the loss logs to ``log``."""

        def on_step_end(self, args, state, control, **kwargs):
            if budget is not None and time.perf_counter() - started > budget and state.global_step < state.max_steps:
                control.should_save = True
                control.should_training_stop = True
                stopped["early"] = True

        def on_log(self, args, state, control, logs=None, **kwargs):
            if log and logs and "loss" in logs:  # the trainer's own log of this step (the run's end logs train_loss)
                log(f"step {state.global_step}/{state.max_steps}, {logs}")

        def on_save(self, args, state, control, **kwargs):
            seconds = seconds_before + time.perf_counter() - training_started  # set below, before training starts
            seconds_file.write_text(json.dumps({"step": state.global_step, "seconds": round(seconds, 1)}))

    args = SentenceTransformerTrainingArguments(
        output_dir=str(checkpoints),
        num_train_epochs=config.epochs,
        per_device_train_batch_size=config.batch_size,
        learning_rate=config.lr,
        warmup_steps=config.warmup,  # a float below 1: a fraction of the steps (transformers 5)
        seed=config.seed,
        save_strategy="steps",
        save_steps=config.checkpoint_every,
        save_total_limit=1,
        logging_steps=max(1, min(50, config.checkpoint_every)),
        report_to="none",
        batch_sampler=BatchSamplers.NO_DUPLICATES,  # a duplicate would be a false in-batch negative
        bf16=device == "cpu" and cpu_prefers_bf16(),
        fp16=device.startswith("cuda"),
        use_cpu=device == "cpu",
        disable_tqdm=not show_progress,
        dataloader_drop_last=True,
    )
    loss = (CachedMultipleNegativesRankingLoss(model, mini_batch_size=config.mini_batch_size) if config.mini_batch_size
            else MultipleNegativesRankingLoss(model))
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=Dataset.from_dict(train_rows), loss=loss,
                                         callbacks=[StopAfter()])
    trainer.remove_callback(PrinterCallback)  # it prints the logs on stdout, which --json keeps for its result
    training_started = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=True if resume else None)
    train_seconds = seconds_before + time.perf_counter() - training_started
    if stopped["early"]:
        return None
    after = recall(model, held_out) if held_out_rows else None
    metrics = {
        "steps": trainer.state.global_step,
        "epochs": config.epochs,
        "train_questions": sum(not triples.is_cloze(i) for i in train_indices),
        "train_inverse_cloze": sum(triples.is_cloze(i) for i in train_indices),
        "held_out_questions": len(held_out["anchor"]),
        "held_out_documents": held_out_documents,  # None: held out question by question (rows mined by an older qa)
        "skipped": dict(triples.skipped),
        "train_seconds": round(train_seconds, 1),  # a resumed run: the parts before it up to their last checkpoint, and this one
        "final_loss": round(float(result.training_loss), 4),
        "device": training.hardware(device),
        "recall_before": before,
        "recall_after": after,
    }
    model.save(str(output))
    (output / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    (output / "README.md").write_text(model_card(config, metrics, triples.sha256, base_card(config.base)))
    shutil.rmtree(checkpoints, ignore_errors=True)
    return metrics


def _left_out(skipped: dict[str, int]) -> str:
    """The training questions left out and why, for the model card: " (12 left out: ...)" or ""."""
    if not any(skipped.values()):
        return ""
    reasons = "; ".join(f"{n} {reason}" for reason, n in sorted(skipped.items(), key=lambda r: -r[1]) if n)
    return f" ({sum(skipped.values())} left out: {reasons})"


def _questions_line(metrics: dict[str, Any]) -> str:
    """The model card's line on the training and held-out questions."""
    if not metrics["train_questions"] and not metrics["held_out_questions"]:
        return "- No questions: inverse-cloze rows alone"
    documents = metrics.get("held_out_documents")
    return (f"- {metrics['train_questions']} training questions{_left_out(metrics['skipped'])}, {metrics['held_out_questions']} held out"
            + (f" (all the questions of {documents} documents, none of them trained on)" if documents else ""))


def base_card(base: str) -> str | None:
    """The model card of an encoder that ``qa train retriever`` made (a run continued from another
    one's model, as after ``--inverse-cloze`` alone), else None."""
    try:
        folder = resolve_model(base)
    except QAError:
        return None
    return training.written_card(folder, COMMAND)


def model_card(config: RetrieverTrainConfig, metrics: dict[str, Any], sha256: dict[str, str], base_model_card: str | None = None) -> str:
    hyper = {k: v for k, v in asdict(config).items() if k not in ("train", "index", "output", "base", "device")}
    loss = f"CachedMultipleNegativesRankingLoss (mini-batches of {config.mini_batch_size})" if config.mini_batch_size else "MultipleNegativesRankingLoss"
    lines = [
        f"# Question and passage encoder fine-tuned from `{config.base}`",
        "",
        CARD_MARK,
        "",
        f"- Base model: `{config.base}`",
        *[f"- Training data: `{path}` (sha256 `{digest}`)" for path, digest in sha256.items()],
        f"- Passages: the index(es) {', '.join(f'`{i}`' for i in config.index)}; " + (
            f"{config.negatives} BM25 hard negative(s) per row from its top {config.negative_depth} passages that come from "
            "the same training file and hold no gold answer" if config.negatives else "no hard negatives (each row's are the other rows of its batch)"),
        _questions_line(metrics),
        *([f"- {metrics['train_inverse_cloze']} inverse-cloze rows from the passages of the training files' own documents: "
           "a sentence as the query, the rest of its passage as the positive (`qa.retriever.cloze`)"] if metrics.get("train_inverse_cloze") else []),
        f"- Loss: {loss}, batches of {config.batch_size} without duplicates",
        f"- Trained {metrics['steps']} steps ({config.epochs} epochs) in {metrics['train_seconds'] / 60:.1f} minutes on "
        f"{metrics['device']}; final loss {metrics['final_loss']:.4f}",
        *training.card_footer(hyper, config.command()),
    ]
    if metrics["recall_before"]:
        b, a = metrics["recall_before"], metrics["recall_after"]
        lines += [
            f"Held-out questions ({b['questions']}), ranking each one's positive among all {b['passages']} held-out passages "
            "(positives and hard negatives) by cosine:",
            "",
            "| | recall@1 | recall@5 | recall@10 | MRR@10 |",
            "|---|---|---|---|---|",
            f"| before (`{config.base}`) | {b['recall@1']} | {b['recall@5']} | {b['recall@10']} | {b['mrr@10']} |",
            f"| after | {a['recall@1']} | {a['recall@5']} | {a['recall@10']} | {a['mrr@10']} |",
            "",
        ]
    if base_model_card:
        lines += training.card_section(f"How the base model `{config.base}` was trained", base_model_card)
    return "\n".join(lines)
