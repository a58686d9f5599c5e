"""Where evaluation data comes from: ``--data``, ``$QA_DATA_DIR``, or a cache directory that
downloads official files with a sha256 check where the network is allowed."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from qa.errors import QAError
from qa.fsutil import cache_dir

DATA_ENV = "QA_DATA_DIR"
SQUAD_URL = "https://rajpurkar.github.io/SQuAD-explorer/dataset/"
COVID_QA_URL = "https://github.com/deepset-ai/COVID-QA"


@dataclass(frozen=True)
class DataFile:
    """A file of a known dataset: its place under a data directory, and where it comes from.

    Only files with a known ``sha256`` are downloaded; the others name their source instead.
    """

    relpath: str
    source: str
    url: str | None = None
    sha256: str | None = None


FILES = {
    "squad-v1.1-train": DataFile(
        "squad/train-v1.1.json",
        SQUAD_URL,
        SQUAD_URL + "train-v1.1.json",
        "3527663986b8295af4f7fcdff1ba1ff3f72d07d61a20f487cb238a6ef92fd955",
    ),
    "squad-v1.1-dev": DataFile(
        "squad/dev-v1.1.json",
        SQUAD_URL,
        SQUAD_URL + "dev-v1.1.json",
        "95aa6a52d5d6a735563366753ca50492a658031da74f301ac5238b03966972c9",
    ),
    "squad-v2.0-dev": DataFile("squad/dev-v2.0.json", SQUAD_URL),
    "covid-qa-train": DataFile("covid-qa/covid-qa-train.json", COVID_QA_URL),
    "covid-qa-dev": DataFile("covid-qa/covid-qa-dev.json", COVID_QA_URL),
}


def data_dirs(data: str | Path | None = None) -> list[Path]:
    """The directories searched for data files, in order."""
    if data and not Path(data).is_dir():
        what = "is a file" if Path(data).exists() else "does not exist"
        raise QAError(f"--data {str(data)!r} {what}: it expects the folder that holds the data files (e.g. ../shared/data)")
    dirs = [Path(data)] if data else []
    if os.environ.get(DATA_ENV):
        dirs.append(Path(os.environ[DATA_ENV]))
    return [*dirs, cache_dir() / "data"]


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("QA_OFFLINE") == "1"


def resolve(key: str, data: str | Path | None = None) -> Path:
    """The local path of data file ``key``, as ``.json`` or ``.json.gz``; downloaded into the
    cache when no data directory has it, the network is allowed and its sha256 is known."""
    spec = FILES[key]
    name = Path(spec.relpath).name
    for folder in data_dirs(data):
        for candidate in (folder / spec.relpath, folder / name):
            for path in (candidate, candidate.with_name(candidate.name + ".gz")):
                if path.is_file():
                    return path
    target = cache_dir() / "data" / spec.relpath
    searched = ", ".join(str(d) for d in data_dirs(data))
    if spec.url is None or spec.sha256 is None or offline():
        raise QAError(
            f"{name} not found (searched {searched}); download it from {spec.source} and pass "
            f"--data DIR or set {DATA_ENV}"
        )
    download(spec.url, target, spec.sha256)
    return target


def download(url: str, target: Path, sha256: str) -> Path:
    """Download ``url`` to ``target``, which appears only when the sha256 matches."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    digest = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:
            while chunk := response.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != sha256:
            raise QAError(
                f"download of {url} has sha256 {digest.hexdigest()}, expected {sha256}: not used"
            )
        shutil.move(tmp, target)
    except (urllib.error.URLError, OSError) as err:
        raise QAError(f"cannot download {url} ({err}); download it by hand and pass --data DIR") from err
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target
