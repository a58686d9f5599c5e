"""qa: retrieval-augmented extractive question answering over your own documents.

    import qa
    qa.build_index("examples/corpus", "my-index")
    pipe = qa.Pipeline("my-index", reader="path/to/reader")
    print(pipe.ask("Who designed the tower?").answers[0].text)

Names are imported on first use, so that ``import qa`` (and ``qa --help``) stays fast.
"""

from __future__ import annotations

import importlib
import logging

logging.getLogger(__name__).addHandler(logging.NullHandler())  # the application decides what is shown

__version__ = "0.1.0"

_EXPORTS = {
    "QAError": "qa.errors",
    "BuildResult": "qa.indexer",
    "build_index": "qa.indexer",
    "EmbeddingOptions": "qa.indexer",
    "LayoutOptions": "qa.indexer",
    "PassageOptions": "qa.indexer",
    "ReadOptions": "qa.indexer",
    "Answer": "qa.pipeline",
    "Pipeline": "qa.pipeline",
    "Prediction": "qa.pipeline",
    "Reader": "qa.reader",
    "Index": "qa.index",
    "make_retriever": "qa.retriever",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'qa' has no attribute {name!r}")
