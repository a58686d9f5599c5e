"""qa train retriever on a tiny random encoder: triples mined from an index, training with
sentence-transformers, stop and resume, the saved model usable by qa index and qa ask."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("datasets", reason="qa train retriever needs the training extra: pip install 'qa[train]'")

from qa.errors import QAError  # noqa: E402
from qa.index import Index  # noqa: E402
from qa.indexer import EmbeddingOptions, PassageOptions, build_index  # noqa: E402
from qa.retriever.retrievers import make_retriever  # noqa: E402
from qa.retriever.train import RetrieverTrainConfig, Triples, mine_triples, split_held_out, train_retriever  # noqa: E402
from tests.corpus_fixtures import squad_questions as squad_file  # noqa: E402

@pytest.fixture(scope="module")
def setup(tiny_models, tmp_path_factory):
    root = tmp_path_factory.mktemp("retriever")
    train = squad_file(root / "train.json")
    index = root / "index"
    build_index(train, index, embedding=EmbeddingOptions(str(tiny_models["encoder"])), passages=PassageOptions(max_words=10, overlap_words=2))
    return train, index


def config(setup, tiny_models, output, **overrides):
    train, index = setup
    values = dict(train=[str(train)], index=[str(index)], output=str(output), base=str(tiny_models["encoder"]), batch_size=4,
                  mini_batch_size=2, held_out=4, checkpoint_every=2, negative_depth=10)
    return RetrieverTrainConfig(**{**values, **overrides})


def test_triples_hold_the_answer_in_the_positive_and_not_in_the_negative(setup, tiny_models, tmp_path):
    c = config(setup, tiny_models, tmp_path / "out")
    triples = mine_triples(c)
    data = json.loads(setup[0].read_text())["data"]
    answers = {p["qas"][0]["question"]: p["qas"][0]["answers"][0]["text"] for a in data for p in a["paragraphs"]}
    assert len(triples) + sum(triples.skipped.values()) == len(answers)
    assert len(triples) >= 12
    for question, positive, negative in zip(*(triples.columns[k] for k in ("anchor", "positive", "negative_1"))):
        assert answers[question] in positive.lower() and answers[question] not in negative.lower()
        assert positive.startswith("Tower ")  # embedded as the index embeds: title, then text
    assert set(triples.skipped) <= {"its answer is not inside one passage", "too few hard negatives in BM25's top passages"}
    assert len(set(triples.documents)) == len(triples)  # one question per paragraph here: each row its own document


def test_held_out_questions_are_whole_documents_none_of_them_trained_on():
    documents = [f"train.json: d{i // 5}" for i in range(50)]  # ten documents of five questions each
    triples = Triples({"anchor": [f"q{i}" for i in range(50)]}, documents=documents)
    held, trained = split_held_out(triples, 12, seed=3)
    assert sorted(held + trained) == list(range(50))
    held_documents = {documents[i] for i in held}
    assert len(held) == 15 and len(held_documents) == 3  # whole documents, until they hold 12 or more
    assert not held_documents & {documents[i] for i in trained}
    assert split_held_out(triples, 12, seed=3) == (held, trained)  # a resume holds out the same rows
    assert split_held_out(triples, 12, seed=4) != (held, trained)
    # rows mined by an older qa, which recorded no documents: held out question by question, as that run did
    held_old, trained_old = split_held_out(Triples({"anchor": [f"q{i}" for i in range(50)]}), 12, seed=3)
    assert len(held_old) == 12 and len(trained_old) == 38
    assert split_held_out(triples, 0, seed=3)[0] == [] and len(split_held_out(triples, 0, seed=3)[1]) == 50


def test_questions_whose_paragraph_is_not_in_the_index_are_left_out(setup, tiny_models, tmp_path):
    other = squad_file(tmp_path / "other.json", n=5, seed=7)
    data = json.loads(other.read_text())
    for article in data["data"]:
        article["paragraphs"][0]["context"] += " Changed."  # another text: not the indexed paragraph
    other.write_text(json.dumps(data))
    c = config(setup, tiny_models, tmp_path / "out", train=[str(setup[0]), str(other)], index=[str(setup[1])] * 2)
    triples = mine_triples(c)
    assert triples.skipped["its paragraph is not in the index"] == 5 and len(triples) >= 12
    with pytest.raises(QAError, match="one per file"):
        mine_triples(config(setup, tiny_models, tmp_path / "out", train=[str(other)] * 3, index=[str(setup[1])] * 2))


def test_limit_is_one_for_all_files_or_one_per_file(setup, tiny_models, tmp_path):
    train, index = setup
    every = len(mine_triples(config(setup, tiny_models, tmp_path / "out")))
    both = dict(train=[str(train)] * 2, index=[str(index)])
    assert len(mine_triples(config(setup, tiny_models, tmp_path / "out", **both, limit=[3]))) == 2 * 3  # 3 of each file
    per_file = config(setup, tiny_models, tmp_path / "out", **both, limit=[2, 100])
    assert len(mine_triples(per_file)) == 2 + every
    assert per_file.command().endswith("--limit 2 --limit 100")
    with pytest.raises(QAError, match="one --limit for all --train files, or one per file"):
        mine_triples(config(setup, tiny_models, tmp_path / "out", **both, limit=[1, 2, 3]))
    assert RetrieverTrainConfig(**{**vars(per_file), "limit": 7}).limit_of(1) == 7  # a run saved before limits per file


def test_hard_negatives_come_only_from_the_training_files_own_paragraphs(tiny_models, tmp_path):
    # One index over the training file and another set (as open-squad holds SQuAD dev beside train):
    # BM25 ranks the other set's towers high, but training must never see them.
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    train = squad_file(corpus / "train.json")
    other = squad_file(corpus / "dev.json", n=24, seed=7)
    data = json.loads(other.read_text())
    for article in data["data"]:
        article["title"] = article["title"].replace("Tower", "Dev")
    other.write_text(json.dumps(data))
    index = tmp_path / "index"
    build_index(corpus, index, embedding=EmbeddingOptions(str(tiny_models["encoder"])), passages=PassageOptions(max_words=10, overlap_words=2))
    c = config((train, index), tiny_models, tmp_path / "out", negatives=2)
    bm25 = make_retriever(Index(index), "bm25")
    questions = [p["qas"][0]["question"] for a in json.loads(train.read_text())["data"] for p in a["paragraphs"]]
    ranked = [h.passage.title for hits in bm25.search_batch(questions, c.negative_depth, evidence=False) for h in hits]
    assert any(t.startswith("Dev") for t in ranked)  # BM25 ranks the other set high: the rule has something to leave out
    triples = mine_triples(c)
    assert len(triples) >= 12
    assert all(n.startswith("Tower ") for n in triples.columns["negative_1"] + triples.columns["negative_2"])


def test_train_stop_resume_and_use_the_model(setup, tiny_models, tmp_path, monkeypatch):
    import qa.retriever.train
    from qa.embedding import Embedder, load_question_encoder

    out = tmp_path / "encoder"
    assert train_retriever(config(setup, tiny_models, out), stop_after_minutes=0) is None  # a checkpoint, then stop
    assert list(out.glob("checkpoints/checkpoint-*/trainer_state.json"))
    with pytest.raises(QAError, match="--resume"):
        train_retriever(config(setup, tiny_models, out))
    assert (out / "checkpoints" / "qa_triples.json").is_file()
    seconds = out / "checkpoints" / "qa_train_seconds.json"
    assert json.loads(seconds.read_text())["seconds"] > 0
    seconds.write_text(json.dumps({"step": 1, "seconds": 600.0}))  # as if the first part had trained ten minutes
    monkeypatch.setattr(qa.retriever.train, "mine_triples", lambda *a, **k: pytest.fail("a resume searched again"))
    lines: list[str] = []
    metrics = train_retriever(config(setup, tiny_models, out), resume=True, log=lines.append)
    assert metrics["steps"] == (metrics["train_questions"] // 4) * 1 and metrics["recall_after"]["questions"] == 4
    assert 600 < metrics["train_seconds"] < 900  # the card counts the part before the resume too
    assert any(line.startswith(f"step 2/{metrics['steps']}, {{'loss': ") for line in lines), lines  # each logged loss, with its step
    assert not (out / "checkpoints").exists()
    card = (out / "README.md").read_text()
    assert "Trained with `qa train retriever`." in card and "sha256" in card and "recall@10" in card
    # the model: a sentence-transformers folder that qa index builds with and that questions are encoded by
    index = tmp_path / "index"
    build_index(setup[0], index, embedding=EmbeddingOptions(str(out)), passages=PassageOptions(max_words=10, overlap_words=2))
    assert Index(index).manifest["dense"]["model"] == str(out.resolve())
    texts = ["Who built the tower of paris 3?"]
    np.testing.assert_allclose(load_question_encoder(str(out), precision="fp32").encode(texts),
                               Embedder(str(out), precision="fp32").encode(texts), atol=1e-5)


def test_a_foreign_output_folder_is_refused(setup, tiny_models, tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(QAError, match="not written by qa train retriever"):
        train_retriever(config(setup, tiny_models, tmp_path / "mine"))
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_a_checkpoints_folder_qa_did_not_write_is_not_deleted(setup, tiny_models, tmp_path):
    out = tmp_path / "mine"
    (out / "checkpoints").mkdir(parents=True)
    (out / "checkpoints" / "notes.txt").write_text("keep me")
    with pytest.raises(QAError, match="did not write"):
        train_retriever(config(setup, tiny_models, out), overwrite=True)
    assert (out / "checkpoints" / "notes.txt").read_text() == "keep me"


def test_the_card_says_which_questions_were_left_out_and_why_in_words():
    from qa.retriever.train import _left_out

    assert _left_out({}) == "" and _left_out({"its paragraph is not in the index": 0}) == ""
    assert _left_out({"its answer is not inside one passage": 2, "its paragraph is not in the index": 5}) == (
        " (7 left out: 5 its paragraph is not in the index; 2 its answer is not inside one passage)"
    )


def long_paragraphs(path, title="Tower"):
    """A SQuAD file whose paragraphs hold four sentences of nine words or more (inverse-cloze material)."""
    builders = "Alder Birch Cedar Dunmore Elwood Fenwick Garrow Hollis Ingram Jarvis Kendal Lowther".split()
    articles = []
    for i in range(12):
        sentences = [f"The old tower number {i} was raised by {builders[i]} and sons in spring.",
                     f"Its {i} stone stairs lead up to a bell that rings at dawn.",
                     f"Travellers who climb tower {i} see the river bend towards the hills.",
                     f"A small garden of herbs grows beside the gate of tower {i}."]
        context = " ".join(sentences)
        articles.append({"title": f"{title}_{i}", "paragraphs": [{"context": context, "qas": [
            {"id": f"{title}{i}", "question": f"Who raised the old tower number {i}?", "answers": [{"text": builders[i], "answer_start": context.index(builders[i])}]},
        ]}]})
    path.write_text(json.dumps({"version": "1.1", "data": articles}))
    return path


def test_inverse_cloze_rows_are_sentences_of_the_training_files_own_passages(setup, tiny_models, tmp_path):
    from qa.corpora.squad import load_squad
    from qa.retriever.cloze import cloze_pairs

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    train = long_paragraphs(corpus / "train.json")
    long_paragraphs(corpus / "dev.json", title="Dev")  # in the index, never trained on
    index = tmp_path / "index"
    build_index(corpus, index, embedding=EmbeddingOptions(str(tiny_models["encoder"])), passages=PassageOptions(max_words=200, overlap_words=0))
    c = config((train, index), tiny_models, tmp_path / "out", limit=[0], inverse_cloze=[100], held_out=0, negative_depth=30)
    triples = mine_triples(c)
    assert len(triples) == 12 and all(triples.cloze) and set(triples.documents) == {f"train.json: {d.id}" for d in load_squad(train).documents}
    texts = {p.title: p.text for p in Index(index).store.get(list(range(len(Index(index)))))}
    for sentence, positive, negative in zip(*(triples.columns[k] for k in ("anchor", "positive", "negative_1"))):
        title = positive.split("\n")[0]
        assert title.startswith("Tower ") and sentence in texts[title]  # a sentence of its own passage
        assert negative.startswith("Tower ") and sentence not in negative
    removed = sum(s not in p for s, p in zip(triples.columns["anchor"], triples.columns["positive"]))
    assert removed >= 8  # left in one time in ten
    assert c.command().endswith("--limit 0 --inverse-cloze 100")
    # questions and inverse cloze together; the count caps the pairs of each file
    both = mine_triples(config((train, index), tiny_models, tmp_path / "out", inverse_cloze=[5], held_out=0, negative_depth=30))
    assert sum(both.cloze) == 5 and len(both) - 5 >= 10
    passages = Index(index).store.get(list(range(len(Index(index)))))
    assert [p.query for p in cloze_pairs(passages, 3, seed=1)] == [p.query for p in cloze_pairs(passages, 3, seed=1)]
    assert [p.query for p in cloze_pairs(passages, 3, seed=1)] != [p.query for p in cloze_pairs(passages, 3, seed=2)]
    with pytest.raises(QAError, match="nothing to train on"):
        train_retriever(config((train, index), tiny_models, tmp_path / "none", limit=[0]))
    # passages of one short sentence give none: rows as a run without inverse cloze
    short = mine_triples(config(setup, tiny_models, tmp_path / "out", inverse_cloze=[50]))
    assert short.cloze == [] and len(short) == len(mine_triples(config(setup, tiny_models, tmp_path / "out")))
    # training: the card counts the inverse-cloze rows apart from the questions
    metrics = train_retriever(config((train, index), tiny_models, tmp_path / "trained", inverse_cloze=[12], held_out=3, negatives=0))
    assert metrics["recall_after"]["questions"] == 3 and metrics["steps"] >= 2
    assert metrics["train_inverse_cloze"] == 9  # those of the three held-out documents are not trained on
    assert metrics["train_questions"] + metrics["held_out_questions"] + sum(metrics["skipped"].values()) == 12
    assert "9 inverse-cloze rows" in (tmp_path / "trained" / "README.md").read_text()
    # a run from that model: its card carries the base model's, so the whole chain of runs stays on record
    train_retriever(config((train, index), tiny_models, tmp_path / "next", base=str(tmp_path / "trained"), held_out=0, negatives=0))
    card = (tmp_path / "next" / "README.md").read_text()
    assert f"## How the base model `{tmp_path / 'trained'}` was trained" in card and "9 inverse-cloze rows" in card
    assert "no hard negatives" in card and "3 BM25 hard negative(s) per row" not in card
    # inverse cloze alone: the card says so instead of counting zero questions
    alone = train_retriever(config((train, index), tiny_models, tmp_path / "alone", limit=[0], inverse_cloze=[12], held_out=0, negatives=0))
    card = (tmp_path / "alone" / "README.md").read_text()
    assert alone["train_questions"] == 0 and "- No questions: inverse-cloze rows alone" in card and "0 training questions" not in card


def test_inverse_cloze_rows_are_never_held_out_nor_trained_on_for_a_held_out_document():
    documents = [f"train.json: d{i // 5}" for i in range(50)] + [f"train.json: d{i}" for i in range(10)]
    triples = Triples({"anchor": [f"q{i}" for i in range(60)]}, documents=documents, cloze=[False] * 50 + [True] * 10)
    held, trained = split_held_out(triples, 12, seed=3)
    assert all(i < 50 for i in held) and len(held) == 15 and set(range(50)) <= set(held + trained)
    held_documents = {documents[i] for i in held}
    assert not held_documents & {documents[i] for i in trained}
    assert len(trained) == 60 - 15 - 3  # the inverse-cloze rows of the three held-out documents are left out
