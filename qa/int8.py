"""Static int8 on OpenVINO for qa's BERT models: the reader (``Reader(precision="int8")``) and the
passage encoder (``qa index --precision int8``), where OpenVINO and NNCF are installed
(``qa[openvino]``; :func:`qa.device.choose_backend`).

Weights and activations run in int8: NNCF's post-training quantisation (``nncf.quantize`` in its
transformer mode, which keeps softmax, layer norms and GELU in float and moves the activations'
outliers into the weights first) with the activations' ranges calibrated on SQuAD training
questions with their paragraphs, packaged with qa (:data:`CALIBRATION`, written by
``benchmarks/int8_calibration.py``). Quantising takes about 20 s on 2 cores, once: the quantised
model is kept in qa's cache folder, one per model weights, settings, calibration pairs and OpenVINO
and NNCF versions, and later loads read it from there.

On 2 cores of an Intel Xeon with AVX-512 VNNI and no AMX the reader read SQuAD dev 2.2 x as fast as
fp32 at fp32's accuracy, where torch's dynamic int8 (``backend="torch"``) reads 1.7 x as fast and
loses about 1 EM (docs/READER.md, "Static int8 on OpenVINO"); the passage encoder embedded 2.2 x as
fast with the same dense recall (docs/SCALING.md).
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from qa.errors import QAError
from qa.fsutil import cache_dir, replace_directory, staging_dir
from qa.progress import progress_bar

logger = logging.getLogger(__name__)

CALIBRATION = Path(__file__).with_name("int8_calibration.json.gz")
CACHE_FOLDER = "int8-models"
MODEL_FILE = "model.xml"
#: Inputs per calibration batch (the reader's CPU batch size).
CALIBRATION_BATCH = 8
WEIGHT_SUFFIXES = (".safetensors", ".bin")

Batches = Callable[[Sequence[tuple[str, str]], int], list[tuple[np.ndarray, ...]]]


def calibration_pairs(path: Path = CALIBRATION) -> list[tuple[str, str]]:
    """The packaged (question, paragraph) pairs that calibrate the activations' ranges."""
    with gzip.open(path, "rt", encoding="utf-8") as packed:
        return [(question, paragraph) for question, paragraph in json.load(packed)["pairs"]]


def int8_model(module, source: str | os.PathLike, batches: Batches, settings: dict, what: str = "the reader"):
    """The OpenVINO model of ``module`` (``what``, loaded from the folder ``source``; three int64
    inputs) with int8 weights and activations: read from qa's cache, or quantised and cached there.
    ``batches(pairs, size)`` turns the calibration pairs into the module's input arrays as it is
    run (windows or passages cut by ``settings``, which also key the cache)."""
    import openvino as ov

    key = cache_key(source, settings)
    folder = cache_dir() / CACHE_FOLDER / key
    if (folder / MODEL_FILE).is_file():
        try:
            return ov.Core().read_model(folder / MODEL_FILE)
        except RuntimeError as err:  # a damaged cache entry: made again below
            logger.warning("the cached int8 model in %s cannot be read (%s): quantising again", folder, err)
    damaged = folder.exists()  # an entry that cannot be read (or lost its model): replaced
    started = time.perf_counter()
    logger.info("quantising %s to int8 (once per model; cached in %s)", what, folder)
    with progress_bar() as progress:
        progress.add_task(f"Quantising {what} to int8, once (later loads read it from qa's cache)", total=None)
        quantized = quantize(module, batches(calibration_pairs(), CALIBRATION_BATCH))
    seconds = time.perf_counter() - started
    info = {"model": str(source), "what": what, "settings": settings, "seconds": round(seconds, 1), **_versions()}
    try:
        with staging_dir(folder) as staging:
            ov.save_model(quantized, staging / MODEL_FILE, compress_to_fp16=False)
            (staging / "info.json").write_text(json.dumps(info, indent=1) + "\n")
            if damaged:
                replace_directory(staging, folder)
            else:
                try:
                    os.rename(staging, folder)
                except OSError:  # another process cached it first: theirs is kept
                    pass
    except OSError as err:  # a read-only cache: quantised again next time
        logger.warning("could not cache the int8 model in %s: %s", folder, err)
    logger.info("quantised %s to int8 in %.1f s", what, seconds)
    return quantized


def quantize(module, batches: list[tuple[np.ndarray, ...]]):
    """``module`` (a BERT taking three int64 inputs) converted to OpenVINO and quantised to int8
    by NNCF, activation ranges from all of ``batches``."""
    try:
        import nncf
    except ImportError as err:
        raise QAError("int8 on OpenVINO needs NNCF: pip install 'qa[openvino]' (or pass --backend torch)") from err
    from qa.openvino_runtime import convert_module

    converted = convert_module(module, 3)
    nncf.set_log_level(logging.WARNING)  # its notes, and its progress bars, which it prints on stdout (into --json output)
    try:
        with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet):
            return nncf.quantize(converted, nncf.Dataset(batches), model_type=nncf.ModelType.TRANSFORMER,
                                 preset=nncf.QuantizationPreset.MIXED, subset_size=len(batches))
    except Exception as err:  # NNCF's own errors, for a graph it cannot quantise: a message, not a traceback
        raise QAError(f"NNCF could not quantise this model to int8 ({type(err).__name__}: {err}): "
                      "pass --backend torch for torch's dynamic int8, or another --precision") from err


def cache_key(source: str | os.PathLike, settings: dict) -> str:
    """What the quantised model depends on, hashed: the model's weights and configuration,
    ``settings``, the calibration pairs, and the OpenVINO and NNCF versions."""
    digest = hashlib.sha256(json.dumps({"settings": settings, **_versions()}, sort_keys=True).encode())
    folder = Path(source)
    if not folder.is_dir():
        raise QAError(f"int8 on OpenVINO quantises a model folder; {str(source)!r} is not one: pass --backend torch")
    files = sorted(p for p in folder.iterdir() if p.suffix in WEIGHT_SUFFIXES or p.name == "config.json")
    if not any(p.suffix in WEIGHT_SUFFIXES for p in files):
        raise QAError(f"no weights in {str(folder)!r} to quantise")
    for path in [*files, CALIBRATION]:
        digest.update(path.name.encode())
        with open(path, "rb") as handle:
            while chunk := handle.read(1 << 22):
                digest.update(chunk)
    return digest.hexdigest()[:24]


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for package in ("openvino", "nncf"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = "absent"
    return found
