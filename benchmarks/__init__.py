"""Benchmark harness: `python -m benchmarks.run --target T` checks a run against targets/T.toml budgets."""
