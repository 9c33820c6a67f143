#' Evaluate predictions against human coding
#'
#' Scores predictions with the core's `evaluate()` and returns its tables as a
#' named list of tibbles: `metrics` (metric, estimate, bootstrap interval
#' lower/upper, n), `per_class` (single and multi-label), `confusion`
#' (single-label: truth, predicted, n), `per_dimension` (dimension -> level),
#' `per_document` and `notes`. For single-label tasks the metrics hold
#' Cohen's kappa and, beside it, Krippendorff's alpha (nominal; model and
#' coders as two coders; no interval). [tidy()][tidy.ft_evaluation],
#' [glance()][glance.ft_evaluation] and [autoplot()][autoplot.ft_evaluation]
#' work on the result.
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
#' @param spec The label set (an [ft_label_spec()], an `ft_model` or a saved
#'   model's folder); default: the classes found in `truth`.
#' @param kind `"single"`, `"multi"` or `"dimlevel"`; inferred when `NULL`.
#' @param ids The documents to score (a vector of ids); default: those of
#'   `truth`.
#' @param on_mismatch `"error"` when predictions and truth cover different
#'   documents, or `"intersect"` to score the documents in both.
#' @param confidence Level of the bootstrap intervals.
#' @param cluster A column of `truth` naming each document's cluster; clusters
#'   are resampled whole.
#' @return A named list of tibbles, of class `ft_evaluation`.
#' @examplesIf ft_available()
#' pred <- data.frame(id = 1:6, label = c("a", "b", "a", "b", "a", "a"))
#' truth <- data.frame(id = 1:6, label = c("a", "b", "b", "b", "a", "a"))
#' ev <- ft_evaluate(pred, truth, bootstrap = 200)
#' ev$metrics
#' @export
ft_evaluate <- function(predictions, truth, label = NULL, id = "id", bootstrap = 1000, seed = 0,
                        text = "text", spec = NULL, kind = NULL, ids = NULL,
                        on_mismatch = c("error", "intersect"), confidence = 0.95, cluster = NULL) {
  check_name_arg(id, "id")
  if (inherits(predictions, "ft_model")) {
    if (!is.data.frame(truth)) {
      stop(fineclass_error(
        "with an ft_model in `predictions`, `truth` must be a data frame holding the texts.", "truth"
      ))
    }
    if (!id %in% names(truth)) {
      truth[[id]] <- seq_len(nrow(truth))
    }
    if (is.null(spec)) spec <- predictions
    predictions <- predict(predictions, truth, text = text, id = id)
  }
  out <- scoring_call(rb()$evaluate, list(predictions = predictions), truth, label = label, id = id,
    bootstrap = count_arg(bootstrap, "bootstrap", 0), seed = seed, spec = spec, kind = kind, ids = ids,
    on_mismatch = on_mismatch, confidence = confidence, cluster = cluster)
  structure(out, class = c("ft_evaluation", "list"))
}

ids_arg <- function(ids) {
  if (is.null(ids)) {
    return(NULL)
  }
  if (is.data.frame(ids)) {
    return(r_to_arrow(ids, "ids"))
  }
  as_py_list(if (is.factor(ids)) as.character(ids) else ids)
}

# single, multi or dimlevel, from the tables an evaluation holds
evaluation_kind <- function(x) {
  if (is.data.frame(x$confusion)) "single" else if (is.data.frame(x$per_dimension)) "dimlevel" else "multi"
}

#' @export
print.ft_evaluation <- function(x, ...) {
  m <- x$metrics
  n <- if (is.data.frame(m) && nrow(m)) m$n[1] else NA
  cat(sprintf("<ft_evaluation> %s labels, %s documents\n", evaluation_kind(x), format(n, big.mark = ",")))
  if (is.data.frame(m)) print(m)
  notes <- if (is.data.frame(x$notes)) x$notes$note else character()
  if (length(notes)) {
    cat("notes:\n")
    cat(paste0("  - ", notes, "\n"), sep = "")
  }
  cat("Tables:", paste(setdiff(names(x), "metrics"), collapse = ", "), "(tidy(), glance(), autoplot())\n")
  invisible(x)
}

