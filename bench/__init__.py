"""The ParkWatch benchmark: throughput, alert latency, memory and recovery against real servers on loopback.

Run from the repository root: ``python -m bench.run [--quick] [--only NAME] [--runs N]``. See
bench/README.md for what each part measures and how.
"""
