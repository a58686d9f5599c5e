"""Shared normalisation (qa train reader --shared-norm): batches of whole questions, one softmax
over a question's windows, and a run on open-data-style files (gold passage + retrieved negatives)."""

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from qa.cli import app
from qa.corpora.squad import NEGATIVE_MARK, load_squad
from qa.reader.features import featurize
from qa.reader.shared_norm import question_batches, shared_norm_loss
from qa.reader.train import TrainConfig, train_reader

from test_train import FACTS


def open_data_file(tmp_path, copies=3):
    """Each fact's question over its own paragraph and, as open-data writes it, over two other facts'
    paragraphs (unanswerable, ids with the negative mark)."""
    paragraphs = []
    for n in range(copies):
        for i, (context, question, answer) in enumerate(FACTS):
            paragraphs.append({"context": context, "qas": [
                {"id": f"{n}-{i}", "question": question, "answers": [{"text": answer, "answer_start": context.index(answer)}]}]})
            for k in (1, 2):
                other = FACTS[(i + k) % len(FACTS)][0]
                paragraphs.append({"context": other, "qas": [
                    {"id": f"{n}-{i}{NEGATIVE_MARK}{k}", "question": question, "is_impossible": True, "answers": []}]})
    path = tmp_path / "open.json"
    path.write_text(json.dumps({"version": "v2.0", "data": [{"title": "facts", "paragraphs": paragraphs}]}))
    return path


def test_features_know_their_question(tmp_path, tiny_models):
    from transformers import AutoTokenizer

    data = load_squad(open_data_file(tmp_path, copies=1))
    features = featurize(data.examples, {d.id: d.text for d in data.documents}, AutoTokenizer.from_pretrained(tiny_models["reader"]),
                         max_length=64, stride=16)
    assert len(features) == 18 and features.questions.tolist() == [q for q in range(6) for _ in range(3)]
    assert [int(features.starts[i] > 0) for i in range(3)] == [1, 0, 0]  # the gold passage, then two negatives


def test_question_batches_hold_whole_questions_and_are_seeded():
    rng = np.random.default_rng(0)
    questions = np.repeat(np.arange(300), rng.integers(1, 6, size=300))
    rng.shuffle(questions)
    lengths = rng.integers(10, 300, size=len(questions))
    epoch0 = question_batches(questions, lengths, 16, seed=3, epoch=0)
    assert sorted(np.concatenate(epoch0).tolist()) == list(range(len(questions)))
    assert all(len(b) <= 16 for b in epoch0)
    where = {q: {i for i, b in enumerate(epoch0) if q in set(questions[b])} for q in range(300)}
    assert all(len(batches) == 1 for batches in where.values())  # a question is never split
    assert all(np.array_equal(a, b) for a, b in zip(epoch0, question_batches(questions, lengths, 16, seed=3, epoch=0)))
    assert not all(np.array_equal(a, b) for a, b in zip(epoch0, question_batches(questions, lengths, 16, seed=3, epoch=1)))
    big = np.zeros(40, dtype=np.int32)  # one question with more features than a batch: a batch alone
    assert [len(b) for b in question_batches(big, np.full(40, 9), 16, seed=0, epoch=0)] == [40]


def test_one_window_per_question_is_ordinary_cross_entropy():
    torch.manual_seed(0)
    start, end = torch.randn(4, 12), torch.randn(4, 12)
    starts, ends = torch.tensor([3, 5, 1, 7]), torch.tensor([4, 5, 2, 9])
    mask = torch.ones(4, 12, dtype=torch.long)
    loss = shared_norm_loss(start, end, mask, starts, ends, torch.arange(4))
    ce = torch.nn.functional.cross_entropy
    assert loss.item() == pytest.approx(((ce(start, starts) + ce(end, ends)) / 2).item(), rel=1e-6)


def test_a_questions_windows_share_one_softmax():
    torch.manual_seed(1)
    start, end = torch.randn(3, 6), torch.randn(3, 6)
    mask = torch.tensor([[1] * 6, [1] * 4 + [0] * 2, [1] * 6])  # the second window is padded
    starts, ends = torch.tensor([2, 0, 0]), torch.tensor([3, 0, 0])
    questions = torch.tensor([7, 7, 9])  # question 9 has no window with the answer: skipped
    loss = shared_norm_loss(start, end, mask, starts, ends, questions)

    def nll(logits, row, col):
        tokens = torch.cat([logits[0], logits[1, :4]])  # padding is not a candidate
        return (torch.logsumexp(tokens, 0) - logits[row, col]).item()

    assert loss.item() == pytest.approx((nll(start, 0, 2) + nll(end, 0, 3)) / 2, rel=1e-6)
    # a negative window's scores count: raising its logits raises the loss
    higher = start.clone()
    higher[1] += 5
    assert shared_norm_loss(higher, end, mask, starts, ends, questions) > loss
    # a batch without any answer gives a zero the optimizer can still step through
    zero_start = start.clone().requires_grad_()
    nothing = shared_norm_loss(zero_start, end, mask, torch.zeros(3, dtype=torch.long), torch.zeros(3, dtype=torch.long), questions)
    nothing.backward()
    assert nothing.item() == 0 and zero_start.grad is not None


