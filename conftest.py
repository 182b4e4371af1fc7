"""Root conftest: options shared by the plugin's own tests (tests/) and the check suite (checks/).

pytest-bluegreen itself is loaded through its ``pytest11`` entry point, never from here; the
shipped checks' service fixtures (``pytest_bluegreen.contrib.services``) are activated here.
"""

from __future__ import annotations

import os

import pytest

# the shipped checks (checks/) use the shared services' settings and fixtures
pytest_plugins = ["pytest_bluegreen.contrib.services"]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--strict-infra",
        action="store_true",
        default=os.environ.get("BLUEGREEN_STRICT_INFRA", "") == "1",
        help="fail, instead of skip, a test whose real part (HAProxy, Docker) is missing "
        "[env: BLUEGREEN_STRICT_INFRA=1]; CI runs with it",
    )
