"""Reader training on tiny random models: features, batching, schedule, learning, and resume."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from qa.cli import app
from qa.corpora.squad import load_squad
from qa.reader.features import featurize
from qa.reader import train as train_module
from qa.reader.saved import CARD_MARK
from qa.reader.train import TrainConfig, TrainState, batches, learning_rate, train_reader

FACTS = [
    ("the cat sat on the mat", "who sat on the mat?", "the cat"),
    ("the dog is in the city", "where is the dog?", "the city"),
    ("paris is the capital of france", "what is the capital of france?", "paris"),
    ("the tower was built in 1889", "when was the tower built?", "1889"),
    ("plants need light energy", "what do plants need?", "light energy"),
    ("the river is first", "which is first?", "the river"),
]


def squad_file(tmp_path, copies=4):
    paragraphs = []
    for n in range(copies):
        for i, (context, question, answer) in enumerate(FACTS):
            text = f"{context} . " * (1 + n % 2)
            paragraphs.append(
                {"context": text, "qas": [{"id": f"{n}-{i}", "question": question, "answers": [{"text": answer, "answer_start": text.index(answer)}]}]}
            )
    path = tmp_path / "train.json"
    path.write_text(json.dumps({"data": [{"title": "facts", "paragraphs": paragraphs}]}))
    return path


def test_features_label_the_answer_tokens(tmp_path, tiny_models):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_models["reader"])
    data = load_squad(squad_file(tmp_path, copies=1))
    contexts = {d.id: d.text for d in data.documents}
    features = featurize(data.examples, contexts, tokenizer, max_length=64, stride=16)
    assert len(features) == len(data.examples)
    for i, example in enumerate(data.examples):
        ids = features.ids[features.offsets[i] : features.offsets[i + 1]]
        span = tokenizer.decode(ids[features.starts[i] : features.ends[i] + 1].tolist())
        assert span.replace(" ", "") == example.answers[0].replace(" ", "")
    assert features.ids.dtype == np.uint16 and features.starts.dtype == np.int16


def test_windows_without_the_answer_point_at_cls(tmp_path, tiny_models):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_models["reader"])
    context = "the cat sat on the mat . " * 30 + "paris is the capital"
    data = {"data": [{"paragraphs": [{"context": context, "qas": [{"id": "q", "question": "capital?", "answers": [{"text": "paris", "answer_start": context.index("paris")}]}]}]}]}
    (tmp_path / "long.json").write_text(json.dumps(data))
    squad = load_squad(tmp_path / "long.json")
    features = featurize(squad.examples, {d.id: d.text for d in squad.documents}, tokenizer, max_length=64, stride=16)
    assert len(features) > 3
    labelled = [i for i in range(len(features)) if features.starts[i] > 0]
    assert labelled and labelled[-1] == len(features) - 1  # only the last windows hold "paris"
    assert all(features.starts[i] == features.ends[i] == 0 for i in range(len(features)) if i not in labelled)

    contexts = {d.id: d.text for d in squad.documents}
    positives = featurize(squad.examples, contexts, tokenizer, max_length=64, stride=16, negative_fraction=0.0)
    assert len(positives) == len(labelled) and (positives.starts > 0).all()
    assert np.array_equal(positives.ids, np.concatenate([features.ids[features.offsets[i] : features.offsets[i + 1]] for i in labelled]))
    some = featurize(squad.examples, contexts, tokenizer, max_length=64, stride=16, negative_fraction=0.5, seed=3)
    assert len(labelled) < len(some) < len(features)
    again = featurize(squad.examples, contexts, tokenizer, max_length=64, stride=16, negative_fraction=0.5, seed=3)
    assert np.array_equal(some.ids, again.ids)  # seeded


@pytest.mark.parametrize("chunk, chunk_chars", [(1, 10**9), (5, 10**9), (1000, 1), (1000, 100)])
def test_features_do_not_depend_on_how_the_questions_are_chunked(tmp_path, tiny_models, chunk, chunk_chars):
    from dataclasses import fields

    from qa.reader import features as features_module
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_models["reader"])
    data = load_squad(squad_file(tmp_path))
    contexts = {d.id: d.text for d in data.documents}
    chunks = []
    on_chunk = chunks.append
    whole = featurize(data.examples, contexts, tokenizer, 64, 16, negative_fraction=0.5, seed=3, chunk=10**6, chunk_chars=10**9)
    cut = featurize(data.examples, contexts, tokenizer, 64, 16, negative_fraction=0.5, seed=3, chunk=chunk, chunk_chars=chunk_chars,
                    on_chunk=on_chunk)
    for field in fields(whole):
        np.testing.assert_array_equal(getattr(cut, field.name), getattr(whole, field.name))
    assert sum(chunks) == len(data.examples) and max(chunks) <= max(chunk, 1)
    parts = list(features_module._chunks(data.examples, contexts, chunk, chunk_chars))
    assert all(len(p) == 1 or sum(len(contexts[e.doc_id]) for e in p) <= chunk_chars for p in parts)  # bounded by characters


def test_stored_features_load_as_they_were_and_only_for_the_same_inputs(tmp_path, tiny_models):
    from transformers import AutoTokenizer

    from qa.reader.features import load_features, save_features

    data = load_squad(squad_file(tmp_path))
    tokenizer = AutoTokenizer.from_pretrained(tiny_models["reader"])
    features = featurize(data.examples, {d.id: d.text for d in data.documents}, tokenizer, 64, 16)
    inputs = {"train": ["abc"], "max_length": 64}
    save_features(features, tmp_path / "f", {"inputs": inputs, "train_examples": 24})
    loaded, record = load_features(tmp_path / "f", inputs)
    assert record["train_examples"] == 24
    for name in ("ids", "type_ids", "offsets", "starts", "ends", "questions", "answerable"):
        assert getattr(loaded, name).dtype == getattr(features, name).dtype
        np.testing.assert_array_equal(getattr(loaded, name), getattr(features, name))
    assert load_features(tmp_path / "f", {**inputs, "max_length": 128}) is None  # other settings: made again
    assert load_features(tmp_path / "elsewhere", inputs) is None
    (tmp_path / "f" / "starts.npy").write_bytes(b"cut short")  # a run killed while storing them
    assert load_features(tmp_path / "f", inputs) is None


def test_resume_makes_the_features_again_when_a_training_file_changed(tmp_path, tiny_models, monkeypatch):
    parts = config_for(tmp_path, tiny_models, output=str(tmp_path / "parts"), epochs=2, checkpoint_every=5)
    assert train_reader(parts, stop_after_steps=5) is None
    train = json.loads(open(parts.train[0]).read())
    train["data"][0]["paragraphs"][0]["qas"][0]["question"] = "who sat on the rug?"
    open(parts.train[0], "w").write(json.dumps(train))
    read = []
    examples = train_module._training_examples
    monkeypatch.setattr(train_module, "_training_examples", lambda config: read.append(1) or examples(config))
    train_reader(TrainConfig("", "", str(tmp_path / "parts"), device="cpu"), resume=True)
    assert read == [1]


def test_batches_cover_every_feature_once_and_are_seeded():
    lengths = np.random.default_rng(0).integers(10, 300, size=1000)
    epoch0 = batches(lengths, 32, seed=3, epoch=0)
    assert sorted(np.concatenate(epoch0).tolist()) == list(range(1000))
    assert all(np.array_equal(a, b) for a, b in zip(epoch0, batches(lengths, 32, seed=3, epoch=0)))
    assert not all(np.array_equal(a, b) for a, b in zip(epoch0, batches(lengths, 32, seed=3, epoch=1)))
    # length-sorted windows: far less padding than random batches
    padded = sum(len(b) * lengths[b].max() for b in epoch0)
    assert padded < 0.7 * sum(len(b) * lengths[b].max() for b in np.array_split(np.arange(1000), 32))


def test_learning_rate_warms_up_then_decays_to_zero():
    config = TrainConfig("t", "b", "o", lr=1.0)
    lrs = [learning_rate(config, TrainState(step=s, total_steps=100, warmup_steps=10)) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:])) and lrs[-1] == pytest.approx(1 / 90)


def config_for(tmp_path, tiny_models, **kw):
    base = dict(train=str(squad_file(tmp_path)), base=str(tiny_models["reader"]), output=str(tmp_path / "out"),
                max_length=64, stride=16, batch_size=4, lr=3e-3, epochs=6, warmup=0.1, device="cpu")
    return TrainConfig(**{**base, **kw})


def test_training_writes_model_metrics_and_model_card(tmp_path, tiny_models):
    config = config_for(tmp_path, tiny_models, eval=str(squad_file(tmp_path)))
    metrics = train_reader(config)
    out = tmp_path / "out"
    assert metrics["steps"] == 36 and metrics["train_features"] == 24  # 6 epochs of 6 batches
    assert json.loads((out / "metrics.json").read_text()) == metrics
    assert (out / "model.safetensors").is_file() and (out / "tokenizer.json").is_file()
    assert not (out / "checkpoint").exists()
    card = (out / "README.md").read_text()
    assert config.command() in card and "exact match" in card and "--lr 0.003" in config.command()
    # the six facts, seen 6 times each, are learnt (100 on this machine); the untrained reader is far off
    from qa.eval.question_sets import load_question_set
    from qa.eval.runner import evaluate
    from qa.reader import Reader

    untrained = evaluate(load_question_set("squad-json", path=config.eval, gold=True), Reader(tiny_models["reader"], device="cpu"))
    assert metrics["exact_match"] >= 75 > untrained.results[0].metrics["exact_match"]


def test_a_reader_trained_from_a_qa_trained_base_carries_the_base_card(tmp_path, tiny_models):
    first = config_for(tmp_path, tiny_models, output=str(tmp_path / "first"), epochs=1)
    train_reader(first)
    second = config_for(tmp_path, tiny_models, base=str(tmp_path / "first"), output=str(tmp_path / "second"), epochs=1, seed=1)
    train_reader(second)
    card = (tmp_path / "second" / "README.md").read_text()
    lineage = card.index(f"## How the base model `{second.base}` was trained")
    assert card.index(second.command()) < lineage < card.index(first.command())
    assert card.count("# Extractive QA reader") == 1  # the base card's title is dropped, its sections demoted
    assert f"was trained\n\n{CARD_MARK}" in card  # one blank line between the heading and the base card
    plain = (tmp_path / "first" / "README.md").read_text()
    assert "How the base model" not in plain  # the tiny random base is not a qa-trained reader


def test_a_base_card_is_demoted_to_markdowns_deepest_heading_and_its_code_kept():
    from qa.training import card_section

    card = "# Title\n\ntext\n## Section\n##### Deep\n###### Deepest\n```bash\n# a comment\nqa train\n```\n#hashtag"
    lines = card_section("How the base model `b` was trained", card)
    assert lines[:2] == ["## How the base model `b` was trained", ""]
    assert "### Section" in lines and "###### Deep" in lines and "###### Deepest" in lines
    assert "# a comment" in lines and "#hashtag" in lines and "Title" not in "\n".join(lines)


def test_training_lowers_the_loss_on_a_few_dozen_examples(tmp_path, tiny_models):
    config = config_for(tmp_path, tiny_models)
    from qa.reader import train as train_module

    seen = []
    original = train_module._step
    train_module._step = lambda *a, **k: seen.append(original(*a, **k)) or seen[-1]
    try:
        train_reader(config)
    finally:
        train_module._step = original
    assert np.mean(seen[-6:]) < 0.7 * np.mean(seen[:6])


def test_resume_gives_the_same_model_as_an_uninterrupted_run(tmp_path, tiny_models, monkeypatch):
    whole = config_for(tmp_path, tiny_models, output=str(tmp_path / "whole"), epochs=2, checkpoint_every=5)
    train_reader(whole)
    parts = config_for(tmp_path, tiny_models, output=str(tmp_path / "parts"), epochs=2, checkpoint_every=5)
    assert train_reader(parts, stop_after_steps=7) is None
    assert (tmp_path / "parts" / "checkpoint" / "trainer_state.json").is_file()
    with pytest.raises(Exception, match="holds a checkpoint"):
        train_reader(parts)
    # As a kill while saving the next checkpoint leaves it: the last one moved aside, a half-built one.
    (tmp_path / "parts" / "checkpoint").rename(tmp_path / "parts" / ".checkpoint.old-1")
    (tmp_path / "parts" / ".checkpoint.building-1").mkdir()
    assert (tmp_path / "parts" / "checkpoint-features" / "features.json").is_file()
    with monkeypatch.context() as patched:  # the resumed part loads the features the first part stored
        patched.setattr(train_module, "_training_examples", lambda config: pytest.fail("the training files were read again"))
        metrics = train_reader(TrainConfig("", "", str(tmp_path / "parts"), device="cpu"), resume=True)
    assert sorted(p.name for p in (tmp_path / "parts").iterdir() if p.name.startswith(".")) == []
    assert not (tmp_path / "parts" / "checkpoint-features").exists()  # removed at the end, with the checkpoint
    assert metrics["train_examples"] == json.loads((tmp_path / "whole" / "metrics.json").read_text())["train_examples"]
    assert (tmp_path / "parts" / "README.md").read_text().count("sha256") == (tmp_path / "whole" / "README.md").read_text().count("sha256")
    a = load_file(tmp_path / "whole" / "model.safetensors")
    b = load_file(tmp_path / "parts" / "model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6)


def test_cli_train_reader_json(tmp_path, tiny_models):
    result = CliRunner().invoke(app, [
        "train", "reader", "--train", str(squad_file(tmp_path)), "--base", str(tiny_models["reader"]),
        "--output", str(tmp_path / "cli"), "--max-length", "64", "--stride", "16", "--batch-size", "8",
        "--epochs", "1", "--save-dtype", "float16", "--json",
    ])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["steps"] == 3
    assert all(t.dtype == torch.float16 for t in load_file(tmp_path / "cli" / "model.safetensors").values())
    missing = CliRunner().invoke(app, ["train", "reader", "--output", str(tmp_path / "x")])
    assert missing.exit_code == 1 and "--train and --base are required" in missing.stderr
    resume = CliRunner().invoke(app, ["train", "reader", "--output", str(tmp_path / "x"), "--resume"])
    assert resume.exit_code == 1 and "nothing to resume" in resume.stderr


def test_the_time_budget_plan_follows_the_measured_speed():
    from qa.reader.train import _plan

    config = TrainConfig(train="t", base="b", output="o", max_minutes=10, warmup=0.1)
    state = TrainState(step=20, total_steps=5000, warmup_steps=500, seconds=60)
    _plan(config, state, seconds_per_step=3.0, epoch_steps=5000)
    assert state.total_steps == 20 + 180 and state.warmup_steps == 20  # 540 s left at 3 s a step
    state.step, state.seconds = 100, 400  # the machine got slower: 200 s left at 4 s a step
    _plan(config, state, seconds_per_step=4.0, epoch_steps=5000)
    assert state.total_steps == 150 and state.warmup_steps == 20  # warmup is over: left alone
    _plan(config, state, seconds_per_step=0.01, epoch_steps=5000)
    assert state.total_steps == 5000  # never beyond the epochs asked for
    state.seconds = 700
    _plan(config, state, seconds_per_step=1.0, epoch_steps=5000)
    assert state.total_steps == 101  # over budget: stop at the next step


def test_distillation_with_alpha_zero_is_plain_training_and_logits_are_kept_once(tmp_path, tiny_models):
    """The teacher's logits are those of the teacher on each feature; alpha 0 leaves the hard loss
    alone (the same run as without a teacher); the logits are computed once per run."""
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    from qa.reader.distill import LOGITS, teacher_logits

    train = squad_file(tmp_path)
    common = dict(train=str(train), base=str(tiny_models["reader"]), max_length=64, stride=16, batch_size=4, epochs=1, lr=1e-3, seed=3)
    plain = train_reader(TrainConfig(output=str(tmp_path / "plain"), **common))
    alpha0 = train_reader(TrainConfig(output=str(tmp_path / "alpha0"), teacher=str(tiny_models["reader"]), alpha=0.0, **common))
    assert alpha0["final_loss"] == pytest.approx(plain["final_loss"], rel=1e-5)
    distilled = train_reader(TrainConfig(output=str(tmp_path / "distilled"), teacher=str(tiny_models["reader"]), alpha=0.9, **common))
    assert distilled["final_loss"] != pytest.approx(plain["final_loss"], rel=1e-3)
    assert not (tmp_path / "distilled" / "checkpoint-teacher").exists()  # removed with the checkpoint
    card = (tmp_path / "distilled" / "README.md").read_text()
    assert f"Distilled from `{tiny_models['reader']}`" in card and "--teacher" in card
    assert distilled["teacher_seconds"] > 0 and "the teacher's logits took" in card and "teacher_seconds" not in plain

    tokenizer = AutoTokenizer.from_pretrained(tiny_models["reader"])
    data = load_squad(train)
    features = featurize(data.examples, {d.id: d.text for d in data.documents}, tokenizer, 64, 16)
    folder = tmp_path / "logits"
    logits = teacher_logits(str(tiny_models["reader"]), features, 0, folder, "cpu")
    model = AutoModelForQuestionAnswering.from_pretrained(tiny_models["reader"]).eval()
    batch = {k: torch.from_numpy(v) for k, v in features.batch([2], 0).items() if not k.endswith("_positions")}
    with torch.inference_mode():
        out = model(**batch)
    n = features.lengths[2]
    stored = np.asarray(logits[features.offsets[2] : features.offsets[2] + n])
    np.testing.assert_allclose(stored[:, 0], out.start_logits[0, :n].numpy(), atol=2e-2)
    mtime = (folder / LOGITS).stat().st_mtime_ns
    teacher_logits(str(tiny_models["reader"]), features, 0, folder, "cpu")
    assert (folder / LOGITS).stat().st_mtime_ns == mtime  # reused, not computed again


def test_a_teacher_with_another_tokenizer_is_refused(tmp_path, tiny_models):
    from qa.errors import QAError

    other = tmp_path / "other-teacher"
    other.mkdir()
    for name in ("config.json", "model.safetensors"):
        (other / name).write_bytes((tiny_models["reader"] / name).read_bytes())
    from transformers import BertTokenizer

    BertTokenizer(vocab={t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat"])}).save_pretrained(other)
    config = TrainConfig(train=str(squad_file(tmp_path)), base=str(tiny_models["reader"]), output=str(tmp_path / "out"),
                         max_length=64, stride=16, batch_size=4, epochs=1, teacher=str(other))
    with pytest.raises(QAError, match="tokenises differently"):
        train_reader(config)


def test_a_student_with_fewer_layers(tmp_path, tiny_models):
    from qa.reader import Reader

    config = TrainConfig(train=str(squad_file(tmp_path)), base=str(tiny_models["reader"]), output=str(tmp_path / "student"),
                         max_length=64, stride=16, batch_size=4, epochs=1, layers=1, teacher=str(tiny_models["reader"]))
    train_reader(config)
    assert json.loads((tmp_path / "student" / "config.json").read_text())["num_hidden_layers"] == 1
    reader = Reader(tmp_path / "student")
    assert reader.read("who sat on the mat?", ["the cat sat on the mat ."]) is not None


def test_a_teacher_folder_qa_did_not_write_is_not_deleted(tmp_path, tiny_models):
    from qa.errors import QAError

    out = tmp_path / "out"
    (out / "checkpoint-teacher").mkdir(parents=True)
    (out / "checkpoint-teacher" / "notes.txt").write_text("keep me")
    config = TrainConfig(train=str(squad_file(tmp_path)), base=str(tiny_models["reader"]), output=str(out),
                         max_length=64, stride=16, batch_size=4, epochs=1)
    with pytest.raises(QAError, match="did not write"):
        train_reader(config, overwrite=True)
    assert (out / "checkpoint-teacher" / "notes.txt").read_text() == "keep me"


def test_negative_fraction_thins_only_the_windows_of_answerable_questions(tmp_path, tiny_models):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_models["reader"])
    context = "the cat sat on the mat . " * 30 + "paris is the capital"
    qas = [{"id": "q", "question": "capital?", "answers": [{"text": "paris", "answer_start": context.index("paris")}]},
           {"id": "n", "question": "what is the river?", "answers": [], "is_impossible": True}]
    (tmp_path / "v2.json").write_text(json.dumps({"data": [{"paragraphs": [{"context": context, "qas": qas}]}]}))
    squad = load_squad(tmp_path / "v2.json")
    contexts = {d.id: d.text for d in squad.documents}
    every = featurize(squad.examples, contexts, tokenizer, max_length=64, stride=16)
    thinned = featurize(squad.examples, contexts, tokenizer, max_length=64, stride=16, negative_fraction=0.0)
    windows = (every.questions == 1).sum()  # the unanswerable question's: all of them [CLS]
    assert windows > 3 and (thinned.questions == 1).sum() == windows  # kept: they are the no-answer examples
    assert (thinned.starts[thinned.questions == 0] > 0).all() and (thinned.questions == 0).sum() < (every.questions == 0).sum()


def test_several_training_files_mix_with_repeats(tmp_path, tiny_models):
    first = squad_file(tmp_path, copies=1)  # 6 questions
    other = tmp_path / "other"
    other.mkdir()
    second = squad_file(other, copies=1)  # the same ids and paragraph ids: they must not merge
    out = tmp_path / "mixed"
    args = ["train", "reader", "--train", first, "--train", second, "--train-repeat", 1, "--train-repeat", 3,
            "--base", tiny_models["reader"], "--output", out, "--max-length", 64, "--stride", 16, "--batch-size", 4,
            "--epochs", 1, "--device", "cpu", "--json"]
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    assert metrics["train_examples"] == 6 + 3 * 6 and metrics["train_features"] == 24
    card = (out / "README.md").read_text()
    assert f"`{first}` (sha256 `" in card and f"`{second}` (sha256 `" in card and "× 3" in card
    assert "--train-repeat 1 --train-repeat 3" in card and card.count("--train ") == 2
    from qa.errors import QAError

    with pytest.raises(QAError, match="--train-repeat takes a whole number of at least 1 for each --train file"):
        TrainConfig([str(first), str(second)], "b", "o", train_repeat=[2])


def test_training_gives_freed_memory_back_every_trim_every_steps(tmp_path, tiny_models, monkeypatch):
    from qa import training

    assert training.release_freed_memory() is True  # glibc's malloc_trim, found and called (Linux)
    calls = []
    monkeypatch.setattr(training, "release_freed_memory", lambda: calls.append(1) or True)
    monkeypatch.setattr(train_module, "TRIM_EVERY", 3)
    assert train_reader(config_for(tmp_path, tiny_models, epochs=3), stop_after_steps=7) is None
    assert len(calls) == 2  # after steps 3 and 6
    monkeypatch.setattr(train_module, "TRIM_EVERY", 0)
    calls.clear()
    train_reader(config_for(tmp_path, tiny_models, output=str(tmp_path / "never"), epochs=3), stop_after_steps=7)
    assert calls == []
