"""Dense passage and question embeddings with sentence-transformers."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

import numpy as np

from qa.device import autocast, choose_precision, pick_device
from qa.hub import load_error, quiet_transformers, resolve_model

DEFAULT_EMBEDDING_MODEL = "sentence-transformers/all-MiniLM-L6-v2"

logger = logging.getLogger(__name__)

#: Passages per forward pass on a CPU: on 2 cores 16 beats 32 and 64 (presumably cache;
#: ``benchmarks/bench_index.py``, docs/BENCHMARKS.md). CUDA keeps 64 (not measured there).
CPU_BATCH_SIZE = 16
CUDA_BATCH_SIZE = 64


class Embedder:
    """Unit-length float32 embeddings from a sentence-transformers model (or a plain encoder,
    mean-pooled). Runs on CUDA when available; ``precision`` as for the reader (``auto``: fp16
    autocast on CUDA, bf16 on CPUs with native bf16, else fp32; ``int8`` is the reader's alone,
    and leaves the encoder at ``auto``)."""

    def __init__(
        self,
        model: str = DEFAULT_EMBEDDING_MODEL,
        device: str | None = None,
        batch_size: int | None = None,
        precision: str = "auto",
    ):
        started = time.perf_counter()  # the import is part of what loading costs (seconds)
        from sentence_transformers import SentenceTransformer

        self.name = model
        self.device = pick_device(device)
        self.precision = choose_precision("auto" if precision == "int8" else precision, self.device, "the embedding model")
        self.batch_size = batch_size or (CUDA_BATCH_SIZE if self.device.startswith("cuda") else CPU_BATCH_SIZE)
        logging.getLogger("sentence_transformers").setLevel(logging.ERROR)
        quiet_transformers()
        try:
            self._model = SentenceTransformer(resolve_model(model), device=self.device)
        except OSError as err:
            raise load_error("embedding model", model, err) from err
        self._model.eval()
        logger.info(
            "loaded the embedding model %s on %s in %s in %.1f s", model, self.device, self.precision, time.perf_counter() - started
        )

    @property
    def tokenizer(self):
        """The model's tokenizer (a Hugging Face fast tokenizer for transformer models)."""
        return self._model.tokenizer

    @property
    def chunk_size(self) -> int:
        """Texts :meth:`encode` hands to sentence-transformers at once (which sorts each chunk by
        length): callers that stream texts in must group them the same way to get the same vectors."""
        return self.batch_size * 8

    @property
    def dim(self) -> int:
        return int(self._model.get_embedding_dimension())

    def encode(
        self, texts: Sequence[str], on_batch: Callable[[int], None] | None = None
    ) -> np.ndarray:
        """Embed ``texts`` into an ``(n, dim)`` float32 array of unit vectors.

        ``on_batch(n_done)`` is called after each chunk, for progress reporting.
        """
        chunk = self.chunk_size
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for first in range(0, len(texts), chunk):
            part = texts[first : first + chunk]
            with autocast(self.device, self.precision):
                vectors = self._model.encode(
                    list(part),
                    batch_size=self.batch_size,
                    convert_to_tensor=True,
                    normalize_embeddings=True,
                    show_progress_bar=False,
                )
            out[first : first + len(part)] = vectors.float().cpu().numpy()
            if on_batch:
                on_batch(len(part))
        return out
