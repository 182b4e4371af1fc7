"""pytest-bluegreen: health and smoke checks as gates for blue/green deployments behind HAProxy.

Import what you need from its modules (``pytest_bluegreen.haproxy.RuntimeApi``,
``pytest_bluegreen.settings.Settings``, ``pytest_bluegreen.errors.ExitCode``, ...); this
package module stays empty so that loading the plugin costs little.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
