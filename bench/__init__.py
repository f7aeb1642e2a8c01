"""The benchmark scripts, run as modules from the checkout (python -m bench.suite) or by `minihpc bench`."""
