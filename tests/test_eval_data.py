import gzip
import hashlib
import http.server
import json
import threading

import pytest

from qa.errors import QAError
from qa.eval import datasets
from qa.corpora.squad import load_squad

SQUAD = {
    "version": "1.1",
    "data": [
        {
            "title": "Eiffel_Tower",
            "paragraphs": [
                {
                    "context": "The Eiffel Tower was built by Gustave Eiffel's company in 1889.",
                    "qas": [
                        {"id": "q1", "question": "Who built it?", "answers": [{"text": "Gustave Eiffel's company", "answer_start": 30}]},
                        {"id": "q2", "question": "When?", "answers": [{"text": "1889", "answer_start": 58}, {"text": "in 1889", "answer_start": 55}]},
                    ],
                },
                {"context": "Paris is the capital of France.", "qas": [{"id": "q3", "question": "Capital?", "answers": [], "is_impossible": True}]},
            ],
        }
    ],
}


def test_load_squad_json_and_gz(tmp_path):
    plain = tmp_path / "s.json"
    plain.write_text(json.dumps(SQUAD))
    packed = tmp_path / "s.json.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    a, b = load_squad(plain), load_squad(packed, id_prefix="dev/")
    assert [e.id for e in a.examples] == ["q1", "q2", "q3"]
    assert a.examples[1].answers == ("1889", "in 1889") and not a.examples[2].answerable
    assert [d.id for d in a.documents] == ["Eiffel_Tower/0", "Eiffel_Tower/1"]
    assert a.documents[0].title == "Eiffel Tower"
    assert [d.id for d in b.documents] == ["dev/Eiffel_Tower/0", "dev/Eiffel_Tower/1"]
    assert b.examples[0].doc_id == "dev/Eiffel_Tower/0"
    assert a.sha256 == hashlib.sha256(plain.read_bytes()).hexdigest()


def test_document_id_is_used_when_present(tmp_path):
    data = {"data": [{"paragraphs": [{"document_id": 1545, "context": "x y", "qas": []}]}]}
    (tmp_path / "c.json").write_text(json.dumps(data))
    assert load_squad(tmp_path / "c.json").documents[0].id == "1545"


@pytest.mark.parametrize(
    "content, message",
    [
        ("{broken", "cannot read"),
        (json.dumps({"no": "data"}), "not a SQuAD-format file"),
        (json.dumps({"data": [{"paragraphs": [{"qas": []}]}]}), "missing 'context'"),
        (json.dumps({"data": [{"paragraphs": [{"context": "c", "qas": [{"id": "1", "question": "q", "answers": []}]}]}]}), "has no answers and is not marked is_impossible"),
        (json.dumps({"data": [{"paragraphs": [{"context": "c", "qas": [{"id": "1", "question": "q", "answers": [{"text": "c"}]}] * 2}]}]}), "duplicate question ids"),
    ],
)
def test_malformed_files_are_clear_errors(tmp_path, content, message):
    (tmp_path / "bad.json").write_text(content)
    with pytest.raises(QAError, match=message):
        load_squad(tmp_path / "bad.json")


@pytest.fixture
def no_env(monkeypatch, tmp_path):
    monkeypatch.delenv(datasets.DATA_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("QA_OFFLINE", raising=False)


def test_resolution_order_and_gz_variant(no_env, tmp_path, monkeypatch):
    given, env = tmp_path / "given", tmp_path / "env"
    (env / "squad").mkdir(parents=True)
    (env / "squad" / "dev-v1.1.json.gz").write_bytes(b"x")
    monkeypatch.setenv(datasets.DATA_ENV, str(env))
    assert datasets.resolve("squad-v1.1-dev") == env / "squad" / "dev-v1.1.json.gz"
    given.mkdir()
    (given / "dev-v1.1.json").write_text("{}")
    assert datasets.resolve("squad-v1.1-dev", given) == given / "dev-v1.1.json"


def test_missing_file_names_its_official_source(no_env, monkeypatch):
    monkeypatch.setenv("QA_OFFLINE", "1")
    with pytest.raises(QAError, match=r"dev-v1.1.json not found .*download it from https://rajpurkar.github.io/SQuAD-explorer/"):
        datasets.resolve("squad-v1.1-dev")
    with pytest.raises(QAError, match="github.com/deepset-ai/COVID-QA"):
        datasets.resolve("covid-qa-dev")


@pytest.fixture
def http_server(tmp_path):
    root = tmp_path / "www"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


def test_download_checks_sha256(no_env, http_server, tmp_path, monkeypatch):
    root, url = http_server
    body = json.dumps(SQUAD).encode()
    (root / "dev-v1.1.json").write_bytes(body)
    good = datasets.DataFile("squad/dev-v1.1.json", url, url + "dev-v1.1.json", hashlib.sha256(body).hexdigest())
    monkeypatch.setitem(datasets.FILES, "squad-v1.1-dev", good)
    path = datasets.resolve("squad-v1.1-dev")
    assert path == tmp_path / "cache" / "qa" / "data" / "squad" / "dev-v1.1.json"
    assert path.read_bytes() == body
    assert datasets.resolve("squad-v1.1-dev") == path  # cached: found, not downloaded again

    wrong = datasets.DataFile("squad/other.json", url, url + "dev-v1.1.json", "0" * 64)
    monkeypatch.setitem(datasets.FILES, "squad-v1.1-train", wrong)
    with pytest.raises(QAError, match="has sha256 .* expected 0000"):
        datasets.resolve("squad-v1.1-train")
    assert not (tmp_path / "cache" / "qa" / "data" / "squad" / "other.json").exists()
    assert [p.name for p in path.parent.iterdir()] == ["dev-v1.1.json"]  # no partial files left

    missing = datasets.DataFile("squad/gone.json", url, url + "gone.json", "0" * 64)
    monkeypatch.setitem(datasets.FILES, "squad-v2.0-dev", missing)
    with pytest.raises(QAError, match="cannot download"):
        datasets.resolve("squad-v2.0-dev")