#' Compare two models on the same documents
#'
#' The difference between two sets of predictions (a - b) against one truth,
#' with a paired bootstrap: both are scored on the same resamples of the same
#' documents (the core's `paired_bootstrap()`).
#'
#' @param a,b Predictions of the two models (as for [ft_evaluate()]: tibbles
#'   or paths).
#' @inheritParams ft_evaluate
#' @param metric One metric or several; `NULL`: every headline metric.
#' @return A tibble: metric, a, b, difference, lower, upper (the interval of
#'   the difference), p_value (a bootstrap two-sided p-value for "no
#'   difference"), n.
#' @examplesIf ft_available()
#' truth <- data.frame(id = 1:8, label = c("a", "b", "a", "b", "a", "b", "a", "b"))
#' a <- data.frame(id = 1:8, label = c("a", "b", "a", "b", "a", "b", "a", "a"))
#' b <- data.frame(id = 1:8, label = c("a", "a", "b", "b", "a", "a", "a", "a"))
#' ft_compare(a, b, truth, metric = "accuracy", bootstrap = 500)
#' @export
ft_compare <- function(a, b, truth, label = NULL, id = "id", metric = NULL, bootstrap = 1000, seed = 0,
                       spec = NULL, kind = NULL, ids = NULL, on_mismatch = c("error", "intersect"),
                       confidence = 0.95, cluster = NULL) {
  scoring_call("paired_bootstrap", list(a = a, b = b), truth, label = label, id = id,
    bootstrap = count_arg(bootstrap, "bootstrap", 1), seed = seed, spec = spec, kind = kind, ids = ids,
    on_mismatch = on_mismatch, confidence = confidence, cluster = cluster,
    metric = if (length(metric) > 1) as.list(metric) else metric)
}

# evaluate() and paired_bootstrap() of the core read the same things: prediction tables and a truth table
# (of the columns they use), and the same settings, checked here.
scoring_call <- function(fn, predictions, truth, label, id, bootstrap, seed, spec, kind, ids, on_mismatch,
                         confidence, cluster, ...) {
  check_name_arg(id, "id")
  keep <- c(id, label, "label", "labels", "dimension", "level", "confidence")
  tables <- lapply(names(predictions), function(nm) {
    prepare_table(predictions[[nm]], nm, columns = keep, required = id)
  })
  tables[[length(tables) + 1]] <- prepare_table(truth, "truth", columns = c(keep, cluster),
    required = c(id, cluster))
  ft_call(fn, .args = c(tables, list(...), list(
    label = if (length(label) > 1) as.list(label) else label, id = id, bootstrap = bootstrap,
    seed = count_arg(seed, "seed", 0), spec = prepare_spec(spec),
    kind = if (is.null(kind)) NULL else one_of(kind, c("single", "multi", "dimlevel"), "kind"),
    ids = ids_arg(ids), on_mismatch = one_of(on_mismatch, c("error", "intersect"), "on_mismatch"),
    confidence = number_arg(confidence, "confidence", 0, 1, open_low = TRUE, open_high = TRUE),
    cluster = cluster)), .quiet = TRUE)
}

