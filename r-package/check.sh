#!/usr/bin/env bash
# CI for the R package. Needs no network.
#   1. roxygen2 (NAMESPACE and man/; in CI, fails when the committed files differ)
#   2. tools/bundle.sh: the Python core (inst/python) and the precomputed vignettes go into the package
#   3. R CMD build
#   4. R CMD check --as-cran --no-manual on the tarball (no LaTeX here for the PDF manual; the HTML manual is
#      validated, with HTML Tidy), twice: once with no Python core reachable (examples and tests
#      skip), once with the core (FINECLASS_PYTHON) where the examples and the whole testthat suite run.
#      Each fails on any ERROR or WARNING, and on a NOTE that README.md does not list ("NOTEs" section).
#   5. pkgdown::build_site() into a temporary folder (no core: the examples are not run)
# The tarball is left in $FINECLASS_BUILD_DIR (default <repo>/.cache/r-build) for scripts/new_user.sh.
#
#   r-package/check.sh                          # FINECLASS_PYTHON defaults to <repo>/.venv/bin/python
#   FINECLASS_SLOW_TESTS=false r-package/check.sh   # skip the learning-curve, zero-shot and dimension tests
#   FINECLASS_CHECKS="core" r-package/check.sh      # only some of: nocore core pkgdown
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
export FINECLASS_PYTHON="${FINECLASS_PYTHON:-$repo/.venv/bin/python}"
export FINECLASS_SLOW_TESTS="${FINECLASS_SLOW_TESTS:-true}"
CHECKS="${FINECLASS_CHECKS:-nocore core pkgdown}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
# torch keeps a compiler cache in $TMPDIR/torchinductor_<user>, which R CMD check reports as detritus in the
# temporary folder: keep it in the build folder instead (it is only a cache)
# R CMD check stays off the network: no remote CRAN incoming checks, no clock look-up
export _R_CHECK_CRAN_INCOMING_REMOTE_=false _R_CHECK_FUTURE_FILE_TIMESTAMPS_=false _R_CHECK_SYSTEM_CLOCK_=false
if [ ! -x "$FINECLASS_PYTHON" ]; then
  echo "FINECLASS_PYTHON=$FINECLASS_PYTHON is not an executable Python; set it (the tests need the core)." >&2
  exit 1
fi
build="${FINECLASS_BUILD_DIR:-$repo/.cache/r-build}"
mkdir -p "$build"
export TORCHINDUCTOR_CACHE_DIR="${TORCHINDUCTOR_CACHE_DIR:-$build/torchinductor}"
log() { echo "== $* ($(date +%H:%M:%S))"; }

log "roxygen2"
if ! Rscript -e "roxygen2::roxygenise('$here')" > "$build/roxygen.log" 2>&1; then
  cat "$build/roxygen.log" >&2
  echo "roxygen2 failed" >&2
  exit 1
fi
grep -v '^Loading' "$build/roxygen.log" || true
if git -C "$repo" rev-parse --git-dir >/dev/null 2>&1 && \
   ! git -C "$repo" diff --quiet -- r-package/NAMESPACE r-package/man; then
  echo "roxygen2 changed NAMESPACE or man/: commit the regenerated files." >&2
  git -C "$repo" diff --stat -- r-package/NAMESPACE r-package/man >&2
  [ -n "${CI:-}" ] && exit 1
fi

log "bundle the Python core and the vignettes"
bash "$here/tools/bundle.sh"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# R CMD check looks up the package repository for a dependency-cycle check; point it at an empty local one
mkdir -p "$work/repo/src/contrib"
: > "$work/repo/src/contrib/PACKAGES"
echo "options(repos = c(CRAN = 'file://$work/repo'))" > "$work/Rprofile"
export R_PROFILE_USER="$work/Rprofile"
cd "$work"
log "R CMD build"
R CMD build "$here" > "$build/build.log" 2>&1 || { cat "$build/build.log" >&2; exit 1; }
tail -n 3 "$build/build.log"
tarball="$(ls fineclass_*.tar.gz)"
rm -f "$build"/fineclass_*.tar.gz
cp "$tarball" "$build/"

# The NOTEs README.md explains: the names of the checks, one per bullet "- `checking ...`" in its NOTEs section.
known_notes="$(sed -n '/^## R CMD check NOTEs/,/^## /p' "$here/README.md" | sed -n 's/^- `\(checking [^`]*\)`.*/\1/p')"

