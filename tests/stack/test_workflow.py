"""The CI gate workflow: valid against GitHub's schema, clean in zizmor's offline audit, and its
jobs' shell steps, run in order on the local stack, hand the image and the state on."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from pytest_bluegreen.report.exposition import parse
from pytest_bluegreen.settings import SettingsError, resolve
from tests.support.demo import copy_checkout
from tests.support.docker_stack import ComposeProject
from tests.support.gate import outcomes, output, run_gate
from tests.support.infra import require_infra
from tests.support.stack import Stack, free_ports

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / ".github" / "workflows" / "deploy.yml"
PULL_REQUEST = ROOT / ".github" / "workflows" / "pull-request.yml"
NIGHTLY = ROOT / ".github" / "workflows" / "nightly.yml"
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))


def tool(config: pytest.Config, name: str) -> str:
    path = shutil.which(name) or str(Path(__file__).parents[2] / ".venv" / "bin" / name)
    require_infra(config, Path(path).exists(), f"{name} is not installed (pip install {name})")
    return path


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda path: path.name)
def test_workflow_matches_the_github_schema(pytestconfig: pytest.Config, workflow: Path) -> None:
    command = [
        tool(pytestconfig, "check-jsonschema"),
        "--builtin-schema",
        "vendor.github-workflows",
        str(workflow),
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda path: path.name)
def test_workflow_has_no_medium_or_high_zizmor_finding(
    pytestconfig: pytest.Config, workflow: Path
) -> None:
    command = [tool(pytestconfig, "zizmor"), "--offline", "--min-severity", "medium", str(workflow)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_pull_requests_run_the_fast_tier_apart_from_the_deploy() -> None:
    workflow = yaml.safe_load(PULL_REQUEST.read_text())
    assert set(workflow[True]) == {"pull_request", "push"}  # YAML 1.1 reads "on" as True
    [job] = workflow["jobs"].values()
    runs = [str(step.get("run", "")) for step in job["steps"]]
    assert any(run.endswith("bash scripts/test --fast") for run in runs), runs
    assert workflow["permissions"] == {"contents": "read"}
    assert "workflow_dispatch" not in workflow[True]  # deploying stays deploy.yml's


def test_a_nightly_run_takes_the_whole_suite_in_a_random_order() -> None:
    workflow = yaml.safe_load(NIGHTLY.read_text())
    assert set(workflow[True]) == {"schedule"}  # YAML 1.1 reads "on" as True
    [job] = workflow["jobs"].values()
    runs = [str(step.get("run", "")) for step in job["steps"]]
    assert any(run.endswith("bash scripts/test --random") for run in runs), runs
    assert job["timeout-minutes"] <= 90  # CI's own limit
    assert workflow["permissions"] == {"contents": "read"}


def test_pre_commit_runs_the_suites_own_lint_and_type_check() -> None:
    config = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text())
    hooks = {h["id"]: h["entry"].split() for repo in config["repos"] for h in repo["hooks"]}
    assert set(hooks) == {"ruff", "ruff-format", "mypy"}
    for entry in hooks.values():
        assert (ROOT / entry[0]).is_file(), f"{entry[0]} (scripts/setup makes .venv)"
    assert hooks["ruff"][1:3] == ["check", "--force-exclude"]
    assert "--check" in hooks["ruff-format"]


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


def test_no_step_removes_what_the_project_did_not_build() -> None:
    # a runner has other images (and containers, volumes): a prune in any step takes only the
    # dangling images scripts/build-images labelled, as build-images' own prune does
    workflow = yaml.safe_load(WORKFLOW.read_text())
    lines = [
        line.strip()
        for job in workflow["jobs"].values()
        for step in job["steps"]
        for line in str(step.get("run", "")).splitlines()
    ]
    removing = [line for line in lines if re.search(r"\bdocker\s+(\w+\s+)?(prune|rmi?)\b", line)]
    assert removing, "the cleanup job removes our dangling images"
    for line in removing:
        assert re.fullmatch(
            r'docker image prune --force --filter "label=org\.bluegreen\.source-hash"', line
        ), line


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
    run: str  # empty for an action
    env: dict[str, str]
    uses: str = ""  # the action, without its version
    inputs: dict[str, str] = field(default_factory=dict)  # its with:, expanded


def shell_steps(known: dict[str, str]) -> list[Step]:
    """Every job's shell steps, and the actions that move files: checkout (it cleans the
    workspace) and upload-artifact (what outlives the job)."""
    workflow = yaml.safe_load(WORKFLOW.read_text())
    top = {k: expand(str(v), known) for k, v in workflow["env"].items()}
    steps = []
    for job_name in JOBS:
        job = workflow["jobs"][job_name]
        job_env = {**top, **{k: expand(str(v), known) for k, v in job.get("env", {}).items()}}
        for step in job["steps"]:
            env = {**job_env, **{k: expand(str(v), known) for k, v in step.get("env", {}).items()}}
            if not condition(step.get("if"), env):
                continue
            if "run" in step:
                steps.append(Step(job_name, step.get("name", step["run"][:40]), step["run"], env))
                continue
            uses = str(step["uses"]).partition("@")[0]
            if uses in ("actions/checkout", "actions/upload-artifact"):
                inputs = {k: expand(str(v), known) for k, v in step.get("with", {}).items()}
                steps.append(Step(job_name, step.get("name", uses), "", env, uses, inputs))
            # the rest (download-artifact, the cache): the handoff and the history live
            # outside the workspace here
    return steps


# what actions/checkout's clean (git clean -ffdx) removes here: what the jobs write in the
# workspace (reports/: the verdict, JUnit, the metrics kept, backup_dir's default). Kept, though
# a real clean removes them too: .venv (scripts/setup rebuilds it in each job: minutes), and
# what stands for the production host's own files here, where staging runs on the same host:
# the certificate, secrets.env, .bluegreen/local (the running stack's pid files).
CLEANED = ("reports",)


def checkout(workspace: Path, tracked: set[str]) -> None:
    for top in CLEANED:
        for path in sorted((workspace / top).rglob("*"), reverse=True):
            name = str(path.relative_to(workspace))
            if name in tracked:
                continue
            if path.is_dir() and not path.is_symlink():
                if not any(path.iterdir()):
                    path.rmdir()
            else:
                path.unlink()


def upload(step: Step, workspace: Path, artifacts: Path) -> None:
    """What actions/upload-artifact keeps: each path (relative to the workspace; a glob)
    copied."""
    target = artifacts / step.inputs["name"]
    sources = [
        source
        for line in step.inputs["path"].splitlines()
        if line.strip()
        for source in workspace.glob(line.strip().rstrip("/"))
    ]
    for source in sources:
        copy = target / source.relative_to(workspace)
        if source.is_dir():
            shutil.copytree(source, copy, dirs_exist_ok=True)
        else:
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, copy)
    if not sources:
        assert step.inputs.get("if-no-files-found") in ("warn", "ignore"), step.name


def gate_runs(path: Path) -> dict[tuple[str | None, str | None], float]:
    """``bluegreen_gate_runs_total`` in a metrics textfile: (outcome, target) -> count."""
    samples = parse(path.read_text(), ["bluegreen_gate_runs_total"])
    return {(s.label("outcome"), s.label("target")): s.value for s in samples}


SUDO = (  # as root here: sudo only drops its options
    '#!/bin/sh\nwhile [ "${1#-}" != "$1" ]; do shift; done\nexec "$@"\n'
)


# The local stack's addresses in the workspace's own files (bluegreen.toml, the Prometheus
# configuration): the seed's, as a production host has them, moved to the test's own, as the
# variables move scripts/local_stack.py (haproxy/haproxy.cfg's BG_*, the compose file's ports).
# A default not found is a failure: this test would otherwise run on the seed's addresses, where
# the machine's own stack (scripts/demo's) may serve.
HAPROXY_BINDS = {  # haproxy.cfg's variable -> the seed's address
    "BG_API_BIND": "127.0.0.1:20010",
    "BG_FRONTEND_BIND": "127.0.0.1:20011",
    "BG_BLUE_DIRECT_BIND": "127.0.0.1:21010",
    "BG_GREEN_DIRECT_BIND": "127.0.0.1:21011",
    "BG_STATS_BIND": "127.0.0.1:8404",
    "BG_HTTP_BIND": "127.0.0.1:80",
    "BG_HTTPS_BIND": "127.0.0.1:443",
    "BG_PROMETHEUS_LISTEN": "127.0.0.1:10200",
    "BG_PUSHGATEWAY_LISTEN": "127.0.0.1:9091",
    "BG_DASHBOARD_LISTEN": "127.0.0.1:10201",  # local_stack.py's bluegreen dashboard
}
SEED_SOCKET = "/var/run/haproxy/admin.sock"


@dataclass(frozen=True)
class OwnStack:
    """The local stack of this test: its own Compose project, host ports and admin socket."""

    project: ComposeProject
    binds: dict[str, str]
    socket: Path

    @classmethod
    def new(cls, run: Path) -> OwnStack:
        ports = free_ports(len(HAPROXY_BINDS))
        binds = {k: f"127.0.0.1:{p}" for k, p in zip(HAPROXY_BINDS, ports, strict=True)}
        return cls(ComposeProject.new("bgwf"), binds, run / "admin.sock")

    @property
    def env(self) -> dict[str, str]:
        """For every step: scripts/local_stack.py, Compose and the gate find this stack."""
        return {
            **self.project.variables,
            **self.project.haproxy_addresses,
            **self.binds,
            "BG_RUNTIME_SOCKET": str(self.socket),
            "BLUEGREEN_COMPOSE_PROJECT": self.project.name,
        }

    def moved(self) -> dict[str, str]:
        """The seed's address -> this stack's, as the workspace's files write them."""
        seed = {f'"{a}"': f'"{self.binds[k]}"' for k, a in HAPROXY_BINDS.items()}
        seed |= {f'"http://{a}"': f'"http://{self.binds[k]}"' for k, a in HAPROXY_BINDS.items()}
        seed |= {f'"https://{a}"': f'"https://{self.binds[k]}"' for k, a in HAPROXY_BINDS.items()}
        colors = {"blue": ("8010", "3010"), "green": ("8011", "3011")}
        for color, (api, frontend) in colors.items():
            seed[f'"127.0.0.1:{api}"'] = f'"{self.project.api_address(color)}"'
            seed[f'"http://127.0.0.1:{frontend}"'] = f'"{self.project.frontend_url(color)}"'
        services = self.project.service_settings
        seed |= {
            '"postgresql://sutazai@127.0.0.1:10000/sutazai"': f'"{services["postgres_url"]}"',
            '"redis://127.0.0.1:10001/0"': f'"{services["redis_url"]}"',
            '"http://127.0.0.1:10002"': f'"{services["neo4j_url"]}"',
            '"http://127.0.0.1:10104"': f'"{services["ollama_url"]}"',
            f'"{SEED_SOCKET}"': f'"{self.socket}"',
            'compose_project = "sutazai"': f'compose_project = "{self.project.name}"',
        }
        return seed

    def move(self, path: Path, *expected: str) -> None:
        """Rewrite the seed's addresses in ``path``; each of ``expected`` must have been there."""
        text = path.read_text()
        for seed, own in self.moved().items():
            if seed in expected:
                assert seed in text, f"{path.name} no longer has {seed}: teach this test"
            text = text.replace(seed, own)
        path.write_text(text)


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """The working tree as it is (tracked and new files), with this checkout's .venv."""
    return copy_checkout(tmp_path / "workspace")


