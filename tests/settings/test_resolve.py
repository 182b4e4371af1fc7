"""``settings.resolve()`` called directly: precedence, sources, colors, errors, env files, paths."""

from __future__ import annotations

import copy
import dataclasses
import importlib
import re
import subprocess
import sys
import textwrap
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pytest_bluegreen.frozen import Frozen, frozen
from pytest_bluegreen.haproxy.address import RuntimeApiAddress
from pytest_bluegreen.haproxy.answers import ServerRef
from pytest_bluegreen.judge.thresholds import DEFAULT_BAKE_THRESHOLDS, parse_bake_thresholds
from pytest_bluegreen.redaction import Secrets
from pytest_bluegreen.settings import (
    Settings,
    SettingsError,
    all_options,
    deployment,
    describe,
    judging,
    model,
    options,
    resolve,
)
from pytest_bluegreen.settings.deployment import SwitchingSettings
from pytest_bluegreen.settings.files import misread_values
from pytest_bluegreen.settings.model import Answer, Topology
from pytest_bluegreen.settings.resolve import CORE_GROUPS


def resolve_in(
    root: Path,
    *,
    cli: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    ini: Mapping[str, str] | None = None,
) -> Settings:
    return resolve(cli or {}, environ or {}, ini or {}, root)


def value_of(settings: Settings, key: str) -> Any:
    """A setting's value by its key, from the group that declares it."""
    [option] = [o for o in all_options() if o.key == key]
    return getattr(getattr(settings, option.group), key)


def write(root: Path, name: str, text: str) -> Path:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def resolve_error(
    root: Path,
    *,
    cli: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    ini: Mapping[str, str] | None = None,
) -> str:
    """The SettingsError's message, checked to be one line in the plugin's voice."""
    with pytest.raises(SettingsError) as info:
        resolve_in(root, cli=cli, environ=environ, ini=ini)
    message = str(info.value)
    assert "\n" not in message, message
    assert message.startswith("bluegreen: "), message
    return message


# --- precedence: CLI > env > ini > file > default ----------------------------------------------

LAYERS = ("cli", "env", "ini", "file")

# key -> (cli flag, value per layer, toml literal of the file value, parsed values, default)
SCALARS: dict[str, dict[str, Any]] = {
    "drain_timeout": {
        "cli": "--drain-timeout",
        "raw": {"cli": "11", "env": "12", "ini": "13", "file": "14"},
        "parsed": {"cli": 11.0, "env": 12.0, "ini": 13.0, "file": 14.0},
        "default": 30.0,
    },
    "routed_api_url": {
        "cli": "--routed-url",
        "raw": {
            "cli": "http://cli.example:1/",
            "env": "http://env.example:2",
            "ini": "http://ini.example:3",
            "file": "https://file.example:4/",
        },
        "parsed": {
            "cli": "http://cli.example:1",
            "env": "http://env.example:2",
            "ini": "http://ini.example:3",
            "file": "https://file.example:4",
        },
        "default": "http://127.0.0.1:20010",
    },
    "deployment_tag": {
        "cli": "--deployment-tag",
        "raw": {"cli": "v4", "env": "v3", "ini": "v2", "file": "v1"},
        "parsed": {"cli": "v4", "env": "v3", "ini": "v2", "file": "v1"},
        "default": None,
    },
}


@pytest.mark.parametrize("key", sorted(SCALARS))
@pytest.mark.parametrize("top", [*LAYERS, "default"])
def test_highest_layer_wins_and_is_recorded(tmp_path: Path, key: str, top: str) -> None:
    spec = SCALARS[key]
    given = LAYERS[LAYERS.index(top) :] if top in LAYERS else ()
    raw = spec["raw"]
    cli = {key: raw["cli"]} if "cli" in given else {}
    environ = {f"BLUEGREEN_{key.upper()}": raw["env"]} if "env" in given else {}
    ini = {f"bluegreen_{key}": raw["ini"]} if "ini" in given else {}
    if "file" in given:
        write(tmp_path, "bluegreen.toml", f'{key} = "{raw["file"]}"\n')

    settings = resolve_in(tmp_path, cli=cli, environ=environ, ini=ini)

    expected_source = {
        "cli": f"cli {spec['cli']}",
        "env": f"env BLUEGREEN_{key.upper()}",
        "ini": f"ini bluegreen_{key}",
        "file": f"file bluegreen.toml {key}",
        "default": "default",
    }[top]
    assert settings.sources[key] == expected_source
    expected = spec["parsed"][top] if top != "default" else spec["default"]
    assert value_of(settings, key) == expected


def test_none_and_empty_values_fall_through_to_the_next_layer(tmp_path: Path) -> None:
    write(tmp_path, "bluegreen.toml", 'env = "blue"\nverify_timeout = 4\n')
    settings = resolve_in(
        tmp_path,
        cli={"env": None, "verify_timeout": None},
        environ={"BLUEGREEN_ENV": "", "BLUEGREEN_VERIFY_TIMEOUT": ""},
        ini={"bluegreen_env": ""},
    )
    assert (settings.run.env, settings.sources["env"]) == ("blue", "file bluegreen.toml env")
    assert settings.switching.verify_timeout == 4.0
    assert settings.sources["verify_timeout"] == "file bluegreen.toml verify_timeout"


def test_every_value_has_a_source(tmp_path: Path) -> None:
    settings = resolve_in(tmp_path)
    assert settings.config_file is None
    for key in ("env", "switch", "runtime_api", "http_timeout", "state_file", "env_dir"):
        assert settings.sources[key] == "default"
    assert settings.sources["colors"] == "default"
    assert settings.sources["colors.green.servers"] == "default"
    assert settings.run.env == "all"
    assert (settings.run.switch, settings.run.rollback, settings.run.dry_run) == (
        False,
        False,
        False,
    )
    assert settings.haproxy.runtime_api == RuntimeApiAddress(path="/var/run/haproxy/admin.sock")


def test_values_are_parsed_from_text(tmp_path: Path) -> None:
    settings = resolve_in(
        tmp_path,
        cli={"env": "GREEN", "runtime_api": "127.0.0.1:9999"},
        environ={"BLUEGREEN_VERIFY_RESPONSES": " 7 ", "BLUEGREEN_HTTP_TIMEOUT": "0.25"},
        ini={"bluegreen_full_weight": "256", "bluegreen_color_header": "X-Color"},
    )
    assert settings.run.env == "green"
    assert settings.haproxy.runtime_api == RuntimeApiAddress(host="127.0.0.1", port=9999)
    assert settings.switching.verify_responses == 7
    assert settings.checks.http_timeout == 0.25
    assert settings.switching.full_weight == 256
    assert settings.topology.color_header == "X-Color"


def test_switch_and_rollback_come_from_the_command_line_only(tmp_path: Path) -> None:
    settings = resolve_in(
        tmp_path,
        environ={"BLUEGREEN_SWITCH": "1", "BLUEGREEN_ROLLBACK": "1", "BLUEGREEN_ENV": "green"},
        ini={"bluegreen_switch": "true", "bluegreen_rollback": "true"},
    )
    assert not settings.gating
    gated = resolve_in(tmp_path, cli={"switch": True, "env": "green"})
    assert gated.run.switch
    assert gated.sources["switch"] == "cli --switch"
    assert gated.target == "green"


