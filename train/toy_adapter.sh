#!/usr/bin/env bash
# The toy world's SUR-adapter and its ablation table, reproducibly (seed 0 everywhere).
#
#   bash train/toy_adapter.sh               # data, the four variants, their evaluations, the table
#   SEEDS=2 bash train/toy_adapter.sh       # fewer evaluation seeds (quicker, less power)
#   VARIANTS="full" SUITES="toy_heldout" bash train/toy_adapter.sh
#
# Each variant is evaluated on the four toy suites (assets/suites/): toy (the training grammar's
# own sentence frames), toy_heldout (frames never used in training), toy_spells (the keyword
# spell itself) and toy_canonical (the spells' words in held-out frames).
#
# Variants (same config, steps and data; only the losses differ):
#   full            the method as shipped (train/configs/toy.yaml): noise + LLM distillation +
#                   quality losses, plus spell and canonical rows with the identity term and the
#                   prompt gate taught to close on them (do no harm), residual form
#   no-llm          llm_weight 0
#   no-quality      quality_weight 0
#   official-detached  the official code's defect: the noise loss does not reach the adapter
# The full variant is copied to assets/toy/adapter (what the toy preset loads). The variants share
# the teacher features and the frozen encoders' rows (--feature-cache, --row-cache): only the first
# run pays for encoding.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python}
SEEDS=${SEEDS:-4}
VARIANTS=${VARIANTS:-"full no-llm no-quality official-detached"}
SUITES=${SUITES:-"toy toy_heldout toy_spells toy_canonical"}
RUNS=${RUNS:-runs/toy-adapter}

grep -q '"canonical"' data/toy/train/metadata.jsonl 2>/dev/null || $PY -m train.make_toy_data --split train --n 20000 --seed 0 --out data/toy/train

flags() {
  case "$1" in
    full) ;;
    no-llm) echo "--llm-weight 0" ;;
    no-quality) echo "--quality-weight 0" ;;
    official-detached) echo "--official-detached true" ;;
    *) echo "unknown variant $1 (known: full no-llm no-quality official-detached)" >&2; exit 2 ;;
  esac
}

for v in $VARIANTS; do
  f=$(flags "$v")
  [ -f "$RUNS/$v/adapter/config.json" ] || \
    $PY -m train.train_adapter --config train/configs/toy.yaml --output-dir "$RUNS/$v" \
      --feature-cache "$RUNS/llm_features" --row-cache "$RUNS/row_cache" $f
  for s in $SUITES; do
    $PY -m eval.run --preset toy --adapter "$RUNS/$v/adapter" --suite "$s" --seeds "$SEEDS" \
      --out "$RUNS/eval-$v-$s" --no-progress
  done
done

if [ -d "$RUNS/full/adapter" ]; then
  rm -rf assets/toy/adapter && mkdir -p assets/toy/adapter
  cp "$RUNS/full/adapter/config.json" "$RUNS/full/adapter/"*.safetensors assets/toy/adapter/
fi
$PY -m eval.compare $(for v in $VARIANTS; do for s in $SUITES; do echo "$RUNS/eval-$v-$s"; done; done) \
  --out "$RUNS/ablation.md"
