"""Fault injection (issue 15): processes killed with SIGKILL at random points, damaged index
files of every kind, a full disk, concurrent writers, reading without writing. Whatever
happens, nothing already built is lost and every failure is one line, exit status 1.

Tiny models and a small corpus keep this fast; kill points are drawn with a fixed seed."""

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from conftest import SMALL_CORPUS

from qa.indexer import EmbeddingOptions, build_index
from qa.index import layout
from qa.index.check import check_index
from qa.retriever import Index

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def qa_process(*args, **popen):
    return subprocess.Popen([sys.executable, "-m", "qa", *map(str, args)], env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **popen)


def qa_run(*args, **kw):
    return subprocess.run([sys.executable, "-m", "qa", *map(str, args)], env=ENV, capture_output=True, text=True, **kw)


def one_line_failure(proc):
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


def leftovers(parent, name):
    return sorted(p.name for p in parent.iterdir() if p.name.startswith(f".{name}."))


@pytest.fixture
def big_corpus(write_files):
    """SMALL_CORPUS and 80 more documents: a build takes long enough to be killed inside it."""
    files = dict(SMALL_CORPUS)
    for i in range(80):
        files[f"more/doc{i:03d}.txt"] = f"Document {i} is about the river and the city number {i}. " * 20
    return write_files(files)


def test_kill_9_at_random_points_of_index_and_add(tiny_models, big_corpus, tmp_path):
    out = tmp_path / "idx"
    encoder = tiny_models["encoder"]
    t0 = time.perf_counter()
    build_index(big_corpus, out, embedding=EmbeddingOptions(str(encoder)))
    duration = min(6.0, 2.0 + 1.5 * (time.perf_counter() - t0))  # process start and imports included
    rng = random.Random(15)
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "new.txt").write_text("A new document about lakes.")
    for args in [("index", big_corpus)] * 3 + [("index", extra, "--add")] * 2:
        before = (out / layout.MANIFEST).read_text()
        command = [*args, "--index", out] + (["--embedding-model", encoder] if "--add" not in args else [])
        proc = qa_process(*command)
        time.sleep(rng.uniform(0.3, duration))
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        index = Index(out)  # recovers a kill between the two renames
        after = (out / layout.MANIFEST).read_text()
        assert after == before or proc.returncode == 0 or json.loads(after)["generation"] == json.loads(before)["generation"] + 1
        assert check_index(out).ok, check_index(out).problems
        assert len(index.store.get([0])) == 1
    done = qa_run("index", big_corpus, "--index", out, "--embedding-model", encoder)
    assert done.returncode == 0, done.stderr
    assert leftovers(tmp_path, "idx") == [] and check_index(out).ok


