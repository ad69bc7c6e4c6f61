"""Command-line entry points: `python -m train.train_adapter`, `python -m train.caption`, ..."""
