# Forewarn: the two commands a newcomer needs are `make demo` and `make test`.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint venv clean bench prometheus kafka-tools mutation

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/forewarn demo --out out/demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

# The observability tests run a real Prometheus and promtool (Debian's package; its
# systemd service is not used). Installed when missing and we are root; else those tests
# fail and say how to install them.
prometheus:
	@if command -v prometheus >/dev/null && command -v promtool >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y prometheus; \
	else echo "prometheus/promtool missing (apt-get install prometheus as root):" \
	  "the observability tests will fail"; fi

# The Kafka tests assemble Apache Kafka from Maven Central (connectors/broker.py): they need
# Java 17+ and Maven. Installed when missing and we are root; else those tests fail and say
# how to install them.
kafka-tools:
	@if { [ -n "$$JAVA_HOME" ] || command -v java >/dev/null; } && command -v mvn >/dev/null; \
	then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y \
	    openjdk-17-jre-headless maven; \
	else echo "java/mvn missing (apt-get install openjdk-17-jre-headless maven as root):" \
	  "the Kafka tests will fail"; fi

test: $(STAMP) prometheus kafka-tools
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -q

# Mutation testing (mutmut) of the pure stages: dataflows/, rules/, forewarn/codec.py,
# against the fast behavioural tests ([tool.mutmut] in pyproject.toml). Slow (hours for
# all ~7,600 mutants on 2 cores), so not in CI. Narrow it with MUTANTS, e.g.
# make mutation MUTANTS='forewarn.dataflows.site*'. Results: docs/testing.md.
MUTANTS ?=
mutation: $(STAMP)
	rm -rf mutants
	$(BIN)/mutmut run --max-children $${MUTATION_JOBS:-1} $(foreach m,$(MUTANTS),'$(m)')
	$(BIN)/mutmut results

bench: $(STAMP)
	$(BIN)/python -m bench.flow_throughput

clean:
	rm -rf $(VENV) out build *.egg-info mutants
