# `make run` and `make test` work on a machine with only python3 and make.
SHELL := /bin/sh
UV := $(shell command -v uv 2>/dev/null || echo .tools/bin/uv)
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := .venv

.PHONY: run test test-fast lint audit format vendor clean image container-smoke bench bench-full translations

.tools/bin/uv:
	python3 scripts/bootstrap-uv

.venv/.synced: pyproject.toml uv.lock | $(if $(filter .tools/bin/uv,$(UV)),.tools/bin/uv)
	$(UV) sync --frozen
	@touch $@

## The app on http://127.0.0.1:8000 with an embedded Redis; sign-in codes print here.
run: .venv/.synced
	CHAT_COOKIE_SECURE=$${CHAT_COOKIE_SECURE:-false} $(UV) run --frozen python app.py

## Everything: unit, integration and browser tests (browser tests need Chromium).
test: .venv/.synced
	$(UV) run --frozen pytest

## The suite without the slow and browser tests.
test-fast: .venv/.synced
	$(UV) run --frozen pytest -m "not slow and not e2e"

lint: .venv/.synced
	$(UV) run --frozen ruff check .
	$(UV) run --frozen ruff format --check .
	$(UV) run --frozen mypy app.py chat blueprints

## Known vulnerabilities in the locked dependencies (uv.lock, every group), from PyPI's data via
## pip-audit; fails on any not excused, with a reason and a date, in audit-ignore.toml.
## Another lock or ignore file: make audit LOCK=path/to/uv.lock IGNORE=path/to/ignore.toml
## make exits 2 on any failure; AUDIT_STATUS=FILE gets the script's own exit status (0-4, see
## scripts/audit --help; 4 = some packages could not be checked, no finding in the others).
audit: .venv/.synced
	$(UV) run --frozen python scripts/audit --uv $(UV) $(if $(LOCK),--lock $(LOCK)) $(if $(IGNORE),--ignore $(IGNORE)) $(if $(AUDIT_STATUS),--status-file $(AUDIT_STATUS))

format: .venv/.synced
	$(UV) run --frozen ruff format .
	$(UV) run --frozen ruff check --fix .

## Extract every translatable string into translations/messages.pot and merge it into each
## language's messages.po (then translate what is new; the test suite fails until you do).
translations: .venv/.synced
	$(UV) run --frozen pybabel extract -F babel.cfg --add-location=file --sort-output --no-wrap \
		--project=htmx-chat --copyright-holder="htmx-chat contributors" -o translations/messages.pot .
	$(UV) run --frozen pybabel update -i translations/messages.pot -d translations --no-wrap \
		--no-fuzzy-matching --ignore-obsolete

## Benchmarks (bench/REPORT.md): the default scenarios (about 7 minutes), prints tables.
bench: .venv/.synced
	$(UV) run --frozen python -m bench.run default

## The whole matrix N x M x W (long); results in bench/results/.
bench-full: .venv/.synced
	$(UV) run --frozen python -m bench.run full

## Build the container image (buildah; a debootstrap base when no registry is reachable).
image:
	scripts/container-smoke build

## Build the image and check it serves the chat (root + buildah).
container-smoke: .venv/.synced
	scripts/container-smoke

## Re-vendor htmx from npm (needs npm): make vendor VERSION=4.0.1
vendor:
	scripts/vendor-htmx $(VERSION)

clean:
	rm -rf .venv .tools .pytest_cache .mypy_cache .ruff_cache test-artifacts
