"""HAProxy: its Runtime API client, several instances seen as one, its configuration read
as HAProxy reads it.

Until the next release, ``pytest_bluegreen.haproxy``'s old names (the module that is now
:mod:`.runtime`) are handed on from here, with a DeprecationWarning (``_moved.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if not TYPE_CHECKING:  # the type checker sees only the new paths
    from pytest_bluegreen._moved import forward

    __getattr__ = forward(__name__, __path__)
