"""Test-data generators shared by the tests and the benchmarks (not part of the faceatlas package)."""
