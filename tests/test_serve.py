"""`qa serve`: a real uvicorn server on a free loopback port, over the tiny index and reader."""

from __future__ import annotations

import http.client
import json
import shutil
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

import pytest
from typer.testing import CliRunner

from qa.cli import app as cli_app
from qa.pipeline import Pipeline
from qa.server import ServerSettings
from tests.serving import call, running

QUESTION = "Who built the tower?"


@pytest.fixture(scope="module")
def server(tiny_index, tiny_models):
    with running(tiny_index, tiny_models["reader"]) as url:
        yield url


def test_ask_answers_as_qa_ask_json_does(server, tiny_index, tiny_models):
    status, _, result = call(server, "POST", "/ask", {"question": QUESTION, "top_k": 3, "answers": 2, "retriever": "bm25"})
    assert status == 200
    local = Pipeline(tiny_index, reader=str(tiny_models["reader"]), retriever="bm25", precision="fp32").ask(QUESTION, 3, 2).as_dict()
    for key in ("question", "reader", "retriever", "warnings"):
        assert result[key] == local[key]
    assert [p["passage"] for p in result["passages"]] == [p["passage"] for p in local["passages"]]
    assert [(a["answer"], a["document"], a["start"]) for a in result["answers"]] == [
        (a["answer"], a["document"], a["start"]) for a in local["answers"]
    ]
    assert [a["score"] for a in result["answers"]] == pytest.approx([a["score"] for a in local["answers"]], abs=1e-4)
    assert {"retrieve", "read", "total", "queue"} <= set(result["seconds"])


def test_ask_where_searches_only_the_documents_that_meet_it(server, monkeypatch):
    status, _, result = call(server, "POST", "/ask", {"question": QUESTION, "top_k": 5, "where": ["title=dogs", "id~dog"]})
    assert status == 200 and result["where"] == ["title=dogs", "id~dog"]
    assert result["passages"] and {p["document"] for p in result["passages"]} == {"dog-1"}
    monkeypatch.delenv("QA_SERVER", raising=False)
    asked = CliRunner().invoke(cli_app, ["ask", QUESTION, "--server", server, "--json", "--where", "id=eiffel*"])
    assert asked.exit_code == 0, asked.output
    assert {p["document"] for p in json.loads(asked.stdout)["passages"]} == {"eiffel.md"}


def test_health_ready_info_and_metrics(server):
    assert call(server, "GET", "/health")[:3:2] == (200, {"status": "ok"})
    status, _, ready = call(server, "GET", "/ready")
    assert status == 200 and ready["index"]["generation"] == 1 and ready["index"]["passages"] > 0
    status, _, info = call(server, "GET", "/info")
    assert info["limits"]["top_k"] == 100 and info["limits"]["answers"] == 20 and info["limits"]["where"] == 16
    assert "bm25" in info["retrievers"]
    call(server, "POST", "/ask", {"question": QUESTION})
    status, headers, text = call(server, "GET", "/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain")
    assert 'qa_http_requests_total{method="POST",route="/ask",status="200"}' in text
    for name in ("qa_http_request_seconds_bucket", "qa_queue_depth", "qa_batch_size_bucket", "qa_index_generation 1.0", "qa_ready 1.0"):
        assert name in text
    assert call(server, "GET", "/openapi.json")[2]["paths"]["/ask"]["post"]["requestBody"]
    status, _, page = call(server, "GET", "/docs")
    assert status == 200 and "/docs-assets/swagger-ui-bundle.js" in page and "cdn" not in page.lower()
    status, headers, _ = call(server, "GET", "/docs-assets/swagger-ui-bundle.js")
    assert status == 200 and "javascript" in headers["content-type"]
    assert call(server, "GET", "/docs-assets/../../../../etc/passwd")[0] == 404


@pytest.mark.parametrize(
    "body, status, says",
    [
        ({"question": QUESTION, "top_k": 101}, 400, "top_k"),
        ({"question": QUESTION, "top_k": 0}, 400, "top_k"),
        ({"question": QUESTION, "answers": 21}, 400, "answers"),
        ({"question": "   "}, 400, "empty"),
        ({"question": "x" * 1001}, 400, "at most 1000"),
        ({"question": QUESTION, "retriever": "grep"}, 400, "unknown retriever"),
        ({"question": QUESTION, "colour": "blue"}, 400, "colour"),
        ({"top_k": 3}, 400, "question"),
        ({"question": QUESTION, "top_k": "ten"}, 400, "top_k"),
        ({"question": QUESTION, "where": ["journal"]}, 400, "FIELD OP VALUE"),
        ({"question": QUESTION, "where": "id=cat-1"}, 400, "where"),
        ({"question": QUESTION, "where": ["id=cat-1"] * 17}, 400, "where"),
        ({"question": QUESTION, "where": ["id=nothing*"]}, 400, "no document in the index meets id=nothing*"),
    ],
)
def test_bad_questions_are_400_with_a_message(server, body, status, says):
    got, _, result = call(server, "POST", "/ask", body)
    assert got == status and says in result["error"]["message"] and result["error"]["status"] == status


