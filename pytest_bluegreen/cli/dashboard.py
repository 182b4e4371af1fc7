"""``bluegreen dashboard``: the page of report/dashboard.py on ``--listen`` (default
127.0.0.1:10201), drawing ``--prometheus`` (default: ``prometheus_url``), the history of
``state_file`` and the ``[dashboard]`` series; until Ctrl-C or SIGTERM. A bad address or URL,
or no charting library: one line, exit 4, before anything listens. An address other machines
reach (``0.0.0.0``) is served, with a warning: the page asks no login."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import pytest

from pytest_bluegreen.errors import ExitCode
from pytest_bluegreen.redaction import shown_url
from pytest_bluegreen.report.dashboard import (
    DashboardError,
    bind,
    exposure,
    library_files,
    listen_address,
    serve,
)
from pytest_bluegreen.report.snapshot import Source
from pytest_bluegreen.settings import Settings
from pytest_bluegreen.settings.parsers import url

from .inconfig import in_config, progress

__all__ = ["cmd_dashboard"]


def _checked(given: str) -> str:
    try:
        return url(given)
    except ValueError as exc:
        raise DashboardError(f"--prometheus: {exc}") from None


def cmd_dashboard(args: argparse.Namespace, extra: Sequence[str]) -> int:
    # a bad address or URL is said before pytest's configuration loads
    listen_address(args.listen)
    given = None if args.prometheus is None else _checked(args.prometheus)

    def run(config: pytest.Config, settings: Settings) -> int:
        prometheus = given or settings.prometheus.prometheus_url
        if prometheus is None:
            raise DashboardError(
                "no Prometheus to draw from: give --prometheus URL, or set prometheus_url"
            )
        source = Source(
            prometheus_url=prometheus,
            series=settings.dashboard,
            state_file=settings.state.state_file,
            colors=settings.topology.colors,
            timeout=settings.prometheus.prometheus_timeout,
        )
        server = bind(args.listen, source, library_files(settings.dashboard.dashboard_library))
        progress(
            f"dashboard on {server.url} (Prometheus {shown_url(source.prometheus_url)}); "
            "Ctrl-C stops it"
        )
        warning = exposure(*listen_address(args.listen))
        if warning is not None:
            progress(warning)
        serve(server)
        progress("dashboard stopped")
        return ExitCode.OK

    return in_config(args, run, records=False)
