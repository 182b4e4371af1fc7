"""Ollama stand-in: Ollama's HTTP API on port 11434, with no model behind it.

NOT OLLAMA (see the package docstring): neither the real server nor model weights can be had on
this machine. The paths and response shapes follow Ollama's API (docs/api.md upstream):

    GET  /                 "Ollama is running"
    GET  /api/version      {"version": ...}
    GET  /api/tags         {"models": [{"name": "tinyllama:latest", "model": ..., "size": ...,
                                        "digest": ..., "details": {...}}]}
    GET  /api/ps           {"models": []}
    POST /api/show         {"model": "tinyllama"} -> details, modelfile
    POST /api/generate     {"model", "prompt", "stream"?: bool, "options"?: {"num_predict"}}
    POST /api/chat         {"model", "messages": [{"role", "content"}], "stream"?: bool}
    POST /api/pull         succeeds for models this stand-in lists, fails for others

generate/chat stream NDJSON (application/x-ndjson, one JSON object per line, the last with
"done": true and the timing fields) unless "stream": false, which gives one JSON object. The
answer is a short deterministic text built from the prompt. An unknown model answers 404
{"error": "model 'x' not found"}.

Environment: OLLAMA_MODELS (comma-separated names, default "tinyllama"; real Ollama uses this
variable for its models directory), OLLAMA_DELAY_MS (delay before each generation, default 0),
PORT (default 11434).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import time
from datetime import UTC, datetime
from typing import Any

from standins.common import Handler, env_int, serve

VERSION = "0.5.7"
KNOWN = {  # what the real registry says about these, so /api/tags looks right
    "tinyllama:latest": {
        "size": 637700138,
        "digest": "2644915ede352ea7bdfaff0bfac0be74c719d5d5202acb63a6fb095b52f394a4",
        "parameter_size": "1B",
        "quantization_level": "Q4_0",
    },
}
MODIFIED_AT = "2024-01-01T00:00:00Z"


def full_name(name: str) -> str:
    name = name.strip()
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


def configured_models() -> list[str]:
    names = [
        full_name(n) for n in os.environ.get("OLLAMA_MODELS", "tinyllama").split(",") if n.strip()
    ]
    return list(dict.fromkeys(names))


def model_entry(name: str) -> dict[str, Any]:
    known = KNOWN.get(name, {})
    digest = known.get("digest") or hashlib.sha256(name.encode()).hexdigest()
    return {
        "name": name,
        "model": name,
        "modified_at": MODIFIED_AT,
        "size": known.get("size", 1_000_000_000),
        "digest": digest,
        "details": {
            "parent_model": "",
            "format": "gguf",
            "family": "llama",
            "families": ["llama"],
            "parameter_size": known.get("parameter_size", "1B"),
            "quantization_level": known.get("quantization_level", "Q4_0"),
        },
    }


def now_rfc3339() -> str:
    ns = time.time_ns()
    base = datetime.fromtimestamp(ns // 1_000_000_000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{ns % 1_000_000_000:09d}Z"


def answer_for(prompt: str) -> str:
    """The deterministic answer: same prompt, same text."""
    words = prompt.split()
    if not words:
        return ""
    gist = " ".join(words[:8]) + (" ..." if len(words) > 8 else "")
    return (
        f'Hello! This is the TinyLlama stand-in. You said: "{gist}". No model ran to answer this.'
    )


def tokens_of(text: str) -> list[str]:
    return re.findall(r"\s*\S+", text)


class OllamaHandler(Handler):
    server_version = "ollama-standin"
    delay_s = 0.0

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/":
            self.send_body(200, b"Ollama is running", "text/plain; charset=utf-8")
        elif path == "/api/version":
            self.send_json(200, {"version": VERSION})
        elif path == "/api/tags":
            self.send_json(200, {"models": [model_entry(n) for n in configured_models()]})
        elif path == "/api/ps":
            self.send_json(200, {"models": []})
        else:
            self.send_body(404, b"404 page not found", "text/plain")

    def do_POST(self) -> None:
        path = self.path.split("?", 1)[0]
        raw = self.read_body()
        routes = {
            "/api/generate": self.generate,
            "/api/chat": self.chat,
            "/api/show": self.show,
            "/api/pull": self.pull,
        }
        if path not in routes:
            self.send_body(404, b"404 page not found", "text/plain")
            return
        try:
            req = json.loads(raw or b"{}")
            if not isinstance(req, dict):
                raise ValueError("request body must be a JSON object")
        except ValueError as exc:
            self.send_json(400, {"error": f"invalid request: {exc}"})
            return
        routes[path](req)

    # -- helpers -----------------------------------------------------------------------------
    def resolve_model(self, req: dict[str, Any]) -> str | None:
        """The requested model name as given, or None after answering the error."""
        name = req.get("model") or req.get("name")
        if not isinstance(name, str) or not name.strip():
            self.send_json(400, {"error": "model is required"})
            return None
        if full_name(name) not in configured_models():
            self.send_json(404, {"error": f"model '{name}' not found"})
            return None
        return name

    def stats(self, started: float, prompt: str, n_tokens: int) -> dict[str, Any]:
        """Ollama's timing fields: nominal per-token durations plus the real time spent here."""
        prompt_count = max(1, len(tokens_of(prompt)))
        parts = {
            "load_duration": 1_000_000,
            "prompt_eval_count": prompt_count,
            "prompt_eval_duration": prompt_count * 1_000_000,
            "eval_count": n_tokens,
            "eval_duration": n_tokens * 5_000_000,
        }
        nominal = parts["load_duration"] + parts["prompt_eval_duration"] + parts["eval_duration"]
        return {"total_duration": nominal + int((time.monotonic() - started) * 1e9), **parts}

    def respond(self, req: dict[str, Any], model: str, prompt: str, chat: bool) -> None:
        started = time.monotonic()
        if self.delay_s:
            time.sleep(self.delay_s)
        tokens = tokens_of(answer_for(prompt))
        limit = (req.get("options") or {}).get("num_predict")
        done_reason = "stop"
        if isinstance(limit, int) and 0 <= limit < len(tokens):
            tokens, done_reason = tokens[:limit], "length"
        if not prompt.strip():
            done_reason = "load"

        def piece(text: str) -> dict[str, Any]:
            if chat:
                return {"message": {"role": "assistant", "content": text}}
            return {"response": text}

        def final(text: str) -> dict[str, Any]:
            out: dict[str, Any] = {"model": model, "created_at": now_rfc3339(), **piece(text)}
            out.update(done=True, done_reason=done_reason)
            if not chat and done_reason != "load":
                seed = prompt + "".join(tokens)
                out["context"] = [b % 32000 for b in hashlib.sha256(seed.encode()).digest()[:16]]
            if done_reason != "load":
                out.update(self.stats(started, prompt, len(tokens)))
            return out

        if req.get("stream", True) is False:
            self.send_json(200, final("".join(tokens)))
            return
        self.start_chunked(200, "application/x-ndjson")
        for tok in tokens:
            line = {"model": model, "created_at": now_rfc3339(), **piece(tok), "done": False}
            self.write_chunk(json.dumps(line, separators=(",", ":")).encode() + b"\n")
        self.write_chunk(json.dumps(final(""), separators=(",", ":")).encode() + b"\n")
        self.end_chunked()

    # -- endpoints ---------------------------------------------------------------------------
    def generate(self, req: dict[str, Any]) -> None:
        model = self.resolve_model(req)
        if model is not None:
            prompt = req.get("prompt") or ""
            self.respond(req, model, str(prompt), chat=False)

    def chat(self, req: dict[str, Any]) -> None:
        model = self.resolve_model(req)
        if model is None:
            return
        messages = req.get("messages") or []
        users = [
            m.get("content", "")
            for m in messages
            if isinstance(m, dict) and m.get("role") == "user"
        ]
        self.respond(req, model, str(users[-1] if users else ""), chat=True)

    def show(self, req: dict[str, Any]) -> None:
        model = self.resolve_model(req)
        if model is None:
            return
        entry = model_entry(full_name(model))
        self.send_json(
            200,
            {
                "modelfile": f"# stand-in: no Modelfile\nFROM {entry['name']}\n",
                "parameters": "",
                "template": "{{ .Prompt }}",
                "details": entry["details"],
                "model_info": {"general.architecture": "llama", "general.basename": "standin"},
                "modified_at": MODIFIED_AT,
            },
        )

    def pull(self, req: dict[str, Any]) -> None:
        name = req.get("model") or req.get("name") or ""
        if full_name(str(name)) not in configured_models():
            self.send_json(
                500,
                {"error": f"stand-in cannot pull '{name}': no registry (list it in OLLAMA_MODELS)"},
            )
        elif req.get("stream", True) is False:
            self.send_json(200, {"status": "success"})
        else:
            self.start_chunked(200, "application/x-ndjson")
            for status in ("pulling manifest", "verifying sha256 digest", "success"):
                self.write_chunk(
                    json.dumps({"status": status}, separators=(",", ":")).encode() + b"\n"
                )
            self.end_chunked()


def main() -> int:
    OllamaHandler.delay_s = max(0, env_int("OLLAMA_DELAY_MS", 0)) / 1000
    return serve(OllamaHandler, env_int("PORT", 11434), "ollama-standin")


if __name__ == "__main__":
    sys.exit(main())
