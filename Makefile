# The benchmark suite (docs/performance.md). `make bench` runs all of it,
# `make bench-<name>` one benchmark. dev.py creates .venv when it is missing and
# installs the `bench` extra (Libcloud, pyinstrument, every cloud SDK, moto) first.

BENCHMARKS := import aws kubernetes gcp azure fleet

.PHONY: bench $(addprefix bench-,$(BENCHMARKS))

bench:
	python3 dev.py bench

$(addprefix bench-,$(BENCHMARKS)): bench-%:
	python3 dev.py bench $*
