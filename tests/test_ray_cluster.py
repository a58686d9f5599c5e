"""`qa index --ray ADDRESS --ray-shard-writers cluster`: shards written on the nodes of a cluster.

A cluster of two Ray nodes on this machine (``ray.cluster_utils.Cluster``, Ray's own way of testing
several nodes; they share this machine's disk as nodes share a network file system). Runs only where
Ray is installed.
"""

from __future__ import annotations

import logging
import re
import tempfile
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install -e '.[ray]')")

from ray.cluster_utils import Cluster  # noqa: E402

from qa.errors import QAError  # noqa: E402
from qa.index import Index, check_index  # noqa: E402
from qa.index.analysis import analyze  # noqa: E402
from qa.indexer import EmbeddingOptions, LayoutOptions, PassageOptions, RayOptions, build_index  # noqa: E402
from qa.indexer.ray_build import _RemoteShard, _ShardWriter  # noqa: E402
from qa.indexer.sharding import ShardSettings  # noqa: E402
from qa.retriever import DenseRetriever  # noqa: E402
from tests.corpus_fixtures import WORDS, mixed_corpus  # noqa: E402


@pytest.fixture(scope="module")
def two_nodes():
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False)
    cluster.wait_for_nodes()
    yield cluster
    ray.shutdown()
    cluster.shutdown()


def _scratch_folders() -> set[Path]:
    return set(Path(tempfile.gettempdir()).glob("qa-shard-*"))


def test_shards_written_on_both_nodes_make_the_index_one_process_makes(two_nodes, tiny_models, tmp_path, caplog):
    root = mixed_corpus(tmp_path / "corpus", files=4)
    options = dict(embedding=EmbeddingOptions(str(tiny_models["encoder"])), passages=PassageOptions(max_words=20, overlap_words=5),
                   layout_options=LayoutOptions(shard_passages=30))
    here = build_index(root, tmp_path / "here", **options)
    scratch_before = _scratch_folders()
    with caplog.at_level(logging.INFO, logger="qa.indexer.ray_build"):
        spread = build_index(root, tmp_path / "spread", ray=RayOptions(address=two_nodes.address, documents_per_batch=4,
                                                                        shard_writers="cluster"), **options)
    shards = [e["path"] for e in spread.manifest["shards"]]
    assert len(shards) >= 3 and [e["passages"] for e in spread.manifest["shards"]] == [e["passages"] for e in here.manifest["shards"]]
    written_on = dict(re.findall(r"shard (shards/\d+) written on the Ray node at \S+ \((\w+)\)", caplog.text))
    assert sorted(written_on) == shards
    assert set(written_on.values()) == {node["NodeID"] for node in ray.nodes() if node["Alive"]}  # dealt to both nodes
    assert _scratch_folders() <= scratch_before  # each writer removed its folder on its node's disk
    assert check_index(spread.path).ok
    a, b = Index(here.path), Index(spread.path)
    ids = list(range(len(a)))
    assert [(p.doc_id, p.start, p.end, p.text) for p in a.store.get(ids)] == [(p.doc_id, p.start, p.end, p.text) for p in b.store.get(ids)]
    for question in (" ".join(WORDS[i : i + 3]) for i in range(0, 12, 3)):
        assert np.array_equal(a.bm25_scores(analyze(question)), b.bm25_scores(analyze(question)))
        assert [h.passage.idx for h in DenseRetriever(a).search(question, 10)] == [h.passage.idx for h in DenseRetriever(b).search(question, 10)]


def test_a_shard_folder_the_node_cannot_see_is_a_clear_error(two_nodes, tmp_path):
    settings = ShardSettings(LayoutOptions(), {"unit": "words", "max_words": 20, "overlap_words": 5}, "model", {})
    writer = ray.remote(_ShardWriter).options(num_cpus=0).remote(str(tmp_path / "elsewhere" / "shards" / "000"), None, settings, True, 0.0)
    with pytest.raises(QAError, match="not visible on the Ray node at .*every node mounts at the same path"):
        _RemoteShard(writer, "shards/000").finish()()
