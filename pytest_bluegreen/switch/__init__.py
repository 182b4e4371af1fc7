"""The switch as a transaction: the journaled steps on every HAProxy, its write-ahead
journal, recovery of an unfinished one, an instance brought in line, the probe during it.

Until the next release, ``pytest_bluegreen.switch``'s old names (the module that is now
:mod:`.transaction`) are handed on from here, with a DeprecationWarning (``_moved.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if not TYPE_CHECKING:  # the type checker sees only the new paths
    from pytest_bluegreen._moved import forward

    __getattr__ = forward(__name__, __path__)
