# Everything runs from a virtual environment this Makefile makes (.venv), so a fresh machine
# needs only python3 and make:  `make demo`  and  `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
FACES := tests/data/faces
TORCH_VERSION ?= 2.13.0

.PHONY: install demo test smoke bench world completions clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first, pinned: 2.13.0 is a CPU build on these machines; a bare "torch" pulls CUDA (GBs)
	$(BIN)/python -m pip install --quiet torch==$(TORCH_VERSION)
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

## demo: faces found and compared in real photos, then the main job in the miniature world
demo: $(STAMP)
	$(BIN)/faceid detect $(FACES)/two_people.jpg --save-crops demo-out/crops
	$(BIN)/faceid compare $(FACES)/obama.jpg $(FACES)/obama2.jpg
	$(BIN)/faceid world demo -o demo-out/world
	@echo "the contact sheet to look at: demo-out/world/world-demo.png (aligned crops: demo-out/crops/)"

## test: the whole suite (fast tests; real-weight tests are marked slow and skipped)
test: $(STAMP)
	$(BIN)/python -m pytest -q

## smoke: every command once on the tiny model, offline, in about a minute (for other projects' CI)
smoke: $(STAMP)
	bash scripts/smoke.sh $(BIN)/faceid

## world: re-train the miniature world's models from seeds into faceid_cli/world/weights (~90 min)
world: $(STAMP)
	$(BIN)/faceid world build

## completions: regenerate completions/ (a test fails when they are out of date)
completions: $(STAMP)
	$(BIN)/faceid completion bash > completions/faceid.bash
	$(BIN)/faceid completion zsh > completions/_faceid
	$(BIN)/faceid completion fish > completions/faceid.fish

## bench: start-up and large-photo detection, measured side by side
bench: $(STAMP)
	$(BIN)/python benchmarks/startup.py
	$(BIN)/python benchmarks/detect_large_photo.py
	$(BIN)/python benchmarks/encode_latency.py
	$(BIN)/python benchmarks/conditioning_overhead.py
	$(BIN)/python benchmarks/peak_memory.py
	$(BIN)/python benchmarks/batch_vs_separate.py
	$(BIN)/python benchmarks/world_quality.py

clean:
	rm -rf $(VENV) demo-out smoke-out .pytest_cache faceid.egg-info
