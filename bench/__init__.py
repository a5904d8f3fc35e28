"""Benchmark support for djllm: the fake upstream LLM server (`bench.fake_upstream`) and, later, `make bench`."""
