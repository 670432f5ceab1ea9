"""Benchmarks that print figures (not timed tests): `python -m benchmarks [--quick] [--only NAME]`.

throughput (against C / L and bare litellm), vs_distilabel, memory (peak RSS vs prompt count),
resume_cost (calls repeated after a SIGKILL), embedded (tokens/s through the factory vs llama.cpp).
Results: benchmarks/results/<name>.json and docs/benchmarks.md.
"""
