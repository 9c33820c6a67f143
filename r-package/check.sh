#!/usr/bin/env bash
# CI for the R package: roxygen2 (NAMESPACE and man/), R CMD build, R CMD check --no-manual, which runs
# the testthat suite against the real Python core. Fails on any ERROR or WARNING; NOTEs are printed
# (README.md explains the ones to expect). Needs no network.
#
#   r-package/check.sh            # FINECLASS_PYTHON defaults to <repo>/.venv/bin/python
#   FINECLASS_SLOW_TESTS=false r-package/check.sh   # skip the learning-curve and zero-shot tests
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
export FINECLASS_PYTHON="${FINECLASS_PYTHON:-$repo/.venv/bin/python}"
export FINECLASS_SLOW_TESTS="${FINECLASS_SLOW_TESTS:-true}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
# no CRAN incoming checks, no clock look-up: R CMD check stays off the network
export _R_CHECK_CRAN_INCOMING_=false _R_CHECK_CRAN_INCOMING_REMOTE_=false
export _R_CHECK_FUTURE_FILE_TIMESTAMPS_=false _R_CHECK_SYSTEM_CLOCK_=false
if [ ! -x "$FINECLASS_PYTHON" ]; then
  echo "FINECLASS_PYTHON=$FINECLASS_PYTHON is not an executable Python; set it (the tests need the core)." >&2
  exit 1
fi

echo "== roxygen2"
if ! Rscript -e "roxygen2::roxygenise('$here')" > "${TMPDIR:-/tmp}/fineclass-roxygen.log" 2>&1; then
  cat "${TMPDIR:-/tmp}/fineclass-roxygen.log" >&2
  echo "roxygen2 failed" >&2
  exit 1
fi
grep -v '^Loading' "${TMPDIR:-/tmp}/fineclass-roxygen.log" || true
if git -C "$repo" rev-parse --git-dir >/dev/null 2>&1 && \
   ! git -C "$repo" diff --quiet -- r-package/NAMESPACE r-package/man; then
  echo "roxygen2 changed NAMESPACE or man/: commit the regenerated files." >&2
  git -C "$repo" diff --stat -- r-package/NAMESPACE r-package/man >&2
  [ -n "${CI:-}" ] && exit 1
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
# R CMD check looks up the package repository for a dependency-cycle check; point it at an empty local one
mkdir -p "$work/repo/src/contrib"
: > "$work/repo/src/contrib/PACKAGES"
echo "options(repos = c(CRAN = 'file://$work/repo'))" > "$work/Rprofile"
export R_PROFILE_USER="$work/Rprofile"
echo "== R CMD build"
R CMD build --no-build-vignettes "$here"
tarball="$(ls fineclass_*.tar.gz)"
echo "== R CMD check --no-manual $tarball (FINECLASS_PYTHON=$FINECLASS_PYTHON)"
status=0
R CMD check --no-manual "$tarball" || status=$?
log="fineclass.Rcheck/00check.log"
tests="fineclass.Rcheck/tests/testthat.Rout"
[ -f "$tests" ] || tests="fineclass.Rcheck/tests/testthat.Rout.fail"
if [ -f "$tests" ]; then
  echo "== testthat"
  grep -E '^\[ FAIL [0-9]+ \| WARN [0-9]+ \| SKIP [0-9]+ \| PASS [0-9]+ \]' "$tests" | tail -1 || true
  if [ "$status" -ne 0 ] || grep -q "FAIL [1-9]" "$tests"; then tail -n 80 "$tests"; fi
fi
if [ "$status" -ne 0 ] || grep -Eq '^Status: .*(ERROR|WARNING)' "$log"; then
  echo "R CMD check failed:" >&2
  grep -E -A 12 '\.\.\. (ERROR|WARNING)' "$log" >&2 || true
  exit 1
fi
grep -E '^Status:' "$log"
grep -E -A 8 '\.\.\. NOTE' "$log" || true