TRAIN = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    facts = [("the cat sat on the mat", "who sat on the mat?", "the cat"), ("paris is the capital of france", "what is the capital?", "paris")]
    paragraphs = [{"context": c, "qas": [{"id": f"{n}-{i}", "question": q, "answers": [{"text": a, "answer_start": c.index(a)}]}]}
                  for n in range(30) for i, (c, q, a) in enumerate(facts)]
    Path(sys.argv[1]).write_text(json.dumps({"data": [{"title": "facts", "paragraphs": paragraphs}]}))
    """
)


@pytest.fixture
def usual_umask():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_kill_9_during_training_loses_nothing_and_resumes(tiny_models, tmp_path, usual_umask):
    data = tmp_path / "train.json"
    subprocess.run([sys.executable, "-c", TRAIN, str(data)], check=True)
    out = tmp_path / "reader"
    train = ["train", "reader", "--train", data, "--base", tiny_models["reader"], "--output", out,
             "--batch-size", "4", "--epochs", "4", "--checkpoint-every", "2", "--max-length", "64", "--stride", "16"]
    rng = random.Random(15)
    for attempt in range(2):
        resume = ["--resume"] if (out / "checkpoint" / "trainer_state.json").is_file() else []
        proc = qa_process(*(train if not resume else ["train", "reader", "--output", out, "--resume"]))
        time.sleep(rng.uniform(2.0, 6.0))
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        if (out / "checkpoint").exists():
            state = json.loads((out / "checkpoint" / "trainer_state.json").read_text())  # never half-written
            assert state["state"]["step"] % 2 == 0 or state["state"]["step"] == state["state"]["total_steps"]
    resume = (out / "checkpoint" / "trainer_state.json").is_file()
    final = qa_run(*(["train", "reader", "--output", out, "--resume"] if resume else train))
    assert final.returncode == 0, final.stderr
    from qa.reader import Reader

    assert Reader(out).read("who sat on the mat?", ["the cat sat on the mat"])
    assert not (out / "checkpoint").exists() and leftovers(out, "checkpoint") == []
    assert all(p.stat().st_mode & 0o044 == 0o044 for p in out.iterdir())  # shareable under umask 022 (was 0600)


def _truncate(path):
    path.write_bytes(path.read_bytes()[: max(1, path.stat().st_size // 2)])


def _garbage(path):
    path.write_bytes(os.urandom(path.stat().st_size))


def _flip_middle(path):
    data = bytearray(path.read_bytes())
    middle = len(data) // 2 + 64
    data[middle : middle + 8] = bytes(b ^ 0xFF for b in data[middle : middle + 8])
    path.write_bytes(bytes(data))


def _drop_key(path):
    manifest = json.loads(path.read_text())
    del manifest["dense"]["dim"]
    path.write_text(json.dumps(manifest))


DAMAGE = [
    ("manifest.json", _truncate),
    ("manifest.json", _drop_key),
    ("passages.sqlite", _truncate),
    ("passages.sqlite", _garbage),
    ("dense/vectors.npy", _truncate),
    ("dense/vectors.npy", _garbage),
    ("bm25/data.csc.index.npy", _truncate),
    ("bm25/indices.csc.index.npy", _garbage),
    ("bm25/vocab.index.json", _garbage),
    ("bm25/params.index.json", _truncate),
]


@pytest.fixture
def fresh_index(tiny_index, tmp_path):
    import shutil

    out = tmp_path / "idx"
    shutil.copytree(tiny_index, out)
    return out


@pytest.mark.parametrize(("name", "damage"), DAMAGE, ids=[f"{n}-{d.__name__[1:]}" for n, d in DAMAGE])
def test_a_damaged_index_is_a_one_line_error_and_check_names_it(fresh_index, tiny_models, name, damage):
    from test_reliability import one_line_error, qa

    damage(fresh_index / name)
    line = one_line_error(qa("ask", "who designed the tower?", "--index", fresh_index, "--reader", tiny_models["reader"]))
    assert "rebuild" in line
    assert not check_index(fresh_index).ok
    checked = qa("index", "--check", fresh_index)
    assert checked.exit_code == 1 and "damaged" in checked.output and "Traceback" not in checked.output


def test_check_from_the_command_line(fresh_index):
    checked = qa_run("index", "--check", fresh_index, "--json")
    assert checked.returncode == 0 and json.loads(checked.stdout)["ok"] is True
    _garbage(fresh_index / "passages.sqlite")
    checked = qa_run("index", "--check", fresh_index)
    assert checked.returncode == 1 and "passages.sqlite" in checked.stderr and "Traceback" not in checked.stderr


def test_changed_bytes_that_still_load_are_found_by_check(fresh_index):
    _flip_middle(fresh_index / "dense/vectors.npy")
    report = check_index(fresh_index)
    assert report.problems == ["dense/vectors.npy has changed since the build (SHA-256 differs)"]
    assert check_index(fresh_index.parent / "nothing").problems[0].startswith("no index at")


def test_a_model_of_another_dimension_is_a_one_line_error(fresh_index, tiny_models, tmp_path):
    manifest = json.loads((fresh_index / "manifest.json").read_text())
    manifest["dense"]["dim"] = 64  # as if built with another model
    manifest.pop("files")
    (fresh_index / "manifest.json").write_text(json.dumps(manifest))
    from test_reliability import one_line_error, qa

    line = one_line_error(qa("ask", "who designed the tower?", "--index", fresh_index, "--reader", tiny_models["reader"]))
    assert "rebuild" in line


def test_a_full_disk_leaves_the_previous_index_and_no_leftovers(tiny_models, big_corpus, fresh_index):
    before = (fresh_index / layout.MANIFEST).read_text()
    limit = textwrap.dedent(
        """
        import resource, signal, sys
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG, as on a full disk
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))
        from qa.cli import main
        sys.argv = ["qa", *sys.argv[1:]]
        main()
        """
    )
    proc = subprocess.run([sys.executable, "-c", limit, "index", str(big_corpus), "--index", str(fresh_index),
                           "--embedding-model", str(tiny_models["encoder"])], env=ENV, capture_output=True, text=True)
    line = one_line_failure(proc)
    assert "cannot write the index" in line and "unchanged" in line
    assert (fresh_index / layout.MANIFEST).read_text() == before and check_index(fresh_index).ok
    assert leftovers(fresh_index.parent, "idx") == []


def test_concurrent_writers_one_wins_the_other_is_told(tiny_models, big_corpus, fresh_index):
    stall = textwrap.dedent(
        """
        import sys, time
        from qa.indexer import EmbeddingOptions, build
        def stall(self, texts):
            print("embedding", flush=True)
            time.sleep(60)
        build.EmbeddingQueue.encode = stall
        build.build_index(sys.argv[1], sys.argv[2], embedding=EmbeddingOptions(sys.argv[3]))
        """
    )
    first = subprocess.Popen([sys.executable, "-c", stall, str(big_corpus), str(fresh_index), str(tiny_models["encoder"])],
                             env=ENV, stdout=subprocess.PIPE, text=True)
    try:
        assert first.stdout.readline().strip() == "embedding"
        second = qa_run("index", big_corpus, "--index", fresh_index, "--embedding-model", tiny_models["encoder"])
        assert "another process is writing" in one_line_failure(second)
        add = qa_run("index", big_corpus, "--index", fresh_index, "--add")
        assert "another process is writing" in one_line_failure(add)
    finally:
        first.kill()
        first.wait()
    assert check_index(fresh_index).ok


def test_asking_writes_nothing(fresh_index, tiny_models):
    def snapshot():
        return {p: p.stat().st_mtime_ns for p in [*fresh_index.parent.iterdir(), *fresh_index.rglob("*")]}

    before = snapshot()
    done = qa_run("ask", "who designed the tower?", "--index", fresh_index, "--reader", tiny_models["reader"])
    assert done.returncode == 0, done.stderr
    assert snapshot() == before


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root ignores file permissions; run as a normal user")
def test_a_read_only_parent_is_a_one_line_error(tiny_models, write_files, tmp_path):
    parent = tmp_path / "ro"
    parent.mkdir()
    parent.chmod(0o555)
    try:
        line = one_line_failure(qa_run("index", write_files(SMALL_CORPUS), "--index", parent / "idx",
                                       "--embedding-model", tiny_models["encoder"]))
        assert "cannot write" in line or "Permission denied" in line
    finally:
        parent.chmod(0o755)


@pytest.mark.parametrize("output", ["--json", "text"])
def test_output_whose_reader_has_gone_ends_quietly(tiny_index, tiny_models, output):
    """`qa ask ... | head -c 100`: the pipe is closed before qa writes; no error line, status 1."""
    args = ["ask", "Who built the tower?", "--index", tiny_index, "--reader", tiny_models["reader"], "-n", "3"]
    proc = qa_process(*args, *([output] if output == "--json" else []))
    proc.stdout.close()
    stderr = proc.communicate(timeout=120)[1]
    assert proc.returncode == 1 and stderr.strip() == "", stderr