def test_the_jobs_run_in_order_on_the_local_stack(
    docker_engine: None, tmp_path: Path, workspace: Path
) -> None:
    (tmp_path / "run").mkdir()
    ours = OwnStack.new(tmp_path / "run")
    # the host's settings and Prometheus, on this stack's addresses
    ours.move(
        workspace / "bluegreen.toml",
        f'"{SEED_SOCKET}"', '"http://127.0.0.1:20010"', '"http://127.0.0.1:21011"',
        '"http://127.0.0.1:3011"', '"https://127.0.0.1:443"', '"http://127.0.0.1:10200"',
        '"postgresql://sutazai@127.0.0.1:10000/sutazai"', 'compose_project = "sutazai"',
    )  # fmt: skip
    ours.move(
        workspace / "monitoring" / "prometheus.yml",
        '"127.0.0.1:8404"', '"127.0.0.1:8010"', '"127.0.0.1:9091"',
    )  # fmt: skip
    state = tmp_path / "production-state"
    artifacts = tmp_path / "artifacts"
    known = {f"inputs.{k}": v for k, v in INPUTS.items()} | {
        "vars.IMAGE_REGISTRY": "",
        "secrets.BLUEGREEN_METRICS_PUSH_URL": "",  # no Pushgateway: the textfile alone
        "github.run_id": "4242",
        "github.run_attempt": "1",
    }
    tracked = set(
        subprocess.run(
            ["git", "ls-files", "-co", "--exclude-standard"],
            cwd=ROOT, capture_output=True, text=True, check=True,
        ).stdout.split()
    )  # fmt: skip
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
        "BLUEGREEN_BACKUP_DIR": str(state / "backups"),
        **ours.env,
    }
    # staging shares this host's state; the backups go where the workflow itself says
    own = {"BLUEGREEN_BACKUP_DIR"}
    base = {k: v for k, v in os.environ.items() if not k.startswith(("BLUEGREEN_", "PYTEST"))}
    ran = []
    try:
        for step in shell_steps(known):
            if step.uses == "actions/checkout":
                checkout(workspace, tracked)
                continue
            if step.uses == "actions/upload-artifact":
                if step.inputs["path"].rstrip("/") != step.env["HANDOFF_DIR"]:
                    upload(step, workspace, artifacts)  # the image: HANDOFF_DIR is elsewhere
                continue
            env = {**base, **step.env, **{k: v for k, v in local.items() if k in step.env}}
            env |= {k: local[k] for k in ("PATH", "BG_SERVER_STATE_FILE", *ours.env)}
            env |= {
                k: v
                for k, v in local.items()
                if k.startswith("BLUEGREEN_") and (k not in own or k in step.env)
            }
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
        report = artifacts / "gate-report-green-4242" / "reports"
        assert json.loads((report / "verdict.json").read_text())["exit_code"] == 0
        # the backup the gate's deploy took first outlives the workspace: on the host, beside
        # the state, and uploaded with the run
        [backup] = (state / "backups").glob("*-green-v1.1.0.backup")
        assert backup.stat().st_mode & 0o077 == 0
        assert "CREATE TABLE" in backup.read_text()  # a pg_dump, not an empty file
        uploaded = artifacts / "backup-green-4242" / "reports" / "backups" / backup.name
        assert uploaded.read_bytes() == backup.read_bytes()
        assert not (workspace / "reports" / "backups").exists()  # production's checkout
        # the gate's metrics, kept with each job: counters carried on from the gate to production
        after_gate = gate_runs(
            artifacts / "gate-metrics-green-4242" / "reports" / "gate-metrics.prom"
        )
        assert after_gate[("pending-promotion", "green")] == 1
        assert after_gate[("switched", "green")] == 0
        production = artifacts / "production-metrics-green-4242" / "reports"
        after_production = gate_runs(production / "production-metrics.prom")
        assert after_production[("pending-promotion", "green")] == 1
        assert after_production[("switched", "green")] == 1  # bluegreen promote's switch
        assert not (tmp_path / "handoff").exists()  # the cleanup job removed it
    finally:
        subprocess.run(  # this workspace's HAProxy, Prometheus, Pushgateway and project
            [str(ROOT / ".venv" / "bin" / "python"), "scripts/local_stack.py", "down"],
            cwd=workspace, env={**os.environ, **ours.env}, capture_output=True, timeout=300,
            check=False,
        )  # fmt: skip
        ours.project.down()