def test_malformed_oversized_and_unknown_requests(server):
    status, _, result = call(server, "POST", "/ask", raw=b"{not json")
    assert status == 400 and "JSON" in result["error"]["message"]
    assert call(server, "POST", "/ask", raw=b"")[0] == 400
    status, _, result = call(server, "POST", "/ask", raw=json.dumps({"question": "x" * 20_000}).encode())
    assert status == 413 and "bytes" in result["error"]["message"]
    # the same body sent in chunks, without a Content-Length, is refused too
    parsed = urllib.parse.urlparse(server)
    connection = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=30)
    connection.request("POST", "/ask", body=iter([b'{"question": "', b"x" * 20_000, b'"}']),
                       headers={"Content-Type": "application/json"}, encode_chunked=True)
    assert connection.getresponse().status == 413
    status, _, result = call(server, "GET", "/nowhere")
    assert status == 404 and result["error"]["message"] == "no such path: /nowhere"
    assert call(server, "GET", "/ask")[0] == 405


def test_documents_by_id_with_highlight_and_no_way_out_of_the_index(server):
    status, _, ask = call(server, "POST", "/ask", {"question": QUESTION, "retriever": "bm25"})
    answer = ask["answers"][0]
    path = f"/documents/{urllib.parse.quote(answer['document'], safe='')}?start={answer['document_start']}&end={answer['document_end']}"
    status, _, document = call(server, "GET", path)
    assert status == 200 and document["document"] == answer["document"]
    assert document["text"][answer["document_start"] : answer["document_end"]] == answer["answer"]
    assert document["highlight"] == {"start": answer["document_start"], "end": answer["document_end"]}
    assert call(server, "GET", f"/documents/cat-1?start=5&end={10**6}")[0] == 400
    assert call(server, "GET", "/documents/cat-1?start=5")[0] == 400
    for outside in ("../../../../etc/passwd", "%2E%2E%2F%2E%2E%2Fetc%2Fpasswd", "/etc/passwd", "manifest.json"):
        status, _, result = call(server, "GET", "/documents/" + outside)
        assert status == 404, outside
        assert "root:" not in json.dumps(result)


def test_the_token_is_required_everywhere_but_the_page_and_liveness(tiny_index, tiny_models):
    token = "s3cret-token"
    with running(tiny_index, tiny_models["reader"], ServerSettings(token=token)) as url:
        for method, path, body in (("POST", "/ask", {"question": QUESTION}), ("GET", "/documents/cat-1", None),
                                   ("GET", "/ready", None), ("GET", "/metrics", None), ("GET", "/info", None)):
            status, headers, result = call(url, method, path, body)
            assert status == 401 and headers["www-authenticate"] == "Bearer", path
            assert call(url, method, path, body, token="s3cret-tokeN")[0] == 401, path
            assert call(url, method, path, body, headers={"Authorization": token})[0] == 401, path  # no scheme
            assert call(url, method, path, body, token=token)[0] == 200, path
        for path in ("/", "/health", "/static/app.js"):
            assert call(url, "GET", path)[0] == 200, path


def test_serving_beyond_loopback_needs_a_token(tiny_index, monkeypatch):
    monkeypatch.delenv("QA_TOKEN", raising=False)
    result = CliRunner().invoke(cli_app, ["serve", "--index", str(tiny_index), "--host", "0.0.0.0"])
    assert result.exit_code == 1 and "--token" in result.output


def slow_batches(monkeypatch, seconds: float, sizes: list[int]):
    ask_batch = Pipeline.ask_batch

    def slow(self, questions, *args, **kwargs):
        sizes.append(len(questions))
        time.sleep(seconds)
        return ask_batch(self, questions, *args, **kwargs)

    monkeypatch.setattr(Pipeline, "ask_batch", slow)


def test_concurrent_questions_are_read_in_one_batch_with_the_answers_of_one_at_a_time(tiny_index, tiny_models, monkeypatch):
    questions = [QUESTION, "What do plants release?", "Where is the cat?", "What does a dog bark at?"] * 2
    sizes: list[int] = []
    with running(tiny_index, tiny_models["reader"]) as url:
        alone = [call(url, "POST", "/ask", {"question": q})[2]["answers"] for q in questions]
        slow_batches(monkeypatch, 0.3, sizes)
        with ThreadPoolExecutor(len(questions)) as pool:
            together = list(pool.map(lambda q: call(url, "POST", "/ask", {"question": q}), questions))
    assert all(status == 200 for status, _, _ in together)
    assert max(sizes) > 1  # questions that arrived together were read together
    assert [[(a["answer"], a["document"]) for a in r["answers"]] for _, _, r in together] == [
        [(a["answer"], a["document"]) for a in answers] for answers in alone
    ]


def test_a_full_queue_sheds_load_with_503_and_retry_after(tiny_index, tiny_models, monkeypatch):
    slow_batches(monkeypatch, 0.5, [])
    with running(tiny_index, tiny_models["reader"], max_queue=2, max_batch=1) as url:
        with ThreadPoolExecutor(12) as pool:
            results = list(pool.map(lambda _: call(url, "POST", "/ask", {"question": QUESTION}), range(12)))
        statuses = [status for status, _, _ in results]
        assert set(statuses) == {200, 503} and statuses.count(503) >= 5
        shed = [(headers, body) for status, headers, body in results if status == 503]
        assert all(h["retry-after"] == "1" and "busy" in b["error"]["message"] for h, b in shed)
        assert "qa_questions_shed_total" in call(url, "GET", "/metrics")[2]


