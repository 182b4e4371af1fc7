"""Stand-ins for the blue/green stack's Ollama and Neo4j services.

THESE ARE NOT OLLAMA OR NEO4J. The real servers cannot be had on this machine: no container
registry is reachable (so neither ``ollama/ollama`` nor ``neo4j:5`` can be pulled), and there are
no model weights (TinyLlama's GGUF file is not on any reachable index). What the stack and its
checks need from the two services is their HTTP API, so these small stdlib-only Python servers
speak enough of it, with the real response shapes:

- ``standins.ollama`` (port 11434): ``GET /`` "Ollama is running", ``GET /api/version``,
  ``GET /api/tags``, ``POST /api/generate`` and ``POST /api/chat`` (streaming NDJSON by default,
  one JSON object with ``"stream": false``), ``POST /api/show``, ``GET /api/ps``. The answer is a
  short deterministic text derived from the prompt; no model runs. Models come from
  ``OLLAMA_MODELS`` (comma-separated, default ``tinyllama``; note that real Ollama uses
  that variable for its models *directory*). ``OLLAMA_DELAY_MS`` delays every generation.
- ``standins.neo4j`` (port 7474): ``GET /`` discovery document like Neo4j 5, and
  ``POST /db/neo4j/tx/commit`` that evaluates ``RETURN``-of-literals/parameters statements
  (``RETURN 1``, ``RETURN 'x' AS s, $p AS p``). There is no graph and no Bolt listener:
  anything else (MATCH, CREATE, ...) answers a Neo4j-style error.

A user with a registry replaces these two services with the real images in the compose file;
the ports and paths stay the same.
"""
