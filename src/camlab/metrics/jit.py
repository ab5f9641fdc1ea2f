"""numba, with its on-disk cache in the user's cache folder rather than the package's source.

numba's ``cache=True`` writes next to the source file by default, i.e. into the installed (or
editable) package; ``NUMBA_CACHE_DIR`` moves it. Import numba from here so every compiled function
is cached in ``$NUMBA_CACHE_DIR`` when set, else ``$XDG_CACHE_HOME/camlab/numba`` (default
``~/.cache/camlab/numba``).
"""

import os


def cache_dir() -> str:
    """Where numba's cache goes: ``NUMBA_CACHE_DIR``, else the user's cache folder."""
    explicit = os.environ.get("NUMBA_CACHE_DIR")
    if explicit:
        return explicit
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "camlab", "numba")


# Before numba reads its configuration (and for subprocesses, which inherit it).
os.environ["NUMBA_CACHE_DIR"] = cache_dir()

import numba  # noqa: E402

# numba may have been imported (and configured) before camlab: its cache locator reads this.
numba.config.CACHE_DIR = os.environ["NUMBA_CACHE_DIR"]

__all__ = ["cache_dir", "numba"]
