"""The benchmark harness behind ``sonoseg benchmark``, the grid study's speed columns and the scripts in
the checkout's ``bench/``: latency and throughput of backends on one machine, each row in a fresh process.
It stands above ``infer`` (it times the predictor) and below ``experiments``."""
