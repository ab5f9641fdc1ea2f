"""User-facing errors: one paragraph that names the problem and the fix."""


class CamlabError(Exception):
    """An error caused by the user's input (config, data, checkpoint), not by a bug.

    Entry points print its message alone, without a traceback.
    """
