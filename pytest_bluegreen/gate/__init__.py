"""The gate: the pure decision, the outcomes per color, which build answered, one gate run
(lock, deploy, decide, switch or not, record), and what outlives it.

Until the next release, ``pytest_bluegreen.gate``'s old names (the module that is now
:mod:`.decision`) are handed on from here, with a DeprecationWarning (``_moved.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if not TYPE_CHECKING:  # the type checker sees only the new paths
    from pytest_bluegreen._moved import forward

    __getattr__ = forward(__name__, __path__)
