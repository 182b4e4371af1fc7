"""The CI gate workflow: valid against GitHub's schema, and clean in zizmor's offline audit."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

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