@pytest.mark.parametrize("line", ["switch = true", "rollback = true"])
def test_the_settings_file_cannot_turn_the_gate_on(tmp_path: Path, line: str) -> None:
    write(tmp_path, "bluegreen.toml", f'env = "green"\n{line}\n')
    with pytest.raises(SettingsError, match=line.split(maxsplit=1)[0]):
        resolve_in(tmp_path)


def test_dry_run_from_env_var(tmp_path: Path) -> None:
    settings = resolve_in(
        tmp_path, cli={"switch": True, "env": "blue"}, environ={"BLUEGREEN_DRY_RUN": "yes"}
    )
    assert settings.run.dry_run
    assert settings.sources["dry_run"] == "env BLUEGREEN_DRY_RUN"


def test_options_without_a_flag_ignore_the_cli_mapping(tmp_path: Path) -> None:
    settings = resolve_in(tmp_path, cli={"runtime_api_timeout": "9"})
    assert settings.haproxy.runtime_api_timeout == 2.0
    assert settings.sources["runtime_api_timeout"] == "default"


# --- the file: bluegreen.toml, else [tool.bluegreen] in pyproject.toml ------------------------


def test_pyproject_tool_table_is_read(tmp_path: Path) -> None:
    write(
        tmp_path,
        "pyproject.toml",
        """\
        [project]
        name = "deploy"

        [tool.bluegreen]
        env = "green"
        drain_timeout = 3

        [tool.bluegreen.colors.blue]
        api_url = "http://blue.internal:8000"
        servers = ["be/blue"]

        [tool.bluegreen.colors.green]
        api_url = "http://green.internal:8000"
        servers = ["be/green"]
        """,
    )
    settings = resolve_in(tmp_path)
    assert settings.config_file == tmp_path / "pyproject.toml"
    assert settings.run.env == "green"
    assert settings.sources["env"] == "file pyproject.toml env"
    assert settings.switching.drain_timeout == 3.0
    assert settings.topology.color["green"].servers == (ServerRef("be", "green"),)
    assert settings.sources["colors.blue.api_url"] == "file pyproject.toml colors.blue.api_url"


def test_pyproject_without_tool_table_gives_defaults(tmp_path: Path) -> None:
    write(tmp_path, "pyproject.toml", '[project]\nname = "x"\n[tool.other]\nenv = "green"\n')
    settings = resolve_in(tmp_path)
    assert settings.config_file is None
    assert settings.run.env == "all"
    assert settings.sources["env"] == "default"


def test_bluegreen_toml_wins_over_pyproject(tmp_path: Path) -> None:
    write(tmp_path, "pyproject.toml", '[tool.bluegreen]\nenv = "green"\ndrain_timeout = 9\n')
    write(tmp_path, "bluegreen.toml", 'env = "blue"\n')
    settings = resolve_in(tmp_path)
    assert settings.config_file == tmp_path / "bluegreen.toml"
    assert (settings.run.env, settings.sources["env"]) == ("blue", "file bluegreen.toml env")
    # the files are not merged: pyproject's drain_timeout is not used
    assert (settings.switching.drain_timeout, settings.sources["drain_timeout"]) == (
        30.0,
        "default",
    )


def test_explicit_config_file_wins_over_bluegreen_toml(tmp_path: Path) -> None:
    write(tmp_path, "bluegreen.toml", 'env = "blue"\n')
    write(tmp_path, "deploy/prod.toml", 'env = "green"\n')
    from_cli = resolve_in(tmp_path, cli={"config": "deploy/prod.toml"})
    assert from_cli.config_file == tmp_path / "deploy" / "prod.toml"
    assert (from_cli.run.env, from_cli.sources["env"]) == ("green", "file prod.toml env")
    from_env = resolve_in(tmp_path, environ={"BLUEGREEN_CONFIG": "deploy/prod.toml"})
    assert from_env.config_file == tmp_path / "deploy" / "prod.toml"
    from_ini = resolve_in(tmp_path, ini={"bluegreen_config": str(tmp_path / "deploy/prod.toml")})
    assert from_ini.run.env == "green"


def test_the_file_is_found_from_where_the_run_starts_up(tmp_path: Path) -> None:
    """pytest (or bluegreen) run from a subfolder of the deployment: its settings file, not
    the defaults; the nearest one wins."""
    write(tmp_path, "bluegreen.toml", 'env = "blue"\n')
    deep = tmp_path / "checks" / "api"
    deep.mkdir(parents=True)
    settings = resolve_in(deep)
    assert settings.config_file == tmp_path / "bluegreen.toml"
    assert settings.run.env == "blue"
    write(tmp_path, "checks/pyproject.toml", '[tool.bluegreen]\nenv = "green"\n')
    assert resolve_in(deep).config_file == tmp_path / "checks" / "pyproject.toml"
    # a pyproject.toml without the table is not a settings file: the search goes on up
    write(tmp_path, "checks/api/pyproject.toml", '[project]\nname = "x"\n')
    assert resolve_in(deep).run.env == "green"


def test_else_near_the_test_paths_given(tmp_path: Path) -> None:
    write(tmp_path, "deploy/bluegreen.toml", 'env = "green"\n')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    settings = resolve({}, {}, {}, elsewhere, near=[tmp_path / "deploy" / "checks" / "t.py"])
    assert settings.config_file == tmp_path / "deploy" / "bluegreen.toml"


def test_relative_explicit_files_are_relative_to_where_they_were_given(tmp_path: Path) -> None:
    write(tmp_path, "ops/bg.toml", 'env = "green"\n')
    write(tmp_path, "ini-folder/ops/bg.toml", 'env = "blue"\n')
    here = tmp_path
    from_env = resolve({}, {"BLUEGREEN_CONFIG": "ops/bg.toml"}, {}, here)
    assert from_env.config_file == tmp_path / "ops" / "bg.toml"
    ini = {"bluegreen_config": "ops/bg.toml"}
    from_ini = resolve({}, {}, ini, here, ini_dir=tmp_path / "ini-folder")
    assert from_ini.config_file == tmp_path / "ini-folder" / "ops" / "bg.toml"


@pytest.mark.parametrize(
    ("args", "misread"),
    [
        pytest.param(["--runtime-api", "{out}/admin.sock", "checks"], True, id="socket-outside"),
        pytest.param(["--runtime-api={out}/admin.sock", "checks"], False, id="equals-form"),
        pytest.param(["--bluegreen-config", "{out}/bg.toml"], True, id="config-outside"),
        pytest.param(["--bluegreen-config", "bg.toml"], False, id="config-inside"),
        pytest.param(["--runtime-api", "{out}/missing.sock"], False, id="not-a-path"),
        pytest.param(["--runtime-api", "127.0.0.1:9999"], False, id="address"),
        pytest.param(["--env", "green", "{out}/admin.sock"], False, id="a-real-test-path"),
    ],
)
def test_a_separate_value_pytest_takes_for_a_path_is_named(
    tmp_path: Path, args: list[str], misread: bool
) -> None:
    out, here = tmp_path / "out", tmp_path / "here"
    write(out, "admin.sock", "")
    write(out, "bg.toml", "")
    write(here, "bg.toml", "")
    words = [a.format(out=out) for a in args]
    flags = [o.cli for o in all_options() if o.cli and not o.flag]
    line = misread_values(words, flags, here)
    if not misread:
        assert line is None
        return
    assert line is not None
    flag, value = words[0], words[1]
    assert line.startswith(f"bluegreen: write {flag}={value} ")
    assert "\n" not in line


