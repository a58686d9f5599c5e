"""qa train open-data: training questions with their gold passage and retrieved negatives, as a
SQuAD v2.0 file that qa train reader trains on."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from qa.cli import app
from qa.corpora.squad import load_squad
from qa.index import Index
from qa.indexer import EmbeddingOptions, PassageOptions, build_index
from qa.reader.train import TrainConfig, train_reader
from qa.retriever.open_data import open_training_data
from tests.corpus_fixtures import squad_questions as squad_file


def test_gold_passages_hold_their_answer_and_negatives_none(tiny_models, tmp_path):
    train = squad_file(tmp_path / "train.json")
    index = tmp_path / "index"
    build_index(train, index, embedding=EmbeddingOptions(str(tiny_models["encoder"])), passages=PassageOptions(max_words=10, overlap_words=2))
    data, counts = open_training_data(train, Index(index), negatives=2, retriever="bm25", depth=10)
    original = {e.question: e.answers[0] for e in load_squad(train).examples}
    positives = negatives = 0
    for article in data["data"]:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                answer = original[qa["question"]]
                if qa["is_impossible"]:
                    negatives += 1
                    assert answer.lower() not in paragraph["context"].lower()
                else:
                    positives += 1
                    start = qa["answers"][0]["answer_start"]
                    assert paragraph["context"][start : start + len(answer)] == answer
    assert positives == counts["questions"] >= 12 and negatives == counts["negative passages"] > positives
    assert counts["questions"] + counts["questions left out: the gold answer is not inside one index passage"] == len(original)

    out = tmp_path / "open.json"
    result = CliRunner().invoke(app, ["train", "open-data", "--train", str(train), "--index", str(index), "--output", str(out),
                                      "--retriever", "bm25", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["questions"] == counts["questions"]
    assert CliRunner().invoke(app, ["train", "open-data", "--train", str(train), "--index", str(index), "--output", str(out)]).exit_code == 1
    written = load_squad(out)
    later = tmp_path / "later.json"  # --skip: the questions an earlier run did not take
    result = CliRunner().invoke(app, ["train", "open-data", "--train", str(train), "--index", str(index), "--output", str(later),
                                      "--retriever", "bm25", "--skip", "4", "--limit", "3"])
    assert result.exit_code == 0, result.output
    answerable = [e.question for e in load_squad(train).examples if e.answerable]
    taken = {e.question for e in load_squad(later).examples if e.answerable}
    assert taken and taken <= set(answerable[4:7])
    assert sum(not e.answerable for e in written.examples) == counts["negative passages"]
    metrics = train_reader(TrainConfig(train=str(out), base=str(tiny_models["reader"]), output=str(tmp_path / "reader"),
                                       max_length=64, stride=16, batch_size=4, epochs=1))
    assert metrics["train_examples"] == len(written.examples)