def test_a_question_not_answered_in_time_is_503(tiny_index, tiny_models, monkeypatch):
    slow_batches(monkeypatch, 1.0, [])
    with running(tiny_index, tiny_models["reader"], ServerSettings(timeout=0.3)) as url:
        status, headers, result = call(url, "POST", "/ask", {"question": QUESTION})
    assert status == 503 and "retry-after" in headers and "0.3 s" in result["error"]["message"]


def test_a_rebuilt_index_is_swapped_in_without_a_failed_request(tiny_index, tiny_models, write_files, tmp_path):
    from qa.indexer import EmbeddingOptions, PassageOptions, build_index

    index = tmp_path / "index"
    shutil.copytree(tiny_index, index)
    corpus = write_files({"new.txt": "The lighthouse of Alexandria was built by Sostratus of Cnidus."})
    statuses: list[int] = []
    with running(index, tiny_models["reader"], watch_interval=0.1) as url:
        stop = threading.Event()

        def keep_asking():
            while not stop.is_set():
                statuses.append(call(url, "POST", "/ask", {"question": QUESTION, "retriever": "bm25"})[0])

        asker = threading.Thread(target=keep_asking)
        asker.start()
        build_index(corpus, index, add=True, embedding=EmbeddingOptions(str(tiny_models["encoder"])),
                    passages=PassageOptions(max_words=12, overlap_words=4))
        deadline = time.monotonic() + 30
        while call(url, "GET", "/ready")[2]["index"]["generation"] != 2:
            assert time.monotonic() < deadline, "the new generation was not served"
            time.sleep(0.05)
        time.sleep(0.3)
        stop.set()
        asker.join()
        status, _, result = call(url, "POST", "/ask", {"question": "Who built the lighthouse of Alexandria?", "retriever": "bm25"})
    assert status == 200 and result["passages"][0]["document"] == "new.txt"
    assert statuses and set(statuses) == {200}


def test_a_short_load_has_no_errors(server):
    questions = [QUESTION, "What do plants release?", "Where is the cat?", "What does a dog bark at?"]
    statuses: list[int] = []
    deadline = time.monotonic() + 3

    def client(i):
        n = 0
        while time.monotonic() < deadline:
            statuses.append(call(server, "POST", "/ask", {"question": questions[(i + n) % 4]})[0])
            n += 1

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(client, range(6)))
    assert len(statuses) > 6 and set(statuses) == {200}


def test_qa_ask_server_prints_the_servers_answers(server, monkeypatch, tmp_path):
    runner = CliRunner()
    monkeypatch.delenv("QA_SERVER", raising=False)
    result = runner.invoke(cli_app, ["ask", QUESTION, "--server", server, "--json", "-k", "3"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["answers"]
    monkeypatch.setenv("QA_SERVER", server)
    result = runner.invoke(cli_app, ["ask", QUESTION])
    assert result.exit_code == 0 and "1." in result.stdout
    result = runner.invoke(cli_app, ["ask", QUESTION, "--reader", "x"])
    assert result.exit_code == 1 and "--reader" in result.output and "QA_SERVER" in result.output
    result = runner.invoke(cli_app, ["ask", QUESTION, "-k", "500"])
    assert result.exit_code == 1 and "400" in result.output and "top_k" in result.output
    questions = tmp_path / "questions.txt"  # a file of questions, the second refused by the server:
    questions.write_text(f"{QUESTION}\n{'x' * 1001}\nWhat does the cat sit on?\n")
    result = runner.invoke(cli_app, ["ask", "-f", str(questions), "--json"])
    assert result.exit_code == 1 and "at most 1000" in result.output
    assert [json.loads(line)["question"] for line in result.stdout.splitlines()] == [QUESTION]  # the first kept
    result = runner.invoke(cli_app, ["ask", QUESTION, "--server", "http://127.0.0.1:9"])
    assert result.exit_code == 1 and "cannot reach the qa server" in result.output


def test_cors_is_off_unless_an_origin_is_allowed(server, tiny_index, tiny_models):
    preflight = {"Origin": "http://lab.example", "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "content-type"}
    _, headers, _ = call(server, "POST", "/ask", {"question": QUESTION}, headers={"Origin": "http://lab.example"})
    assert "access-control-allow-origin" not in headers
    with running(tiny_index, tiny_models["reader"], ServerSettings(cors_origins=("http://lab.example",))) as url:
        status, headers, _ = call(url, "OPTIONS", "/ask", headers=preflight)
        assert status == 200 and headers["access-control-allow-origin"] == "http://lab.example"
        _, headers, _ = call(url, "OPTIONS", "/ask", headers={**preflight, "Origin": "http://elsewhere.example"})
        assert headers.get("access-control-allow-origin") != "http://elsewhere.example"