def test_the_ini_holds_exactly_what_the_settings_file_holds() -> None:
    """One rule, read from the option table by pytest's ini twins and the reference."""
    for option in all_options():
        if option.key != "config":  # the file cannot name itself; the ini can name it
            assert option.ini == option.file, option.key
    options = {o.key: o for o in all_options()}
    for key in ("dry_run", "skip_backup"):  # kept in the file: in the ini too
        assert options[key].ini, key
    for key in ("promote_later", "allow_missing_instance", "allow_narrowed", "switch"):
        assert not options[key].ini, key  # what a run decides for itself


def test_explicit_pyproject_uses_its_tool_table(tmp_path: Path) -> None:
    write(
        tmp_path,
        "deploy/pyproject.toml",
        '[project]\nname = "deploy"\n[tool.bluegreen]\nenv = "green"\n',
    )
    settings = resolve_in(tmp_path, cli={"config": "deploy/pyproject.toml"})
    assert settings.run.env == "green"


# --- per-color values ---------------------------------------------------------------------------

COLORS_TOML = """\
[colors.blue]
api_url = "http://blue.internal:8000/"
frontend_url = "http://blue.internal:3000"
servers = ["api_backend/b1", "frontend_backend/b2"]

[colors.green]
api_url = "http://green.internal:8000"
servers = ["api_backend/g1"]
"""


def test_color_tables(tmp_path: Path) -> None:
    write(tmp_path, "bluegreen.toml", COLORS_TOML)
    settings = resolve_in(tmp_path)
    assert settings.topology.colors == ("blue", "green")
    blue, green = settings.topology.color["blue"], settings.topology.color["green"]
    assert blue.api_url == "http://blue.internal:8000"
    assert blue.frontend_url == "http://blue.internal:3000"
    assert blue.servers == (ServerRef("api_backend", "b1"), ServerRef("frontend_backend", "b2"))
    assert green.frontend_url is None
    assert settings.sources["colors"] == "file bluegreen.toml colors"
    assert settings.sources["colors.blue.frontend_url"] == (
        "file bluegreen.toml colors.blue.frontend_url"
    )
    assert settings.sources["colors.green.frontend_url"] == "default"
    assert settings.topology.color_of(ServerRef("api_backend", "g1")) == "green"
    assert settings.topology.color_of(ServerRef("api_backend", "nobody")) is None


def test_color_env_vars_override_the_file(tmp_path: Path) -> None:
    write(tmp_path, "bluegreen.toml", COLORS_TOML)
    settings = resolve_in(
        tmp_path,
        environ={
            "BLUEGREEN_BLUE_API_URL": "https://blue.env:443",
            "BLUEGREEN_GREEN_SERVERS": "api_backend/g7, frontend_backend/g8,",
            "BLUEGREEN_GREEN_FRONTEND_URL": "http://green.env:3000",
        },
    )
    assert settings.topology.color["blue"].api_url == "https://blue.env:443"
    assert settings.sources["colors.blue.api_url"] == "env BLUEGREEN_BLUE_API_URL"
    assert settings.topology.color["blue"].servers == (
        ServerRef("api_backend", "b1"),
        ServerRef("frontend_backend", "b2"),
    )
    assert settings.topology.color["green"].servers == (
        ServerRef("api_backend", "g7"),
        ServerRef("frontend_backend", "g8"),
    )
    assert settings.sources["colors.green.servers"] == "env BLUEGREEN_GREEN_SERVERS"
    assert settings.topology.color["green"].frontend_url == "http://green.env:3000"


def test_color_env_vars_apply_to_default_colors(tmp_path: Path) -> None:
    settings = resolve_in(tmp_path, environ={"BLUEGREEN_GREEN_SERVERS": "be/g"})
    assert settings.topology.color["green"].servers == (ServerRef("be", "g"),)
    assert settings.topology.color["blue"].api_url == "http://127.0.0.1:21010"
    assert settings.sources["colors.blue.api_url"] == "default"


def test_custom_color_names(tmp_path: Path) -> None:
    write(
        tmp_path,
        "bluegreen.toml",
        """\
        env = "dark-red"
        [colors.dark-red]
        servers = ["be/red"]
        [colors.black]
        api_url = "http://black:1"
        servers = ["be/black"]
        """,
    )
    settings = resolve_in(tmp_path, environ={"BLUEGREEN_DARK_RED_API_URL": "http://red:1"})
    assert settings.topology.colors == ("dark-red", "black")
    assert settings.topology.color["dark-red"].api_url == "http://red:1"
    assert settings.sources["colors.dark-red.api_url"] == "env BLUEGREEN_DARK_RED_API_URL"
    assert settings.target == "dark-red"
    assert settings.topology.other("dark-red") == "black"


@pytest.mark.parametrize(
    ("env", "target", "selected"),
    [
        ("blue", "blue", ("blue",)),
        ("green", "green", ("green",)),
        ("all", None, ("blue", "green")),
        ("shared", None, ()),
    ],
)
def test_target_and_selected_colors(
    tmp_path: Path, env: str, target: str | None, selected: tuple[str, ...]
) -> None:
    settings = resolve_in(tmp_path, cli={"env": env})
    assert settings.target == target
    assert settings.selected_colors() == selected
    assert settings.topology.other("blue") == "green"
    assert settings.topology.other("green") == "blue"


# --- errors: one line naming the value and where it came from ----------------------------------

SERVER_IN_BOTH_TOML = """\
[colors.blue]
servers = ["be/x"]
[colors.green]
servers = ["be/x"]
"""


@dataclass(frozen=True)
class Given:
    """What one resolve() call sees: files in the rootdir, CLI values, env vars, ini values."""

    files: dict[str, str] = field(default_factory=dict)
    cli: dict[str, Any] = field(default_factory=dict)
    environ: dict[str, str] = field(default_factory=dict)
    ini: dict[str, str] = field(default_factory=dict)


