"""The `qa` command line: parse, call the library, print. Nothing here that Python users lack.

One module per command (:mod:`qa.cli.index`, :mod:`~qa.cli.ask`, :mod:`~qa.cli.info`, :mod:`~qa.cli.evaluate`,
:mod:`~qa.cli.serve`, :mod:`~qa.cli.train`), each registering on the one application of
:mod:`qa.cli.common`; importing them here, in this order, is what lists them in `qa --help`."""

from __future__ import annotations

import os

# each registers its commands; `qa --help` lists them in this order (not sorted)
from qa.cli import index  # noqa: F401
from qa.cli import ask  # noqa: F401
from qa.cli import info  # noqa: F401
from qa.cli import evaluate  # noqa: F401
from qa.cli import serve  # noqa: F401
from qa.cli import train  # noqa: F401
from qa.cli.common import app

__all__ = ["app", "main"]


def main() -> None:
    """Console-script entry point."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    app(prog_name="qa")
