"""`make bench`: throughput and latency figures, each next to the bare-pipeline baseline."""
