"""The project's tests (a package, so that benchmarks import its support modules from the repository root)."""
