#!/usr/bin/env bash
# One device session for the GPU benchmarks (bench/gpu_infer.py, bench/gpu_generative.py), in about 6 minutes.
# Run from the repository root on a CUDA machine with torch installed. Optional: wheels of the transformers and
# peft versions pinned in pyproject's lock (.whl/*.whl) are installed into /tmp/site first, so the GPU runs the
# same library versions as the CPU tests. Results go to $OUT (default: bench/results/gpu).
set -u
OUT=${OUT:-bench/results/gpu}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD/python${PYTHONPATH:+:$PYTHONPATH}"
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH="/tmp/site:$PYTHONPATH"
fi
{
  date -u; nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
  python3 -c "import torch, transformers, peft; print('torch', torch.__version__, 'transformers', transformers.__version__, 'peft', peft.__version__)"
} 2>&1 | tee "$OUT/gpu_env.txt"
timeout "${INFER_SECONDS:-250}" python3 bench/gpu_infer.py --json "$OUT/gpu_infer.json" 2>&1 | tee "$OUT/gpu_infer.log"
timeout "${GENERATIVE_SECONDS:-220}" python3 bench/gpu_generative.py --train-seconds 20 --score-docs 1024 \
  --json "$OUT/gpu_generative.json" 2>&1 | tee "$OUT/gpu_generative.log"
echo "done $(date -u)"
