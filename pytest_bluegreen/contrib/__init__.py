"""Optional plugins beside the generic core, each activated explicitly
(``-p pytest_bluegreen.contrib.services`` or ``pytest_plugins`` in a root conftest).

- :mod:`.services`: settings and fixtures for the shared services of the guide's stack
  (PostgreSQL, Redis, Neo4j, Ollama, HAProxy's public side) and the colors' containers
  (docker SDK, testinfra). Needs the ``checks`` extra.
"""
