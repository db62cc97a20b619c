#!/bin/sh
# Time `rag eval run --limit 200` on CMRC 2018 dev with the small corpus (the default,
# 100 distractors) against the same run over the whole corpus (--distractors all, what
# --limit did before), alternating, each with a fresh index cache (the model is shared).
# Run from the repository root after:
#   rag eval convert --from cmrc ../shared/data/cmrc2018/cmrc2018_dev.json --out artifacts/data/cmrc
set -e
PY=${PY:-python}
ROUNDS=${ROUNDS:-1}
for r in $(seq 1 "$ROUNDS"); do
  for side in small whole; do
    cache=$(mktemp -d)
    ln -s "${RAG_MODELS:-$HOME/.cache/rag/models}" "$cache/models"
    extra=""
    [ "$side" = whole ] && extra="--distractors all"
    t0=$(date +%s.%N)
    RAG_CACHE_DIR=$cache OMP_WAIT_POLICY=PASSIVE $PY -m rag.serve.cli eval run artifacts/data/cmrc \
      --limit 200 $extra --out "artifacts/runs/limit-$side-r$r" --overwrite --quiet
    t1=$(date +%s.%N)
    echo "round $r $side: wall $(echo "$t1 - $t0" | bc) s, load $(cut -d' ' -f1-3 /proc/loadavg)"
    rm -rf "$cache"
  done
done
