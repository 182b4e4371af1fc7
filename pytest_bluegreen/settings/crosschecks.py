"""The run's options checked together, once every value is resolved: the colors named,
one of --switch and --rollback, --deploy's company, what needs a gating run, a TLS Runtime
API's files, the instances allowed to be missing. Each problem is one :class:`SettingsError`
line naming where the value came from.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pytest_bluegreen.haproxy.instances import Instance

from .files import SettingsError
from .parsers import SELECTIONS_EXTRA

__all__ = ["check_missing", "check_mode", "check_tls"]


def check_mode(
    values: Mapping[str, Any], sources: Mapping[str, str], colors: Sequence[str]
) -> None:
    """The run's options must make sense together."""
    _check_choices(values, sources, colors)
    _check_switching(values, sources, colors)
    _check_deploy(values, sources, colors)
    _check_gating_only(values, sources)
    _check_canary(values, sources)


def _check_canary(values: Mapping[str, Any], sources: Mapping[str, str]) -> None:
    """``canary_latency`` reads both colors' histograms from Prometheus: it needs
    ``prometheus_url`` (else every step could only be inconclusive)."""
    if values.get("canary_latency") and not values.get("prometheus_url"):
        raise SettingsError(
            "bluegreen: canary_latency needs prometheus_url (the colors' histograms are read "
            f"from Prometheus) (from {sources['canary_latency']})"
        )


def _one_color(colors: Sequence[str]) -> str:
    return f"--env {' or --env '.join(colors)}"


def _check_choices(
    values: Mapping[str, Any], sources: Mapping[str, str], colors: Sequence[str]
) -> None:
    """``env`` and ``compare_baseline`` name one of the colors (or a selection they allow)."""
    env = values["env"]
    allowed = (*colors, *SELECTIONS_EXTRA)
    if env not in allowed:
        raise SettingsError(
            f"bluegreen: --env must be one of {'|'.join(allowed)}, got {env!r} "
            f"(from {sources['env']})"
        )
    baseline = values["compare_baseline"]
    if baseline not in ("live", *colors):
        raise SettingsError(
            f"bluegreen: compare_baseline must be live|{'|'.join(colors)}, got {baseline!r} "
            f"(from {sources['compare_baseline']})"
        )


def _check_switching(
    values: Mapping[str, Any], sources: Mapping[str, str], colors: Sequence[str]
) -> None:
    """One of --switch and --rollback; a switch to one color, a rollback verifying one."""
    env = values["env"]
    if values["promote_later"] and values["rollback"]:
        raise SettingsError("bluegreen: --switch=manual cannot be combined with --rollback")
    if values["switch"] and values["rollback"]:
        raise SettingsError("bluegreen: --switch and --rollback cannot be combined")
    if values["switch"] and env not in colors:
        raise SettingsError(
            f"bluegreen: --switch needs one target color ({_one_color(colors)}), "
            f"got --env {env} (from {sources['env']})"
        )
    if values["rollback"] and env == "shared":
        raise SettingsError("bluegreen: --rollback verifies a color; --env shared has none")


def _check_deploy(
    values: Mapping[str, Any], sources: Mapping[str, str], colors: Sequence[str]
) -> None:
    """--deploy deploys one color, not in a rollback or a dry run; --force-deploy needs it."""
    env = values["env"]
    if values["deploy"] is not None:
        if env not in colors:
            raise SettingsError(
                f"bluegreen: --deploy needs one color ({_one_color(colors)}), "
                f"got --env {env} (from {sources['env']})"
            )
        if values["rollback"] or values["dry_run"]:
            flag = "--rollback" if values["rollback"] else "--dry-run"
            raise SettingsError(f"bluegreen: --deploy cannot be combined with {flag}")
    elif values["force_deploy"]:
        raise SettingsError("bluegreen: --force-deploy only makes sense with --deploy")


def _check_gating_only(values: Mapping[str, Any], sources: Mapping[str, str]) -> None:
    """--bake and a --dry-run given on the command line need --switch or --rollback."""
    gating = values["switch"] or values["rollback"]
    if values["bake_seconds"] and not gating:
        raise SettingsError(
            f"bluegreen: --bake watches a switch; give --switch or --rollback "
            f"(bake_seconds from {sources['bake_seconds']})"
        )
    # dry_run kept in a file, the ini or the environment (never switch for real from here)
    # holds for the gating runs, and says nothing about the others
    dry_from_cli = sources["dry_run"].startswith("cli ")
    if values["dry_run"] and dry_from_cli and not gating:
        raise SettingsError(
            "bluegreen: --dry-run only makes sense with --switch or --rollback "
            f"(from {sources['dry_run']})"
        )


def check_tls(values: Mapping[str, Any], sources: Mapping[str, str]) -> None:
    """A tls:// Runtime API needs our certificate, its key and HAProxy's CA, each readable."""
    if not values["runtime_api"].tls:
        return
    for key in ("runtime_api_cert", "runtime_api_key", "runtime_api_ca"):
        path = values[key]
        if path is None:
            raise SettingsError(
                f"bluegreen: runtime_api {values['runtime_api']} is TLS: {key} is required "
                f"(runtime_api from {sources['runtime_api']})"
            )
        if not path.is_file():
            raise SettingsError(f"bluegreen: {key} {path} does not exist (from {sources[key]})")


def check_missing(
    instances: Sequence[Instance], missing: Sequence[str], sources: Mapping[str, str]
) -> None:
    names = [i.name for i in instances]
    unknown = [m for m in missing if m not in names]
    if unknown:
        raise SettingsError(
            f"bluegreen: allow_missing_instance {unknown[0]!r} is not an instance "
            f"(instances: {', '.join(names)}; from {sources['allow_missing_instance']})"
        )
