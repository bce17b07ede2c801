# The two commands of the README:
#   make demo   set up .venv if needed, generate the embedded data set, train
#               a GC Mask R-CNN on it (CPU), evaluate COCO mAP, draw predictions
#   make test   set up .venv if needed and run the whole test suite
PYTHON_VENV := .venv/bin/python
PYTEST_ARGS ?=

.PHONY: setup demo test test-fast lint format clean-data

setup:
	@bash tools/setup_env.sh

demo: setup
	$(PYTHON_VENV) tools/run_demo.py

test: setup
	$(PYTHON_VENV) -m pytest tests $(PYTEST_ARGS)

# The suite without the end-to-end trainings marked slow.
test-fast: setup
	$(PYTHON_VENV) -m pytest tests -m "not slow" $(PYTEST_ARGS)

# Lint as OpenMMLab projects do (settings in setup.cfg); CI runs `make lint`.
LINT_PATHS := mmgc tools tests configs setup.py

lint: setup
	$(PYTHON_VENV) -m flake8 $(LINT_PATHS)
	$(PYTHON_VENV) -m isort --check-only --diff $(LINT_PATHS)
	$(PYTHON_VENV) -m yapf --diff --recursive $(LINT_PATHS)

# Rewrite the code in place to the lint settings.
format: setup
	$(PYTHON_VENV) -m isort $(LINT_PATHS)
	$(PYTHON_VENV) -m yapf --in-place --recursive $(LINT_PATHS)

clean-data:
	rm -rf data/synthetic
