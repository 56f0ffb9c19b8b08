"""sbx benchmarks (docs: /work/shared/docs/BENCHMARKS.md); run with `python -m bench`."""
