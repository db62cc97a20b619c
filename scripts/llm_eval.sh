#!/usr/bin/env bash
# The real-LLM evaluation of issue 21 (eval/reports/llm/report.md): four data sets, the
# local GGUF model and the extractive answerer on the same questions; resumable (each
# run skips the questions its rows file already holds). About 100 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_WAIT_POLICY=PASSIVE
PY=.venv/bin/python
R=.venv/bin/rag
[ -n "${MODEL:-}" ] || $R models get qwen2.5-1.5b >&2  # checked, cached: a second run is quick
M=${MODEL:-${RAG_CACHE_DIR:-$HOME/.cache/rag}/models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf}
O=eval/reports/llm/runs
mkdir -p $O artifacts/eval artifacts/idx
log() { echo "$(date +%T) $*"; }
[ -f artifacts/eval/cmrc/questions.jsonl ] || $R eval convert --from cmrc ../shared/data/cmrc2018/cmrc2018_dev.json --out artifacts/eval/cmrc
[ -f artifacts/eval/cail/questions.jsonl ] || $R eval convert --from cail ../shared/data/cail2019/test_ground_truth.json --out artifacts/eval/cail
[ -f artifacts/eval/rgb50/questions.jsonl ] || $R eval convert --from rgb ../shared/data/rgb_zh/zh_refine.json --out artifacts/eval/rgb50 --refusal-fraction 0.5 --seed 0
run() { # name questions index sampling...
  name=$1; q=$2; idx=$3; shift 3
  log "extractive $name"; $PY -m rag.eval.bench.llm $q --index $idx --model $M --extractive --out $O/$name.extractive.jsonl "$@" > /dev/null
  log "llm $name"; $PY -m rag.eval.bench.llm $q --index $idx --model $M --out $O/$name.qwen.jsonl "$@"
  log "done $name"
}
ingest() { [ -f $2/CURRENT ] || { log "ingest $1"; $R ingest $1 --index $2 --quiet; }; }
ingest corpus/ artifacts/idx/corpus
run corpus_qa eval/datasets/corpus_qa.jsonl artifacts/idx/corpus
ingest artifacts/eval/cail/corpus.jsonl artifacts/idx/cail
run cail artifacts/eval/cail/questions.jsonl artifacts/idx/cail --answerable 50 --unanswerable 50 --within 1500
ingest artifacts/eval/cmrc/corpus.jsonl artifacts/idx/cmrc
run cmrc artifacts/eval/cmrc/questions.jsonl artifacts/idx/cmrc --answerable 100 --unanswerable 0
ingest artifacts/eval/rgb50/corpus.jsonl artifacts/idx/rgb50
run rgb artifacts/eval/rgb50/questions.jsonl artifacts/idx/rgb50 --answerable 50 --unanswerable 50
# 50 + 50 more RGB questions, drawn with seed 1 from those the first sample left
MORE=$($PY - <<'PY'
import json, random
from rag.eval.bench.llm import sample
qs = [json.loads(x) for x in open("artifacts/eval/rgb50/questions.jsonl", encoding="utf-8")]
first = {q["id"] for q in sample(qs, 50, 50, 0)}
rng, ids = random.Random(1), []
for want in (True, False):
    ids += rng.sample([q["id"] for q in qs if q["answerable"] == want and q["id"] not in first], 50)
print(",".join(ids))
PY
)
run rgb artifacts/eval/rgb50/questions.jsonl artifacts/idx/rgb50 --ids "$MORE"
$PY -m rag.eval.bench.llm_report $O --set corpus_qa=eval/datasets/corpus_qa.jsonl \
    --set cail=artifacts/eval/cail/questions.jsonl --set cmrc=artifacts/eval/cmrc/questions.jsonl \
    --set rgb=artifacts/eval/rgb50/questions.jsonl --out eval/reports/llm
log all done
