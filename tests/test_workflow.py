"""The CI gate workflow: valid against GitHub's schema, clean in zizmor's offline audit, and its
jobs' shell steps, run in order on the local stack, hand the image and the state on."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from pytest_bluegreen.exposition import parse
from tests.support.docker_stack import compose, docker_problem
from tests.support.infra import require_infra

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / ".github" / "workflows" / "deploy.yml"


def tool(config: pytest.Config, name: str) -> str:
    path = shutil.which(name) or str(Path(__file__).parents[1] / ".venv" / "bin" / name)
    require_infra(config, Path(path).exists(), f"{name} is not installed (pip install {name})")
    return path


def test_workflow_matches_the_github_schema(pytestconfig: pytest.Config) -> None:
    command = [
        tool(pytestconfig, "check-jsonschema"),
        "--builtin-schema",
        "vendor.github-workflows",
        str(WORKFLOW),
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_workflow_has_no_medium_or_high_zizmor_finding(pytestconfig: pytest.Config) -> None:
    command = [tool(pytestconfig, "zizmor"), "--offline", "--min-severity", "medium", str(WORKFLOW)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_workflow_keeps_the_seed_stages_and_inputs() -> None:
    text = WORKFLOW.read_text()
    jobs = ["validate:", "build:", "staging:", "gate:", "production:", "cleanup:"]
    positions = [text.index(f"\n  {job}") for job in jobs]
    assert positions == sorted(positions)
    assert "workflow_dispatch:" in text
    assert "target_environment:" in text
    assert "options: [blue, green]" in text
    assert "auto_switch:" in text
    assert "environment: production-gate" in text
    assert 'pytest checks --env "$COLOR" -m quick' in text
    assert "--alluredir reports/allure-results" in text


def test_a_template_injection_would_be_caught(pytestconfig: pytest.Config, tmp_path: Path) -> None:
    # the audit is not a rubber stamp: an input expanded straight into a script is flagged
    bad = tmp_path / "bad.yml"
    bad.write_text(
        WORKFLOW.read_text().replace(
            'run: scripts/build-images "$DEPLOYMENT_TAG"',
            "run: scripts/build-images ${{ inputs.deployment_tag }}",
        )
    )
    assert "${{ inputs.deployment_tag }}" in bad.read_text()
    command = [tool(pytestconfig, "zizmor"), "--offline", "--min-severity", "medium", str(bad)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    assert result.returncode != 0
    assert "template-injection" in result.stdout + result.stderr


# --- the jobs, run in order on the local stack -------------------------------------------------

JOBS = ("build", "staging", "gate", "production", "cleanup")
INPUTS = {
    "target_environment": "green",
    "deployment_tag": "v1.1.0",
    "auto_switch": "false",
    "bake_seconds": "300",
}
EXPRESSION = re.compile(r"\$\{\{\s*([^}]+?)\s*\}\}")


def expand(value: str, known: dict[str, str]) -> str:
    def one(match: re.Match[str]) -> str:
        name = match[1]
        if name not in known:
            raise AssertionError(f"the workflow uses {name!r}: teach this test what it is")
        return known[name]

    return EXPRESSION.sub(one, value)


def condition(text: str | None, env: dict[str, str]) -> bool:
    if text is None or text == "always()":
        return True
    found = re.fullmatch(r"env\.([A-Z_]+) == ''", text)
    assert found, f"a step condition this test does not know: {text!r}"
    return env.get(found[1], "") == ""


@dataclass(frozen=True)
class Step:
    job: str
    name: str
    run: str
    env: dict[str, str]


def shell_steps(known: dict[str, str]) -> list[Step]:
    workflow = yaml.safe_load(WORKFLOW.read_text())
    top = {k: expand(str(v), known) for k, v in workflow["env"].items()}
    steps = []
    for job_name in JOBS:
        job = workflow["jobs"][job_name]
        job_env = {**top, **{k: expand(str(v), known) for k, v in job.get("env", {}).items()}}
        for step in job["steps"]:
            if "run" not in step:
                continue  # actions: checkout; the artifacts live in the same folder here
            env = {**job_env, **{k: expand(str(v), known) for k, v in step.get("env", {}).items()}}
            if condition(step.get("if"), env):
                steps.append(Step(job_name, step.get("name", step["run"][:40]), step["run"], env))
    return steps


def gate_runs(path: Path) -> dict[tuple[str | None, str | None], float]:
    """``bluegreen_gate_runs_total`` in a metrics textfile: (outcome, target) -> count."""
    samples = parse(path.read_text(), ["bluegreen_gate_runs_total"])
    return {(s.label("outcome"), s.label("target")): s.value for s in samples}


SUDO = (  # as root here: sudo only drops its options
    '#!/bin/sh\nwhile [ "${1#-}" != "$1" ]; do shift; done\nexec "$@"\n'
)


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """The working tree as it is (tracked and new files), with this checkout's .venv."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    folder = tmp_path / "workspace"
    for name in listed:
        source = ROOT / name
        if source.is_file():
            target = folder / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    (folder / ".venv").symlink_to(ROOT / ".venv")
    return folder


