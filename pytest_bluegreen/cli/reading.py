"""``bluegreen status`` and ``bluegreen export-state``: what is live, read and printed (every
secret redacted); nothing changes."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from pytest_bluegreen.errors import ExitCode
from pytest_bluegreen.report.status import collect_export, collect_status
from pytest_bluegreen.report.statustext import export_document, status_document, status_lines
from pytest_bluegreen.settings import Settings

from .inconfig import in_config, json_text, paint

__all__ = ["cmd_export_state", "cmd_status"]


def cmd_status(args: argparse.Namespace, extra: Sequence[str]) -> int:
    def show(config: pytest.Config, settings: Settings) -> int:
        status = collect_status(settings)
        if args.json:
            text = json_text(status_document(status))
        else:
            text = "\n".join(status_lines(status, paint)) + "\n"
        # a history reason or an instance's error may quote a DSN: every secret value goes
        sys.stdout.write(settings.load_secrets().redact(text))
        return ExitCode.OK if status.healthy else ExitCode.CHECKS_FAILED

    return in_config(args, show, records=False)


def cmd_export_state(args: argparse.Namespace, extra: Sequence[str]) -> int:
    def export(config: pytest.Config, settings: Settings) -> int:
        secrets = settings.load_secrets()
        # every value, in every encoding it may hold a secret in (a DSN, a history reason)
        text = secrets.redact(json_text(export_document(collect_export(settings, secrets))))
        if args.output and args.output != "-":
            Path(args.output).write_text(text)
            print(f"bluegreen: state written to {args.output}")
        else:
            sys.stdout.write(text)
        return ExitCode.OK

    return in_config(args, export, records=False)
