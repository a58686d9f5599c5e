"""`qa index --ray`: the Ray build runs the single-process build's stages and makes the same index.

Runs only where Ray is installed (the ``ray`` extra, which the ``test`` extra includes), on a
local Ray instance of 2 CPUs started once for the module.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install -e '.[ray]')")

from typer.testing import CliRunner  # noqa: E402

from qa.cli import app  # noqa: E402
from qa.errors import QAError  # noqa: E402
from qa.index import Index, check_index  # noqa: E402
from qa.index.analysis import analyze  # noqa: E402
from qa.indexer import EmbeddingOptions, LayoutOptions, PassageOptions, RayOptions, ReadOptions, build_index  # noqa: E402
from qa.retriever import BM25Retriever, DenseRetriever  # noqa: E402
from tests.corpus_fixtures import WORDS, mixed_corpus  # noqa: E402

@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def two_builds(local_ray, tiny_models, tmp_path_factory):
    root = mixed_corpus(tmp_path_factory.mktemp("ray-corpus"))
    out = tmp_path_factory.mktemp("ray-indexes")
    options = dict(embedding=EmbeddingOptions(str(tiny_models["encoder"])), passages=PassageOptions(max_words=20, overlap_words=5),
                   reading=ReadOptions(exclude=("page00.md",)))
    single = build_index(root, out / "single", **options)
    parallel = build_index(root, out / "ray", ray=RayOptions(address=None, documents_per_batch=5), **options)
    return root, single, parallel


def test_a_ray_build_stores_the_same_passages_and_report(two_builds):
    root, single, parallel = two_builds
    assert single.report.files_selected == len(list(root.iterdir())) - 1  # all but the excluded page00.md
    assert single.report.files_read == single.report.files_selected - 1  # broken.json is not
    assert parallel.manifest["counts"] == single.manifest["counts"]
    assert parallel.manifest["dense"]["precision"] == single.manifest["dense"]["precision"] in ("fp32", "bf16")
    assert parallel.report.as_dict() == single.report.as_dict()
    assert sorted(parallel.report.warnings) == sorted(single.report.warnings)
    a, b = Index(single.path), Index(parallel.path)
    ids = list(range(len(a)))
    assert [(p.doc_id, p.start, p.end, p.text) for p in a.store.get(ids)] == [(p.doc_id, p.start, p.end, p.text) for p in b.store.get(ids)]
    for name in ("data", "indices", "indptr"):
        assert np.array_equal(a.bm25.scores[name], b.bm25.scores[name])
    assert np.allclose(np.asarray(a.vectors, np.float32), np.asarray(b.vectors, np.float32), atol=2e-3)


def test_a_ray_build_answers_as_the_single_process_build(two_builds, tiny_models):
    _, single, parallel = two_builds
    a, b = Index(single.path), Index(parallel.path)
    questions = [" ".join(WORDS[i : i + 3]) for i in range(0, 24, 2)]
    for retriever in (BM25Retriever, DenseRetriever):
        for question in questions:
            assert [h.passage.idx for h in retriever(a).search(question, 10)] == [h.passage.idx for h in retriever(b).search(question, 10)]


def test_adding_with_ray_skips_what_the_index_holds(two_builds, tmp_path, tiny_models):
    import shutil

    root, single, _ = two_builds
    more = tmp_path / "more"
    more.mkdir()
    shutil.copy(root / "doc00.txt", more / "doc00.txt")  # already in the index: skipped
    (more / "extra.txt").write_text("The harbour bridge opened in spring. " * 10)
    shutil.copytree(single.path, tmp_path / "index")
    result = CliRunner().invoke(app, ["index", str(more), "--index", str(tmp_path / "index"), "--add", "--ray", "local", "--json"])
    assert result.exit_code == 0, result.output
    assert "already in the index" in result.output  # the warning for doc00.txt
    assert json.loads(result.stdout.splitlines()[-1])["counts"]["documents"] == single.manifest["counts"]["documents"] + 1
    index = Index(tmp_path / "index")
    assert index.manifest["counts"]["documents"] == single.manifest["counts"]["documents"] + 1
    assert len(index.vectors) == len(index)


def test_a_sharded_ray_build_writes_the_shards_the_single_process_build_does(two_builds, tiny_models, tmp_path):
    root, single, _ = two_builds
    options = dict(embedding=EmbeddingOptions(str(tiny_models["encoder"])), passages=PassageOptions(max_words=20, overlap_words=5),
                   reading=ReadOptions(exclude=("page00.md",)), layout_options=LayoutOptions(shard_passages=15))
    sharded = build_index(root, tmp_path / "single", **options)
    parallel = build_index(root, tmp_path / "ray", ray=RayOptions(address=None, documents_per_batch=5), **options)
    sizes = [e["passages"] for e in sharded.manifest["shards"]]
    assert len(sizes) >= 2 and [e["passages"] for e in parallel.manifest["shards"]] == sizes
    whole, local, b = Index(single.path), Index(sharded.path), Index(parallel.path)  # b's shards came from writer actors
    ids = list(range(len(whole)))
    assert [(p.doc_id, p.start, p.end) for p in whole.store.get(ids)] == [(p.doc_id, p.start, p.end) for p in b.store.get(ids)]
    question = " ".join(WORDS[:3])
    assert [h.passage.idx for h in DenseRetriever(whole).search(question, 10)] == [h.passage.idx for h in DenseRetriever(b).search(question, 10)]
    assert np.array_equal(local.bm25_scores(analyze(question)), b.bm25_scores(analyze(question)))
    assert check_index(parallel.path).ok
    precisions = {json.loads((index.path / e["path"] / "manifest.json").read_text())["dense"]["precision"]
                  for index in (sharded, parallel) for e in index.manifest["shards"]}  # the writer actors' shards record it too
    assert precisions == {parallel.manifest["dense"]["precision"]}


def test_shards_filled_at_once_by_writer_actors_are_the_single_process_builds(two_builds, tiny_models, tmp_path):
    root, _, _ = two_builds
    options = dict(embedding=EmbeddingOptions(str(tiny_models["encoder"])), passages=PassageOptions(max_words=20, overlap_words=5),
                   reading=ReadOptions(exclude=("page00.md",)), layout_options=LayoutOptions(shard_passages=15, open_shards=2))
    local = build_index(root, tmp_path / "single", **options)
    parallel = build_index(root, tmp_path / "ray", ray=RayOptions(address=None, documents_per_batch=5), **options)
    def shards(result):
        return [{k: v for k, v in entry.items() if k != "build_id"} for entry in result.manifest["shards"]]

    assert len(shards(local)) >= 3 and shards(parallel) == shards(local)
    a, b = Index(local.path), Index(parallel.path)
    ids = list(range(len(a)))
    assert [(p.doc_id, p.start, p.end) for p in a.store.get(ids)] == [(p.doc_id, p.start, p.end) for p in b.store.get(ids)]
    question = " ".join(WORDS[:3])
    assert np.array_equal(a.bm25_scores(analyze(question)), b.bm25_scores(analyze(question)))
    assert [h.passage.idx for h in DenseRetriever(a).search(question, 10)] == [h.passage.idx for h in DenseRetriever(b).search(question, 10)]
    assert check_index(parallel.path).ok


def test_a_ray_build_needs_a_corpus_path(local_ray, tiny_models, tmp_path):
    from qa.corpora import Document

    with pytest.raises(QAError, match="corpus folder or file"):
        build_index([Document("a", "text")], tmp_path / "index", ray=RayOptions(address=None))


def test_a_killed_worker_costs_time_not_the_build(local_ray, tiny_models, tmp_path):
    """kill -9 of the embedding actor mid-build: Ray restarts it and the index is complete."""
    import psutil

    root = mixed_corpus(tmp_path / "corpus", files=40)
    killed = []

    def kill_an_actor():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not killed:
            for proc in psutil.process_iter(["pid", "cmdline"]):
                cmdline = " ".join(proc.info["cmdline"] or ())
                if "_SplitAndEmbed" in cmdline or "MapWorker" in cmdline:
                    os.kill(proc.info["pid"], signal.SIGKILL)
                    killed.append(cmdline)
                    return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_an_actor)
    killer.start()
    result = build_index(root, tmp_path / "index", embedding=EmbeddingOptions(str(tiny_models["encoder"])),
                         passages=PassageOptions(max_words=20, overlap_words=5), ray=RayOptions(address=None, documents_per_batch=2))
    killer.join()
    assert killed, "no embedding actor process was found to kill"
    reference = build_index(root, tmp_path / "reference", embedding=EmbeddingOptions(str(tiny_models["encoder"])),
                            passages=PassageOptions(max_words=20, overlap_words=5))
    assert result.manifest["counts"] == reference.manifest["counts"]
    index = Index(result.path)
    assert len(index.vectors) == len(index) and index.bm25 is not None


def test_a_killed_shard_writer_stops_the_build_and_leaves_the_previous_index(local_ray, tiny_models, tmp_path, monkeypatch):
    """kill -9 of a shard writer actor mid-build: a writer's shard cannot be resumed, so the build
    stops with a clear error and the index it would have replaced stays. The driver's request to
    finish the shard waits until the writer has been killed, so a busy machine cannot let the build
    end before the killer finds the writer."""
    import psutil

    from qa.indexer import ray_build

    root = mixed_corpus(tmp_path / "corpus", files=40)
    options = dict(embedding=EmbeddingOptions(str(tiny_models["encoder"])), passages=PassageOptions(max_words=20, overlap_words=5))
    previous = build_index(mixed_corpus(tmp_path / "small", files=2), tmp_path / "index", **options)
    killed, done = [], threading.Event()

    def kill_a_writer():
        deadline = time.monotonic() + 120
        try:
            while time.monotonic() < deadline:
                for proc in psutil.process_iter(["pid", "cmdline"]):
                    if "_ShardWriter" in " ".join(proc.info["cmdline"] or ()):
                        os.kill(proc.info["pid"], signal.SIGKILL)
                        killed.append(proc.info["pid"])
                        return
                time.sleep(0.05)
        finally:
            done.set()

    finish = ray_build._RemoteShard.finish

    def finish_once_killed(self, precision=None):
        done.wait(timeout=150)
        return finish(self, precision)

    monkeypatch.setattr(ray_build._RemoteShard, "finish", finish_once_killed)
    killer = threading.Thread(target=kill_a_writer)
    killer.start()
    with pytest.raises(QAError, match="failed writing a shard"):
        build_index(root, tmp_path / "index", ray=RayOptions(address=None, documents_per_batch=2),
                    layout_options=LayoutOptions(shard_passages=10_000), **options)
    killer.join()
    assert killed, "no shard writer process was found to kill"
    assert Index(tmp_path / "index").build_id == previous.manifest["build_id"] and check_index(tmp_path / "index").ok


def test_ray_workers_without_ray_is_a_clear_error(tmp_path):
    result = CliRunner().invoke(app, ["index", str(tmp_path), "--ray-workers", "2"])
    assert result.exit_code == 1 and "--ray local" in result.output


def test_shard_writers_on_the_cluster_need_ray_and_shards(tiny_models, tmp_path):
    result = CliRunner().invoke(app, ["index", str(tmp_path), "--ray-shard-writers", "cluster"])
    assert result.exit_code == 1 and "--ray local" in result.output
    result = CliRunner().invoke(app, ["index", str(tmp_path), "--ray", "local", "--ray-shard-writers", "there"])
    assert result.exit_code == 1 and "here or cluster" in result.output
    root = mixed_corpus(tmp_path / "corpus", files=1)
    with pytest.raises(QAError, match="add --shard-passages"):  # before Ray starts: nothing to write on the nodes
        build_index(root, tmp_path / "index", embedding=EmbeddingOptions(str(tiny_models["encoder"])),
                    ray=RayOptions(address=None, shard_writers="cluster"))


def test_a_model_that_does_not_load_on_the_workers_is_a_clear_error(local_ray, tmp_path):
    root = mixed_corpus(tmp_path / "corpus", files=1)
    (tmp_path / "not-a-model").mkdir()
    with pytest.raises(QAError, match="not a usable model"):
        build_index(root, tmp_path / "index", embedding=EmbeddingOptions(str(tmp_path / "not-a-model")), ray=RayOptions(address=None))
    assert not (tmp_path / "index" / "manifest.json").exists()


def test_ray_that_does_not_start_is_a_clear_error(monkeypatch, tmp_path, tiny_models):
    root = mixed_corpus(tmp_path / "corpus", files=1)

    def refuse(**kwargs):
        raise ValueError("Invalid address format: 'ray//head'")

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", refuse)
    with pytest.raises(QAError, match=r"cannot connect to Ray at 'ray//head': Invalid address format"):
        build_index(root, tmp_path / "index", embedding=EmbeddingOptions(str(tiny_models["encoder"])), ray=RayOptions(address="ray//head"))
    assert not (tmp_path / "index").exists()


def test_embedding_actors_share_their_nodes_cpus():
    from qa.indexer.ray_build import READ_CPUS, actor_plan

    def node(cpus, gpus=0, alive=True):
        return {"Alive": alive, "Resources": {"CPU": cpus, **({"GPU": gpus} if gpus else {})}}

    eight_gpus = [node(16, 8), node(64, 4), node(8, alive=False)]
    workers, actor, threads = actor_plan({"CPU": 88, "GPU": 12}, eight_gpus, None, RayOptions())
    assert (workers, actor, threads) == (12, {"num_gpus": 1, "num_cpus": 1}, 2)  # each tokenises on 16 / 8 cores, not 16
    assert actor_plan({"CPU": 16, "GPU": 1}, [node(16, 1)], "cuda", RayOptions(workers=3))[0::2] == (3, 16)
    workers, actor, threads = actor_plan({"CPU": 16, "GPU": 1}, [node(16, 1)], "cpu", RayOptions())  # CPU asked for
    assert (workers, threads, actor) == (8, 2, {"num_cpus": 2 - READ_CPUS})
    workers, actor, threads = actor_plan({"CPU": 12}, [node(4), node(4), node(4)], None, RayOptions(workers=2))
    assert (workers, threads) == (2, 4)  # 12 CPUs for two actors, but no node holds 6