#' Learning curve: how scores grow with the number of coded documents
#'
#' Trains at each training size and seed on one fixed test split, scores each
#' run with the core's `evaluate()`, fits `score = a - b * n^(-c)` and, given a
#' `target`, says how many labels would reach it. Plot it with
#' [autoplot()][autoplot.ft_learning_curve] (or [ft_plot_learning_curve()]).
#'
#' `needed` holds `labels` (the fitted curve's answer; `NA` when the fitted
#' curve levels off below the target) and `lower`/`upper`, the interval from
#' curves refitted to resampled runs: a finite `lower` beside an `NA` estimate
#' means that some resampled curves reach the target although the fitted one
#' does not; `upper` is `NA` when too many never do.
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
#' @param checkpoint A file (JSON lines) that records each finished run. Call
#'   again with the same arguments after an interruption and only the missing
#'   runs are trained; `NULL` for none.
#' @param plot A PNG path for the core's own plot, or `NULL` for none.
#' @return A list of class `ft_learning_curve`: `runs` (one row per size and
#'   seed), `summary` (mean, min, max per size), `metric`, `target`, and with
#'   three sizes or more `fit` (the curve's parameters), `fitted` (the curve on
#'   a grid of sizes) and, with a `target`, `needed`. `tidy()` gives the runs;
#'   `glance()` one row: the metric, the fitted curve's parameters and the
#'   labels needed with their interval; `autoplot()` (ggplot2) draws it.
#' @examplesIf ft_available()
#' curve <- ft_learning_curve(film_reviews[1:60, ], label = "sentiment", sizes = c(8, 16, 24),
#'                            seeds = 0, config = ft_config(epochs = 1, max_length = 16),
#'                            target = 0.8, quiet = TRUE)
#' curve
#' tidy(curve)
#' glance(curve)
#' @export
ft_learning_curve <- function(data, sizes = c(100, 200, 400, 800), seeds = 0:2, text = "text",
                              label = "label", id = NULL, labels = NULL, model = "minilm",
                              method = c("head", "generative", "codebook", "description", "ensemble"),
                              codebook = NULL, config = ft_config(), test = NULL,
                              test_share = 0.2, metric = NULL, target = NULL, checkpoint = NULL, plot = NULL,
                              progress = TRUE, quiet = default_quiet()) {
  method <- one_of(method, ft_methods, "method")
  quiet <- flag_arg(quiet, "quiet")
  config <- as_ft_config(config)
  if (is.atomic(test) && !is.null(test)) test <- as_py_list(test)
  data <- as_docs_frame(data)
  out <- ft_call("learning_curve", prepare_table(data, "data", columns = c(text, id %||% "id",
      if (is.null(labels)) label), required = c(text, id, if (is.null(labels)) label),
      hint = column_hints(text = text, id = id, label = if (is.null(labels)) label)),
    sizes = as_py_list(as_py_int(sizes, "sizes")), seeds = as_py_list(as_py_int(seeds, "seeds")),
    test = if (is.data.frame(test)) r_to_arrow(test, "test") else test,
    test_share = number_arg(test_share, "test_share", 0, 1, open_low = TRUE, open_high = TRUE),
    text = text, label = if (length(label) > 1) as.list(label) else label, id = id,
    labels = prepare_table(labels, "labels", columns = c("id", label), required = c("id", label)),
    model = prepare_model(model), method = method, codebook = prepare_codebook(codebook),
    config = config_py(config), metric = metric,
    target = if (is.null(target)) NULL else number_arg(target, "target", -Inf, Inf),
    plot = if (is.null(plot)) reticulate::py_none() else path.expand(plot),
    checkpoint = if (is.null(checkpoint)) reticulate::py_none() else path.expand(checkpoint),
    progress = flag_arg(progress, "progress") && !quiet, .quiet = quiet
  )
  structure(out, class = c("ft_learning_curve", "list"))
}

#' @export
print.ft_learning_curve <- function(x, ...) {
  cat(sprintf("<ft_learning_curve> %s by training size, %d runs\n", x$metric %||% "score",
    if (is.data.frame(x$runs)) nrow(x$runs) else 0L))
  if (is.data.frame(x$summary)) print(x$summary)
  if (is.data.frame(x$needed)) {
    cat(sprintf("labels needed for %s:\n", format(x$target)))
    print(x$needed)
  }
  invisible(x)
}

