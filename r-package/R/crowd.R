# The hybrid workflow: models propose labels (ft_propose()), coders accept or reject them in review sheets,
# the accepted labels become a training set. Each verb calls one function of the core.

#' Review sheets for coders
#'
#' `ft_review_export()` writes one review sheet (CSV or XLSX) per coder: one
#' row per proposal, blind to who proposed it, with an empty `accept` column
#' to fill with Y or N, and a share of the documents given to two coders to
#' measure their agreement. `ft_review_import()` reads the filled sheets back
#' and checks every row (unknown items, edited proposals or texts, missing,
#' invalid or duplicate decisions are reported, never guessed).
#'
#' @param proposals The proposals: the tibble [ft_propose()] returns, or any
#'   long table with id and dimension/level (or label) and optionally
#'   proposer; or a path.
#' @param path `folder/review.csv` or `folder/review.xlsx`; each coder's sheet
#'   is `folder/review-<coder>.csv`.
#' @param coders Coder names (letters, digits, `_ - .`); `NULL`: one sheet
#'   without a coder name.
#' @param overlap The share of documents a second coder also reviews (needs
#'   two coders or more).
#' @param seed Seed of the assignment of documents to coders.
#' @param texts Optional documents (a data frame with id and text columns, or
#'   a path) to show each text beside its proposals.
#' @param text,id The text and id columns of `texts`.
#' @param overwrite Replace existing sheets (filled decisions would be lost).
#' @return `ft_review_export()`: the paths of the sheets written.
#'   `ft_review_import()`: a tibble of decisions, one row per decision and
#'   proposer: id, dimension, level (or label), proposer, coder, accepted
#'   (Y/N), item, sheet, row.
#' @seealso [ft_acceptance()], [ft_assemble()].
#' @examplesIf ft_available()
#' proposals <- data.frame(id = c(1, 1, 2), label = c("pos", "neg", "neg"),
#'                         proposer = c("model", "gpt", "model"))
#' dir <- file.path(tempdir(), "review")
#' sheets <- ft_review_export(proposals, file.path(dir, "review.csv"), coders = "ana",
#'                            overwrite = TRUE)
#' sheet <- utils::read.csv(sheets[1], colClasses = "character")
#' sheet$accept <- c("Y", "N", "Y")
#' utils::write.csv(sheet, sheets[1], row.names = FALSE)
#' decisions <- ft_review_import(sheets, proposals)
#' decisions
#' @export
ft_review_export <- function(proposals, path, coders = NULL, overlap = 0.1, seed = 0, texts = NULL,
                             text = "text", id = NULL, overwrite = FALSE) {
  check_path_arg(path)
  out <- ft_call("export_review", prepare_table(proposals, "proposals"), path.expand(path),
    coders = if (is.null(coders)) NULL else as_py_list(string_arg(coders, "coders", many = TRUE)),
    overlap = number_arg(overlap, "overlap", 0, 1), seed = count_arg(seed, "seed", 0),
    texts = prepare_table(texts, "texts"), text = text, id = id, overwrite = flag_arg(overwrite, "overwrite"),
    .quiet = TRUE)
  as.character(unlist(out))
}

#' @rdname ft_review_export
#' @param sheets The filled sheets: paths (or a glob).
#' @param complete Require that every proposal is in some sheet.
#' @export
ft_review_import <- function(sheets, proposals, complete = TRUE) {
  if (!is.character(sheets) || !length(sheets) || anyNA(sheets)) {
    stop(fineclass_error("`sheets` must be the paths of the filled review sheets.", "sheets"))
  }
  ft_call("import_review", as_py_list(path.expand(sheets)), prepare_table(proposals, "proposals"),
    complete = flag_arg(complete, "complete"), .quiet = TRUE)
}

#' How often proposals were accepted, and how far coders agree
#'
#' The core's `acceptance_report()` on a decisions table (from
#' [ft_review_import()], or a record such as the paper's `proposals.parquet`
#' with proposer, coder and accepted columns).
#'
#' @param decisions A decisions table or a path.
#' @return A list of class `ft_acceptance` of tibbles: `proposer`,
#'   `dimension` and `level` (or `label`), `coder` (decisions, accepted, rate
#'   per group) and `agreement` (per coder pair and over all pairs: items,
#'   agreement, Cohen's kappa, Krippendorff's alpha).
#' @examplesIf ft_available()
#' decisions <- data.frame(
#'   id = c(1, 1, 2, 2, 3), label = c("pos", "neg", "neg", "neg", "pos"),
#'   proposer = c("model", "gpt", "model", "gpt", "model"),
#'   coder = c("ana", "ana", "ben", "ben", "ana"), accepted = c("Y", "N", "Y", "Y", "N")
#' )
#' ft_acceptance(decisions)
#' @export
ft_acceptance <- function(decisions) {
  out <- ft_call("acceptance_report", prepare_table(decisions, "decisions"), .quiet = TRUE)
  structure(out, class = c("ft_acceptance", "list"))
}

