#!/usr/bin/env bash
# Run every test: pytest (Python core), testthat + R CMD check (R package), and the vignettes.
# Expects scripts/setup.sh --with-r to have run.
set -uo pipefail
cd "$(dirname "$0")/.."
. .venv/bin/activate
export FINECLASS_PYTHON="$(pwd)/.venv/bin/python"
export RETICULATE_PYTHON="$FINECLASS_PYTHON"
export FINECLASS_DATA="${FINECLASS_DATA:-$(cd .. && pwd)/shared/data/flourishing}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
status=0
start=$(date +%s)

echo "== ruff (lint and format: the rules are in pyproject.toml)"
ruff check python tests bench || status=1
ruff format --check python tests bench || status=1

echo "== pytest"
# two worker processes (pytest-xdist), a test file each at a time: each runs torch on one thread (tests/conftest.py),
# so one process left a core idle. FINECLASS_TEST_WORKERS=0 runs in one process.
python -m pytest -q -p no:cacheprovider -n "${FINECLASS_TEST_WORKERS:-2}" --dist loadfile --durations=20 tests \
  || status=1  # the 20 slowest, for the time budget

echo "== vignettes call only the R package's exported verbs"
if grep -rnE 'reticulate::import|ft_call\(' vignettes/ r-package/vignettes/ 2>/dev/null; then
  echo "vignettes/ calls reticulate::import() or ft_call() (above): use the exported ft_* functions." >&2
  status=1
fi

if [ -x r-package/check.sh ]; then
  # R CMD check --as-cran twice (no core; the core with examples and testthat), then a pkgdown site
  echo "== R package: R CMD build, R CMD check --as-cran (without and with the core), pkgdown"
  r_start=$(date +%s)
  bash r-package/check.sh || status=1
  echo "== R package checks: $(( $(date +%s) - r_start )) s"
  echo "== R package as a new user installs it: fresh R library and virtualenv, ft_install(), train, classify"
  bash scripts/new_user.sh || status=1
fi

if [ -f scripts/render_vignettes.R ]; then
  # Every vignette is executed and its figures checked. By default with the vignettes' small CI settings
  # (--quick: every code path, the paper's figures pinned, model-quality checks skipped); set
  # FINECLASS_VIGNETTES=full to render the committed pages at full settings and check model quality too.
  echo "== vignettes"
  if [ "${FINECLASS_VIGNETTES:-quick}" = full ]; then
    Rscript scripts/render_vignettes.R || status=1
  else
    Rscript scripts/render_vignettes.R --quick || status=1
  fi
fi

echo "== all tests finished in $(( $(date +%s) - start )) s with status $status"
exit $status
