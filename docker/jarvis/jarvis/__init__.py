"""Jarvis: the demo application the blue/green stack deploys.

One package, three roles, each started by its own command:

    jarvis-api        backend API on :8000   (jarvis.api)
    jarvis-frontend   frontend UI on :3000   (jarvis.frontend)
    jarvis-agents     agents worker          (jarvis.agents)

Configuration comes from the environment only (see ``docker/README.md``):
DEPLOYMENT_COLOR, APP_VERSION (baked into the image at build time), POSTGRES_*, REDIS_*,
API_URL, OLLAMA_HOST, OLLAMA_PORT, OLLAMA_MODEL, LOG_LEVEL, and the injected faults
(JARVIS_FAULT_LATENCY_MS, JARVIS_FAULT_LATENCY_SHARE, JARVIS_FAULT_ERROR_RATE: jarvis.faults).

Standard library plus psycopg2 and redis; nothing else.
"""

from __future__ import annotations

import os

try:  # written by the Dockerfile at build time
    from jarvis import _build  # type: ignore[attr-defined]
except ImportError:  # running from a source checkout
    _build = None


def app_version() -> str:
    """The version this build reports: APP_VERSION (baked in as ENV), else the build file; a
    ``-misversioned`` build reports the wrong one."""
    if build_fault() == "misversioned":
        return "v0.0.0"
    return os.environ.get("APP_VERSION") or str(getattr(_build, "VERSION", "dev"))


def build_fault() -> str:
    """The known-bad variant this build is (decided at build time from its tag's suffix):
    slow, flaky, tail, routedflaky, misversioned, deadagent, nomodel, 3pct (inside tolerance), or
    "" for a good build."""
    return str(getattr(_build, "FAULT", ""))


def deployment_color() -> str:
    return os.environ.get("DEPLOYMENT_COLOR", "unknown")


def is_broken_build() -> bool:
    """True for images built from a tag ending in ``-broken`` (decided at build time)."""
    return bool(getattr(_build, "BROKEN", False))


def is_degrading_build() -> bool:
    """True for images built from a tag ending in ``-degrading``: a release that goes bad
    only once it takes routed traffic (what a bake after the switch is for)."""
    return bool(getattr(_build, "DEGRADING", False))
