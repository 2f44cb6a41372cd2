# Parley's two commands: `make run` and `make test`. Everything else is a step of those.
#
# uv installs the locked dependencies into .venv; when uv itself is missing it is installed
# (pinned) into .tools/ with the machine's own Python, which needs neither root nor network
# access beyond the package index.

UV_VERSION := 0.13.9
UV := $(shell command -v uv 2>/dev/null)
ifeq ($(UV),)
UV := .tools/bin/uv
endif
RUN := $(UV) run --frozen
PYTEST_ARGS ?=

.PHONY: run test install lint typecheck pytest node-deps clean

run: install
	$(RUN) parley dev

test: install lint typecheck pytest

install: $(UV)
	$(UV) sync --frozen

.tools/bin/uv:
	python3 -m venv .tools
	.tools/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

lint:
	$(RUN) ruff check .
	$(RUN) ruff format --check .

typecheck:
	$(RUN) mypy

pytest: node-deps
	$(RUN) pytest $(PYTEST_ARGS)

# node-oidc-provider, the independent OpenID Provider the tests sign in against, pinned by its
# package-lock.json; reinstalled whenever the lockfile is newer than the last install.
NODE_PROVIDER := tests/support/node_provider
node-deps: $(NODE_PROVIDER)/node_modules/.installed

$(NODE_PROVIDER)/node_modules/.installed: $(NODE_PROVIDER)/package.json $(NODE_PROVIDER)/package-lock.json
	cd $(NODE_PROVIDER) && npm ci --no-audit --no-fund
	touch $@

clean:
	rm -rf .venv .tools .pytest_cache .mypy_cache .ruff_cache