#' Propose labels with several models, for human review
#'
#' Each proposer (a fitted or zero-shot `ft_model`, or an OpenAI-compatible
#' endpoint from [ft_endpoint()]) proposes labels for every document; coders
#' then accept or reject them (see [ft_review_export()]).
#'
#' @inheritParams ft_classify
#' @param proposers A list of proposers (`ft_model` objects and endpoints); a
#'   named list names them in the result.
#' @param spec The label set endpoints are asked about: an [ft_label_spec()],
#'   an `ft_model`, or the folder of a saved model. Default: the first
#'   model's.
#' @param prompt Instructions for endpoints, replacing the default ones.
#' @return A long tibble: id, the proposed label (or dimension and level),
#'   proposer, confidence (`NA` where unknown) and error.
#' @examplesIf ft_available()
#' m <- ft_example_model()
#' ft_propose(c("a wonderful film", "a boring mess"), list(sentiment = m))
#' @export
ft_propose <- function(data, proposers, text = "text", id = NULL, spec = NULL, prompt = NULL,
                       progress = FALSE, quiet = default_quiet()) {
  if (inherits(proposers, c("ft_model", "python.builtin.object"))) proposers <- list(proposers)
  if (!is.list(proposers) || !length(proposers)) {
    stop(fineclass_error("`proposers` must be a list of ft_model objects and endpoints (ft_endpoint()).",
      "proposers"))
  }
  quiet <- flag_arg(quiet, "quiet")
  docs <- prepare_docs(data, text, id)
  out <- ft_call("propose", docs$data, proposers = proposers, text = docs$text, id = docs$id,
    spec = prepare_spec(spec), prompt = string_arg(prompt, "prompt", null = TRUE),
    progress = flag_arg(progress, "progress") && !quiet, .quiet = quiet)
  rename_id(out, docs$id_name)
}

#' An OpenAI-compatible chat endpoint, as a proposer
#'
#' The core's `Endpoint`: a chat-completions server (a local vLLM or
#' llama.cpp server, fineclass's own `fineclass serve`, or a hosted API) that
#' [ft_propose()] asks for labels. The API key is read from the environment
#' variable `key_env` at each request and never stored.
#'
#' @param url Base address (e.g. `"http://127.0.0.1:8000"` for a local server)
#'   or the full `.../chat/completions` address.
#' @param model The model name the endpoint expects.
#' @param key_env Name of the environment variable that holds the key, or
#'   `NULL` for a server without one.
#' @param name The proposer's name in tables (default: `model`).
#' @param timeout Seconds to wait for one answer.
#' @param max_retries Retries of a failed request.
#' @param concurrency Requests in flight at once.
#' @param params A named list of further request fields (e.g.
#'   `list(temperature = 0)`).
#' @param cache A folder for cached answers, `TRUE` for the default one,
#'   `FALSE` for none; `NULL`: the core's default.
#' @return A Python `Endpoint` object for [ft_propose()].
#' @examplesIf ft_available()
#' gpt <- ft_endpoint("https://api.openai.com/v1", "gpt-4o")
#' gpt
#' @export
ft_endpoint <- function(url, model, key_env = "OPENAI_API_KEY", name = NULL, timeout = NULL,
                        max_retries = NULL, concurrency = NULL, params = NULL, cache = NULL) {
  ft_call("Endpoint", url = string_arg(url, "url"), model = string_arg(model, "model"),
    key_env = if (is.null(key_env)) reticulate::py_none() else string_arg(key_env, "key_env"),
    name = string_arg(name, "name", null = TRUE),
    timeout = if (is.null(timeout)) NULL else number_arg(timeout, "timeout", 0, Inf, open_low = TRUE),
    max_retries = count_arg(max_retries, "max_retries", 0, null = TRUE),
    concurrency = count_arg(concurrency, "concurrency", 1, null = TRUE), params = params,
    cache = if (is.character(cache)) path.expand(cache) else cache, .convert = FALSE, .quiet = TRUE)
}