@pytest.mark.infra
def test_the_jobs_run_in_order_on_the_local_stack(
    pytestconfig: pytest.Config, tmp_path: Path, workspace: Path
) -> None:
    problem = docker_problem()
    require_infra(pytestconfig, problem is None, problem or "")
    state = tmp_path / "production-state"
    known = {f"inputs.{k}": v for k, v in INPUTS.items()} | {
        "vars.IMAGE_REGISTRY": "",
        "secrets.BLUEGREEN_METRICS_PUSH_URL": "",  # no Pushgateway: the textfile alone
    }
    shim = tmp_path / "bin"
    shim.mkdir()
    (shim / "sudo").write_text(SUDO)
    (shim / "sudo").chmod(0o755)
    # the host's own: this machine's base image (no registry), the production host's folders
    local = {
        "PATH": f"{shim}:{os.environ['PATH']}",
        "BASE_IMAGE": "bluegreen-base:bookworm",
        "HANDOFF_DIR": str(tmp_path / "handoff"),
        "BLUEGREEN_STATE_FILE": str(state / "state.json"),
        "BLUEGREEN_JOURNAL_FILE": str(state / "journal.json"),
        "BLUEGREEN_HAPROXY_STATE_FILE": str(state / "haproxy" / "server-state"),
        "BG_SERVER_STATE_FILE": str(state / "haproxy" / "server-state"),
        "BLUEGREEN_SECRETS_FILE": str(ROOT / "config" / "deploy" / "secrets.env"),
        "BLUEGREEN_METRICS_TEXTFILE": str(state / "metrics" / "bluegreen.prom"),
    }
    base = {k: v for k, v in os.environ.items() if not k.startswith(("BLUEGREEN_", "PYTEST"))}
    ran = []
    try:
        for step in shell_steps(known):
            env = {**base, **step.env, **{k: v for k, v in local.items() if k in step.env}}
            env |= {k: local[k] for k in ("PATH", "BG_SERVER_STATE_FILE")}
            env |= {k: v for k, v in local.items() if k.startswith("BLUEGREEN_")}
            done = subprocess.run(
                ["bash", "-eo", "pipefail", "-c", step.run],
                cwd=workspace, env=env, capture_output=True, text=True, timeout=900, check=False,
            )  # fmt: skip
            ran.append(f"{step.job}: {step.name}")
            assert done.returncode == 0, f"{step.job} / {step.name}:\n{done.stdout}\n{done.stderr}"
            if step.job == "build" and step.run.startswith("scripts/handoff-images save"):
                assert list((tmp_path / "handoff").glob("bluegreen_jarvis-v1.1.0.tar"))
        # production: set up, promote, keep the metrics
        assert [r.split(":")[0] for r in ran].count("production") == 3
        history = json.loads((state / "state.json").read_text())["history"]
        # the gate verified and recorded a pending promotion; production's approval promoted it
        assert [(e["to_color"], e["outcome"], e["tag"]) for e in history][-2:] == [
            ("green", "pending-promotion", "v1.1.0"),
            ("green", "switched", "v1.1.0"),
        ]
        assert history[-1]["reason"].startswith("promoted green v1.1.0: verified ")
        assert json.loads((workspace / "reports" / "verdict.json").read_text())["exit_code"] == 0
        # the gate's metrics, kept with each job: counters carried on from the gate to production
        after_gate = gate_runs(workspace / "reports" / "gate-metrics.prom")
        assert after_gate[("pending-promotion", "green")] == 1
        assert after_gate[("switched", "green")] == 0
        after_production = gate_runs(workspace / "reports" / "production-metrics.prom")
        assert after_production[("pending-promotion", "green")] == 1
        assert after_production[("switched", "green")] == 1  # bluegreen promote's switch
        assert not (tmp_path / "handoff").exists()  # the cleanup job removed it
    finally:
        subprocess.run(
            [str(ROOT / ".venv" / "bin" / "python"), "scripts/local_stack.py", "down"],
            cwd=workspace, capture_output=True, timeout=300, check=False,
        )  # fmt: skip
        compose().compose.down(volumes=True, remove_orphans=True, quiet=True)
