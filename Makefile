# Convenience wrappers; the scripts do the work (and work where make is not installed).
.PHONY: demo test lint
demo:
	./scripts/demo
test:
	./scripts/test
lint:
	.venv/bin/ruff check . && .venv/bin/ruff format --check . && .venv/bin/mypy .
