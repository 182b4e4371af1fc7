"""The ``bluegreen`` command as a test runs it (this interpreter, the package of this checkout),
and what a SIGKILL in the middle of a switch leaves for ``bluegreen recover`` to find."""

from __future__ import annotations

import os
import sys

from pytest_bluegreen.haproxy.instances import Haproxies
from pytest_bluegreen.settings import resolve
from pytest_bluegreen.switch.journal import Journal
from pytest_bluegreen.switch.reading import identity, plan

from .stack import Stack

# ``bluegreen ARGS`` is ``[*BLUEGREEN, *ARGS]``
BLUEGREEN = [
    sys.executable,
    "-c",
    "from pytest_bluegreen.cli.command import main; raise SystemExit(main())",
]


def clean_environ() -> dict[str, str]:
    """This process's environment without ``BLUEGREEN_*`` (the settings of whoever runs the
    suite) and ``PYTEST*`` (the outer run's options): what a command a test starts gets. But
    ``PYTEST_ADDOPTS=-p no:randomly``: the pytest it runs (the gate, ``bluegreen``'s settings
    and its child) runs its check files in file order, as the suite's other inner runs
    (tests/conftest.py), and loads no numpy for randomly to reseed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BLUEGREEN_", "PYTEST"))}
    env["PYTEST_ADDOPTS"] = "-p no:randomly"
    return env


def cut_off_switch(stack: Stack, target: str = "green") -> None:
    """What a SIGKILL after the promote step leaves: both colors weighted, the journal open."""

    folder = stack.workdir / "cut-off"
    folder.mkdir(exist_ok=True)
    (folder / "bluegreen.toml").write_text(stack.settings_toml())
    settings = resolve({}, {}, {}, folder)
    api = stack.api()
    planned = plan(Haproxies.single(api), settings.topology, target, 100)
    journal = Journal(stack.journal_file)
    journal.prepare()
    source = settings.topology.other(target)
    journal.begin(source=source, target=target, instance=identity(api), prior=planned.prior)
    for ref in planned.promote:
        api.set_weight(ref, 100)
    journal.step("promote")
