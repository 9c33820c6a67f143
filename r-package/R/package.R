#' fineclass: fine-tune small open language models to code text
#'
#' The R face of the `fineclass` Python library. Every modelling step runs in
#' Python; this package converts R arguments and data (see [ft_train()],
#' [ft_classify()], [ft_evaluate()]) and brings the results back as tibbles.
#'
#' Which Python is used: the binary named by the environment variable
#' `FINECLASS_PYTHON` (for example `/path/to/.venv/bin/python`; the package
#' then sets `RETICULATE_PYTHON` to it for the session), else the one named by
#' `RETICULATE_PYTHON`, else the virtual environment made by
#' [ft_install()] (default name `"fineclass"`), else whatever reticulate finds.
#' [ft_doctor()] says which one was chosen and what is missing.
#'
#' Options: `fineclass.quiet` (default `FALSE`) is the default of every
#' `quiet` argument.
#'
#' @keywords internal
#' @importFrom stats predict
#' @importFrom generics tidy glance augment
#' @importFrom rlang .data
"_PACKAGE"

# package state: the lazily imported module, the bridge module, the last Python error
.fc <- new.env(parent = emptyenv())

.onLoad <- function(libname, pkgname) {
  .fc$python_problem <- choose_python()
  .fc$module <- tryCatch(
    reticulate::import("fineclass", convert = FALSE, delay_load = list(
      on_error = function(e) stop(missing_module_message(), call. = FALSE)
    )),
    # Python already running without fineclass: fc() reports it when a verb is called
    error = function(e) NULL
  )
  invisible()
}

default_envname <- function() {
  Sys.getenv("FINECLASS_ENV", "fineclass")
}

# Point reticulate at the Python the user chose; returns NULL, or a sentence saying what is wrong.
choose_python <- function() {
  python <- Sys.getenv("FINECLASS_PYTHON", "")
  if (nzchar(python)) {
    python <- path.expand(python)
    if (!file.exists(python)) {
      return(sprintf("FINECLASS_PYTHON is set to '%s', which does not exist.", python))
    }
    ok <- tryCatch({
      if (!reticulate::py_available(initialize = FALSE)) {
        # reticulate reads RETICULATE_PYTHON before anything else (and then skips its project look-ups)
        Sys.setenv(RETICULATE_PYTHON = python)
      }
      reticulate::use_python(python, required = TRUE)
      TRUE
    }, error = function(e) conditionMessage(e))
    if (!isTRUE(ok)) {
      return(sprintf("FINECLASS_PYTHON ('%s') could not be used: %s", python, ok))
    }
    return(NULL)
  }
  if (nzchar(Sys.getenv("RETICULATE_PYTHON", ""))) {
    return(NULL)
  }
  env <- default_envname()
  if (isTRUE(tryCatch(reticulate::virtualenv_exists(env), error = function(e) FALSE))) {
    try(reticulate::use_virtualenv(env, required = FALSE), silent = TRUE)
  }
  NULL
}

missing_module_message <- function() {
  paste0(
    "The fineclass Python core is not available",
    python_hint(), ". Run ft_install() to set it up ",
    "(or set FINECLASS_PYTHON to a Python that has it, then restart R); ",
    "ft_doctor() shows what is missing."
  )
}

python_hint <- function() {
  if (!reticulate::py_available(initialize = FALSE)) {
    return("")
  }
  cfg <- tryCatch(reticulate::py_config(), error = function(e) NULL)
  if (is.null(cfg)) "" else sprintf(" in the Python R is using (%s)", cfg$python)
}

#' Is the fineclass Python core available?
#'
#' `TRUE` when R can reach a Python that imports the real `fineclass` core
#' (the module and its R bridge, `fineclass.rbridge`), `FALSE` otherwise; never
#' an error. A folder called `fineclass` in the working directory (such as an
#' installed copy of this R package) is not mistaken for the core. This starts
#' Python (once per R session) if it is not running yet, and imports the core.
#'
#' Examples and tests of this package run only when it is `TRUE`.
#'
#' @return `TRUE` or `FALSE`.
#' @examples
#' ft_available()
#' @export
ft_available <- function() {
  if (!is.null(.fc$python_problem)) {
    return(FALSE)
  }
  if (!is.null(.fc$available)) {
    return(.fc$available)
  }
  ok <- isTRUE(tryCatch(
    reticulate::py_module_available("fineclass") && reticulate::py_module_available("fineclass.rbridge"),
    error = function(e) FALSE
  ))
  # remembered only when found: a failed look-up may succeed after the user fixes the setup
  if (ok) .fc$available <- TRUE
  ok
}

# The fineclass module (a lazily imported reticulate proxy, convert = FALSE).
fc <- function() {
  if (!is.null(.fc$python_problem)) {
    stop(fineclass_error(paste(.fc$python_problem, "Fix it, restart R, then see ft_doctor().")))
  }
  if (!ft_available()) {
    stop(fineclass_error(missing_module_message()))
  }
  if (is.null(.fc$module)) {
    .fc$module <- reticulate::import("fineclass", convert = FALSE)
  }
  if (is.null(.fc$version_checked)) {
    .fc$version_checked <- TRUE
    problem <- version_problem(core_version(), r_version())
    if (!is.null(problem)) warning(problem, call. = FALSE)
  }
  .fc$module
}

# The Python half of the conversion layer (fineclass.rbridge).
rb <- function() {
  if (is.null(.fc$bridge)) {
    fc()
    .fc$bridge <- reticulate::import("fineclass.rbridge", convert = FALSE)
  }
  .fc$bridge
}

r_version <- function() {
  as.character(utils::packageVersion("fineclass"))
}

core_version <- function() {
  tryCatch(as.character(reticulate::py_to_r(.fc$module$`__version__`)), error = function(e) NA_character_)
}

# NULL when the core and this R package are the same version, else a sentence saying what to run.
version_problem <- function(core, r) {
  if (is.na(core) || identical(core, r)) {
    return(NULL)
  }
  sprintf(paste0(
    "The fineclass Python core is version %s but this R package is version %s. Run ft_install() to ",
    "install the core this R package carries (%s), then restart R."
  ), core, r, r)
}

`%||%` <- function(x, y) if (is.null(x)) y else x

