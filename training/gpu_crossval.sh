#!/bin/bash
# The source-fold recipe comparison on a lent GPU machine (docs/model.md). What travels with the checkout:
# a packed sample of the data set (python -m training.pack), the Lite0 ImageNet weights file, and wheels of the
# packages that machine lacks (pydantic, pydantic-settings and their dependencies) in .whl/.
# usage: bash training/gpu_crossval.sh PACKED_DIR RECIPES WEIGHTS OUTDIR TIME_LIMIT_S [crossval flags...]
packed=$1; recipes=$2; weights=$3; out=$4; limit=$5; shift 5
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
nvidia-smi -L 2>/dev/null; nproc
mkdir -p "$out" /tmp/cv
# the summary is rewritten after every run, so a comparison stopped at the limit keeps what it finished
timeout "$limit" python3 -m training.crossval --data "$packed/manifest.csv" --folds 4 --recipes "$recipes" \
  --output-dir /tmp/cv --weights "$weights" --batch-size 64 --workers 14 "$@" > "$out/crossval.log" 2>&1
echo "crossval exit $?"
cat /tmp/cv/summary.md
cd /tmp/cv && tar czf "$out/cv.tgz" summary.* *-sources.txt fold-*.csv */evaluation/predictions.csv \
  */evaluation/metrics.json */history.jsonl 2>/dev/null
