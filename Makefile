# Two entry points on a fresh machine (Python 3.11): `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test browser eval-report clean

$(STAMP): requirements.txt requirements-test.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-test.txt
	touch $(STAMP)

# Serve the app on http://localhost:7860 with the offline default preset.
demo: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) app.py

# Debian's Chromium for the one browser test (Playwright's own download cannot work offline).
browser:
	@command -v chromium >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)

test: $(STAMP) browser
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 GRADIO_ANALYTICS_ENABLED=False $(PY) -m pytest -q

# Regenerate the shipped evaluation report (assets/eval/: report.md, summaries.json) that the
# app's Eval tab shows on a fresh install: the toy adapter on the four toy suites, 168 prompts x
# 4 seeds each, into runs/shipped-eval/<suite> (resumable; about 20 minutes on two CPU cores).
eval-report: $(STAMP)
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(PY) -m surlib.studio.shipped_report

clean:
	rm -rf $(VENV) .pytest_cache
