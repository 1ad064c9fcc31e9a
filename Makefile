# Forewarn: the two commands a newcomer needs are `make demo` and `make test`.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint venv clean bench prometheus

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

# The observability tests run a real Prometheus and promtool (Debian's package; its
# systemd service is not used). Installed when missing and we are root; else they skip.
prometheus:
	@if command -v prometheus >/dev/null && command -v promtool >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y prometheus; \
	else echo "prometheus/promtool missing (apt-get install prometheus as root):" \
	  "observability tests will skip"; fi

test: $(STAMP) prometheus
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python -m bench.flow_throughput

clean:
	rm -rf $(VENV) out build *.egg-info
