#' Evaluate predictions against human coding
#'
#' Calls `fineclass.evaluate()` and returns its tidy tables as a named list of
#' tibbles (the core's `Evaluation.to_dict()`): `metrics` (metric, estimate,
#' bootstrap interval lower/upper, n), `per_class` (single and multi-label),
#' `confusion` (single-label: truth, predicted, n), `per_dimension`
#' (dimension -> level), `per_document` and `notes`.
#'
#' @param predictions Predictions: a tibble from [ft_classify()] or
#'   [predict.ft_model()] (document-level, or long: id, label or id,
#'   dimension, level), a path to Parquet, or an `ft_model`, in which case
#'   the documents in `truth` are classified first and the model's label set
#'   is used.
#' @param truth The human coding: a data frame (id plus label column, or a
#'   long id/dimension/level table) or a path.
#' @param label The label column, or `c("dimension", "level")`; `NULL` lets the
#'   core find it.
#' @param id The id column of both tables.
#' @param bootstrap Resamples for the percentile intervals (0: none).
#' @param seed Seed of the resampling.
#' @param text For an `ft_model` in `predictions`: the text column of `truth`.
#' @param ... Further arguments of `fineclass.evaluate()`: `spec`, `kind`,
#'   `ids`, `on_mismatch` (`"error"` or `"intersect"`), `confidence`,
#'   `cluster`.
#' @return A named list of tibbles, of class `ft_evaluation`.
#' @examples
#' \donttest{
#' if (ft_available()) {
#'   pred <- data.frame(id = 1:6, label = c("a", "b", "a", "b", "a", "a"))
#'   truth <- data.frame(id = 1:6, label = c("a", "b", "b", "b", "a", "a"))
#'   ev <- ft_evaluate(pred, truth, bootstrap = 200)
#'   ev$metrics
#' }
#' }
#' @export
ft_evaluate <- function(predictions, truth, label = NULL, id = "id", bootstrap = 1000, seed = 0,
                        text = "text", ...) {
  dots <- list(...)
  if (inherits(predictions, "ft_model")) {
    if (!is.data.frame(truth)) {
      stop(fineclass_error(
        "with an ft_model in `predictions`, `truth` must be a data frame holding the texts.", "truth"
      ))
    }
    if (!id %in% names(truth)) {
      truth[[id]] <- seq_len(nrow(truth))
    }
    if (is.null(dots$spec)) dots$spec <- predictions
    predictions <- predict(predictions, truth, text = text, id = id)
    names(predictions)[names(predictions) == "id"] <- id  # predictions call it `id`; truth keeps its name
  }
  if (!is.null(label) && length(label) > 1) label <- as.list(label)
  out <- ft_call("evaluate", prepare_table(predictions, "predictions"), prepare_table(truth, "truth"),
    label = label, id = id, bootstrap = as_py_int(bootstrap, "bootstrap"), seed = as_py_int(seed, "seed"),
    .args = convert_counts(dots)
  )
  if (is.list(out) && !is.data.frame(out)) class(out) <- c("ft_evaluation", "list")
  out
}

