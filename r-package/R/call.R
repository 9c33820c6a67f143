# One way into Python for every verb: arguments converted, errors and warnings turned into R conditions,
# the core's progress bars and notices turned into cli progress bars and messages.

# An R error of class `fineclass_error`; `argument` names the argument at fault (as the user typed it).
fineclass_error <- function(message, argument = NULL, python_type = NULL, traceback = NULL,
                            call = NULL) {
  structure(
    class = c("fineclass_error", "error", "condition"),
    list(
      message = message, call = call, argument = argument,
      python_type = python_type, traceback = traceback
    )
  )
}

#' Call a Python function of the fineclass core from R
#'
#' The one wrapper every verb uses, exported for advanced use (a core
#' function this package has no verb for yet). Arguments are converted for
#' Python: data frames become Arrow tables through the NA-safe conversion
#' layer ([r_to_arrow()]), `ft_model` objects become their Python classifier,
#' named vectors become dictionaries, and `NULL` arguments are left out (so
#' the Python default applies). The result comes back converted: tables as
#' tibbles (or data frames when tibble is not installed), dictionaries as
#' named lists.
#'
#' A Python exception becomes an R error of class `fineclass_error` whose
#' message is the Python message (for the core's `FineclassError`, it names
#' the argument and says the fix) and whose field `argument` holds the name of
#' the argument at fault. The full Python traceback is kept for
#' [ft_last_error()]. Python warnings become R warnings; the core's progress
#' bars become cli progress bars and its notices become messages, so
#' `suppressMessages()` silences them.
#'
#' @param fn A Python callable, or the name of a function of the `fineclass`
#'   module (`"train"`, `"classify"`, ...).
#' @param ... Arguments; unnamed ones are passed by position, named ones by
#'   keyword.
#' @param .args A list of further arguments (named: by keyword), appended to
#'   `...`.
#' @param .convert Convert the result for R (`TRUE`), or return the Python
#'   object (`FALSE`).
#' @param .call The call to report in an error (the verb that called).
#' @param .quiet Drop the core's progress bars and notices.
#' @return The converted result, or a Python object when `.convert = FALSE`.
#' @examplesIf ft_available()
#' try(ft_call("load", "no/such/folder"))
#' @export
ft_call <- function(fn, ..., .args = NULL, .convert = TRUE, .call = sys.call(-1), .quiet = default_quiet()) {
  force(.call)
  args <- c(list(...), .args)
  nms <- names(args) %||% rep("", length(args))
  keep <- !vapply(args, is.null, logical(1)) | !nzchar(nms)
  args <- args[keep]
  nms <- nms[keep]
  args <- lapply(args, to_py_arg)
  py_invoke(fn, unname(args[!nzchar(nms)]), args[nzchar(nms)], convert = .convert, call = .call,
    quiet = .quiet)
}

# The call itself, with arguments already made ready for Python. rbridge.call() answers with named fields.
py_invoke <- function(fn, positional = list(), keywords = list(), convert = TRUE, call = NULL,
                      quiet = TRUE) {
  if (!is.character(fn)) fn <- reticulate::r_to_py(fn)
  reporter <- if (isTRUE(quiet)) NULL else new_reporter(environment())
  res <- rb()$call(fn, positional, keywords, isTRUE(convert),
    if (is.null(reporter)) reticulate::py_none() else reporter)
  field <- function(name) reticulate::py_get_item(res, name)
  status <- reticulate::py_to_r(field("status"))
  warn_all <- function() {
    for (w in as.character(unlist(reticulate::py_to_r(field("warnings"))))) warning(w, call. = FALSE)
  }
  if (identical(status, "ok")) {
    warn_all()
    value <- field("value")
    if (!isTRUE(convert)) {
      return(value)
    }
    return(from_py(reticulate::py_to_r(value)))
  }
  warn_all()
  text <- function(name) {
    v <- reticulate::py_to_r(field(name))
    if (is.null(v)) NULL else as.character(v)
  }
  stop(python_error(
    type = text("type"), message = text("message"), argument = text("argument"),
    traceback = text("traceback"), user_error = isTRUE(reticulate::py_to_r(field("user_error"))),
    call = call
  ))
}

