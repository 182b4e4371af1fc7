"""The ``bluegreen`` command.

Until the next release, ``pytest_bluegreen.cli``'s old names (the module that is now
:mod:`.command`) are handed on from here, with a DeprecationWarning (``_moved.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if not TYPE_CHECKING:  # the type checker sees only the new paths
    from pytest_bluegreen._moved import forward

    __getattr__ = forward(__name__, __path__)