ERRORS = [
    pytest.param(
        Given(cli={"drain_timeout": "abc"}),
        ["drain_timeout", "'abc'", "(from cli --drain-timeout)"],
        id="seconds-not-a-number-cli",
    ),
    pytest.param(
        Given(environ={"BLUEGREEN_VERIFY_TIMEOUT": "0"}),
        ["verify_timeout", "(0, 86400]", "'0'", "(from env BLUEGREEN_VERIFY_TIMEOUT)"],
        id="seconds-zero-env",
    ),
    pytest.param(
        Given(ini={"bluegreen_drain_timeout": "1e9"}),
        ["drain_timeout", "'1e9'", "(from ini bluegreen_drain_timeout)"],
        id="seconds-too-long-ini",
    ),
    pytest.param(
        Given(files={"bluegreen.toml": "http_timeout = true\n"}),
        ["http_timeout", "boolean", "(from file bluegreen.toml http_timeout)"],
        id="seconds-boolean-file",
    ),
    pytest.param(
        Given(environ={"BLUEGREEN_HTTP_TIMEOUT": "nan"}),
        ["http_timeout", "'nan'", "(from env BLUEGREEN_HTTP_TIMEOUT)"],
        id="seconds-nan-env",
    ),
    pytest.param(
        Given(ini={"bluegreen_routed_api_url": "ftp://x.example"}),
        ["routed_api_url", "'ftp://x.example'", "(from ini bluegreen_routed_api_url)"],
        id="url-scheme-ini",
    ),
    pytest.param(
        Given(environ={"BLUEGREEN_METRICS_PUSH_URL": "gate:s3cr3t-pw@pushgateway:9091"}),
        ["metrics_push_url", "not shown", "(from env BLUEGREEN_METRICS_PUSH_URL)"],
        id="push-url-credentials-not-shown-env",
    ),
    pytest.param(
        Given(ini={"bluegreen_metrics_push_timeout": "0"}),
        ["metrics_push_timeout", "(0, 86400]", "(from ini bluegreen_metrics_push_timeout)"],
        id="push-timeout-zero-ini",
    ),
    pytest.param(
        Given(files={"bluegreen.toml": 'routed_frontend_url = "127.0.0.1:20011"\n'}),
        ["routed_frontend_url", "'127.0.0.1:20011'", "(from file bluegreen.toml"],
        id="url-no-scheme-file",
    ),
    pytest.param(
        Given(cli={"routed_api_url": "http://"}),
        ["routed_api_url", "'http://'", "(from cli --routed-url)"],
        id="url-no-host-cli",
    ),
    pytest.param(
        Given(environ={"BLUEGREEN_GREEN_API_URL": "not-a-url"}),
        ["colors.green", "'not-a-url'"],
        id="color-url-env",
    ),
    pytest.param(
        Given(files={"bluegreen.toml": "drain_timout = 3\n"}),
        ["unknown setting 'drain_timout'", "bluegreen.toml", "drain_timeout"],
        id="typo-in-bluegreen-toml",
    ),
    pytest.param(
        Given(files={"pyproject.toml": '[tool.bluegreen]\nenvv = "green"\n'}),
        ["unknown setting 'envv'", "pyproject.toml"],
        id="typo-in-pyproject",
    ),
    pytest.param(
        Given(files={"bluegreen.toml": '[colors.blue]\napi_ur = "http://b"\n[colors.green]\n'}),
        ["unknown setting colors.blue.api_ur", "file bluegreen.toml", "api_url"],
        id="typo-in-color-table",
    ),
    pytest.param(
        Given(files={"bluegreen.toml": "[colors.blue]\n[colors.green]\n[colors.red]\n"}),
        ["exactly two colors", "got 3: blue, green, red", "(file bluegreen.toml colors)"],
        id="three-colors",
    ),
    pytest.param(
        Given(files={"bluegreen.toml": "[colors.blue]\n"}),
        ["exactly two colors", "got 1: blue", "(file bluegreen.toml colors)"],
        id="one-color",
    ),
    pytest.param(
        Given(files={"bluegreen.toml": "[colors.all]\n[colors.green]\n"}),
        ["'all' is not a usable color name", "(file bluegreen.toml colors)"],
        id="color-named-all",
    ),
    pytest.param(
        Given(files={"bluegreen.toml": "[colors.blue]\n[colors.shared]\n"}),
        ["'shared' is not a usable color name", "(file bluegreen.toml colors)"],
        id="color-named-shared",
    ),
    pytest.param(
        Given(files={"bluegreen.toml": "[colors.Blue]\n[colors.green]\n"}),
        ["'Blue' is not a usable color name"],
        id="color-name-uppercase",
    ),
    pytest.param(
        Given(files={"bluegreen.toml": "colors = 2\n"}),
        ["'colors' must be a table", "file bluegreen.toml"],
        id="colors-not-a-table",
    ),
    pytest.param(
        Given(files={"bluegreen.toml": '[colors.red]\nservers = ["be/r"]\n[colors.black]\n'}),
        ["colors.red.api_url is required", "file bluegreen.toml"],
        id="custom-color-without-url",
    ),
    pytest.param(
        Given(files={"bluegreen.toml": SERVER_IN_BOTH_TOML}),
        ["server be/x is listed for both blue and green"],
        id="server-in-both-colors-file",
    ),
    pytest.param(
        Given(environ={"BLUEGREEN_GREEN_SERVERS": "api_backend/blue-api"}),
        ["server api_backend/blue-api is listed for both blue and green"],
        id="server-in-both-colors-env",
    ),
    pytest.param(
        Given(files={"bluegreen.toml": '[colors.blue]\nservers = ["no-slash"]\n[colors.green]\n'}),
        ["colors.blue", "'backend/server'", "'no-slash'"],
        id="malformed-server-file",
    ),
    pytest.param(
        Given(environ={"BLUEGREEN_GREEN_SERVERS": "api_backend/"}),
        ["colors.green", "'api_backend/'"],
        id="malformed-server-env",
    ),
    pytest.param(
        Given(files={"bluegreen.toml": "[colors.blue]\nservers = []\n[colors.green]\n"}),
        ["colors.blue", "non-empty list"],
        id="no-servers",
    ),
    pytest.param(
        Given(cli={"switch": True, "env": "all"}),
        ["--switch needs one target color", "--env blue or --env green", "got --env all"],
        id="switch-env-all",
    ),
    pytest.param(
        Given(cli={"switch": True, "rollback": True, "env": "green"}),
        ["--switch and --rollback cannot be combined"],
        id="switch-and-rollback",
    ),
    pytest.param(
        Given(cli={"dry_run": True}),
        ["--dry-run only makes sense with --switch or --rollback"],
        id="dry-run-alone",
    ),
    pytest.param(
        Given(cli={"rollback": True, "env": "shared"}),
        ["--rollback", "--env shared"],
        id="rollback-env-shared",
    ),
    pytest.param(
        Given(cli={"config": "missing.toml"}),
        ["settings file missing.toml does not exist"],
        id="missing-config-file",
    ),
    pytest.param(
        Given(files={"conf/x": ""}, cli={"config": "conf"}),
        ["settings file conf is not a file"],
        id="config-file-a-folder",
    ),
    pytest.param(
        Given(files={"bluegreen.toml": "env = [\n"}),
        ["cannot read", "bluegreen.toml"],
        id="toml-syntax-error",
    ),
    pytest.param(
        Given(files={"bluegreen.toml": "env = " + "[" * 100_000 + "]" * 100_000 + "\n"}),
        ["cannot read", "bluegreen.toml", "nested too deeply"],
        id="toml-nested-too-deeply",
    ),
    pytest.param(
        Given(environ={"BLUEGREEN_RUNTIME_API": "localhost"}),
        ["runtime_api", "'localhost'", "(from env BLUEGREEN_RUNTIME_API)"],
        id="runtime-api-no-port",
    ),
    pytest.param(
        Given(cli={"runtime_api": "127.0.0.1:70000"}),
        ["runtime_api", "'127.0.0.1:70000'", "(from cli --runtime-api)"],
        id="runtime-api-port-out-of-range",
    ),
    pytest.param(
        Given(files={"bluegreen.toml": 'runtime_api = "unix:"\n'}),
        ["runtime_api", "socket path", "(from file bluegreen.toml runtime_api)"],
        id="runtime-api-empty-unix",
    ),
    pytest.param(
        Given(environ={"BLUEGREEN_ENV": "purple"}),
        ["--env must be one of blue|green|all|shared", "'purple'", "(from env BLUEGREEN_ENV)"],
        id="env-unknown-color",
    ),
    pytest.param(
        Given(ini={"bluegreen_verify_responses": "0"}),
        ["verify_responses", "1..100", "(from ini bluegreen_verify_responses)"],
        id="verify-responses-zero",
    ),
    pytest.param(
        Given(files={"bluegreen.toml": 'color_header = "X Color"\n'}),
        ["color_header", "'X Color'", "(from file bluegreen.toml color_header)"],
        id="bad-header-name",
    ),
    pytest.param(
        Given(files={"bluegreen.toml": 'verify_path = "health"\n'}),
        ["verify_path", "'/'", "(from file bluegreen.toml verify_path)"],
        id="verify-path-relative",
    ),
    pytest.param(
        Given(cli={"deploy": "v1.1.0"}),
        ["--deploy needs one color", "got --env all", "(from default)"],
        id="deploy-without-color",
    ),
    pytest.param(
        Given(cli={"deploy": "v1.1.0", "env": "green", "rollback": True}),
        ["--deploy cannot be combined with --rollback"],
        id="deploy-with-rollback",
    ),
    pytest.param(
        Given(cli={"deploy": "v1.1.0", "env": "green", "switch": True, "dry_run": True}),
        ["--deploy cannot be combined with --dry-run"],
        id="deploy-with-dry-run",
    ),
    pytest.param(
        Given(cli={"force_deploy": True, "env": "green"}),
        ["--force-deploy only makes sense with --deploy"],
        id="force-deploy-alone",
    ),
    pytest.param(
        Given(environ={"BLUEGREEN_ON_FAILED_GATE": "explode"}),
        ["on_failed_gate", "keep|teardown|restore", "(from env BLUEGREEN_ON_FAILED_GATE)"],
        id="on-failed-gate-unknown",
    ),
    pytest.param(
        Given(files={"bluegreen.toml": 'pull = "sometimes"\n'}),
        ["pull", "missing|never|always", "(from file bluegreen.toml pull)"],
        id="pull-unknown",
    ),
    pytest.param(
        Given(files={"bluegreen.toml": '[colors.blue]\nservices = ["bad name"]\n[colors.green]\n'}),
        ["colors.blue.services", "'bad name'", "not a Compose service name"],
        id="bad-service-name",
    ),
    pytest.param(
        Given(files={"bluegreen.toml": 'deploy = "v1"\n'}),
        ["unknown setting 'deploy'"],
        id="deploy-not-from-file",
    ),
    pytest.param(
        Given(cli={"deploy": "v1 ; rm -rf /", "env": "green"}),
        ["deploy is not an image tag", "(from cli --deploy)"],
        id="deploy-tag-malformed",
    ),
    pytest.param(
        Given(files={"bluegreen.toml": '[compare]\n"/api" = ["p95 <= live"]\n'}),
        ["'p95 <= live' is not a comparison like", "(from file bluegreen.toml compare)"],
        id="compare-rule-malformed",
    ),
    pytest.param(
        Given(files={"bluegreen.toml": '[compare]\n"api" = ["p(95) <= live"]\n'}),
        ["compare endpoint 'api' must be a path starting '/'"],
        id="compare-endpoint-not-a-path",
    ),
    pytest.param(
        Given(files={"bluegreen.toml": 'compare_baseline = "purple"\n'}),
        ["compare_baseline must be live|blue|green, got 'purple'"],
        id="compare-baseline-unknown",
    ),
    pytest.param(
        Given(files={"bluegreen.toml": "compare_confidence = 1.5\n"}),
        ["compare_confidence", "between 0.5 and 1"],
        id="compare-confidence-out-of-range",
    ),
    pytest.param(
        Given(files={"bluegreen.toml": '[drill]\n"v1-slow" = "caught"\n'}),
        ["drill: v1-slow expects 'caught', not one of failed|inconclusive|refused"],
        id="drill-expectation-unknown",
    ),
    pytest.param(
        Given(files={"bluegreen.toml": '[drill]\n"v1 slow" = "failed"\n'}),
        ["drill: 'v1 slow' is not an image tag"],
        id="drill-tag-malformed",
    ),
    pytest.param(
        Given(files={"bluegreen.toml": "drill_power_latency = [5, 2]\n"}),
        ["drill_power_latency expected rising percentages, got 5,2", "(from file bluegreen.toml"],
        id="drill-power-ladder-not-rising",
    ),
    pytest.param(
        Given(environ={"BLUEGREEN_DRILL_POWER_ERRORS": "1,150"}),
        ["drill_power_errors expected percentages in (0, 100], got '150'", "(from env"],
        id="drill-power-errors-past-all",
    ),
    pytest.param(
        Given(files={"bluegreen.toml": "drill_power_errors = [0, 1]\n"}),
        ["drill_power_errors expected percentages in (0, 100], got '0'"],
        id="drill-power-errors-zero",
    ),
    pytest.param(
        Given(files={"bluegreen.toml": "drill_power_latency = []\n"}),
        ["drill_power_latency expected a non-empty list"],
        id="drill-power-ladder-empty",
    ),
    pytest.param(
        Given(environ={"BLUEGREEN_DRILL_POWER_LATENCY": ",".join(map(str, range(1, 22)))}),
        ["drill_power_latency expected at most 20 percentages, got 21", "(from env"],
        id="drill-power-ladder-too-long",
    ),
    pytest.param(
        Given(files={"bluegreen.toml": "drill_power_runs = 0\n"}),
        ["drill_power_runs expected 1..100, got 0"],
        id="drill-power-runs-zero",
    ),
    pytest.param(
        Given(ini={"bluegreen_drill_power_tail": "1.5"}),
        ["drill_power_tail expected a share in (0, 1], got '1.5'"],
        id="drill-power-tail-past-all",
    ),
    pytest.param(
        Given(files={"bluegreen.toml": 'blame = "sometimes"\n'}),
        ["blame", "auto|on|off"],
        id="blame-unknown",
    ),
]