# An R function the core reports to while it runs: bars become cli progress bars that live as long as
# `frame` (the py_invoke() call), lines become messages. Called from Python, on R's main thread. A bar cli
# has already closed (it closes one that reaches its total) is simply forgotten: showing progress must
# never stop the work.
new_reporter <- function(frame) {
  bars <- new.env(parent = emptyenv())
  function(event) {
    if (inherits(event, "python.builtin.object")) event <- reticulate::py_to_r(event)
    if (identical(event$event, "message")) {
      message(event$text)
      return(invisible())
    }
    key <- format(event$id)
    if (identical(event$stage, "done")) {
      if (!is.null(bars[[key]])) try(cli::cli_progress_done(id = bars[[key]], .envir = frame), silent = TRUE)
      bars[[key]] <- "closed"
      return(invisible())
    }
    if (identical(bars[[key]], "closed")) {
      return(invisible())
    }
    if (is.null(bars[[key]])) {
      bars[[key]] <- cli::cli_progress_bar(
        name = if (nzchar(event$desc %||% "")) event$desc else NULL,
        total = if (is.null(event$total)) NA else event$total, .envir = frame
      )
    }
    ok <- tryCatch({
      cli::cli_progress_update(id = bars[[key]], set = event$n, .envir = frame)
      TRUE
    }, error = function(e) FALSE)
    if (!ok) bars[[key]] <- "closed"
    invisible()
  }
}

python_error <- function(type, message, argument, traceback, user_error, call) {
  .fc$last_error <- list(type = type, message = message, argument = argument, traceback = traceback)
  if (!user_error) {
    hint <- if (type %in% c("ModuleNotFoundError", "ImportError")) {
      " Run ft_install() to install what is missing, or ft_doctor() to see it."
    } else {
      " (ft_last_error() shows the Python traceback.)"
    }
    message <- paste0(type, ": ", message, hint)
  }
  fineclass_error(message, argument = argument, python_type = type, traceback = traceback, call = call)
}

#' The last Python error, with its traceback
#'
#' Errors raised by the Python core reach R as short messages. This returns
#' the last one in full, for bug reports.
#'
#' @param print Print the traceback.
#' @return A list with `type`, `message`, `argument` and `traceback`
#'   (invisibly), or `NULL` when no Python error happened in this session.
#' @examples
#' ft_last_error()
#' @export
ft_last_error <- function(print = TRUE) {
  e <- .fc$last_error
  if (is.null(e)) {
    if (print) cat("No Python error in this session.\n")
    return(invisible(NULL))
  }
  if (print) cat(e$traceback, sep = "")
  invisible(e)
}

# One argument made ready for Python.
to_py_arg <- function(x) {
  if (inherits(x, "ft_model")) {
    return(model_py(x))
  }
  if (inherits(x, "ft_label_spec")) {
    return(label_spec_py(x))
  }
  if (inherits(x, "python.builtin.object")) {
    return(x)
  }
  if (is.data.frame(x)) {
    return(r_to_arrow(x))
  }
  if (is.list(x)) {
    return(lapply(x, to_py_arg))
  }
  if (is.atomic(x) && !is.null(names(x)) && length(x) > 0) {
    return(lapply(as.list(x), to_py_arg))
  }
  if (is.factor(x)) {
    x <- as.character(x)
  }
  if (inherits(x, "Date")) {
    x <- format(x)
  }
  if (is.atomic(x) && length(x) > 0 && anyNA(x)) {
    # reticulate would turn NA into "NA", True or -2^31; None is what Python means
    return(lapply(seq_along(x), function(i) if (is.na(x[[i]])) NULL else x[[i]]))
  }
  x
}

# Every verb's `quiet` default.
default_quiet <- function() {
  isTRUE(getOption("fineclass.quiet", FALSE))
}
