"""Bounded robustness runs (crash, concurrency, hostile input, prompt injection, web load). Each module is a
script (`python -m stress.crash --kills 50`) that prints a table of figures and exits non-zero on any failure;
tests/test_robust_*.py run smaller versions of the same functions in the default test run."""
