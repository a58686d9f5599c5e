"""The one exception type a user sees: every message says what to do next."""


def first_line(err: BaseException, limit: int = 200) -> str:
    """The first line of ``err``'s message (at most ``limit`` characters), or its type's name
    when it has none: what a one-line error shows of an exception from a library."""
    text = str(err).strip()
    return text.splitlines()[0][:limit] if text else type(err).__name__


class QAError(Exception):
    """An error caused by input, configuration or environment, with an actionable message.

    The CLI prints the message on one line, without a traceback, and exits with status 1.
    """