# arguments that count things reach Python as integers
convert_counts <- function(args) {
  counts <- c("bootstrap", "seed", "seeds", "sizes", "batch_size", "batch_tokens", "epochs", "max_length",
    "shard_rows")
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
#' one fixed test split, scores each run with `fineclass.evaluate()`, fits
#' `score = a - b * n^(-c)` and, given a `target`, says how many labels would
#' reach it. Plot it with [ft_plot_learning_curve()].
#'
#' @inheritParams ft_train
#' @param sizes Training-set sizes (whole numbers).
#' @param seeds Seeds, one run per size and seed (whole numbers).
#' @param test Optional test documents (a data frame with ids, or ids of
#'   `data`); without it a seeded `test_share` of `data` is held out.
#' @param test_share Share of `data` held out for testing when `test` is not
#'   given.
#' @param metric The score (default: accuracy for single-label, jaccard
#'   otherwise).
#' @param target A score to reach: the result then says how many labels would
#'   be needed.
#' @param plot A PNG path for the core's own plot, or `NULL` for none (use
#'   [ft_plot_learning_curve()] in R).
#' @param checkpoint A file (JSON lines) that records each finished run. Call
#'   again with the same arguments after an interruption and only the missing
#'   runs are trained; `NULL` for none.
#' @param ... Further arguments of `fineclass.learning_curve()`.
#' @return A list of class `ft_learning_curve`: `runs` (one row per size and
#'   seed), `summary` (mean, min, max per size) and, with a `target`,
#'   `needed`.
#' @export
ft_learning_curve <- function(data, sizes = c(100, 200, 400, 800), seeds = 0:2, text = "text",
                              label = "label", id = NULL, labels = NULL, model = "minilm",
                              method = "head", config = NULL, test = NULL, test_share = 0.2,
                              metric = NULL, target = NULL, plot = NULL, checkpoint = NULL, ...) {
  if (length(label) > 1) label <- as.list(label)
  if (is.atomic(test) && !is.null(test)) test <- as_py_list(test)
  out <- ft_call("learning_curve", prepare_table(data, "data"),
    sizes = as_py_list(as_py_int(sizes, "sizes")), seeds = as_py_list(as_py_int(seeds, "seeds")),
    test = if (is.data.frame(test)) r_to_arrow(test, "test") else test, test_share = test_share,
    text = text, label = label, id = id, labels = prepare_table(labels, "labels"),
    model = prepare_model(model), method = method, config = py_config(config), metric = metric,
    target = target, plot = if (is.null(plot)) reticulate::py_none() else path.expand(plot),
    checkpoint = if (is.null(checkpoint)) reticulate::py_none() else path.expand(checkpoint),
    .args = convert_counts(list(...))
  )
  if (is.list(out) && !is.data.frame(out)) class(out) <- c("ft_learning_curve", "list")
  out
}

#' @export
print.ft_learning_curve <- function(x, ...) {
  cat("<ft_learning_curve>\n")
  if (is.data.frame(x$summary)) print(x$summary)
  if (is.data.frame(x$needed)) {
    cat("labels needed:\n")
    print(x$needed)
  }
  invisible(x)
}

#' Propose labels with several models, for human review
#'
#' Calls `fineclass.propose()`: each proposer (a fitted or zero-shot
#' `ft_model`, or an OpenAI-compatible endpoint from [ft_endpoint()]) proposes
#' labels for every document; coders then accept or reject them.
#'
#' @inheritParams ft_classify
#' @param proposers A list of proposers (`ft_model` objects and endpoints); a
#'   named list names them in the result.
#' @param spec The label set endpoints are asked about: an `ft_model`, or the
#'   folder of a saved model. Default: the first model's.
#' @param ... Further arguments of `fineclass.propose()` (e.g. `prompt`).
#' @return A long tibble: id, the proposed label (or dimension and level),
#'   proposer, confidence (`NA` where unknown) and error.
#' @export
ft_propose <- function(data, proposers, text = "text", id = NULL, spec = NULL, ...) {
  if (inherits(proposers, c("ft_model", "python.builtin.object"))) proposers <- list(proposers)
  if (!is.list(proposers) || !length(proposers)) {
    stop(fineclass_error("`proposers` must be a list of ft_model objects and endpoints (ft_endpoint()).",
      "proposers"))
  }
  docs <- prepare_docs(data, text, id)
  ft_call("propose", docs$data, proposers = proposers, text = docs$text, id = docs$id,
    spec = if (is.character(spec)) path.expand(spec) else spec, ...)
}

#' An OpenAI-compatible chat endpoint, as a proposer
#'
#' Calls `fineclass.client.Endpoint()`. The API key is read from the
#' environment variable `key_env` at each request and never stored.
#'
#' @param url Base address (e.g. `"http://127.0.0.1:8000"` for a local server)
#'   or the full `.../chat/completions` address.
#' @param model The model name the endpoint expects.
#' @param key_env Name of the environment variable that holds the key, or
#'   `NULL` for a server without one.
#' @param name The proposer's name in tables (default: `model`).
#' @param ... Further settings: `timeout`, `max_retries`, `backoff`,
#'   `concurrency`, `params`, `cache`.
#' @return A Python `Endpoint` object for [ft_propose()].
#' @export
ft_endpoint <- function(url, model, key_env = "OPENAI_API_KEY", name = NULL, ...) {
  client <- tryCatch(reticulate::import("fineclass.client", convert = FALSE), error = function(e) NULL)
  if (is.null(client)) fc()
  ft_call(client$Endpoint, url = url, model = model,
    key_env = if (is.null(key_env)) reticulate::py_none() else key_env, name = name,
    ..., .convert = FALSE)
}
