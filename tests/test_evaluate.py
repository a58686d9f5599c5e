"""`qa evaluate` with tiny random models on a small SQuAD-format file: the report's numbers are
recomputed independently from the files it writes."""

import collections
import json
import re
import string

import pytest
from typer.testing import CliRunner

from qa.cli import app
from qa.errors import QAError
from qa.eval.question_sets import load_question_set
from qa.eval.runner import evaluate
from qa.reader import Reader
from qa.retriever.retrievers import HYBRID_WEIGHTS, RRF_K

runner = CliRunner()

CONTEXTS = [
    "The Eiffel Tower in Paris was built by the company of the engineer Gustave Eiffel and finished in 1889.",
    "Photosynthesis lets plants turn light energy into chemical energy, releasing oxygen as a by-product.",
    "The cat sat on the mat while the dog barked at the mailman in the city.",
]


def _squad(unanswerable=False):
    paragraphs = []
    for i, context in enumerate(CONTEXTS):
        words = [w for w in context.rstrip(".").split() if len(w) > 3]
        qas = []
        for j in range(4):
            answer = words[j]
            qas.append(
                {"id": f"p{i}q{j}", "question": f"what about {words[1]} {answer}?", "answers": [{"text": answer, "answer_start": context.index(answer)}]}
            )
        if unanswerable:
            qas.append({"id": f"p{i}none", "question": "what is the capital of mars?", "answers": [], "is_impossible": True})
        paragraphs.append({"context": context, "qas": qas})
    return {"version": "test", "data": [{"title": "Mixed", "paragraphs": paragraphs}]}


@pytest.fixture
def squad_file(tmp_path):
    path = tmp_path / "mini.json"
    path.write_text(json.dumps(_squad()))
    return path


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


@pytest.fixture
def tiny_embedder(tiny_models) -> str:
    """The tiny encoder, for the corpus indexes of these tests."""
    return str(tiny_models["encoder"])


def official_v1_scores(dataset: dict, predictions: dict) -> tuple[float, float]:
    """The computation of the official SQuAD v1.1 evaluation script, written out independently."""

    def normalize(s):
        s = "".join(ch for ch in s.lower() if ch not in set(string.punctuation))
        return " ".join(re.sub(r"\b(a|an|the)\b", " ", s).split())

    def f1(pred, gold):
        p, g = normalize(pred).split(), normalize(gold).split()
        same = sum((collections.Counter(p) & collections.Counter(g)).values())
        return 0 if same == 0 else 2 * (same / len(p)) * (same / len(g)) / (same / len(p) + same / len(g))

    em = f = total = 0
    for article in dataset["data"]:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                total += 1
                golds = [a["text"] for a in qa["answers"]]
                pred = predictions[qa["id"]]
                em += max(normalize(pred) == normalize(g) for g in golds)
                f += max(f1(pred, g) for g in golds)
    return 100 * em / total, 100 * f / total


