#' Evaluate predictions against human coding
#'
#' Calls `fineclass.evaluate()` and returns its tidy tables as a named list of
#' tibbles (from the core's `Evaluation.to_dict()`): headline metrics with
#' bootstrap intervals, per-class (or per-dimension) scores, the confusion
#' matrix, agreement statistics, depending on the label shape.
#'
#' @param predictions Predictions: a tibble from [ft_classify()] or
#'   [predict.ft_model()], a path to predictions in Parquet, or an `ft_model`
#'   (then the documents in `truth` are classified first).
#' @param truth The human coding: a data frame (id plus label column(s), or a
#'   long id/dimension/level table) or a path.
#' @param ... Further arguments of `fineclass.evaluate()` (e.g. `label`,
#'   `n_boot`, `seed`, `cluster`).
#' @param text For an `ft_model` in `predictions`: the text column of `truth`.
#' @param id For an `ft_model` in `predictions`: the id column of `truth`.
#' @return A named list of tibbles (class `ft_evaluation`).
#' @examples
#' \donttest{
#' if (ft_available()) {
#'   pred <- data.frame(id = 1:4, label = c("a", "b", "a", "b"))
#'   truth <- data.frame(id = 1:4, label = c("a", "b", "b", "b"))
#'   ft_evaluate(pred, truth)
#' }
#' }
#' @export
ft_evaluate <- function(predictions, truth, ..., text = "text", id = NULL) {
  if (inherits(predictions, "ft_model")) {
    if (!is.data.frame(truth)) {
      stop(fineclass_error(
        "with an ft_model in `predictions`, `truth` must be a data frame holding the texts.", "truth"
      ))
    }
    predictions <- predict(predictions, truth, text = text, id = id)
  }
  dots <- convert_counts(list(...))
  out <- do.call(ft_call, c(
    list("evaluate", prepare_table(predictions, "predictions"), prepare_table(truth, "truth")),
    dots, list(.call = sys.call())
  ))
  if (is.list(out) && !is.data.frame(out)) class(out) <- c("ft_evaluation", "list")
  out
}

# arguments that count things reach Python as integers
convert_counts <- function(args) {
  counts <- c("n_boot", "seed", "seeds", "sizes", "batch_size", "epochs", "n", "max_length", "n_jobs")
  for (nm in intersect(names(args), counts)) {
    if (is.numeric(args[[nm]])) args[[nm]] <- as_py_int(args[[nm]], nm)
    if (nm %in% c("seeds", "sizes")) args[[nm]] <- as_py_list(args[[nm]])
  }
  args
}

#' @export
print.ft_evaluation <- function(x, ...) {
  cat("<ft_evaluation>", length(x), "parts:", paste(names(x), collapse = ", "), "\n")
  for (nm in names(x)) {
    part <- x[[nm]]
    if (is.data.frame(part) && nrow(part) <= 12 && ncol(part) <= 12) {
      cat("\n$", nm, "\n", sep = "")
      print(part)
    } else if (is.atomic(part) && length(part) <= 12) {
      cat("\n$", nm, ": ", paste(format(part), collapse = ", "), "\n", sep = "")
    }
  }
  invisible(x)
}

#' Learning curve: how scores grow with the number of coded documents
#'
#' Calls `fineclass.learning_curve()`: trains at each training size and seed on
#' one fixed test split and scores each run. Plot it with
#' [ft_plot_learning_curve()].
#'
#' @inheritParams ft_train
#' @param sizes Training-set sizes (whole numbers).
#' @param seeds Seeds, one run per size and seed (whole numbers).
#' @param text,label,id,labels,config As in [ft_train()]; `NULL` leaves the
#'   core's default.
#' @param ... Further arguments of `fineclass.learning_curve()` (e.g.
#'   `test_size`, `target`).
#' @return A tibble with one row per run (or, when the core returns more, a
#'   named list holding it).
#' @export
ft_learning_curve <- function(data, sizes, seeds = 1, method = "head", model = "minilm",
                              text = NULL, label = NULL, id = NULL, labels = NULL, config = NULL, ...) {
  if (!is.null(label) && length(label) > 1) label <- as.list(label)
  out <- do.call(ft_call, c(list("learning_curve", prepare_table(data, "data"),
    sizes = as_py_list(as_py_int(sizes, "sizes")), seeds = as_py_list(as_py_int(seeds, "seeds")),
    method = method, model = prepare_model(model), text = text, label = label, id = id,
    labels = prepare_table(labels, "labels"), config = py_config(config)
  ), convert_counts(list(...)), list(.call = sys.call())))
  if (is.list(out) && !is.data.frame(out)) class(out) <- c("ft_learning_curve", "list")
  out
}

#' Propose labels with several models, for human review
#'
#' Calls `fineclass.propose()`: each proposer (a fitted `ft_model`, a zero-shot
#' model name, or an OpenAI-compatible endpoint described by a named list)
#' proposes labels for every document; coders then accept or reject them.
#'
#' @inheritParams ft_classify
#' @param proposers A list of proposers: `ft_model` objects, model names or
#'   paths, or named lists describing endpoints (e.g. `list(name = "gpt4",
#'   url = "https://...", model = "gpt-4o", key_env = "OPENAI_API_KEY")`).
#' @param ... Further arguments of `fineclass.propose()`.
#' @return A long tibble: id, proposed label(s), proposer, confidence where
#'   known.
#' @export
ft_propose <- function(data, proposers, text = "text", id = NULL, ...) {
  if (inherits(proposers, "ft_model") || !is.list(proposers) ||
    (!is.null(names(proposers)) && !inherits(proposers[[1]], "ft_model") && !is.list(proposers[[1]]))) {
    proposers <- list(proposers)
  }
  proposers <- lapply(proposers, function(p) if (is.character(p)) prepare_model(p, "proposers") else p)
  docs <- prepare_docs(data, text, id)
  ft_call("propose", docs$data, proposers = unname(proposers), text = docs$text, id = docs$id, ...)
}
