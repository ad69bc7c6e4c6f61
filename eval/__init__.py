"""Evaluation of SUR-adapter: Counting / Color / Action suites, judges, BRISQUE, statistics, reports.

    python -m eval.run --preset toy --suite toy --seeds 4 --out runs/toy-eval

Library entry point: `eval.runner.run_eval(EvalConfig(...))`. Modules import lazily: `eval.suites`
and `eval.answers` need only the standard library; the rest pull in torch, transformers, scipy.
"""
