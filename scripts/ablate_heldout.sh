#!/usr/bin/env bash
# Table I on held-out land (issue 17): the six rows of `nationmap ablate` (the paper's five and the
# image guide on top), each finetuned with a recipe's LULC spec on DATASET's training pairs from the
# pretrained encoder PRETRAINED, scored on patches of land no row trained on: the demo-heldout
# cells (N35E140-N35E141) of a world of seed 20261, the quality benchmark's held-out world, which
# no test or demo world uses. Its patches are all test pairs (fractions 0,0,1), sampled as the
# training patches were (anchors by inverse class frequency).
#
#   scripts/ablate_heldout.sh DATASET PRETRAINED [OUT]
#   e.g. after `make demo`: scripts/ablate_heldout.sh demo-out/dataset demo-out/runs/pretrain
#
# SPEC (default cpu-demo/lulc) and EPOCHS (default: the spec's) set the budget of every row;
# HELDOUT (default heldout-20261) is where the held-out world and its dataset are made once.
set -euo pipefail
DATA=${1:?usage: scripts/ablate_heldout.sh DATASET PRETRAINED [OUT]}
INIT=${2:?usage: scripts/ablate_heldout.sh DATASET PRETRAINED [OUT]}
OUT=${3:-runs/ablation-heldout}
SPEC=${SPEC:-cpu-demo/lulc}
HELDOUT=${HELDOUT:-heldout-20261}
NM=${NM:-nationmap}

if [ ! -f "$HELDOUT/catalog.parquet" ]; then
    $NM data synth "$HELDOUT/raw" --region demo-heldout --seed 20261 --months 2022-09 --overwrite
    $NM data catalog "$HELDOUT/raw" --out "$HELDOUT/catalog.parquet"
fi
if [ ! -f "$HELDOUT/dataset/dataset.json" ]; then
    $NM data prepare --catalog "$HELDOUT/catalog.parquet" --lulc-dir "$HELDOUT/raw/lulc" \
        --out "$HELDOUT/dataset" --region demo-heldout --pretrain-months "" --finetune-months 2022-09 \
        --fractions 0,0,1 --overwrite
fi
$NM ablate --data "$DATA" --init "$INIT" --spec "$SPEC" ${EPOCHS:+--epochs "$EPOCHS"} \
    --eval-data "$HELDOUT/dataset" --split test --out "$OUT"
