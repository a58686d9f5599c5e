"""Where the benchmarks find their data: ``$QA_DATA_DIR`` (the variable ``qa evaluate`` reads),
else ``../shared/data`` beside the repository. Scripts import it as ``from data import DATA``
(``python benchmarks/NAME.py`` puts this folder on the path)."""

import os
from pathlib import Path

DATA_ENV = "QA_DATA_DIR"
FALLBACK = Path(__file__).resolve().parents[1].parent / "shared" / "data"
DATA = Path(os.environ.get(DATA_ENV) or FALLBACK)
