"""Benchmarks (not tests): each prints ratios measured in one run against a
local limit. Run all with ``python -m bench`` (``make bench``)."""
