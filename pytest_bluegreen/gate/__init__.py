"""The gate: the pure decision, the outcomes per color, which build answered, one gate run
(lock, deploy, decide, switch or not, record), and what outlives it."""