# --- auto_switch with bake_seconds = 0: a switch without a bake ----------------------------------


def gate_arguments(tmp_path: Path, auto_switch: str, bake_seconds: str) -> list[str]:
    """The pytest arguments the gate job's step gives for these inputs (run with a stub)."""
    inputs = INPUTS | {"auto_switch": auto_switch, "bake_seconds": bake_seconds}
    known = {f"inputs.{k}": v for k, v in inputs.items()} | {
        "vars.IMAGE_REGISTRY": "",
        "secrets.BLUEGREEN_METRICS_PUSH_URL": "",
        "github.run_id": "4242",
        "github.run_attempt": "1",
    }
    [step] = [s for s in shell_steps(known) if s.job == "gate" and "--deploy" in s.run]
    stub = tmp_path / ".venv" / "bin" / "pytest"
    stub.parent.mkdir(parents=True)
    stub.write_text('#!/bin/sh\nprintf "%s\\n" "$@"\n')
    stub.chmod(0o755)
    done = subprocess.run(
        ["bash", "-eo", "pipefail", "-c", step.run],
        cwd=tmp_path, env={"PATH": os.environ["PATH"], **step.env},
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    return done.stdout.splitlines()


def test_the_gate_step_passes_the_bake_it_was_given(tmp_path: Path) -> None:
    no_bake = gate_arguments(tmp_path / "a", "true", "0")
    assert no_bake[no_bake.index("--switch") + 1 : no_bake.index("--switch") + 3] == [
        "--bake",
        "0",
    ]
    assert "--switch=manual" in gate_arguments(tmp_path / "b", "false", "0")


@pytest.mark.parametrize(
    ("given", "seconds"),
    [("0", None), ("0.0", None), ("300", 300.0), ("1.5", 1.5)],
)
def test_bake_zero_means_no_bake(tmp_path: Path, given: str, seconds: float | None) -> None:
    for settings in (
        resolve({"bake_seconds": given, "switch": True, "env": "green"}, {}, {}, tmp_path),
        resolve({"switch": True, "env": "green"}, {"BLUEGREEN_BAKE_SECONDS": given}, {}, tmp_path),
    ):
        assert settings.bake.bake_seconds == seconds
        assert settings.bake.enabled is (seconds is not None)


@pytest.mark.parametrize("given", ["-1", "abc", "86401"])
def test_a_bad_bake_is_still_refused(tmp_path: Path, given: str) -> None:
    with pytest.raises(SettingsError, match=r"^bluegreen: bake_seconds .*\(from cli --bake\)$"):
        resolve({"bake_seconds": given, "switch": True, "env": "green"}, {}, {}, tmp_path)


def test_auto_switch_with_bake_zero_switches_without_a_bake(
    pytester: pytest.Pytester, stack: Stack, tmp_path: Path
) -> None:
    """What the gate job runs for auto_switch=true, bake_seconds=0, on a real HAProxy."""
    arguments = gate_arguments(tmp_path, "true", "0")
    switch = arguments[arguments.index("--switch") : arguments.index("--switch") + 3]
    result = run_gate(pytester, stack, "--env", "green", "-m", "quick", *switch)
    assert result.ret == 0, output(result)
    assert stack.served_color() == "green"
    assert outcomes(stack) == ["switched"]
    assert "bluegreen: bake" not in output(result)