@pytest.mark.parametrize(("given", "fragments"), ERRORS)
def test_bad_settings_raise_one_line(tmp_path: Path, given: Given, fragments: list[str]) -> None:
    for name, text in given.files.items():
        write(tmp_path, name, text)
    message = resolve_error(tmp_path, cli=given.cli, environ=given.environ, ini=given.ini)
    for fragment in fragments:
        assert fragment in message, message
    assert "s3cr3t" not in message


@pytest.mark.parametrize(
    ("files", "environ", "source"),
    [
        pytest.param({}, {"BLUEGREEN_GREEN_API_URL": "nope"}, "BLUEGREEN_GREEN_API_URL", id="url"),
        pytest.param({}, {"BLUEGREEN_BLUE_SERVERS": "x"}, "BLUEGREEN_BLUE_SERVERS", id="server"),
        pytest.param(
            {},
            {"BLUEGREEN_GREEN_SERVERS": "api_backend/blue-api"},
            "BLUEGREEN_GREEN_SERVERS",
            id="server-in-both",
        ),
        pytest.param(
            {"bluegreen.toml": '[colors.blue]\napi_url = "x"\n[colors.green]\n'},
            {},
            "bluegreen.toml",
            id="url-file",
        ),
    ],
)
def test_color_errors_name_their_source(
    tmp_path: Path, files: dict[str, str], environ: dict[str, str], source: str
) -> None:
    for name, text in files.items():
        write(tmp_path, name, text)
    assert source in resolve_error(tmp_path, environ=environ)