def test_open_evaluation_report_files_agree_with_an_independent_scorer(squad_file, tiny_models, tiny_embedder, tmp_path):
    out = tmp_path / "report"
    result = runner.invoke(
        app,
        ["evaluate", "squad-json", str(squad_file), "--reader", str(tiny_models["reader"]), "--retriever", "hybrid,bm25",
         "--top-k", "1,3", "--embedding-model", tiny_embedder, "--out", str(out), "--json"],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert [(r["retriever"], r["top_k"]) for r in summary["results"]] == [("hybrid", 1), ("hybrid", 3), ("bm25", 1), ("bm25", 3)]
    assert {p.name for p in out.iterdir()} == {
        "report.json", "report.md", "questions.json", "recall.png",
        "predictions-hybrid-k1.json", "predictions-hybrid-k3.json", "predictions-bm25-k1.json", "predictions-bm25-k3.json",
    }
    questions = json.loads((out / "questions.json").read_text())
    report = json.loads((out / "report.json").read_text())
    assert report["config"]["questions"] == 12 and report["versions"]["qa"]
    assert report["config"]["embedding_model"] == tiny_embedder
    assert len(report["config"]["sources"]) == 1 and len(next(iter(report["config"]["sources"].values()))) == 64
    for row in report["results"]:
        predictions = json.loads((out / row["predictions_file"]).read_text())
        em, f1 = official_v1_scores(questions, predictions)
        assert row["exact_match"] == pytest.approx(em) and row["f1"] == pytest.approx(f1)
        assert 0 <= row["recall_answer"] <= 100 and row["latency_p50"] > 0
    # every question's gold paragraph is among 3 passages of a 3-paragraph corpus
    assert all(r["recall_gold"] == 100 for r in report["results"] if r["top_k"] == 3)
    assert len(report["questions"]) == 12 and set(report["questions"][0]["retrieved"]) == {"hybrid", "bm25"}
    assert "| hybrid | 1 |" in (out / "report.md").read_text()


def test_a_sweep_cell_equals_a_run_with_that_setting_alone(squad_file, tiny_models, tiny_embedder, monkeypatch):
    # in float32: under bf16 autocast, logits depend slightly on how passages are batched
    reader = Reader(tiny_models["reader"], precision="fp32")
    benchmark = load_question_set("squad-json", path=squad_file)
    sweep = evaluate(benchmark, reader, retrievers=["dense"], top_ks=[1, 2, 3], embedding_model=tiny_embedder)
    alone = evaluate(benchmark, reader, retrievers=["dense"], top_ks=[2], embedding_model=tiny_embedder)
    assert sweep.config["embedding_model"] == tiny_embedder
    assert sweep.results[1].predictions == alone.results[0].predictions
    assert sweep.results[1].metrics["exact_match"] == alone.results[0].metrics["exact_match"]


def test_gold_evaluation_and_squad2_abstention(tmp_path, tiny_models):
    path = tmp_path / "v2.json"
    path.write_text(json.dumps(_squad(unanswerable=True)))
    reader = Reader(tiny_models["reader"])
    benchmark = load_question_set("squad-json", path=path, gold=True)
    assert benchmark.gold and benchmark.squad_v2
    never = evaluate(benchmark, reader, no_answer_threshold=None).results[0]
    always = evaluate(benchmark, reader, no_answer_threshold=float("inf")).results[0]
    assert never.metrics["HasAns_total"] == 12 and never.metrics["NoAns_total"] == 3
    assert never.metrics["NoAns_exact"] == 0.0  # always answers
    assert all(p == "" for p in always.predictions.values())
    assert always.metrics["NoAns_exact"] == 100.0 and always.metrics["HasAns_exact"] == 0.0
    assert always.metrics["exact_match"] == pytest.approx(100 * 3 / 15)
    assert always.metrics["abstained"] == 100.0 and "abstained" not in never.metrics
    assert always.metrics["exact_match_answering_all"] == never.metrics["exact_match"]  # what it would have answered
    assert evaluate(benchmark, reader, abstain=False, no_answer_threshold=float("inf")).results[0].predictions == never.predictions


def test_a_reader_with_its_own_abstention_rule_abstains_by_default(tmp_path, tiny_models):
    import shutil

    from qa.reader.abstention import Abstention, save_abstention

    folder = tmp_path / "reader"
    shutil.copytree(tiny_models["reader"], folder)
    save_abstention(folder, Abstention(float("inf"), "question"), {"tuned_on": "a test"})
    path = tmp_path / "v2.json"
    path.write_text(json.dumps(_squad(unanswerable=True)))
    benchmark = load_question_set("squad-json", path=path, gold=True)
    own = evaluate(benchmark, str(folder))
    assert own.config["abstention"] == {"threshold": float("inf"), "scope": "question"}
    assert all(p == "" for p in own.results[0].predictions.values())
    answering = evaluate(benchmark, str(folder), abstain=False)
    assert answering.config["abstention"] is None and any(answering.results[0].predictions.values())
    lowered = evaluate(benchmark, str(folder), no_answer_threshold=float("-inf"))  # the threshold replaced, the scope kept
    assert lowered.config["abstention"] == {"threshold": float("-inf"), "scope": "question"}
    assert lowered.results[0].predictions == answering.results[0].predictions


def test_index_is_cached_and_a_stale_user_index_is_refused(squad_file, tiny_models, tiny_embedder, tmp_path):
    from qa.eval.runner import prepare_index
    from qa.indexer import EmbeddingOptions, build_index

    benchmark = load_question_set("squad-json", path=squad_file)
    first = prepare_index(benchmark, embedding_model=tiny_embedder)
    created = json.loads((first / "manifest.json").read_text())["created"]
    assert prepare_index(benchmark, embedding_model=tiny_embedder) == first
    assert json.loads((first / "manifest.json").read_text())["created"] == created  # reused, not rebuilt

    other = tmp_path / "other-index"
    build_index(benchmark.corpus[:1], other, embedding=EmbeddingOptions(str(tiny_models["encoder"])))
    with pytest.raises(QAError, match="was not built for squad-json"):
        prepare_index(benchmark, other, embedding_model=tiny_embedder)


@pytest.mark.parametrize(
    "args, message",
    [
        (["evaluate", "nope"], "unknown evaluation 'nope'"),
        (["evaluate", "squad-json"], "a PATH is given with squad-json"),
        (["evaluate", "squad-json", "{file}", "--retriever", "bm25,fuzzy"], "unknown retriever 'fuzzy'"),
        (["evaluate", "squad-json", "{file}", "--top-k", "1,x"], "--top-k takes whole numbers"),
        (["evaluate", "squad-json", "{file}", "--top-k", "0"], "top-k values must be at least 1"),
        (["evaluate", "squad-json", "{bad}"], "cannot read"),
        (["evaluate", "open-squad", "--data", "{tmp}"], "not found"),
    ],
)
def test_evaluate_errors(args, message, squad_file, tiny_models, tmp_path, monkeypatch):
    monkeypatch.setenv("QA_READER", str(tiny_models["reader"]))
    monkeypatch.setenv("QA_OFFLINE", "1")
    monkeypatch.delenv("QA_DATA_DIR", raising=False)
    (tmp_path / "bad.json").write_text("{")
    fill = {"file": squad_file, "bad": tmp_path / "bad.json", "tmp": tmp_path}
    result = runner.invoke(app, [a.format(**fill) for a in args])
    assert result.exit_code == 1, result.output
    assert message in result.stderr and "Traceback" not in result.output


def test_evaluate_without_a_reader_says_how_to_get_one(squad_file, monkeypatch):
    monkeypatch.delenv("QA_READER", raising=False)
    monkeypatch.setattr("qa.reader.reader.default_reader_path", lambda: None)
    result = runner.invoke(app, ["evaluate", "squad-json", str(squad_file)])
    assert result.exit_code == 1 and "needs a reader" in result.stderr


@pytest.mark.parametrize("gold", [False, True])
def test_reading_many_questions_per_batch_gives_the_answers_of_one_at_a_time(gold, squad_file, tiny_models, tiny_embedder, monkeypatch):
    reader = Reader(tiny_models["reader"], precision="fp32")  # exact in float32
    benchmark = load_question_set("squad-json", path=squad_file, gold=gold)
    one = evaluate(benchmark, reader, top_ks=[3], question_batch=1, embedding_model=tiny_embedder)
    many = evaluate(benchmark, reader, top_ks=[3], question_batch=5, embedding_model=tiny_embedder)
    assert many.config["question_batch"] == 5
    if not gold:
        assert many.config["fusion"]["hybrid"] == {"rrf_k": RRF_K, "bm25_weight": HYBRID_WEIGHTS[0], "dense_weight": HYBRID_WEIGHTS[1]}
    assert many.results[0].predictions == one.results[0].predictions
    assert len(many.results[0].predictions) == len(benchmark.examples)


def test_a_report_names_qa_s_version_when_run_from_a_source_tree(monkeypatch):
    from importlib import metadata

    import qa
    from qa.eval import report

    real = metadata.version

    def not_installed(name):
        if name == "qa":
            raise metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(report.metadata, "version", not_installed)
    assert report.versions()["qa"] == qa.__version__
