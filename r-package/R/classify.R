#' Classify documents
#'
#' Calls `fineclass.classify()`: codes every document with a fitted model and
#' returns one row per document, the input's id first: `id`, `label`,
#' `confidence` and `p_<class>` columns for a single-label model; `id`,
#' `labels` (a list column), `n_labels` and `p_<class>` for a multi-label
#' model; `id`, `labels` (a list column of tibbles with dimension, level,
#' confidence) and `n_labels` for a dimension -> level model.
#'
#' @param data A data frame or tibble with a text column; a character vector
#'   of documents (ids are its names, or 1, 2, ...); or a path to a Parquet or
#'   CSV file, a folder of Parquet files or a glob (streamed by Python, never
#'   loaded into R).
#' @param model An `ft_model`, or a path to a saved model (see [ft_save()]).
#' @param text Name of the text column.
#' @param id Name of the id column. `NULL`: a column called `id` when there is
#'   one, otherwise row numbers 1, 2, ... (R's convention).
#' @param output Optional folder: predictions are written there as Parquet
#'   shards (resumable; read them with [ft_read_predictions()]) and the value
#'   returned is the core's summary (rows, seconds, where), not a table.
#' @param long For multi-label and dimension -> level models: return one row
#'   per predicted label, (id, label) or (id, dimension, level, confidence),
#'   instead of a list column.
#' @param ... Further arguments of `fineclass.classify()` (e.g. `batch_size`).
#' @return A tibble (a data frame when tibble is not installed).
#' @examples
#' \donttest{
#' if (ft_available()) {
#'   docs <- data.frame(
#'     text = c("great film", "awful plot", "loved it", "boring", "superb", "dull"),
#'     label = c("pos", "neg", "pos", "neg", "pos", "neg")
#'   )
#'   m <- ft_train(docs, config = list(epochs = 1))
#'   ft_classify(c(a = "a wonderful film", b = "dull and long"), m)
#' }
#' }
#' @export
ft_classify <- function(data, model, text = "text", id = NULL, output = NULL, long = FALSE, ...) {
  if (missing(model)) {
    stop(fineclass_error("`model` is missing: pass an ft_model or the path of a saved model.", "model"))
  }
  if (is.character(model) && length(model) == 1 && !is.na(model) && !dir.exists(path.expand(model))) {
    stop(fineclass_error(sprintf(paste0(
      "`model`: the folder '%s' does not exist. Pass an ft_model, or the folder of a model saved ",
      "with ft_save()."
    ), model), "model"))
  }
  docs <- prepare_docs(data, text, id)
  out <- ft_call("classify", docs$data,
    model = prepare_model(model), output = if (is.null(output)) NULL else path.expand(output),
    text = docs$text, id = docs$id, ..., .convert = FALSE
  )
  if (!is.null(output) && !is_py_table(out)) {
    return(arrow_to_r(out))
  }
  prediction_to_r(out, long)
}

#' Read the predictions that ft_classify() wrote to a folder
#'
#' Calls `fineclass.infer.read_output()`: every finished shard of an output
#' folder as one table, in input order. A run that is not finished yet gives a
#' warning saying how many shards are missing.
#'
#' @param output The folder given to `ft_classify(output = )`.
#' @inheritParams ft_classify
#' @return A tibble, as [ft_classify()] returns.
#' @export
ft_read_predictions <- function(output, long = FALSE) {
  check_path_arg(output, "output")
  fc()
  infer <- reticulate::import("fineclass.infer", convert = FALSE)
  out <- ft_call(infer$read_output, path.expand(output), .convert = FALSE)
  prediction_to_r(out, long)
}

is_py_table <- function(x) {
  inherits(x, "pyarrow.lib.Table")
}

#' Zero-shot classification
#'
#' Calls `fineclass.zero_shot()`: prompts an instruction-tuned causal language
#' model with the label set (and codebook descriptions) and scores every
#' label, without training. Returns predictions in the same shape as
#' [ft_classify()]; when the core returns a classifier instead, an
#' `ft_model` that [predict.ft_model()] can use.
#'
#' @inheritParams ft_classify
#' @param model A causal language model: a built-in alias (`"smollm2-135m"`),
#'   a Hugging Face id or a local folder.
#' @param labels The label set: a character vector of classes.
#' @param codebook Optional codebook (see [ft_train()]): names and
#'   descriptions used in the prompt.
#' @param ... Further arguments of `fineclass.zero_shot()`.
#' @return A tibble of predictions, or an `ft_model`.
#' @export
ft_zero_shot <- function(data, model = "smollm2-135m", labels = NULL, codebook = NULL, text = "text",
                         id = NULL, long = FALSE, ...) {
  docs <- prepare_docs(data, text, id)
  if (!is.null(labels) && !is.data.frame(labels)) labels <- as_py_list(as.character(labels))
  out <- ft_call("zero_shot", docs$data,
    model = prepare_model(model), labels = prepare_labels(labels),
    codebook = prepare_codebook(codebook), text = docs$text, id = docs$id, ..., .convert = FALSE
  )
  if (is_py_table(out)) {
    return(prediction_to_r(out, long))
  }
  if (reticulate::py_has_attr(out, "predict")) {
    return(new_ft_model(out))
  }
  arrow_to_r(out)
}

prepare_labels <- function(labels) {
  if (is.data.frame(labels)) r_to_arrow(labels, "labels") else labels
}

# Documents for the core: a data frame becomes an Arrow table (with R row numbers as ids when it has
# none), a character vector becomes a table (id = names or 1..n), a path stays a path for streaming.
prepare_docs <- function(data, text = "text", id = NULL, arg = "data") {
  check_name_arg(text, "text")
  if (!is.null(id)) check_name_arg(id, "id")
  if (inherits(data, "python.builtin.object")) {
    return(list(data = data, text = text, id = id))
  }
  if (is.character(data) && length(data) == 1 && !is.na(data) && looks_like_path(data)) {
    return(list(data = path.expand(data), text = text, id = id))
  }
  if (is.character(data) || is.factor(data)) {
    ids <- names(data) %||% seq_along(data)
    data <- as.character(data)
    frame <- new_frame(list(id = ids, text = unname(data)), length(data))
    return(list(data = r_to_arrow(frame, arg), text = "text", id = "id"))
  }
  if (is.data.frame(data)) {
    if (is.null(id) && !"id" %in% names(data)) {
      data <- c(list(id = seq_len(nrow(data))), as.list(data))
      data <- new_frame(data, length(data$id))
      id <- "id"
    }
    return(list(data = r_to_arrow(data, arg), text = text, id = id))
  }
  stop(fineclass_error(sprintf(
    "`%s` must be a data frame, a character vector of documents, or a path to Parquet/CSV; got %s.",
    arg, describe_value(data)
  ), argument = arg))
}

looks_like_path <- function(x) {
  file.exists(path.expand(x)) || grepl("\\.(parquet|pq|csv|tsv)$", x, ignore.case = TRUE) ||
    grepl("[*?]", x) && !grepl("\\s", x)
}

check_name_arg <- function(x, arg) {
  if (!is.character(x) || length(x) != 1 || is.na(x) || !nzchar(x)) {
    stop(fineclass_error(sprintf("`%s` must be the name of a column (one string); got %s.", arg,
      if (is.character(x)) sprintf("%d strings", length(x)) else describe_value(x)), argument = arg))
  }
}
