"""docs/settings.md is the option table, rendered: regenerate it when a setting changes."""

from __future__ import annotations

from pytest_bluegreen.settings import all_options
from pytest_bluegreen.settings.reference import render
from tests.support.stack import ROOT

DOC = ROOT / "docs" / "settings.md"


def test_the_reference_is_up_to_date() -> None:
    assert DOC.read_text() == render(), (
        "docs/settings.md is stale: python -m pytest_bluegreen.settings.reference "
        "> docs/settings.md"
    )


def test_every_setting_is_in_the_reference() -> None:
    text = DOC.read_text()
    for option in all_options():
        assert f"`{option.key}`" in text or option.key == "config", option.key
    assert "`postgres_url`" in text  # the contrib group too
    assert "`api_url`" in text  # and the color tables
