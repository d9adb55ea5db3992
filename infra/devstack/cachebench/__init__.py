"""`make bench-routing`: round-robin, weighted P2C and prefix affinity side by side over
three gpusim replicas with finite KV caches (docs/BENCHMARKS.md, "Routing by what the GPUs
hold"; docs/ROUTING.md)."""
