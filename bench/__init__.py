"""pydsconv's Python benchmarks, a package so that the scripts run as
``python -m bench.<script>`` from the repository root and share ``bench.lib``
without path tricks.  Benchmarks, never tests (see bench/README.md)."""
