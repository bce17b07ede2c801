# The two commands of the README:
#   make demo   set up .venv if needed, generate the embedded data set, train
#               a GC Mask R-CNN on it (CPU), evaluate COCO mAP, draw predictions
#   make test   set up .venv if needed and run the whole test suite
PYTHON_VENV := .venv/bin/python
PYTEST_ARGS ?=

.PHONY: setup demo test test-fast clean-data

setup:
	@bash tools/setup_env.sh

demo: setup
	$(PYTHON_VENV) tools/run_demo.py

test: setup
	$(PYTHON_VENV) -m pytest tests $(PYTEST_ARGS)

# The suite without the end-to-end trainings marked slow.
test-fast: setup
	$(PYTHON_VENV) -m pytest tests -m "not slow" $(PYTEST_ARGS)

clean-data:
	rm -rf data/synthetic
