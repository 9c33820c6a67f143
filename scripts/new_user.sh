#!/usr/bin/env bash
# The R package as a new user meets it: a fresh HOME (so a fresh R library and a fresh virtualenv root),
# none of fineclass's environment variables, the built tarball. It runs the steps the README gives, between
# its markers <!-- new-user:start --> and <!-- new-user:end -->, literally, each "# N." part in its own R
# process: install the tarball, ft_install() with its defaults, then (as after a restart) ft_train() on the
# shipped example data and ft_classify() on new text. Fails when a step fails, when the getting-started
# page does not show the same lines, or when the results are not what they should be.
#
# Offline: when the machine has local wheel folders (this project's machines: /opt/wheels, /opt/pypi/files,
# /opt/pypi-more/files) and the wheelhouse scripts/setup.sh --with-r fills (.wheelhouse: the few packages
# that are in no local index), pip is pointed at them alone (PIP_NO_INDEX, PIP_FIND_LINKS: pip's own
# configuration, as a machine without network would have it). FINECLASS_WHEELS overrides the folder list.
#
#   scripts/new_user.sh [tarball]      # default: the one r-package/check.sh left in .cache/r-build
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
build="${FINECLASS_BUILD_DIR:-$repo/.cache/r-build}"
tarball="${1:-$(ls "$build"/fineclass_*.tar.gz 2>/dev/null | head -1 || true)}"
if [ -z "$tarball" ] || [ ! -f "$tarball" ]; then
  echo "new_user.sh: no tarball; run r-package/check.sh first (or pass the tarball)." >&2
  exit 1
fi
start=$(date +%s)
home="$(mktemp -d)"
trap 'rm -rf "$home"' EXIT
mkdir -p "$home/R/library" "$home/work"
cp "$tarball" "$home/work/"

# the README's steps, split at the "# 1." / "# 2." / "# 3." comments
snippet="$(sed -n '/<!-- new-user:start -->/,/<!-- new-user:end -->/p' "$repo/README.md" | sed '1,2d;$d' | sed '$d')"
[ -n "$snippet" ] || { echo "new_user.sh: README.md has no new-user steps between its markers" >&2; exit 1; }
part() { awk -v n="$1" '/^# [0-9]+\./ { k = $2 + 0 } k == n' <<< "$snippet"; }
for n in 1 2 3; do
  [ -n "$(part "$n")" ] || { echo "new_user.sh: the README's steps have no part '# $n.'" >&2; exit 1; }
done
# the getting-started page gives the same steps: every line of the snippet appears in it
missing=0
while IFS= read -r line; do
  [ -n "$line" ] || continue
  grep -qF -- "$line" "$repo/vignettes/getting-started.qmd" || { echo "not in getting-started.qmd: $line" >&2; missing=1; }
done <<< "$snippet"
[ "$missing" = 0 ] || exit 1
version="$(tar -xzOf "$tarball" fineclass/DESCRIPTION | sed -n 's/^Version: *//p')"
tar_name="$(basename "$tarball")"
[ "$tar_name" = "fineclass_$version.tar.gz" ] || { echo "unexpected tarball name $tar_name" >&2; exit 1; }

# a new user's environment: fresh HOME, no fineclass or reticulate variables, the PATH without the
# project's virtualenv (a new user has none)
clean_path=""
IFS=: read -r -a path_dirs <<< "$PATH"
for d in "${path_dirs[@]}"; do
  case "$d" in "${VIRTUAL_ENV:-/nonexistent}"/*|"$repo/.venv/bin") continue ;; esac
  clean_path="${clean_path:+$clean_path:}$d"
done
wheels="${FINECLASS_WHEELS:-/opt/wheels /opt/pypi/files /opt/pypi-more/files $repo/.wheelhouse}"
links=""
for d in $wheels; do [ -d "$d" ] && links="$links $d"; done
pipenv=()
if [ -n "$links" ]; then
  # (PIP_NO_COMPILE: no .pyc for torch's thousands of files at install time; Python writes them when used)
  pipenv=(PIP_NO_INDEX=1 "PIP_FIND_LINKS=${links# }" PIP_NO_COMPILE=1)
  echo "== pip offline, from:$links"
fi
run_r() {  # title, R code
  echo "== $1 ($(date +%H:%M:%S))"
  (cd "$home/work" && env -i PATH="$clean_path" HOME="$home" LANG="${LANG:-C.UTF-8}" R_LIBS_USER="$home/R/library" \
     ${PYENV_ROOT:+PYENV_ROOT="$PYENV_ROOT"} HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 "${pipenv[@]}" \
     Rscript -e "$2")
}
run_r "1. install the tarball into a fresh library" "$(part 1)"
run_r "2. ft_install() with its defaults" "$(part 2)"
[ -x "$home/.virtualenvs/fineclass/bin/python" ] || { echo "ft_install() made no virtualenv 'fineclass'" >&2; exit 1; }
run_r "3. a new R process: train on the shipped data, classify new text" "
$(part 3)
# checks (not part of the README's steps)
stopifnot(identical(normalizePath(dirname(dirname(reticulate::py_config()\$python))),
                    normalizePath(file.path(Sys.getenv('HOME'), '.virtualenvs', 'fineclass'))))
stopifnot(inherits(model, 'ft_model'))
coded <- ft_classify(c('A moving, beautifully acted film.', 'Dull and far too long.'), model, quiet = TRUE)
stopifnot(nrow(coded) == 2, identical(levels(coded\$label), c('negative', 'positive')))
doctor <- ft_doctor()
stopifnot(doctor\$ok, identical(doctor\$fineclass, '$version'))
cat('new user: OK\n')
"
echo "== new-user path finished in $(( $(date +%s) - start )) s"
