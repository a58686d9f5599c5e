"""qa train merge on tiny random readers: the weights between two readers, the card that says
where they came from, and the folders it refuses."""

import json

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from qa.cli import app
from qa.errors import QAError
from qa.reader.merge import merge_readers
from qa.reader.saved import MERGE_MARK
from qa.reader.train import train_reader

from test_train import config_for


@pytest.fixture(scope="module")
def two_readers(tiny_models, tmp_path_factory):
    """The tiny random reader, and the same reader trained one epoch by qa train reader."""
    root = tmp_path_factory.mktemp("merge")
    config = config_for(root, tiny_models, output=str(root / "trained"), epochs=1)
    train_reader(config)
    return tiny_models["reader"], root / "trained", config


def _weights(folder):
    return load_file(folder / "model.safetensors")


def test_the_weight_moves_from_the_first_reader_to_the_second(two_readers, tmp_path):
    first, second, _ = two_readers
    a, b = _weights(first), _weights(second)
    for weight in (0.0, 0.25, 1.0):
        merge_readers(str(first), str(second), weight, tmp_path / f"w{weight}", save_dtype="float32")
        merged = _weights(tmp_path / f"w{weight}")
        assert merged.keys() == a.keys()
        for key in a:
            torch.testing.assert_close(merged[key], (1 - weight) * a[key] + weight * b[key])
    changed = [k for k in a if not torch.equal(a[k], b[k])]
    assert changed and not torch.equal(_weights(tmp_path / "w0.25")[changed[0]], a[changed[0]])


def test_the_card_names_both_readers_and_carries_the_trained_ones_chain(two_readers, tiny_models, tmp_path):
    first, second, trained = two_readers
    out = tmp_path / "merged"
    metrics = merge_readers(str(first), str(second), 0.7, out, eval_file=trained.train[0], eval_limit=5)
    card = (out / "README.md").read_text()
    assert MERGE_MARK in card and "0.3 × " in card and "0.7 × " in card
    assert metrics["second_weights_sha256"] in card and f"--weight 0.7 --output {out}" in card
    assert trained.command() in card  # the second reader's own card, as a section
    assert f"## How the second reader `{second}` was trained" in card and "Not made by `qa train`" in card
    assert json.loads((out / "metrics.json").read_text()) == metrics and metrics["eval_questions"] == 5
    assert not list(tmp_path.glob(".merged.*"))  # built aside, moved in whole
    # a reader trained from the merged one carries the merge card below its own
    again = config_for(tmp_path, tiny_models, base=str(out), output=str(tmp_path / "again"), epochs=1)
    train_reader(again)
    assert MERGE_MARK in (tmp_path / "again" / "README.md").read_text()


def test_a_reader_averaged_with_one_trained_from_it_gives_its_card_once(two_readers, tiny_models, tmp_path):
    _, trained, config = two_readers
    further = config_for(tmp_path, tiny_models, base=str(trained), output=str(tmp_path / "further"), epochs=1)
    train_reader(further)
    assert config.command() in (tmp_path / "further" / "README.md").read_text()  # its base's card, below its own
    merge_readers(str(trained), str(tmp_path / "further"), 0.5, tmp_path / "merged")
    card = (tmp_path / "merged" / "README.md").read_text()
    assert card.count(config.command()) == 1 and further.command() in card
    assert f"## How the first reader `{trained}` was trained" in card
    assert f"The reader `{trained}`, whose card is given above." in card


def test_merging_again_replaces_a_merged_reader_but_nothing_qa_did_not_write(two_readers, tmp_path):
    first, second, _ = two_readers
    out = tmp_path / "merged"
    merge_readers(str(first), str(second), 0.5, out)
    merge_readers(str(first), str(second), 1.0, out)  # its own: replaced
    torch.testing.assert_close(_weights(out), {k: v.half() for k, v in _weights(second).items()})
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    with pytest.raises(QAError, match="not written by qa train"):
        merge_readers(str(first), str(second), 0.5, mine)
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]
    running = tmp_path / "running"
    (running / "checkpoint").mkdir(parents=True)
    (running / "checkpoint" / "trainer_state.json").write_text("{}")
    with pytest.raises(QAError, match="checkpoint"):
        merge_readers(str(first), str(second), 0.5, running)


def test_readers_of_another_shape_or_tokenizer_are_refused(two_readers, tiny_models, tmp_path):
    from transformers import BertForQuestionAnswering, BertTokenizer

    first, _, _ = two_readers
    config = BertForQuestionAnswering.from_pretrained(first).config
    config.num_hidden_layers = 1
    BertForQuestionAnswering(config).save_pretrained(tmp_path / "shallow")
    BertTokenizer.from_pretrained(first).save_pretrained(tmp_path / "shallow")
    with pytest.raises(QAError, match="not the same architecture"):
        merge_readers(str(first), str(tmp_path / "shallow"), 0.5, tmp_path / "out")
    other = tmp_path / "other-tokenizer"
    other.mkdir()
    for name in ("config.json", "model.safetensors"):
        (other / name).write_bytes((first / name).read_bytes())
    BertTokenizer(vocab={t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat"])}).save_pretrained(other)
    with pytest.raises(QAError, match="tokenise differently"):
        merge_readers(str(first), str(other), 0.5, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_cli_merge_json_and_a_clear_error(two_readers, tmp_path):
    first, second, _ = two_readers
    runner = CliRunner()
    result = runner.invoke(app, ["train", "merge", str(first), str(second), "--weight", "0.5", "--output", str(tmp_path / "m"), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["weight"] == 0.5
    result = runner.invoke(app, ["train", "merge", str(first), str(tmp_path / "missing"), "--output", str(tmp_path / "n")])
    assert result.exit_code == 1 and result.output.startswith("error:") and "Traceback" not in result.output
