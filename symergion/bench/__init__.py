"""Benchmark harnesses, each run as ``python -m symergion.bench.<module>``: ``engine`` (the
llama.cpp engine against llama-cpp-python), ``batch`` (batched generation) and ``sync`` (the
whole workflow through the CLI). Figures and how to read them: docs/benchmarks.md."""
