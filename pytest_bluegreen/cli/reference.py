"""The settings reference (``docs/settings.md``), generated from the option table.

    python -m pytest_bluegreen.cli.reference > docs/settings.md

``tests/docs/test_settings_reference.py`` keeps the file in step with the code.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pytest_bluegreen.contrib.services import ServiceSettings
from pytest_bluegreen.haproxy.address import RuntimeApiAddress
from pytest_bluegreen.judge.thresholds import DEFAULT_BAKE_THRESHOLDS
from pytest_bluegreen.settings.files import LOOKUP
from pytest_bluegreen.settings.options import Option
from pytest_bluegreen.settings.resolve import CONFIG_OPTION, CORE_GROUPS, all_options
from pytest_bluegreen.settings.tables import DEFAULT_THRESHOLDS

__all__ = ["render"]

INTRO = """\
# Settings reference

Generated from the option table (`python -m pytest_bluegreen.cli.reference`); do not edit
by hand. Each value is resolved once, in the order **CLI > environment variable > pytest ini >
settings file > default**, and pytest's report header shows where it came from
(`env=green (cli --env)`). A bad value stops pytest with one line naming the value and its
source (exit 4).

**The settings file** is the first found of:

{lookup}

pytest's rootdir plays no part: pytest picks it before it knows a plugin's options, so the
separate value of `--runtime-api /run/haproxy/admin.sock` counts there as a test path (and the
rootdir and ini file may become another folder's). Write such values `--option=value`: the
plugin refuses a run where a separate value names an existing path outside the folder pytest
runs in (exit 4, saying what to type), and `bluegreen` hands every value on that way.

The file's keys are the names below, at the top level. A relative path is relative to the
settings file's folder (the folder pytest runs in without one); a relative `--bluegreen-config`
is relative to the folder pytest runs in, the ini's `bluegreen_config` to the ini file's folder.

**Where each key can be given** is in its row. The pytest ini holds exactly the keys the
settings file holds (`bluegreen_<key>`; it is another settings file). What a run decides for
itself is given on the command line only, or there and in the environment (for CI jobs): no
settings file or ini twin for {no_file}; no environment variable for {no_env}.
The `bluegreen` command resolves the same way: its `--config` and `--runtime-api` are the
command line, and the pytest it runs for the checks gets them handed on.

**A list** is a TOML list in the settings file; in the environment and the ini it is its items
separated by commas (`BLUEGREEN_BACKUP_COMMAND=pg_dump,-U,app,app`,
`BLUEGREEN_GREEN_SERVERS=api_backend/green-api,frontend_backend/green-frontend`; `notify`
takes spaces too), so an item written there cannot hold a comma.
"""

COLORS = """\
## Colors (`[colors.<name>]`)

Exactly two tables; the default colors are `blue` and `green` with the seed's ports and server
names. Environment variables: `BLUEGREEN_<COLOR>_<KEY>` (lists comma-separated), e.g.
`BLUEGREEN_GREEN_SERVERS=api_backend/green-api,frontend_backend/green-frontend`.

| key | type | default (blue / green) | meaning |
|-----|------|------------------------|---------|
| `api_url` | URL | `http://127.0.0.1:21010` / `:21011` | the color's direct API URL (`http`) |
| `frontend_url` | URL | none | the color's direct frontend URL |
| `servers` | list of `backend/server` | `api_backend/<c>-api`, `frontend_backend/<c>-frontend` \
| the HAProxy servers that carry the color |
| `services` | list of Compose services | `<c>-backend`, `<c>-frontend`, `<c>-agents` \
| what `--deploy` brings up, together |
"""

THRESHOLDS = """\
## Thresholds (`[thresholds]`)

k6-style limits per endpoint for the perf checks: `"/health" = ["p(95)<300", "rate<0.01"]`
(`p(N)`, `avg`, `med`, `min`, `max` in ms; `rate` = the failed-request rate; `rps`). Default:
{default}.
"""

TABLES_MORE = """\
## Bake thresholds (`[bake_thresholds]`)

`haproxy = [...]`: limits on HAProxy's counters for the new color's servers over each bake
interval (`requests`, `http_5xx`, `http_5xx_rate`, `eresp`, `econ`, `wretr`, `wredis`, `qcur`).
Default: `haproxy = {bake_default}`.

## Relative thresholds (`[compare]`)

Per endpoint, rules that judge the new color against the live one (`checks/test_compare.py`):
`"/api/items" = ["p(95) <= live * 1.10", "rate <= live + 0.005"]`; the metric is `p(N)`,
`med`, `avg` (ms) or `rate`, the right side `live [* FACTOR] [+ DELTA]`. A rule fails only when
the metric misses the tolerated value and the new color is worse beyond it at
`compare_confidence`: an interval for the difference of the rule's own statistic (a block
bootstrap of consecutive requests for `p(N)`, `med` and `avg`, Newcombe's for `rate`).
None by default. Needs the `stats` extra.

## PromQL checks (`[prometheus_checks]`)

`name = {{query = "...", thresholds = [...]}}`, or a `[prometheus_checks.name]` table; optional
`range` (`"5m"`, a range query over the last 5 minutes) and `step`. A query with `{{color}}` is
run per color (`checks/test_prometheus.py::test_promql`), one without it once, as a `shared`
check. Thresholds are k6's: `value` (the last point), `avg`, `med`, `min`, `max`, `p(N)` over
the points, any number. Every series must meet every threshold; no series, or NaN, is
inconclusive (the check fails saying so). None by default.

## Bake signals from Prometheus (`[bake_prometheus]`)

`name = {{query = "...", thresholds = [...]}}`, asked at the end of every bake interval beside
HAProxy's counters: `{{color}}` is the new color, `{{interval}}` the bake interval as a PromQL
duration (`rate(x[{{interval}}])`). A missed threshold fails the interval; no series, NaN,
Prometheus not answering or a query it refuses make it inconclusive. No `range`. None by
default.

## Relative thresholds from Prometheus (`[compare_prometheus]`)

`name = {{query = "...{{color}}...", rules = ["value <= live * 1.10 + 0.001"]}}`: the query's
one number for the new color against the live color's, asked at the same instant
(`checks/test_prometheus.py::test_promql_compared`); no statistics, the tolerance is the margin
for noise. No series or NaN for either color is inconclusive. None by default.

## Drill variants (`[drill]`)

`bluegreen drill`: `"TAG" = "VERDICT"`, each an image tag deployed to the idle color and the
verdict the gate must give it: `failed`, `inconclusive`, `refused`, `deploy-failed`, or
`switch` (a good build: a control). None by default.

## Several HAProxy instances (`[instances.NAME]`)

One table per instance, switched as one (all move, or none does): `runtime_api` and
`routed_api_url` (required; the switch is verified through every instance's routed URL),
`routed_frontend_url`, `haproxy_state_file` (kept per instance), `runtime_api_cert`,
`runtime_api_key`, `runtime_api_ca` (default: the top-level ones). Without the tables, the
top-level `runtime_api` and routed URLs are the one instance. `--allow-missing-instance NAME`
switches the others while NAME does not answer; NAME is brought in line when it returns.
"""


def _type_of(annotation: Any) -> str:
    text = str(annotation).replace("pathlib.", "").replace("typing.", "")
    for word, shown in (
        ("RuntimeApiAddress", "socket path or host:port"),
        ("PullPolicy", "missing | never | always"),
        ("OnFailedGate", "keep | teardown | restore"),
        ("tuple[str, ...]", "list of text"),
        ("tuple[Webhook, ...]", "list of http(s) URLs"),
    ):
        text = text.replace(word, shown)
    return text.replace(" | None", " (optional)")


def _default(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, RuntimeApiAddress):
        return f"`{value.path or f'{value.host}:{value.port}'}`"
    if isinstance(value, Path | str | int | float):
        return f"`{value}`"
    return f"`{value!r}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _rows(groups: Iterable[type[Any]], options: dict[str, Option]) -> list[str]:
    lines: list[str] = []
    for group in groups:
        doc = (group.__doc__ or "").strip().splitlines()[0]
        lines += [
            f"## {group.GROUP}",
            "",
            doc,
            "",
            "| key | type | default | CLI | env | ini | meaning |",
            "|-----|------|---------|-----|-----|-----|---------|",
        ]
        for field in dataclasses.fields(group):
            option = options.get(field.name)
            if option is None or option.group != group.GROUP:
                continue
            lines.append(
                f"| `{option.key}` | {_type_of(field.type)} | {_default(option.default)} "
                f"| {f'`{option.cli}`' if option.cli else ''} "
                f"| {f'`{option.env_name}`' if option.env else ''} "
                f"| {f'`{option.ini_name}`' if option.ini else ''} "
                f"| {_cell(option.help)}{'' if option.file else ' (not from the file)'} |"
            )
        lines.append("")
    return lines


def _keys(options: Iterable[Option]) -> str:
    return ", ".join(f"`{o.key}`" for o in options)


def render() -> str:
    options = {o.key: o for o in all_options([ServiceSettings])}
    settings = [o for o in options.values() if o is not options[CONFIG_OPTION.key]]
    lookup = "\n".join(f"{n}. {step}" for n, step in enumerate(LOOKUP, 1))
    no_file = _keys(o for o in settings if not o.file)
    no_env = _keys(o for o in settings if not o.env)
    lines = [INTRO.format(lookup=lookup, no_file=no_file, no_env=no_env)]
    lines += [
        "## The settings file itself",
        "",
        f"`{CONFIG_OPTION.cli}` (env `{CONFIG_OPTION.env_name}`, ini `{CONFIG_OPTION.ini_name}`)"
        f": {CONFIG_OPTION.help}.",
        "",
    ]
    lines += _rows(CORE_GROUPS, options)
    lines += [COLORS]
    default = ", ".join(f'`"{k}" = {v}`' for k, v in DEFAULT_THRESHOLDS.items())
    lines += [THRESHOLDS.format(default=default)]
    bake_default = json.dumps(DEFAULT_BAKE_THRESHOLDS["haproxy"])
    lines += [TABLES_MORE.format(bake_default=bake_default)]
    lines += [
        "## services (`pytest_bluegreen.contrib.services`)",
        "",
        "Known when the shipped checks' plugin is active (`pytest_plugins = "
        '["pytest_bluegreen.contrib.services"]` in the root conftest, or '
        "`-p pytest_bluegreen.contrib.services`); every one is unset by default, and a check of "
        "a service that is not configured skips with the reason.",
        "",
    ]
    lines += _rows([ServiceSettings], options)[4:]
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    print(render(), end="")
