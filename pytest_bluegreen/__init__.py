"""pytest-bluegreen: health and smoke checks as gates for blue/green deployments behind HAProxy.

Import what you need from its modules (``pytest_bluegreen.haproxy.runtime.RuntimeApi``,
``pytest_bluegreen.settings.Settings``, ``pytest_bluegreen.errors.ExitCode``, ...); this
package module stays empty so that loading the plugin costs little.

PYTEST_DONT_REWRITE: this module holds no assertion for pytest to rewrite. ``bluegreen`` runs
the check suite with this package already imported
(``python -m pytest_bluegreen.process.closedpipe``, the in-process configuration), before
pytest marks the plugin's package for rewriting; the marker tells pytest there is nothing to
warn about. The plugin's own modules are imported after
the mark and rewritten as usual.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
