"""Train a SUR-adapter (a thin CLI over `surlib.training.train`).

    python -m train.train_adapter --config train/configs/tiny.yaml --max-steps 30 --output-dir runs/x
    accelerate launch -m train.train_adapter --config train/configs/paper.yaml --data sur_data/SURD
    python -m train.train_adapter --config train/configs/paper.yaml --resume latest

Every config key (see `surlib.training.TrainConfig` / docs/training.md) can be overridden:
either as a flag named after the key (`--max-steps 30`, `--random-flip false`,
`--validation-prompts '["a cat", "two dogs"]'`) or as `--set key=value` (repeatable). Values
are parsed as YAML. Precedence: defaults < --config < --set < flags.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from surlib.training import TrainConfig, config_keys, load_yaml, make_config, train  # noqa: E402


def _yaml_value(text: str):
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--config", type=Path, help="YAML config (e.g. train/configs/paper.yaml)")
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                    help="override one config key (repeatable)")
    ap.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    keys = ap.add_argument_group("config keys (each overrides the config file)")
    for f in dataclasses.fields(TrainConfig):
        keys.add_argument("--" + f.name.replace("_", "-"), dest=f.name, type=_yaml_value,
                          default=argparse.SUPPRESS, metavar=str(f.type).replace(" ", ""))
    return ap


def parse_config(argv: list[str] | None = None) -> tuple[TrainConfig, argparse.Namespace]:
    ap = build_parser()
    args = ap.parse_args(argv)
    values = load_yaml(args.config) if args.config else {}
    for item in args.sets:
        key, sep, value = item.partition("=")
        if not sep:
            ap.error(f"--set expects KEY=VALUE, got {item!r}")
        values[key.strip().replace("-", "_")] = _yaml_value(value)
    names = set(config_keys())
    values.update({k: v for k, v in vars(args).items() if k in names})
    try:
        return make_config(values), args
    except ValueError as e:
        ap.error(str(e))


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg, args = parse_config(argv)
    if args.print_config:
        import yaml

        print(yaml.safe_dump(cfg.to_dict(), sort_keys=False), end="")
        return 0
    history = train(cfg)
    if history:
        last = history[-1]
        print(f"done: step {last['step']}, total loss {last['total']:.5g}; adapter saved to "
              f"{Path(cfg.output_dir) / 'adapter'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
