"""docs/settings.md is the option table, rendered: regenerate it when a setting changes."""

from __future__ import annotations

from pathlib import Path

from pytest_bluegreen.cli.reference import render
from pytest_bluegreen.settings import all_options, resolve
from tests.support.stack import ROOT

DOC = ROOT / "docs" / "settings.md"


def test_the_reference_is_up_to_date() -> None:
    assert DOC.read_text() == render(), (
        "docs/settings.md is stale: python -m pytest_bluegreen.cli.reference > docs/settings.md"
    )


def test_every_setting_is_in_the_reference() -> None:
    text = DOC.read_text()
    for option in all_options():
        assert f"`{option.key}`" in text or option.key == "config", option.key
    assert "`postgres_url`" in text  # the contrib group too
    assert "`api_url`" in text  # and the color tables


def test_the_reference_gives_the_order_the_code_follows(tmp_path: Path) -> None:
    """The file a user names wins over the bluegreen.toml beside it: the code does it and the
    reference says it in that order."""
    text = DOC.read_text()
    assert "**The settings file** is the first found of:" in text
    steps = text.split("**The settings file** is the first found of:\n\n")[1].split("\n\n")[0]
    first, second, *_ = steps.splitlines()
    assert first.startswith("1. the file named by `--bluegreen-config`")
    assert second.startswith("2. `bluegreen.toml` in the folder pytest")
    (tmp_path / "bluegreen.toml").write_text('env = "blue"\n')
    (tmp_path / "named.toml").write_text('env = "green"\n')
    settings = resolve({"config": "named.toml"}, {}, {}, tmp_path)
    assert (settings.config_file, settings.run.env) == (tmp_path / "named.toml", "green")


def test_the_reference_says_which_keys_have_no_ini_twin() -> None:
    text = " ".join(DOC.read_text().split())
    for key in ("promote_later", "allow_missing_instance", "allow_narrowed"):
        assert f"`{key}`" in text.split("no settings file or ini twin for ")[1].split(";")[0]
    rows = {line.split("|")[1].strip(): line for line in DOC.read_text().splitlines()
            if line.startswith("| `")}  # fmt: skip
    for key in ("dry_run", "skip_backup"):
        assert f"`bluegreen_{key}`" in rows[f"`{key}`"], rows[f"`{key}`"]