@pytest.mark.parametrize(
    ("cli", "environ", "source"),
    [
        pytest.param(
            {"switch": True}, {"BLUEGREEN_ENV": "all"}, "env BLUEGREEN_ENV", id="switch-env-var"
        ),
        pytest.param({"switch": True}, {}, "default", id="switch-default-env"),
        pytest.param({}, {"BLUEGREEN_CONFIG": "gone.toml"}, "env BLUEGREEN_CONFIG", id="config"),
    ],
)
def test_mode_errors_name_their_source(
    tmp_path: Path, cli: dict[str, Any], environ: dict[str, str], source: str
) -> None:
    assert source in resolve_error(tmp_path, cli=cli, environ=environ)


@pytest.mark.parametrize(
    "given",
    [
        Given(environ={"BLUEGREEN_DRY_RUN": "1"}),
        Given(ini={"bluegreen_dry_run": "true"}),
        Given(files={"bluegreen.toml": "dry_run = true\n"}),
    ],
    ids=["env", "ini", "file"],
)
def test_a_kept_dry_run_holds_for_gating_runs_and_lets_the_others_be(
    tmp_path: Path, given: Given
) -> None:
    """dry_run kept where the deployment is described (never switch for real from here): a
    run that does not switch is no mistake, as --dry-run alone on the command line is."""
    for name, text in given.files.items():
        write(tmp_path, name, text)
    checks = resolve_in(tmp_path, environ=given.environ, ini=given.ini)
    assert checks.run.dry_run
    gate = resolve_in(
        tmp_path, cli={"switch": True, "env": "green"}, environ=given.environ, ini=given.ini
    )
    assert gate.run.dry_run


@pytest.mark.parametrize("url", ["http://127.0.0.1:99999", "http://127.0.0.1:80a"])
def test_url_with_bad_port_is_rejected(tmp_path: Path, url: str) -> None:
    message = resolve_error(tmp_path, cli={"routed_api_url": url})
    assert url in message


def test_server_listed_twice_for_one_color(tmp_path: Path) -> None:
    write(tmp_path, "bluegreen.toml", '[colors.blue]\nservers = ["be/x", "be/x"]\n[colors.green]\n')
    message = resolve_error(tmp_path)
    assert "be/x" in message
    assert "both blue and blue" not in message


# --- env files ----------------------------------------------------------------------------------


def make_env_files(folder: Path) -> None:
    write(folder, "shared.env", "DB_HOST=db\nLOG_LEVEL=info\nURL=${DB_HOST}/x\nNO_VALUE\n")
    write(folder, "blue.env", "LOG_LEVEL=debug\nBLUE_ONLY=1\n")
    write(folder, "green.env", "export GREEN_ONLY='two words'\n")
    write(folder, "secrets.env", 'DB_PASSWORD="s3cr3t"\n')


def test_env_files_merge_shared_then_color(tmp_path: Path) -> None:
    make_env_files(tmp_path / "config" / "deploy")
    files = resolve_in(tmp_path).env_files
    assert files.directory == tmp_path / "config" / "deploy"
    assert files.per_color == {
        "blue": tmp_path / "config/deploy/blue.env",
        "green": tmp_path / "config/deploy/green.env",
    }
    assert files.variables("blue") == {
        "DB_HOST": "db",
        "LOG_LEVEL": "debug",
        "URL": "${DB_HOST}/x",  # no interpolation
        "BLUE_ONLY": "1",
    }
    assert files.variables("green") == {
        "DB_HOST": "db",
        "LOG_LEVEL": "info",
        "URL": "${DB_HOST}/x",
        "GREEN_ONLY": "two words",
    }
    assert files.variables(None) == {"DB_HOST": "db", "LOG_LEVEL": "info", "URL": "${DB_HOST}/x"}


def test_secrets_are_kept_apart(tmp_path: Path) -> None:
    make_env_files(tmp_path / "config" / "deploy")
    files = resolve_in(tmp_path).env_files
    assert Secrets.load(files.secrets) == {"DB_PASSWORD": "s3cr3t"}
    assert "DB_PASSWORD" not in files.variables("blue")
    assert "DB_PASSWORD" not in files.variables(None)


def test_missing_env_files_are_empty(tmp_path: Path) -> None:
    files = resolve_in(tmp_path, environ={"BLUEGREEN_ENV_DIR": "nowhere"}).env_files
    assert files.directory == tmp_path / "nowhere"
    assert files.variables("green") == {}
    assert Secrets.load(files.secrets) == {}


def test_env_dir_from_the_file(tmp_path: Path) -> None:
    make_env_files(tmp_path / "deploy" / "env")
    write(tmp_path, "deploy/bluegreen.toml", 'env_dir = "env"\n')
    settings = resolve_in(tmp_path, cli={"config": "deploy/bluegreen.toml"})
    assert settings.sources["env_dir"] == "file bluegreen.toml env_dir"
    assert settings.env_files.variables("blue")["BLUE_ONLY"] == "1"
    assert Secrets.load(settings.env_files.secrets) == {"DB_PASSWORD": "s3cr3t"}


# --- paths --------------------------------------------------------------------------------------


def test_paths_are_relative_to_the_config_files_folder(tmp_path: Path) -> None:
    write(
        tmp_path,
        "ops/bg.toml",
        """\
        state_file = "state/history.json"
        haproxy_state_file = "haproxy/server-state"
        env_dir = "env"
        """,
    )
    settings = resolve_in(tmp_path, cli={"config": "ops/bg.toml"})
    ops = tmp_path / "ops"
    assert settings.config_file == ops / "bg.toml"
    assert settings.state.state_file == ops / "state" / "history.json"
    assert settings.state.journal_file == ops / ".bluegreen" / "journal.json"
    assert settings.haproxy.haproxy_state_file == ops / "haproxy" / "server-state"
    assert settings.env_files.directory == ops / "env"
    assert settings.env_files.shared == ops / "env" / "shared.env"
    assert settings.env_files.secrets == ops / "env" / "secrets.env"


def test_default_paths_are_relative_to_the_config_files_folder(tmp_path: Path) -> None:
    write(tmp_path, "ops/bg.toml", 'env = "blue"\n')
    settings = resolve_in(tmp_path, cli={"config": str(tmp_path / "ops" / "bg.toml")})
    assert settings.state.state_file == tmp_path / "ops" / ".bluegreen" / "state.json"
    assert settings.env_files.directory == tmp_path / "ops" / "config" / "deploy"
    assert settings.haproxy.haproxy_state_file is None


def test_paths_without_a_file_are_relative_to_rootdir(tmp_path: Path) -> None:
    settings = resolve_in(tmp_path, environ={"BLUEGREEN_STATE_FILE": "var/s.json"})
    assert settings.state.state_file == tmp_path / "var" / "s.json"
    assert settings.env_files.directory == tmp_path / "config" / "deploy"


def test_absolute_and_home_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    absolute = tmp_path / "elsewhere" / "state.json"
    write(tmp_path, "ops/bg.toml", f'state_file = "{absolute}"\nenv_dir = "~/deploy-env"\n')
    settings = resolve_in(tmp_path, cli={"config": "ops/bg.toml"})
    assert settings.state.state_file == absolute
    assert settings.env_files.directory == home / "deploy-env"


# --- describe: the report header ----------------------------------------------------------------


