"""The one exception type a user sees: every message says what to do next."""


class QAError(Exception):
    """An error caused by input, configuration or environment, with an actionable message.

    The CLI prints the message on one line, without a traceback, and exits with status 1.
    """
