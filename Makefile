# Everything runs from a virtual environment this Makefile makes (.venv), so a fresh machine
# needs only python3 and make:  `make demo`  and  `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
FACES := tests/data/faces

.PHONY: install demo test bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

## demo: find the faces in a group photo and compare people, offline, on shipped photos
demo: $(STAMP)
	$(BIN)/faceid detect $(FACES)/two_people.jpg $(FACES)/kit_with_rose.jpg --save-crops demo-out/crops
	$(BIN)/faceid compare $(FACES)/obama.jpg $(FACES)/obama2.jpg
	$(BIN)/faceid compare $(FACES)/obama.jpg $(FACES)/biden.jpg
	@echo "aligned face crops are in demo-out/crops/"

## test: the whole suite (fast tests; real-weight tests are marked slow and skipped)
test: $(STAMP)
	$(BIN)/python -m pytest -q

## bench: start-up and large-photo detection, measured side by side
bench: $(STAMP)
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python benchmarks/startup.py
	$(BIN)/python benchmarks/detect_large_photo.py

clean:
	rm -rf $(VENV) demo-out .pytest_cache faceid.egg-info