def test_describe_shows_values_and_sources(tmp_path: Path) -> None:
    write(tmp_path, "bluegreen.toml", 'deployment_tag = "v1.2.3"\n')
    settings = resolve_in(
        tmp_path,
        cli={"env": "green", "switch": True, "dry_run": True},
        environ={"BLUEGREEN_DRAIN_TIMEOUT": "5", "BLUEGREEN_BLUE_API_URL": "http://b:1"},
        ini={"bluegreen_runtime_api": "127.0.0.1:9999"},
    )
    first, colors, gate = describe(settings)
    assert "env=green (cli --env)" in first
    assert "drain_timeout=5.0 (env BLUEGREEN_DRAIN_TIMEOUT)" in first
    assert "runtime_api=127.0.0.1:9999 (ini bluegreen_runtime_api)" in first
    assert "deployment_tag=v1.2.3 (file bluegreen.toml deployment_tag)" in first
    assert "verify_timeout=10.0 (default)" in first
    assert "blue api=http://b:1 servers=api_backend/blue-api,frontend_backend/blue-frontend " in (
        colors
    )
    assert "(env BLUEGREEN_BLUE_API_URL)" in colors
    assert gate == "bluegreen gate: switch (dry run)"


def test_describe_without_gate_has_two_lines(tmp_path: Path) -> None:
    lines = describe(resolve_in(tmp_path))
    assert len(lines) == 2
    assert lines[0].startswith("bluegreen: env=all (default)")


def test_deploy_settings_and_color_services(tmp_path: Path) -> None:
    write(
        tmp_path,
        "bluegreen.toml",
        '[colors.blue]\n[colors.green]\nservices = ["g-api", "g-ui"]\n',
    )
    settings = resolve_in(
        tmp_path,
        cli={"deploy": "v1.1.0", "env": "green", "skip_backup": True},
        environ={"BLUEGREEN_BLUE_SERVICES": "b-api, b-ui, b-worker"},
    )
    assert settings.run.deploy == "v1.1.0"
    assert settings.run.skip_backup
    assert settings.gating  # a deploy takes the lock like a switch
    assert settings.topology.color["green"].services == ("g-api", "g-ui")
    assert settings.topology.color["blue"].services == ("b-api", "b-ui", "b-worker")
    assert settings.sources["colors.blue.services"] == "env BLUEGREEN_BLUE_SERVICES"
    assert settings.compose.compose_file == tmp_path / "docker" / "docker-compose.blue-green.yml"
    assert settings.compose.backup_dir == tmp_path / "reports" / "backups"
    assert (settings.compose.on_failed_gate, settings.compose.pull) == ("keep", "missing")


def test_compare_and_drill_tables_are_read(tmp_path: Path) -> None:
    write(
        tmp_path,
        "bluegreen.toml",
        '[compare]\n"/api/items" = ["p(95) <= live * 1.10 + 2", "rate <= live + 0.005"]\n'
        '[drill]\n"v1.4.0-slow" = "failed"\n"v1.1.0" = "switch"\n',
    )
    settings = resolve({}, {}, {}, tmp_path)
    [latency, rate] = settings.checks.compare["/api/items"]
    assert (latency.metric, latency.factor, latency.delta) == ("p(95)", 1.10, 2.0)
    assert (rate.metric, rate.delta) == ("rate", 0.005)
    assert settings.drill.variants == {"v1.4.0-slow": "failed", "v1.1.0": "switch"}
    assert settings.sources["compare"] == "file bluegreen.toml compare"


# --- the judging tables: parsed once into typed values, by judge/'s grammars (issue 23) ----------

JUDGING_TABLES = """
prometheus_url = "http://127.0.0.1:9090"
[thresholds]
"/api/items" = ["p(95)<300"]
[bake_thresholds]
haproxy = ["http_5xx_rate<0.02"]
[compare]
"/api/items" = ["p(95) <= live * 1.10"]
[prometheus_checks.errors]
query = 'sum(rate(x{color="{color}"}[1m]))'
thresholds = ["value<0.01"]
[bake_prometheus.errors]
query = 'sum(rate(x{color="{color}"}[{interval}]))'
thresholds = ["value<0.01"]
[compare_prometheus.errors]
query = 'sum(rate(x{color="{color}"}[1m]))'
rules = ["value <= live * 1.10"]
"""

# what a session that only resolves its settings must not load: the load (http.client, ssl),
# the statistics (numpy, scipy), the bake and its counters, the client's requests
NOT_AT_SETTINGS = (
    "pytest_bluegreen.judge.bake",
    "pytest_bluegreen.judge.bakecounters",
    "pytest_bluegreen.judge.compare",
    "pytest_bluegreen.judge.load",
    "pytest_bluegreen.judge.promql",
    "pytest_bluegreen.judge.significance",
    "numpy",
    "scipy",
    "requests",
)

RESOLVE_AND_LIST = """
import sys
from pathlib import Path
from pytest_bluegreen.settings import resolve
settings = resolve({}, {}, {}, Path(sys.argv[1]))
print(type(settings.checks.compare["/api/items"][0]).__name__,
      type(settings.bake.thresholds[0]).__name__,
      type(settings.prometheus.checks["errors"]).__name__,
      type(settings.bake.prometheus[0]).__name__,
      type(settings.checks.compare_prometheus["errors"]).__name__)
print(" ".join(sorted(sys.modules)))
"""


