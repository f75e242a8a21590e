"""Parts of the worker-mode latency benchmark (``bench_worker_latency.py``).

An installed app of the benchmark's settings (it imports as ``worker_bench``,
with ``tests/benchmarks`` on the path): the flow the benchmark runs, the
bare consumer of the baseline, the ASGI module, and the two client processes
(``driver`` starts and signals flows; ``wsclient`` holds the WebSockets).
"""
