# Head-to-head benchmark (loadtest/bench). Include from the main Makefile:
#   include loadtest/bench/bench.mk
# `make bench` runs the full benchmark (3 runs, medians, ~20–30 min); `make bench-quick` one short
# run (~5 min). Extra arguments: make bench BENCH_ARGS="--targets pysio,sionode --scenarios s3"
BENCH_DIR := $(patsubst %/,%,$(dir $(lastword $(MAKEFILE_LIST))))
BENCH_ARGS ?=

.PHONY: bench bench-quick
bench:
	bash $(BENCH_DIR)/run.sh $(BENCH_ARGS)

bench-quick:
	bash $(BENCH_DIR)/run.sh --quick $(BENCH_ARGS)