def test_shared_norm_training_learns_to_prefer_the_gold_passage(tmp_path, tiny_models):
    config = TrainConfig(train=str(open_data_file(tmp_path)), base=str(tiny_models["reader"]), output=str(tmp_path / "out"),
                         max_length=64, stride=16, batch_size=9, lr=3e-3, epochs=16, warmup=0.1, device="cpu", shared_norm=True)
    from qa.reader import train as train_module

    losses = []
    original = train_module._step

    def spy(*args, **kwargs):
        losses.append(original(*args, **kwargs))
        return losses[-1]

    train_module._step = spy
    try:
        metrics = train_reader(config)
    finally:
        train_module._step = original
    assert metrics["steps"] == 16 * 6  # 18 questions of 3 features, 3 questions a batch
    assert np.mean(losses[-6:]) < 0.5 * np.mean(losses[:6])
    assert "shared normalisation" in (tmp_path / "out" / "README.md").read_text()

    # read each question over its three passages: the best span comes from the gold one
    from qa.reader import Reader

    reader = Reader(tmp_path / "out", device="cpu")
    for i, (context, question, answer) in enumerate(FACTS):
        passages = [FACTS[(i + k) % len(FACTS)][0] for k in (1, 2)] + [context]
        best = reader.read(question, passages)[0]
        assert best.passage == 2, (question, best)


def test_cli_takes_shared_norm(tmp_path, tiny_models):
    out = tmp_path / "cli"
    result = CliRunner().invoke(app, ["train", "reader", "--train", str(open_data_file(tmp_path, copies=1)), "--base", str(tiny_models["reader"]),
                                      "--output", str(out), "--max-length", "64", "--stride", "16", "--batch-size", "9", "--epochs", "1",
                                      "--shared-norm", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "metrics.json").read_text())["steps"] == 2
    assert "--shared-norm" in (out / "README.md").read_text()


def test_questions_without_their_gold_passage_have_cls_as_target():
    torch.manual_seed(2)
    start, end = torch.randn(3, 5), torch.randn(3, 5)
    mask = torch.ones(3, 5, dtype=torch.long)
    zeros = torch.zeros(3, dtype=torch.long)
    questions = torch.tensor([4, 4, 6])
    loss = shared_norm_loss(start, end, mask, zeros, zeros, questions, answerable=torch.tensor([False, False, True]))

    def nll(logits):  # question 4: [CLS] of both its windows; question 6 (answerable, answer cut) is skipped
        return (torch.logsumexp(logits[:2].flatten(), 0) - torch.logsumexp(logits[:2, 0], 0)).item()

    assert loss.item() == pytest.approx((nll(start) + nll(end)) / 2, rel=1e-6)
    assert shared_norm_loss(start, end, mask, zeros, zeros, questions).item() == 0  # without answerable: all skipped


def test_an_unanswerable_fraction_drops_gold_passages_per_epoch():
    questions = np.repeat(np.arange(200), 3)
    answerable = np.tile([True, False, False], 200)
    answerable[-3:] = True  # the last question has no negatives: never dropped
    lengths = np.full(600, 50)
    epoch0 = question_batches(questions, lengths, 12, seed=0, epoch=0, answerable=answerable, unanswerable_fraction=0.3)
    kept = np.concatenate(epoch0)
    dropped = set(range(600)) - set(kept.tolist())
    assert all(answerable[i] for i in dropped) and {597, 598, 599} <= set(kept.tolist())
    assert 0.2 < len(dropped) / 200 < 0.4
    again = question_batches(questions, lengths, 12, seed=0, epoch=0, answerable=answerable, unanswerable_fraction=0.3)
    assert all(np.array_equal(a, b) for a, b in zip(epoch0, again))
    other = set(range(600)) - set(np.concatenate(question_batches(questions, lengths, 12, seed=0, epoch=1, answerable=answerable,
                                                                   unanswerable_fraction=0.3)).tolist())
    assert other != dropped  # another draw each epoch


def test_training_with_unanswerable_questions_teaches_the_no_answer_score(tmp_path, tiny_models):
    config = TrainConfig(train=str(open_data_file(tmp_path)), base=str(tiny_models["reader"]), output=str(tmp_path / "out"),
                         max_length=64, stride=16, batch_size=9, lr=3e-3, epochs=24, warmup=0.1, device="cpu", shared_norm=True,
                         unanswerable_fraction=0.3)
    train_reader(config)
    assert "0.3 of the questions without their gold passage" in (tmp_path / "out" / "README.md").read_text()
    from qa.reader import Abstention, Reader

    reader = Reader(tmp_path / "out", device="cpu")
    for i, (context, question, answer) in enumerate(FACTS):
        negatives = [FACTS[(i + k) % len(FACTS)][0] for k in (1, 2)]
        without = reader.read_batch([question] * 2, negatives)
        with_gold = reader.read_batch([question] * 3, negatives + [context])
        # the question's no-answer score: the [CLS] of all its passages together, as training normalises them
        assert without.margin() < 0 and without.abstains(Abstention(0.0, "question")), question
        assert with_gold.margin() > 0 and not with_gold.abstains(Abstention(0.0, "question")), question
        assert with_gold.spans[0].text == answer


def test_an_unanswerable_fraction_needs_shared_norm(tmp_path, tiny_models):
    from qa.errors import QAError

    config = TrainConfig(train=str(open_data_file(tmp_path)), base=str(tiny_models["reader"]), output=str(tmp_path / "out"),
                         unanswerable_fraction=0.5)
    with pytest.raises(QAError, match="needs --shared-norm"):
        train_reader(config)
