#!/usr/bin/env bash
# What `make bench-gpu` and `make test-gpu` run, for a GPU machine that may have no make, no registry and no
# .venv, only torch with CUDA, torchvision, timm, numpy and Pillow (issue #14; docs/performance.md, "On a GPU").
# What that Python lacks (pydantic, pydantic-settings, defusedxml) comes from wheels carried along in
# GPU_WHEELS (`make gpu-wheels` downloads them on a machine with a registry), installed into GPU_SITE.
#
#   bash loadtests/gpu.sh bench [ARGS]   # python -m loadtests.bench_gpu ARGS: the figures, <= 5 minutes
#   bash loadtests/gpu.sh test [ARGS]    # the CUDA variants of tests/test_gpu.py
set -euo pipefail
cd "$(dirname "$0")/.."
default_python=python3
[ -x .venv/bin/python ] && default_python=.venv/bin/python
python=${GPU_PYTHON:-$default_python}
wheels=${GPU_WHEELS:-.whl}
site=${GPU_SITE:-/tmp/bench-gpu-site}
if ! "$python" -c "import pydantic_settings, defusedxml" 2>/dev/null && ls "$wheels"/*.whl >/dev/null 2>&1; then
  echo "installing the wheels of $wheels/ into $site (no network)"
  "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" "$wheels"/*.whl
fi
export PYTHONPATH="$site:$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
case "${1:-}" in
  bench) shift; exec "$python" -m loadtests.bench_gpu "$@" ;;
  test) shift
    "$python" -c "import pytest" 2>/dev/null || { echo "error: $python has no pytest (carry its wheels in $wheels)" >&2; exit 2; }
    exec "$python" -m pytest -p no:cacheprovider tests/test_gpu.py -k cuda "$@" ;;
  *) echo "usage: bash loadtests/gpu.sh bench|test [ARGS]" >&2; exit 2 ;;
esac