# run_check NAME [env assignments...]: R CMD check --as-cran in its own folder, with the environment given
run_check() {
  local name="$1"; shift
  mkdir -p "$work/$name"
  cp "$tarball" "$work/$name/"
  log "R CMD check --as-cran $tarball ($name)"
  local status=0
  (cd "$work/$name" && env "$@" R CMD check --as-cran --no-manual "$tarball" > check.out 2>&1) || status=$?
  local dir="$work/$name/fineclass.Rcheck"
  local checklog="$dir/00check.log"
  cp "$checklog" "$build/check-$name.log" 2>/dev/null || true
  local tests="$dir/tests/testthat.Rout"
  [ -f "$tests" ] || tests="$dir/tests/testthat.Rout.fail"
  if [ -f "$tests" ]; then
    cp "$tests" "$build/testthat-$name.Rout"
    echo "testthat: $(grep -E '^\[ FAIL [0-9]+ \| WARN [0-9]+ \| SKIP [0-9]+ \| PASS [0-9]+ \]' "$tests" | tail -1)"
    if [ "$status" -ne 0 ] || grep -q "FAIL [1-9]" "$tests"; then tail -n 80 "$tests"; fi
  fi
  if [ ! -f "$checklog" ] || [ "$status" -ne 0 ] || grep -Eq '^Status: .*(ERROR|WARNING)' "$checklog"; then
    echo "R CMD check ($name) failed:" >&2
    [ -f "$checklog" ] && grep -E -A 15 '\.\.\. (ERROR|WARNING)' "$checklog" >&2
    tail -n 30 "$work/$name/check.out" >&2
    return 1
  fi
  grep -E '^Status:' "$checklog"
  local unknown=0
  while read -r note; do
    [ -n "$note" ] || continue
    grep -F -A 8 "* $note ..." "$checklog" || true
    if ! grep -qxF "$note" <<< "$known_notes"; then
      echo "NOTE not explained in r-package/README.md: '$note'" >&2
      unknown=1
    fi
  done < <(sed -n 's/^\* \(checking .*\) \.\.\. .*NOTE$/\1/p' "$checklog")
  return $unknown
}

status=0
# a python3 without the core: the first on the PATH outside the virtualenv in use (and FINECLASS_PYTHON's)
python_without_core=""
IFS=: read -r -a path_dirs <<< "$PATH"
for d in "${path_dirs[@]}"; do
  case "$d" in "${VIRTUAL_ENV:-/nonexistent}"/*|"$(dirname "$FINECLASS_PYTHON")") continue ;; esac
  if [ -x "$d/python3" ] && ! env -u PYTHONPATH "$d/python3" -c "import fineclass.rbridge" 2>/dev/null; then
    python_without_core="$d/python3"
    break
  fi
done
if [ -z "$python_without_core" ]; then
  echo "check.sh: no python3 without the fineclass core on the PATH, for the check without the core" >&2
  exit 1
fi
if [[ " $CHECKS " == *" nocore "* ]]; then
  # no Python core anywhere: no FINECLASS_PYTHON, a plain python3, no "fineclass" virtualenv
  run_check nocore -u FINECLASS_PYTHON -u PYTHONPATH -u NOT_CRAN FINECLASS_ENV=fineclass-not-installed \
    RETICULATE_PYTHON="$python_without_core" || status=1
fi
if [[ " $CHECKS " == *" core "* ]]; then
  # the core: examples and tests run for real (NOT_CRAN: the snapshot tests and subprocess tests too)
  run_check core FINECLASS_PYTHON="$FINECLASS_PYTHON" RETICULATE_PYTHON="$FINECLASS_PYTHON" NOT_CRAN=true \
    FINECLASS_DATA="${FINECLASS_DATA:-}" || status=1
fi
if [[ " $CHECKS " == *" pkgdown "* ]]; then
  log "pkgdown::build_site()"
  mkdir -p "$work/lib" "$work/site"
  R CMD INSTALL --no-multiarch -l "$work/lib" "$tarball" > "$build/pkgdown-install.log" 2>&1 ||
    { cat "$build/pkgdown-install.log" >&2; exit 1; }
  tar -xzf "$tarball" -C "$work/site"
  cp "$here/_pkgdown.yml" "$here/README.md" "$work/site/fineclass/"
  if env -u FINECLASS_PYTHON -u PYTHONPATH FINECLASS_ENV=fineclass-not-installed \
      RETICULATE_PYTHON="$python_without_core" R_LIBS="$work/lib:${R_LIBS:-}" \
      Rscript -e "options(pkgdown.internet = FALSE)  # no CRAN look-up for the sidebar's links
                  pkgdown::build_site('$work/site/fineclass', override = list(destination = '$work/site/docs'),
                                       new_process = FALSE, install = FALSE, preview = FALSE)" \
      > "$build/pkgdown.log" 2>&1; then
    echo "pkgdown: $(find "$work/site/docs" -name '*.html' | wc -l) pages; reference index groups:" \
         "$(grep -c '<h2' "$work/site/docs/reference/index.html" || true)"
    rm -rf "$build/site" && cp -r "$work/site/docs" "$build/site"
  else
    tail -n 40 "$build/pkgdown.log" >&2
    echo "pkgdown::build_site() failed" >&2
    status=1
  fi
fi
exit $status
