"""What every `qa` command shares: the application, its consoles, the options several commands
take, and the one-line errors."""

from __future__ import annotations

import functools
import logging
import os
import select
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, NoReturn, Optional

import typer
from rich.console import Console
from rich.markup import escape

import qa
from qa.device import PRECISIONS
from qa.errors import QAError
from qa.retriever import RETRIEVERS

app = typer.Typer(
    help="Answer questions, with evidence, from your own document collection.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


RetrieverChoice = Enum("RetrieverChoice", {name: name for name in RETRIEVERS}, type=str)


IndexOption = Annotated[
    Optional[Path],
    typer.Option(
        "--index",
        "-i",
        help="Index directory. Default: $QA_INDEX, else ./.qa-index.",
        show_default=False,
    ),
]
DeviceOption = Annotated[
    Optional[str], typer.Option(help="Torch device (cpu, cuda, cuda:1). Default: cuda if available, else cpu.")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout instead of text.")]
BackendOption = Annotated[
    str,
    typer.Option(help="What runs the reader: auto (OpenVINO for bf16, and for int8, on a CPU where the extra qa\\[openvino] is installed, "
                      "else torch), torch or openvino."),
]
AlwaysAnswerOption = Annotated[
    bool, typer.Option("--always-answer", help="Show the best answers even where the reader judges that the passages do not answer.")
]
PrecisionOption = Annotated[
    str,
    typer.Option(
        help="Arithmetic of the reader and question encoder: auto (fp16 on CUDA, bf16 on CPUs where it is faster than fp32, "
        f"else fp32), {', '.join(PRECISIONS[1:])} (int8: the reader only; static int8, calibrated once, with the extra qa\\[openvino], "
        "else torch's dynamic int8)."
    ),
]

LOG_ENV = "QA_LOG_LEVEL"
LOG_LEVELS = ("debug", "info", "warning", "error")


DEBUG_ENV = "QA_DEBUG"
SERVER_ENV = "QA_SERVER"
TOKEN_ENV = "QA_TOKEN"


def friendly_errors(command):
    """Turn a QAError into one line on stderr and exit status 1, with no traceback. Anything
    else (a bug, or a library's panic) is one line too, exit status 2, with the way to see the
    traceback (``QA_DEBUG=1``). Output whose reader has gone (``qa ask ... --json | head -c 100``)
    ends the command quietly with exit status 1, as rich's console does for the text output."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except QAError as error:
            err.print(f"[bold red]error:[/] {escape(one_line(str(error)))}")
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            err.print("[bold red]interrupted[/]")
            raise typer.Exit(130) from None
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except BrokenPipeError as error:
            if not _output_closed():
                _unexpected(error)
            # what is left in stdout's buffer would fail again when Python flushes it at exit
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
            raise typer.Exit(1) from None
        except BaseException as error:  # noqa: BLE001 - Rust panics are BaseExceptions
            _unexpected(error)

    return wrapper


def _unexpected(error: BaseException) -> NoReturn:
    """One line for a bug, exit status 2; with ``QA_DEBUG=1`` the error itself (called while
    ``error`` is being handled, so a bare ``raise`` raises it again)."""
    if os.environ.get(DEBUG_ENV) == "1":
        raise  # noqa: PLE0704
    detail = one_line(str(error)) or "no message"
    err.print(
        f"[bold red]error:[/] unexpected {type(error).__name__}: {escape(detail)} "
        f"(a bug in qa: please report it; {DEBUG_ENV}=1 shows the traceback)"
    )
    raise typer.Exit(2) from None


def _output_closed() -> bool:
    """True when stdout is a pipe that nothing reads any more (poll reports an error or a hang-up
    on it: Linux says POLLERR, the BSDs POLLHUP)."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))
    except (AttributeError, OSError, ValueError):  # no poll (Windows), or no real stdout
        return False


def one_line(text: str) -> str:
    return " ".join(text.split())[:500]


def _version(value: bool) -> None:
    if value:
        out.print(f"qa {qa.__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
    verbose: Annotated[
        int, typer.Option("--verbose", "-v", count=True, help="Log what qa does on stderr (-v: info, -vv: debug).")
    ] = 0,
    log_level: Annotated[
        Optional[str], typer.Option(help=f"Log level: {', '.join(LOG_LEVELS)}. Default: ${LOG_ENV}, else warning.", show_default=False)
    ] = None,
) -> None:
    """Answer questions, with evidence, from your own document collection."""
    _configure_logging(verbose, log_level)


def _configure_logging(verbose: int, log_level: Optional[str]) -> None:
    """Send the ``qa`` logger's records to stderr: at ``--log-level``, else as ``-v`` says, else
    at ``$QA_LOG_LEVEL``, else warnings only."""
    if log_level is None and verbose:
        log_level = "info" if verbose == 1 else "debug"
    level = (log_level or os.environ.get(LOG_ENV) or "warning").lower()
    if level not in LOG_LEVELS:
        err.print(f"[bold red]error:[/] unknown log level {escape(level)!r}: choose from {', '.join(LOG_LEVELS)}")
        raise typer.Exit(1)
    logger = logging.getLogger("qa")
    for handler in [h for h in logger.handlers if getattr(h, "_qa_cli", False)]:
        logger.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    handler._qa_cli = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.setLevel(level.upper())

