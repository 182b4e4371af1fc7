"""Model loading: Ollama lists the configured model and answers a generate call in time.

    pytest checks --env shared -k test_models

``ollama_url`` (unset: skipped), ``ollama_model`` (default ``tinyllama``, the seed's Rule 16)
and ``ollama_timeout`` (seconds a generate call may take) in the bluegreen settings.
"""

from __future__ import annotations

import time

import pytest
import requests

from pytest_bluegreen.contrib.services import ServiceSettings, not_configured
from pytest_bluegreen.testing import ColorSession

from .support import error_text, json_body


def same_model(wanted: str, listed: str) -> bool:
    """``tinyllama`` is ``tinyllama:latest``; a name with a tag must match exactly."""
    return listed == wanted or (":" not in wanted and listed == f"{wanted}:latest")


def the_model(services: ServiceSettings) -> str:
    """The model the settings name; skips when they name none."""
    if services.ollama_model is None:
        not_configured("the Ollama model", "ollama_model")
    assert services.ollama_model is not None
    return services.ollama_model


@pytest.mark.quick
@pytest.mark.shared
def test_model_is_listed(ollama_http: ColorSession, bluegreen_services: ServiceSettings) -> None:
    model = the_model(bluegreen_services)
    response = ollama_http.get("/api/tags")
    assert response.status_code == 200, f"ollama /api/tags: {error_text(response)}"
    names = [str(m.get("name")) for m in json_body(response).get("models", [])]
    assert any(same_model(model, name) for name in names), (
        f"ollama does not list {model}; it lists: {', '.join(names) or 'no models'}"
    )


@pytest.mark.shared
def test_model_generates(ollama_http: ColorSession, bluegreen_services: ServiceSettings) -> None:
    # not quick: a real model may take seconds to load and answer
    model, timeout = the_model(bluegreen_services), bluegreen_services.ollama_timeout
    started = time.monotonic()
    try:
        response = ollama_http.post(
            "/api/generate",
            json={
                "model": model,
                "prompt": "Answer with one word: ready?",
                "stream": False,
                "options": {"num_predict": 8},
            },
        )
    except (requests.ReadTimeout, requests.ConnectionError) as exc:
        # connected, but no answer in time: too slow is a wrong answer (asserted outside this
        # block, so the timeout is not taken for an outage). The session's retry adapter hands
        # a read timeout over as ConnectionError("... Read timed out"), hence the text test;
        # refused or unreachable escapes as it is: INFRA-ERROR.
        if "Read timed out" not in str(exc):
            raise
        response = None
    seconds = time.monotonic() - started
    assert response is not None, (
        f"ollama did not answer a generate call with {model} within {timeout:g}s"
    )
    assert response.status_code == 200, (
        f"ollama cannot generate with {model}: {error_text(response)}"
    )
    text = str(json_body(response).get("response", "")).strip()
    assert text, f"ollama's generate with {model} answered no text: {response.text[:200]!r}"
    assert seconds <= timeout, f"ollama took {seconds:.1f}s to generate (limit {timeout:g}s)"


@pytest.mark.quick
def test_color_answers_with_its_model(
    http: ColorSession, color: str, bluegreen_services: ServiceSettings
) -> None:
    """The color itself asks Ollama (POST /api/ask): the model it is built to use must be
    the one Ollama has, or the color answers 502."""
    model = the_model(bluegreen_services)
    response = http.post("/api/ask", json={"prompt": "Answer with one word: ready?"})
    assert response.status_code == 200, (
        f"{color} cannot get an answer from its model: POST /api/ask {error_text(response)}"
    )
    body = json_body(response)
    used = str(body.get("model"))
    assert same_model(model, used), f"{color} asks Ollama for {used}, not for {model}"
    assert str(body.get("answer", "")).strip(), f"{color} got no text: {response.text[:200]!r}"
