"""The package as a user installs it: a wheel (``python -m build``, ``twine check``) installed
into a fresh virtualenv with no extras. The bare install has the options, gates a real HAProxy,
and a feature whose extra is missing says which extra to install."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.cli import clean_environ
from tests.support.gate import CHECKS, history, outcomes
from tests.support.infra import require_infra
from tests.support.stack import ROOT, Stack

# the wheels of the bare install's dependencies, downloaded once by scripts/setup
WHEELHOUSE = ROOT / ".bluegreen" / "wheelhouse"
EXTRAS_ONLY = (
    *("docker", "python_on_whales", "allure", "testinfra", "psycopg", "redis", "dotenv"),
    *("scipy", "numpy", "matplotlib", "prometheus_client"),
)


def sh(*command: str | Path, cwd: Path | None = None, timeout: float = 300) -> str:
    done = subprocess.run(
        [str(c) for c in command],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=clean_environ(),
    )
    assert done.returncode == 0, f"{' '.join(map(str, command))}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


# what a build needs none of (and the checkout's own build output, whatever a run left there)
NOT_BUILT = shutil.ignore_patterns(
    ".git", ".venv", ".bluegreen", "build", "dist", "*.egg-info", "__pycache__", ".*_cache",
    "node_modules", "reports",
)  # fmt: skip


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Built from a copy of the checkout: setuptools writes build/ and the egg-info into the
    tree it builds, and every xdist worker that runs a test of this module builds at once."""
    out = tmp_path_factory.mktemp("dist")
    source = tmp_path_factory.mktemp("source") / "pytest-bluegreen"
    shutil.copytree(ROOT, source, ignore=NOT_BUILT, symlinks=True)
    sh(sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", out, source)
    [built] = out.glob("pytest_bluegreen-*.whl")
    check = sh(sys.executable, "-m", "twine", "check", "--strict", built)
    assert "PASSED" in check
    return built


@pytest.fixture(scope="module")
def bare(
    pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory, wheel: Path
) -> Path:
    """A fresh virtualenv with the wheel and its dependencies, nothing else: its bin folder.
    The dependencies come from scripts/setup's wheelhouse, never from the network."""
    require_infra(
        pytestconfig,
        (WHEELHOUSE / ".needs").exists(),
        f"no wheelhouse in {WHEELHOUSE} (scripts/setup downloads it)",
    )
    venv = tmp_path_factory.mktemp("bare-venv")
    sh(sys.executable, "-m", "venv", venv)
    sh(
        venv / "bin" / "pip", "install", "-q", "--disable-pip-version-check", "--no-index",
        "--find-links", WHEELHOUSE, wheel,
    )  # fmt: skip
    return venv / "bin"


def run_pytest(bin_dir: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = clean_environ()
    return subprocess.run(
        [bin_dir / "pytest", "-p", "no:cacheprovider", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )


def test_the_wheel_holds_the_package_and_its_type_marker(wheel: Path) -> None:
    import zipfile  # noqa: PLC0415

    names = zipfile.ZipFile(wheel).namelist()
    assert "pytest_bluegreen/py.typed" in names
    assert "pytest_bluegreen/settings/resolve.py" in names
    assert "pytest_bluegreen/contrib/services.py" in names
    assert not any(n.startswith(("tests/", "checks/")) for n in names)
    # the folders (issue 23), the face, and the templates bluegreen init copies
    for name in (
        "testing.py",
        "gate/run.py",
        "cli/command.py",
        "init/starter/checks/test_health.py",
        "report/dashboard.html",  # bluegreen dashboard's page and its script
        "report/dashboard.js",
    ):
        assert f"pytest_bluegreen/{name}" in names
    [entry_points] = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "bluegreen = pytest_bluegreen.cli.command:main" in text
    assert "pytest_bluegreen.plugin = pytest_bluegreen.plugin" in text


def test_the_bare_installs_command_and_face_load(bare: Path, tmp_path: Path) -> None:
    """The console script's entry point and the check authors' face, without any extra."""
    assert "usage: bluegreen" in sh(bare / "bluegreen", "--help", cwd=tmp_path)
    probe = "from pytest_bluegreen.testing import ColorSession, RuntimeApi, eventually; print('ok')"
    assert (
        sh(bare / "python", "-W", "error::DeprecationWarning", "-c", probe, cwd=tmp_path) == "ok\n"
    )


def test_the_bare_install_has_no_extras_and_shows_the_options(bare: Path, tmp_path: Path) -> None:
    probe = "import importlib.util as u; print([m for m in {} if u.find_spec(m)])"
    found = sh(bare / "python", "-c", probe.format(list(EXTRAS_ONLY)), cwd=tmp_path)
    assert found.strip() == "[]", f"the bare install brought extras: {found}"
    result = run_pytest(bare, tmp_path, "--help")
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())
    for option in ("--switch", "--env=ENV", "--deploy=DEPLOY", "--drain-timeout=DRAIN_TIMEOUT"):
        assert option in text
    assert "[env: BLUEGREEN_DRAIN_TIMEOUT]" in text


def test_the_bare_install_gates_a_real_haproxy(bare: Path, tmp_path: Path, stack: Stack) -> None:
    (tmp_path / "bluegreen.toml").write_text(stack.settings_toml())
    (tmp_path / "test_checks.py").write_text(CHECKS)
    result = run_pytest(bare, tmp_path, "--env", "green", "--switch", "-m", "quick")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "bluegreen: SWITCH: switched blue -> green" in result.stdout
    assert stack.served_color() == "green"
    assert outcomes(stack) == ["switched"]
    assert history(stack)[0]["tag"] == "v1.1.0"


MISSING_EXTRAS = {
    "docker": ("", ["--env", "green", "--deploy", "v1.2.0"]),
    "allure": ('allure_dir = "out"\n', ["--env", "green"]),
    "stats": ("", ["--env", "green"]),
    "metrics": ('metrics_textfile = "bluegreen.prom"\n', ["--env", "green", "--switch"]),
}
TABLES = {"stats": '[compare]\n"/api/echo" = ["p(95) <= live * 1.1"]\n'}


@pytest.mark.parametrize("extra", MISSING_EXTRAS)
def test_a_missing_extra_is_named(bare: Path, tmp_path: Path, stack: Stack, extra: str) -> None:
    settings, args = MISSING_EXTRAS[extra]
    text = settings + stack.settings_toml() + TABLES.get(extra, "")
    (tmp_path / "bluegreen.toml").write_text(text)
    (tmp_path / "test_checks.py").write_text(CHECKS)
    before = stack.live_weights()
    result = run_pytest(bare, tmp_path, *args)
    text = result.stdout + result.stderr
    assert result.returncode == 4, text
    assert f"needs the '{extra}' extra: pip install 'pytest-bluegreen[{extra}]'" in text
    assert "Traceback" not in text
    assert stack.live_weights() == before
