# Two entry points: `make demo` and `make test`. Both create .venv if it is missing.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
RUN ?= runs/demo
DEMO_MINUTES ?= 4

.PHONY: demo test test-fast venv bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	# The CPU build of torch first: an unpinned torch would pull a multi-GB CUDA build.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/diffbits train --data digits --out $(RUN) --minutes $(DEMO_MINUTES) --fresh
	$(BIN)/diffbits eval $(RUN) --samples 16
	@echo "sample grid: $(RUN)/samples.png"

test: $(STAMP)
	$(BIN)/python -m pytest tests

test-fast: $(STAMP)  # without the tests that start processes or train for long (marked slow)
	$(BIN)/python -m pytest tests -m "not slow"

bench: $(STAMP)
	$(BIN)/pip install -q -e '.[dev,bench]'
	# The peer, without its dependency list (accelerate, torchvision, ...): it needs only torch, einops, ema-pytorch.
	$(BIN)/pip install -q --no-deps denoising-diffusion-pytorch==2.3.4
	# Sampler peer k-diffusion, likewise without torchvision/clip/wandb: it needs torchsde, trampoline, torchdiffeq, scipy.
	$(BIN)/pip install -q --no-deps k-diffusion==0.1.1.post1 torchsde==0.2.6 trampoline==0.1.2
	$(BIN)/python benchmarks/likelihood.py --datasets digits --minutes 3.4
	$(BIN)/python benchmarks/likelihood.py --datasets mnist --minutes 5
	$(BIN)/python benchmarks/variance.py
	$(BIN)/python benchmarks/sampling.py
	$(BIN)/python benchmarks/compression.py --T 100
	# Throughput peer addtt's VDM port: imported from a checkout, never copied into diffbits.
	test -d benchmarks/.cache/addtt-vdm || git clone -q https://github.com/addtt/variational-diffusion-models benchmarks/.cache/addtt-vdm
	$(BIN)/python benchmarks/throughput.py
	$(BIN)/python benchmarks/conditional.py
	$(BIN)/python benchmarks/denoising.py
	$(BIN)/python benchmarks/ode.py
	$(BIN)/python benchmarks/audio.py

clean:
	rm -rf $(VENV) runs