def test_the_judging_tables_are_parsed_without_loading_the_judging(tmp_path: Path) -> None:
    """Every judging table of the file is parsed when the settings are resolved, by grammars
    that load neither the load, nor the statistics, nor the bake (a fresh interpreter)."""
    write(tmp_path, "bluegreen.toml", JUDGING_TABLES)
    done = subprocess.run(
        [sys.executable, "-c", RESOLVE_AND_LIST, str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    kinds, modules = done.stdout.splitlines()
    assert kinds.split() == [
        "CompareRule",
        "BakeThreshold",
        "PromQLCheck",
        "PromQLCheck",
        "PromQLComparison",
    ]
    assert sorted(set(modules.split()).intersection(NOT_AT_SETTINGS)) == []


def _holds_any(hint: object) -> bool:
    return hint is Any or any(_holds_any(arg) for arg in typing.get_args(hint))


def test_the_settings_hold_typed_values() -> None:
    """No field of the settings holds ``Any``: the file's tables are typed values (the groups
    other plugins add, ``Settings.extensions``, are looked up by their class)."""
    classes = (*CORE_GROUPS, model.Settings, model.Topology, model.ColorSettings)
    untyped = sorted(
        f"{cls.__name__}.{f.name}"
        for cls in classes
        for f in dataclasses.fields(cls)
        if _holds_any(typing.get_type_hints(cls)[f.name])
        and (cls, f.name) != (model.Settings, "extensions")
    )
    assert untyped == []


def test_the_bake_thresholds_are_the_defaults_parsed_without_a_table(tmp_path: Path) -> None:
    settings = resolve_in(tmp_path)
    assert settings.bake.thresholds == parse_bake_thresholds(DEFAULT_BAKE_THRESHOLDS)
    assert [t.text for t in settings.bake.thresholds] == ["http_5xx_rate<0.01", "eresp<1", "econ<1"]
    assert settings.sources["bake_thresholds"] == "default"
    assert judging.BakeSettings().thresholds == settings.bake.thresholds
    write(tmp_path, "bluegreen.toml", "[bake_thresholds]\nhaproxy = []\n")
    assert resolve_in(tmp_path).bake.thresholds == ()  # none at all, as given


@pytest.mark.parametrize(
    ("blame", "cli", "blames"),
    [
        ("auto", {"switch": True, "env": "green"}, True),
        ("auto", {"rollback": True}, True),
        ("auto", {}, False),
        ("on", {}, True),
        ("off", {"switch": True, "env": "green"}, False),
    ],
)
def test_blame_is_on_for_gated_runs_by_default(
    tmp_path: Path, blame: str, cli: dict[str, Any], blames: bool
) -> None:
    write(tmp_path, "bluegreen.toml", f'blame = "{blame}"\n')
    assert resolve(cli, {}, {}, tmp_path).blames is blames


# The settings classes are frozen dataclasses whose methods are written once (options.Frozen),
# not compiled per class at import (issue 21: most of the plugin's import instructions).


def _frozen_classes() -> list[type[Any]]:
    found = [
        value
        for module in (
            model,
            deployment,
            judging,
            options,
            importlib.import_module("pytest_bluegreen.settings.resolve"),
        )
        for value in vars(module).values()
        if isinstance(value, type)
        and value.__module__ == module.__name__
        and dataclasses.is_dataclass(value)
    ]
    names = {cls.__name__ for cls in found}
    assert {"RunSettings", "Settings", "ColorSettings", "Answer", "Option", "_Layers"} <= names
    assert {"HaproxySettings", "BakeSettings"} <= names  # the groups that left model.py
    return found


def test_settings_classes_compile_no_methods_of_their_own() -> None:
    generated = {
        cls.__qualname__: sorted(
            name
            for name in ("__init__", "__eq__", "__hash__", "__repr__", "__setattr__")
            if name in vars(cls)
        )
        for cls in _frozen_classes()
    }
    assert {name: methods for name, methods in generated.items() if methods} == {}


def test_the_frozen_dataclasses_every_session_imports_compile_no_methods() -> None:
    """The same for the frozen classes haproxy/runtime.py, haproxy/instances.py ... give every
    session (ServerRef is ordered: ``@frozen`` has no ``<``, it stays a generated dataclass)."""
    names = (
        "haproxy.runtime",
        "haproxy.address",
        "haproxy.answers",
        "haproxy.instances",
        "judge.thresholds",
        "judge.comparerules",  # the grammars the settings import (issue 23)
        "judge.queries",
        "judge.prometheus",
        "judge.judgement",
        "settings.webhooks",
        "fixtures",
        "haproxy.lock",  # the lock keys' _Seen came here from instances.py: a gate's, still checked
    )
    classes = [
        value
        for module in (importlib.import_module(f"pytest_bluegreen.{name}") for name in names)
        for value in vars(module).values()
        if isinstance(value, type)
        and value.__module__ == module.__name__
        and dataclasses.is_dataclass(value)
        and value.__name__ != "ServerRef"
    ]
    assert len(classes) >= 10
    assert [cls.__qualname__ for cls in classes if "__init__" in vars(cls)] == []
    assert all(issubclass(cls, Frozen) for cls in classes)


def test_settings_are_read_only(tmp_path: Path) -> None:
    settings = resolve_in(tmp_path)
    for group in (settings, settings.switching, settings.topology, settings.run):
        name = dataclasses.fields(group)[0].name
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(group, name, None)
        with pytest.raises(dataclasses.FrozenInstanceError):
            delattr(group, name)
        with pytest.raises(dataclasses.FrozenInstanceError):
            group.undeclared = 1
    assert settings.switching.drain_timeout == 30.0


def test_settings_keep_what_a_dataclass_gives(tmp_path: Path) -> None:
    settings = resolve_in(tmp_path)
    switching = SwitchingSettings(drain_timeout=3.0)
    assert switching.drain_timeout == 3.0
    assert switching.verify_responses == 3
    assert switching == SwitchingSettings(drain_timeout=3.0)
    assert switching != SwitchingSettings()
    assert switching != object()
    assert hash(switching) == hash(SwitchingSettings(drain_timeout=3.0))
    assert repr(Answer("blue", None)) == "Answer(color='blue', version=None)"
    assert Answer("blue", "1.0") == Answer(color="blue", version="1.0")
    assert dataclasses.asdict(Answer("blue", "1.0")) == {"color": "blue", "version": "1.0"}
    assert [f.name for f in dataclasses.fields(Answer)] == ["color", "version"]
    assert Topology().color == {}
    assert Topology().color is not Topology().color
    changed = dataclasses.replace(settings, run=dataclasses.replace(settings.run, dry_run=True))
    assert changed.run.dry_run
    assert not settings.run.dry_run
    assert changed.switching is settings.switching
    assert changed != settings
    assert "sources" not in repr(settings)
    assert "SwitchingSettings(" in repr(settings)
    assert copy.deepcopy(switching) == switching


_ANSWER: Any = Answer
_SWITCHING: Any = SwitchingSettings


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: _ANSWER("blue"), "Answer() missing required argument: 'version'"),
        (lambda: _ANSWER("a", "b", "c"), "takes 2 positional arguments but 3 were given"),
        (lambda: _ANSWER("a", color="b"), "got multiple values for argument 'color'"),
        (lambda: _SWITCHING(nope=1), "got an unexpected keyword argument 'nope'"),
    ],
)
def test_settings_refuse_bad_construction(call: Any, message: str) -> None:
    """What the generated ``__init__`` refused (mypy refuses these calls too: Any below)."""
    with pytest.raises(TypeError, match=re.escape(message)):
        call()


def test_frozen_runs_a_post_init_as_a_dataclass_does() -> None:
    @frozen
    class Positive(Frozen):
        value: int

        def __post_init__(self) -> None:
            if self.value <= 0:
                raise ValueError(f"{self.value} is not positive")

    assert Positive(1).value == 1
    with pytest.raises(ValueError, match="0 is not positive"):
        Positive(0)
    with pytest.raises(ValueError, match="-1 is not positive"):
        dataclasses.replace(Positive(1), value=-1)


def test_frozen_refuses_a_field_without_default_after_one_with() -> None:
    class Bad(Frozen):
        first: int = 1
        second: int

    with pytest.raises(TypeError, match="'second' without a default follows 'first'"):
        frozen(Bad)


NINES = "9" * 400  # an integer TOML takes and a float cannot hold


@pytest.mark.parametrize(
    ("body", "said"),
    [
        (f"drain_timeout = {NINES}", "drain_timeout expected seconds in (0, 86400]"),
        (f"bake_seconds = {NINES}", "bake_seconds expected seconds in (0, 86400]"),
        (
            f'[prometheus_checks]\na = {{query = "up", thresholds = ["value<1"], range = {NINES}}}',
            "a duration must be finite and more than 0",
        ),
        (f"drain_timeout = {'9' * 5000}", "cannot read"),  # past int()'s 4300 digits
    ],
    ids=["seconds", "bake", "promql-range", "toml-past-int-limit"],
)
def test_an_integer_too_long_for_a_number_is_one_line(tmp_path: Path, body: str, said: str) -> None:
    (tmp_path / "bluegreen.toml").write_text(
        'runtime_api = "/tmp/x.sock"\nprometheus_url = "http://127.0.0.1:9"\n' + body + "\n"
    )
    assert said in resolve_error(tmp_path)
