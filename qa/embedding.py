"""Dense passage and question embeddings: sentence-transformers for passages (:class:`Embedder`),
and for questions the same vectors from :mod:`qa.bert` where the model is a mean-pooled BERT
(:func:`load_question_encoder`), which starts seconds sooner."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from qa.device import autocast, choose_backend, choose_precision, pick_device
from qa.errors import QAError
from qa.hub import load_error, quiet_transformers, resolve_model

DEFAULT_EMBEDDING_MODEL = "sentence-transformers/all-MiniLM-L6-v2"

logger = logging.getLogger(__name__)

#: Passages per forward pass on a CPU: on 2 cores 16 beats 32 and 64 (presumably cache;
#: ``benchmarks/bench_index.py``, docs/BENCHMARKS.md). On an H200, 256 and 512 embedded 1.3-1.7 x
#: faster than 64 (docs/BENCHMARKS.md, "On a GPU"); 256 needs half 512's activation memory. (A
#: later sweep with batches tokenised ahead varied only the chunk, not the batch: no evidence.)
CPU_BATCH_SIZE = 16
CUDA_BATCH_SIZE = 256
#: OpenVINO streams for passages: batches run at once, the cores shared among them
#: (``benchmarks/embedding_paths.py``, docs/SCALING.md); questions keep one stream (latency).
OPENVINO_STREAMS = 2
#: Texts per tokenising task when several host threads tokenise ahead of a GPU (a batch of
#: :data:`CUDA_BATCH_SIZE` is four tasks, padded together afterwards).
TOKENIZE_PIECE = 64


class Embedder:
    """Unit-length float32 embeddings from a sentence-transformers model (or a plain encoder,
    mean-pooled). Runs on CUDA when available; ``precision`` as for the reader (``auto``: fp16
    autocast on CUDA, bf16 on CPUs where it pays, else fp32; ``int8``: static int8 on OpenVINO
    for a mean-pooled BERT where NNCF is installed, :mod:`qa.int8`, else ``auto``). With
    ``backend`` OpenVINO (:func:`qa.device.choose_backend`), a mean-pooled BERT (all-MiniLM-L6-v2
    is one) embeds through :class:`QuestionEncoder`'s :mod:`qa.bert` model compiled by OpenVINO,
    passages sorted by length per chunk as sentence-transformers sorts them, ``streams`` batches
    at a time (:data:`OPENVINO_STREAMS`) on ``threads`` threads (default: all cores); other models
    stay on torch (``auto``) or are refused.
    On CUDA a mean-pooled BERT embeds through the same :class:`QuestionEncoder` on torch, its
    batches tokenised ahead of the GPU on ``threads`` host threads (default: all the host's cores):
    on an H200 that embedded 6.2 x faster than sentence-transformers' path, which tokenises on the
    calling thread (docs/BENCHMARKS.md, "On a GPU"). In fp32 on a CPU a mean-pooled BERT embeds
    through it on torch too (as fast as sentence-transformers' path, the same vectors). Where qa.bert
    embeds, sentence-transformers is not loaded at all (`qa index` of the example corpus took 0.55
    of the time with OpenVINO: docs/BENCHMARKS.md, "Start-up of `qa index`"). :attr:`tokenizer`
    and :attr:`max_tokens` say how texts are cut."""

    def __init__(
        self,
        model: str = DEFAULT_EMBEDDING_MODEL,
        device: str | None = None,
        batch_size: int | None = None,
        precision: str = "auto",
        backend: str = "auto",
        streams: int | None = None,
        threads: int | None = None,
    ):
        started = time.perf_counter()
        self.name = model
        self.device = pick_device(device)
        cuda = self.device.startswith("cuda")
        self.precision = choose_precision("auto" if precision == "int8" and cuda else precision, self.device, "the embedding model")
        self.batch_size = batch_size or (CUDA_BATCH_SIZE if cuda else CPU_BATCH_SIZE)
        source = resolve_model(model)
        mean_pooled = _mean_pooled_bert(source) if Path(source).is_dir() else None  # what QuestionEncoder reproduces
        self.backend = choose_backend(backend, self.device, self.precision, "the embedding model")
        if self.backend == "openvino" and mean_pooled is None:
            if backend == "openvino":
                raise QAError(f"--backend openvino embeds with mean-pooled BERT models (all-MiniLM-L6-v2 is one), not {model!r}: "
                              "pass --backend torch")
            self.backend = "torch"
        if self.precision == "int8" and self.backend == "torch":  # torch's dynamic int8 is the reader's alone
            self.precision = choose_precision("auto", self.device, "the embedding model")
        if precision == "int8" and self.precision != "int8":
            why = ("int8 runs on a CPU" if cuda else f"{model!r} is not a mean-pooled BERT model" if mean_pooled is None
                   else "torch has no int8 passage encoder: leave out --backend torch" if backend == "torch"
                   else "it needs OpenVINO and NNCF: pip install 'qa[openvino]'")
            logger.warning("the passages are embedded in %s, not int8: %s", self.precision, why)
        bert_runs = self.backend == "openvino" or cuda or self.precision == "fp32"  # qa.bert's torch fp32 is as fast
        settings = mean_pooled if bert_runs else None
        #: qa.bert's encoder where it embeds the passages (OpenVINO on a CPU, torch on CUDA, torch
        #: in fp32 on a CPU), and then sentence-transformers is not even imported (seconds and
        #: memory); else its model (torch under bf16 autocast on a CPU, where it was 6% faster)
        self._bert: QuestionEncoder | None = None
        self._model = None
        self._tokenizer = None
        if settings is None:
            self._model = _sentence_transformer(model, source, self.device)
            self.max_tokens = int(self._model.max_seq_length)
        else:
            if self.backend == "openvino":
                ahead = {"backend": "openvino", "streams": OPENVINO_STREAMS if streams is None else streams, "threads": threads}
            elif cuda:
                ahead = {"tokenize_threads": threads or host_cores()}
            else:
                ahead = {}
            self._bert = QuestionEncoder(model, source, *settings, device=self.device, precision=self.precision,
                                         batch_size=self.batch_size, **ahead)
            self.max_tokens = settings[1]
        logger.info(
            "loaded the embedding model %s on %s in %s (%s) in %.1f s", model, self.device, self.precision, self.backend,
            time.perf_counter() - started,
        )

    @property
    def batch_size(self) -> int:
        """Passages per forward pass (qa.bert's encoder follows when it is set)."""
        return self._batch_size

    @batch_size.setter
    def batch_size(self, size: int) -> None:
        self._batch_size = size
        if getattr(self, "_bert", None) is not None:
            self._bert.batch_size = size

    @property
    def tokenizer(self):
        """The model's tokenizer as a ``tokenizers.Tokenizer`` without truncation or padding: what
        the passage splitter counts tokens with (:func:`qa.indexer.passages.tokenizer_counter`).
        Texts longer than :attr:`max_tokens` tokens are embedded cut to that length."""
        if self._tokenizer is None:
            from qa.bert import copy_tokenizer

            # qa.bert's and sentence-transformers' tokenizers truncate (and pad) as they embed: a copy does neither
            own = self._bert.tokenizer if self._bert is not None else getattr(self._model.tokenizer, "backend_tokenizer", None)
            if own is None:
                raise QAError(f"the embedding model {self.name!r} has no fast tokenizer (tokenizer.json), which windows "
                              "counted in its tokens need: split by words instead (--max-words 160)")
            self._tokenizer = copy_tokenizer(own)
        return self._tokenizer

    @property
    def chunk_size(self) -> int:
        """Texts :meth:`encode` hands to sentence-transformers at once (which sorts each chunk by
        length): callers that stream texts in must group them the same way to get the same vectors."""
        return self.batch_size * 8

    @property
    def dim(self) -> int:
        return self._bert.dim if self._bert is not None else int(self._model.get_embedding_dimension())

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
            if self._bert is not None:
                out[first : first + len(part)] = self._bert.encode(part)
                if on_batch:
                    on_batch(len(part))
                continue
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


QUESTION_BATCH_SIZE = 64
"""Questions per forward pass of :class:`QuestionEncoder` (questions are short)."""


def _sentence_transformer(model: str, source: str, device: str):
    """The sentence-transformers model in ``source`` (``model`` as the user named it), on ``device``."""
    from sentence_transformers import SentenceTransformer

    logging.getLogger("sentence_transformers").setLevel(logging.ERROR)
    quiet_transformers()
    try:
        loaded = SentenceTransformer(source, device=device)
    except (OSError, ValueError) as err:  # ValueError: a folder without a usable config.json
        raise load_error("embedding model", model, err) from err
    return loaded.eval()


def host_cores() -> int:
    """The CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def load_question_encoder(model: str = DEFAULT_EMBEDDING_MODEL, device: str | None = None, precision: str = "auto"):
    """What embeds questions for an index built with ``model``: a :class:`QuestionEncoder` when
    the model is a local mean-pooled BERT sentence-transformers folder (all-MiniLM-L6-v2 is),
    else an :class:`Embedder`. Both give the vectors :class:`Embedder` gives the passages."""
    source = resolve_model(model)
    settings = _mean_pooled_bert(source) if Path(source).is_dir() else None
    if settings is None:  # questions are never embedded in int8 (see QuestionEncoder)
        return Embedder(model, device=device, precision="auto" if precision == "int8" else precision)
    return QuestionEncoder(model, source, *settings, device=device, precision=precision)


def _mean_pooled_bert(folder: str):
    """(BERT config, max tokens, lower-case) when ``folder`` is a sentence-transformers model that
    :class:`QuestionEncoder` reproduces: a BERT, then mean pooling, then optionally normalisation
    (or a plain BERT folder, which sentence-transformers mean-pools); else None."""
    from qa import bert

    folder_path = Path(folder)
    config = bert.read_config(folder_path)
    if config is None:
        return None
    try:
        if (folder_path / "modules.json").is_file():
            modules = [(m["type"].rsplit(".", 1)[-1], m["path"]) for m in json.loads((folder_path / "modules.json").read_text())]
            if modules[:2] != [("Transformer", ""), ("Pooling", modules[1][1])] or any(m[0] != "Normalize" for m in modules[2:]):
                return None
            pooling = json.loads((folder_path / modules[1][1] / "config.json").read_text())
            modes = {k for k, v in pooling.items() if k.startswith("pooling_mode") and v}
            if modes != {"pooling_mode_mean_tokens"} or pooling.get("include_prompt", True) is not True:
                return None
        settings = {}
        if (folder_path / "sentence_bert_config.json").is_file():
            settings = json.loads((folder_path / "sentence_bert_config.json").read_text())
            if set(settings) - {"max_seq_length", "do_lower_case"}:
                return None  # tokenizer or model arguments: let sentence-transformers apply them
        max_tokens = settings.get("max_seq_length")
        if max_tokens is None:  # as sentence-transformers decides it
            tokenizer_config = folder_path / "tokenizer_config.json"
            limit = json.loads(tokenizer_config.read_text()).get("model_max_length") if tokenizer_config.is_file() else None
            max_tokens = min(config.max_position_embeddings, int(limit or config.max_position_embeddings))
        return config, int(max_tokens), bool(settings.get("do_lower_case", False))
    except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError):
        return None


class QuestionEncoder:
    """:class:`Embedder`'s vectors for questions, computed by :mod:`qa.bert` (mean pooling of
    the last hidden state, unit length) without importing sentence-transformers or transformers.
    Built by :func:`load_question_encoder` for the models it reproduces."""

    def __init__(self, name: str, folder: str, config, max_tokens: int, lower_case: bool, *, device: str | None = None,
                 precision: str = "auto", backend: str = "torch", batch_size: int = QUESTION_BATCH_SIZE, streams: int = 1,
                 threads: int | None = None, tokenize_threads: int = 1):
        started = time.perf_counter()
        from qa import bert

        self.name = name
        self.device = pick_device(device)
        # int8: static int8 on OpenVINO (qa.int8), for the passages an Embedder runs here; torch's is the reader's alone
        self.precision = choose_precision("auto" if precision == "int8" and backend != "openvino" else precision, self.device,
                                          "the embedding model")
        self.batch_size = batch_size
        self.streams = streams
        self.lower_case = lower_case
        self.dim = config.hidden_size
        try:
            self.tokenizer = bert.load_tokenizer(folder)
            self._model = bert.load_encoder(folder, config).to(self.device)
        except (OSError, ValueError) as err:
            raise load_error("embedding model", name, err) from err
        self.tokenizer.enable_truncation(max_tokens)
        self.max_tokens = max_tokens
        self.tokenizer.enable_padding(pad_id=config.pad_token_id)
        self.pad_id = config.pad_token_id
        self._tokenizing = ThreadPoolExecutor(tokenize_threads, thread_name_prefix="qa-tokenize") if tokenize_threads > 1 else None
        self.backend = choose_backend(backend, self.device, self.precision, "the embedding model")
        self._compiled = None
        if self.backend == "openvino":
            from qa.openvino_runtime import compile_converted, convert_module

            if self.precision == "int8":
                from qa.int8 import int8_model

                settings = {"max_tokens": max_tokens, "lower_case": lower_case, "model": "passage encoder"}
                converted = int8_model(self._model, folder, self._calibration_arrays, settings, "the passage encoder")
            else:
                converted = convert_module(self._model, 3)
            self._compiled = compile_converted(converted, self.precision, streams, threads)
            self.streams = self._compiled.streams
        logger.info(
            "loaded the embedding model %s on %s in %s in %.1f s (for questions, with qa.bert)",
            name, self.device, self.precision, time.perf_counter() - started,
        )

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Embed ``texts`` into an ``(n, dim)`` float32 array of unit vectors, :attr:`batch_size`
        at a time, longest first (less padding; each vector is that of its text alone). With
        OpenVINO streams, batches run at once (:meth:`qa.openvino_runtime.CompiledModule.map`)."""
        import torch

        from qa.bert import mean_pool

        out = np.empty((len(texts), self.dim), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        batches = [order[first : first + self.batch_size] for first in range(0, len(order), self.batch_size)]
        vectors = []  # kept on the device until all batches are queued: no wait for the GPU between batches
        for rows, (arrays, hidden) in zip(batches, self._hidden_states(self._inputs(texts, batches))):
            mask = torch.from_numpy(arrays[2]).to(hidden.device)
            vectors.append((rows, torch.nn.functional.normalize(mean_pool(hidden.float(), mask), dim=-1)))
        for rows, batch in vectors:
            out[rows] = batch.cpu().numpy()
        return out

    def _inputs(self, texts: Sequence[str], batches: list[list[int]]) -> Iterator[list[np.ndarray]]:
        """The arrays of each batch of ``batches`` (rows of ``texts``), in order: tokenised here,
        or on the tokenising threads, all of them queued at once."""
        if self._tokenizing is None:
            for rows in batches:
                yield self._arrays([texts[i] for i in rows])
            return
        tasks = [[self._tokenizing.submit(self._arrays, [texts[i] for i in rows[first : first + TOKENIZE_PIECE]])
                  for first in range(0, len(rows), TOKENIZE_PIECE)] for rows in batches]
        for pieces in tasks:
            yield _pad_together([piece.result() for piece in pieces], self.pad_id)

    def _calibration_arrays(self, pairs: Sequence[tuple[str, str]], batch_size: int) -> list[list[np.ndarray]]:
        """Inputs for static int8's calibration: the pairs' paragraphs and questions, sorted by
        length, ``batch_size`` at a time."""
        texts = sorted([text for pair in pairs for text in pair], key=len)
        return [self._arrays(texts[first : first + batch_size]) for first in range(0, len(texts), batch_size)]

    def _arrays(self, texts: list[str]) -> list[np.ndarray]:
        """Token ids, token types and attention mask of ``texts``, padded to the longest."""
        part = [t.strip() for t in texts]
        encodings = self.tokenizer.encode_batch([t.lower() for t in part] if self.lower_case else part)
        return [np.array([getattr(e, key) for e in encodings], dtype=np.int64) for key in ("ids", "type_ids", "attention_mask")]

    def _hidden_states(self, inputs: Iterator[list[np.ndarray]]) -> Iterator[tuple[list[np.ndarray], object]]:
        """Each batch of ``inputs`` with its last hidden state (a torch tensor)."""
        import torch

        if self._compiled is not None:
            from qa.openvino_runtime import padded_length

            inputs = [_pad_together([arrays], self.pad_id, padded_length(arrays[0].shape[1], self.max_tokens)) for arrays in inputs]
            yield from ((arrays, torch.from_numpy(outputs[0])) for arrays, outputs in zip(inputs, self._compiled.map(inputs)))
            return
        for arrays in inputs:
            mask = torch.from_numpy(arrays[2]).to(self.device)
            with torch.inference_mode(), autocast(self.device, self.precision):
                yield arrays, self._model(*(torch.from_numpy(a).to(self.device) for a in arrays[:2]), mask)


def _pad_together(pieces: list[list[np.ndarray]], pad_id: int, width: int = 0) -> list[np.ndarray]:
    """Ids, token types and masks of several tokenised pieces as one batch, padded to the longest
    or to ``width`` tokens if longer (ids with ``pad_id``, types and mask with 0, as the tokenizer pads)."""
    width = max(width, *(piece[0].shape[1] for piece in pieces))
    return [np.concatenate([np.pad(piece[k], ((0, 0), (0, width - piece[k].shape[1])), constant_values=pad_id if k == 0 else 0)
                            for piece in pieces]) for k in range(3)]
