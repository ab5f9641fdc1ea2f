"""User-facing errors: one paragraph that names the problem and the fix."""

import logging
import sys


class CamlabError(Exception):
    """An error caused by the user's input (config, data, checkpoint), not by a bug.

    Entry points print its message alone, without a traceback.
    """


def user_message(err: BaseException) -> str:
    """The paragraph to show for ``err``.

    A ``CamlabError`` raised in a DataLoader worker reaches the main process re-raised by torch
    with the worker's whole traceback in its message; the user needs only the original text.
    """
    text = str(err)
    marker = f"{CamlabError.__module__}.{CamlabError.__name__}: "
    if "Original Traceback" in text and marker in text:
        return text.rsplit(marker, 1)[1].strip()
    return text


def report_error(err: BaseException, logger: logging.Logger) -> None:
    """Shows the paragraph once on stderr and records it in the run's log file (train.log):
    only the file handlers get it, since Hydra's console handler would print it a second time."""
    message = f"Error: {user_message(err)}"
    record = logger.makeRecord(logger.name, logging.ERROR, __file__, 0, message, None, None)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)
    print(f"\n{message}", file=sys.stderr)
