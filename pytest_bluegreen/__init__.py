"""pytest-bluegreen: health and smoke checks as gates for blue/green deployments behind HAProxy.

PYTEST_DONT_REWRITE: this module holds no assertion for pytest to rewrite. ``bluegreen`` runs
the check suite with this package already imported
(``python -m pytest_bluegreen.process.closedpipe``, the in-process configuration), before
pytest marks the plugin's package for rewriting; the marker tells pytest there is nothing to
warn about. The plugin's own modules are imported after the mark and rewritten as usual.

What a check author imports is in :mod:`pytest_bluegreen.testing`. The old import paths of
the modules that moved into folders still import, with a DeprecationWarning, until the next
release (``_moved.py``).
"""

from __future__ import annotations

from ._moved import install

__version__ = "0.1.0"

install()

__all__ = ["__version__"]
