"""Targets: where artifacts run (profiles, runtimes, memory, latency, validation)."""