#' @export
print.ft_acceptance <- function(x, ...) {
  cat("<ft_acceptance> acceptance of proposals, by", paste(setdiff(names(x), "agreement"), collapse = ", "),
    "\n")
  if (is.data.frame(x$proposer)) print(x$proposer)
  if (is.data.frame(x$agreement)) {
    cat("agreement between coders:\n")
    print(x$agreement[c("coder_a", "coder_b", "items", "agreement", "kappa", "alpha")])
  }
  invisible(x)
}

#' Assemble a training set from accepted proposals
#'
#' The core's `assemble_training_set()`: the accepted labels as a long table,
#' with explicit rules for disagreement between coders and for conflicting
#' accepted labels. Train on it with `ft_train(docs, labels = assembled, ...)`.
#'
#' @inheritParams ft_acceptance
#' @param rule When a proposal counts as accepted: `"any-accept"` (one coder
#'   accepted it), `"majority"` or `"unanimous"`.
#' @param conflict Two accepted levels for one dimension of a document (or two
#'   labels for `kind = "single"`): `"priority"` (the earliest proposer in
#'   `priority`), `"votes"`, `"drop"` or `"error"`.
#' @param priority Proposer names, most trusted first (default: their order
#'   of appearance).
#' @param kind `"dimlevel"`, `"multi"` or `"single"`; `NULL`: from the
#'   columns.
#' @param keep_empty Keep reviewed documents without an accepted label, as one
#'   row with `NA` labels.
#' @return A tibble: id, dimension, level (or label), accepts, rejects.
#' @examplesIf ft_available()
#' decisions <- data.frame(
#'   id = c(1, 1, 2, 2, 3), label = c("pos", "neg", "neg", "neg", "pos"),
#'   proposer = c("model", "gpt", "model", "gpt", "model"),
#'   coder = c("ana", "ana", "ben", "ben", "ana"), accepted = c("Y", "N", "Y", "Y", "N")
#' )
#' ft_assemble(decisions)
#' @export
ft_assemble <- function(decisions, rule = c("any-accept", "majority", "unanimous"),
                        conflict = c("priority", "votes", "drop", "error"), priority = NULL, kind = NULL,
                        keep_empty = TRUE) {
  ft_call("assemble_training_set", prepare_table(decisions, "decisions"),
    rule = one_of(rule, c("any-accept", "majority", "unanimous"), "rule"),
    conflict = one_of(conflict, c("priority", "votes", "drop", "error"), "conflict"),
    priority = if (is.null(priority)) NULL else as_py_list(string_arg(priority, "priority", many = TRUE)),
    kind = if (is.null(kind)) NULL else one_of(kind, c("single", "multi", "dimlevel"), "kind"),
    keep_empty = flag_arg(keep_empty, "keep_empty"), .quiet = TRUE)
}

#' A label set
#'
#' The core's `LabelSpec`: the shape of a task, its classes (or dimensions)
#' and levels, and an optional codebook. Pass it as `spec` to [ft_train()] (to
#' fix the classes, e.g. all 46 dimensions when a small sample covers fewer),
#' [ft_evaluate()] or [ft_propose()].
#'
#' @param classes The class codes (the dimensions for `kind = "dimlevel"`).
#' @param kind `"single"`, `"multi"` or `"dimlevel"`.
#' @param levels For `"dimlevel"`: the levels, lowest first (default low,
#'   medium, high).
#' @param codebook Optional: a named character vector (code = name), or a data
#'   frame with code, name and description columns.
#' @param max_labels For `"multi"`: the most labels one document may carry.
#' @return An `ft_label_spec` (a list: kind, classes, levels, names,
#'   descriptions).
#' @examplesIf ft_available()
#' ft_label_spec(c("joy", "anger"), kind = "dimlevel", levels = c("low", "high"))
#' @export
ft_label_spec <- function(classes, kind = c("single", "multi", "dimlevel"), levels = NULL, codebook = NULL,
                          max_labels = NULL) {
  kind <- one_of(kind, c("single", "multi", "dimlevel"), "kind")
  classes <- as.character(classes)
  if (!length(classes) || anyNA(classes)) {
    stop(fineclass_error("`classes` must be a vector of class codes without NA.", "classes"))
  }
  book <- if (is.null(codebook)) list(names = list(), descriptions = list()) else codebook_parts(codebook)
  py <- ft_call("LabelSpec", kind = kind, classes = as_py_list(classes),
    levels = if (is.null(levels)) NULL else as_py_list(as.character(levels)),
    names = reticulate::py_dict(names(book$names) %||% character(), unname(book$names)),
    descriptions = reticulate::py_dict(names(book$descriptions) %||% character(), unname(book$descriptions)),
    max_labels = count_arg(max_labels, "max_labels", 1, null = TRUE), .convert = FALSE, .quiet = TRUE)
  label_spec_from_py(py)
}

label_spec_from_py <- function(py) {
  spec <- reticulate::py_to_r(py$to_dict())
  structure(list(kind = spec$kind, classes = as.character(unlist(spec$classes)),
    levels = as.character(unlist(spec$levels)), names = spec$names, descriptions = spec$descriptions,
    max_labels = spec$max_labels), class = "ft_label_spec")
}

label_spec_py <- function(x) {
  values <- unclass(x)
  ft_call("LabelSpec", kind = values$kind, classes = as_py_list(values$classes),
    levels = if (length(values$levels)) as_py_list(values$levels) else NULL,
    names = reticulate::py_dict(names(values$names) %||% character(), unname(values$names)),
    descriptions = reticulate::py_dict(names(values$descriptions) %||% character(), unname(values$descriptions)),
    max_labels = values$max_labels, .convert = FALSE, .quiet = TRUE)
}

codebook_parts <- function(codebook) {
  if (is.data.frame(codebook)) {
    code <- as.character(codebook[[intersect(c("code", "class", "dimension", "label"), names(codebook))[1]]])
    get <- function(col) if (col %in% names(codebook)) stats::setNames(as.list(as.character(codebook[[col]])), code)
    return(list(names = get("name") %||% list(), descriptions = (get("description") %||% get("definition")) %||% list()))
  }
  if (!is.null(names(codebook))) {
    return(list(names = as.list(vapply(codebook, as.character, character(1))), descriptions = list()))
  }
  stop(fineclass_error("`codebook` must be a named vector (code = name) or a data frame with code and name.",
    "codebook"))
}

#' @export
print.ft_label_spec <- function(x, ...) {
  cat(sprintf("<ft_label_spec> %s, %d %s: %s%s\n", x$kind, length(x$classes),
    if (identical(x$kind, "dimlevel")) "dimensions" else "classes",
    paste(utils::head(x$classes, 8), collapse = ", "), if (length(x$classes) > 8) ", ..." else ""))
  if (length(x$levels)) cat("  levels:", paste(x$levels, collapse = " < "), "\n")
  invisible(x)
}

# A label set for the core: an ft_label_spec, an ft_model (its label set) or a saved model's folder.
prepare_spec <- function(spec) {
  if (is.null(spec)) {
    return(NULL)
  }
  if (inherits(spec, "ft_label_spec")) {
    return(label_spec_py(spec))
  }
  if (inherits(spec, "ft_model")) {
    return(model_py(spec, "spec"))
  }
  if (is.character(spec) && length(spec) == 1 && !is.na(spec)) {
    return(path.expand(spec))
  }
  if (inherits(spec, "python.builtin.object")) {
    return(spec)
  }
  stop(fineclass_error(sprintf(
    "`spec` must be an ft_label_spec(), an ft_model or the folder of a saved model; got %s.",
    describe_value(spec)), "spec"))
}

#' Read a Parquet or CSV file into R
#'
#' The core's reader (pyarrow), brought to R through the NA-safe conversion
#' layer: a Parquet or CSV file, a folder of Parquet files or a glob becomes
#' one tibble. Handy where the R `arrow` package is not installed.
#'
#' @param path A file, a folder of Parquet files, or a glob.
#' @param columns Optional: the columns to read.
#' @return A tibble (a data frame when tibble is not installed).
#' @examplesIf ft_available()
#' csv <- tempfile(fileext = ".csv")
#' utils::write.csv(film_reviews[1:5, ], csv, row.names = FALSE)
#' ft_read_data(csv)
#' @export
ft_read_data <- function(path, columns = NULL) {
  if (!is.character(path) || length(path) != 1 || is.na(path) || !names_files(path)) {
    stop(fineclass_error(sprintf("`path` must name a file, a folder or a glob that matches files; got %s.",
      shown_value(path)), "path"))
  }
  tbl <- ft_call("read_table", path.expand(path), .convert = FALSE, .quiet = TRUE)
  if (!is.null(columns)) {
    columns <- string_arg(columns, "columns", many = TRUE)
    have <- as.character(reticulate::py_to_r(tbl$column_names))
    missing <- setdiff(columns, have)
    if (length(missing)) {
      stop(fineclass_error(sprintf("`columns`: %s not in '%s'; its columns are: %s.",
        paste0("`", missing, "`", collapse = ", "), path, paste(have, collapse = ", ")), "columns"))
    }
    tbl <- tbl$select(as.list(columns))
  }
  arrow_to_r(tbl)
}
