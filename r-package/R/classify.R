#' Classify documents
#'
#' Codes every document with a fitted model and returns one row per document,
#' the input's id first (under its own name): `id`, `label` (a factor),
#' `confidence` and `p_<class>` columns for a single-label model; `id`,
#' `labels` (a list column), `n_labels` and `p_<class>` for a multi-label
#' model; `id`, `labels` (a list column of tibbles with dimension, level (an
#' ordered factor), confidence) and `n_labels` for a dimension -> level model.
#'
#' **Texts or files.** A character vector is always documents, one per
#' element, with one exception: a single string that names an existing file or
#' folder, or a glob (`"corpus/*.parquet"`) that matches files, is read as
#' that file. So `ft_classify("Really?", m)` classifies the text "Really?",
#' and so does a single text that ends in `.csv` when no such file exists. To
#' make the intent explicit, pass files as `path =` (an error when nothing
#' matches) and texts as `data =`.
#'
#' **Large corpora.** Given an `output` folder, the documents are streamed
#' from the files in batches and the predictions written there as Parquet
#' shards with a ledger of finished shards: a corpus of millions never passes
#' through R's memory, and an interrupted run resumes where it stopped. Read
#' the predictions back with [ft_read_predictions()].
#'
#' @param data A data frame or tibble with a text column; a character vector
#'   of documents (ids are its names, or 1, 2, ...); a quanteda corpus; or a
#'   path (see "Texts or files").
#' @param model An `ft_model`, or the folder of a model saved with
#'   [ft_save()].
#' @param text Name of the text column.
#' @param id Name of the id column. `NULL`: a column called `id` when there is
#'   one, otherwise row numbers 1, 2, ... (R's convention).
#' @param output Optional folder: predictions are written there as Parquet
#'   shards (resumable) and a small summary of the run is returned instead of
#'   a table.
#' @param path A Parquet or CSV file, a folder of Parquet files or a glob, to
#'   classify instead of `data`.
#' @param long For multi-label and dimension -> level models: return one row
#'   per predicted label, (id, label) or (id, dimension, level, confidence),
#'   instead of a list column.
#' @param batch_tokens Tokens per batch (`NULL`: chosen for the device); lower
#'   it when memory runs out.
#' @param shard_rows Documents per Parquet shard, with `output`.
#' @param resume With `output`: keep the shards a previous run finished
#'   (default), or refuse a folder that holds some.
#' @param shard With `output`: `"i/n"` to classify only the i-th of n shares
#'   of the shards (several machines writing to one folder).
#' @param engine `"local"`, or `"ray"` for one worker per GPU (needs Python's
#'   ray).
#' @param device `"auto"`, `"cpu"`, `"cuda"`, ... for a model given as a
#'   folder.
#' @param probabilities Include the `p_<class>` columns.
#' @inheritParams ft_train
#' @return A tibble (a data frame when tibble is not installed); with
#'   `output`, an `ft_classify_run` summary (rows, seconds, where), returned
#'   invisibly, whose print is three lines.
#' @seealso [predict.ft_model()], [augment.ft_model()],
#'   [ft_read_predictions()].
#' @examplesIf ft_available()
#' m <- ft_example_model()
#' ft_classify(c(a = "a wonderful film", b = "dull and long"), m)
#' ft_classify("Really?", m)   # one text, not a file
#' ft_classify(film_reviews[41:46, ], m, batch_tokens = 512)
#' csv <- tempfile(fileext = ".csv")
#' utils::write.csv(film_reviews[41:60, c("id", "text")], csv, row.names = FALSE)
#' run <- ft_classify(path = csv, model = m, output = file.path(tempdir(), "coded"))
#' run
#' ft_read_predictions(file.path(tempdir(), "coded"), model = m)
#' @export
ft_classify <- function(data, model, text = "text", id = NULL, output = NULL, path = NULL, long = FALSE,
                        batch_tokens = NULL, shard_rows = NULL, resume = TRUE, shard = NULL,
                        engine = c("local", "ray"), device = "auto", probabilities = TRUE, progress = TRUE,
                        quiet = default_quiet()) {
  if (missing(model)) {
    stop(fineclass_error("`model` is missing: pass an ft_model or the path of a saved model.", "model"))
  }
  quiet <- flag_arg(quiet, "quiet")
  engine <- one_of(engine, c("local", "ray"), "engine")
  if (is.character(model) && length(model) == 1 && !is.na(model)) {
    if (!dir.exists(path.expand(model))) {
      stop(fineclass_error(sprintf(paste0(
        "`model`: the folder '%s' does not exist. Pass an ft_model, or the folder of a model saved ",
        "with ft_save()."
      ), model), "model"))
    }
    model <- ft_load(model, device = device)
  }
  check_ft_model(model)
  if (!is.null(path)) {
    if (!missing(data)) {
      stop(fineclass_error("pass the documents either as `data` or as `path`, not both.", "path"))
    }
    docs <- prepare_path(path, text, id)
  } else {
    if (missing(data)) {
      stop(fineclass_error("`data` is missing: pass the documents (or files as `path =`).", "data"))
    }
    docs <- prepare_docs(data, text, id)
  }
  if (!is.null(output)) check_path_arg(output, "output")
  out <- ft_call("classify", docs$data,
    model = model_py(model), output = if (is.null(output)) NULL else path.expand(output),
    text = docs$text, id = docs$id, batch_tokens = count_arg(batch_tokens, "batch_tokens", 1, null = TRUE),
    shard_rows = count_arg(shard_rows, "shard_rows", 1, null = TRUE), resume = flag_arg(resume, "resume"),
    shard = shard, engine = engine, device = string_arg(device, "device"),
    probabilities = flag_arg(probabilities, "probabilities"),
    progress = flag_arg(progress, "progress") && !quiet, .convert = FALSE, .quiet = quiet
  )
  if (!is.null(output)) {
    run <- arrow_to_r(out)
    return(invisible(structure(run, class = "ft_classify_run")))
  }
  prediction_to_r(out, long, model, docs$id_name)
}

#' @export
print.ft_classify_run <- function(x, ...) {
  cat(sprintf("<ft_classify_run> %s documents classified in %s s%s\n",
    format(x$rows_written %||% 0, big.mark = ","), format(x$seconds %||% NA),
    if (!is.null(x$docs_per_second)) sprintf(" (%s docs/s)", format(x$docs_per_second)) else ""))
  done <- x$shards_written + x$shards_skipped
  cat(sprintf("  %s%s finished%s; %s truncated, %s empty\n",
    format(done), if (is.null(x$shards_total)) if (done == 1) " shard" else " shards" else
      sprintf(" of %s shards", format(x$shards_total)),
    if (isTRUE(x$complete)) "" else " (not complete: run again to resume)",
    format(x$truncated_total %||% 0), format(x$empty_total %||% 0)))
  cat(sprintf("  output: %s (read it with ft_read_predictions())\n", x$output))
  invisible(x)
}

#' Read the predictions that ft_classify() wrote to a folder
#'
#' Every finished shard of an output folder as one table, in input order. A
#' run that is not finished yet gives a warning saying how many shards are
#' missing.
#'
#' @param output The folder given to `ft_classify(output = )`.
#' @param model Optional: the model that wrote them, so that labels come back
#'   as factors with its level order (as [ft_classify()] returns them).
#' @inheritParams ft_classify
#' @return A tibble, as [ft_classify()] returns.
#' @examplesIf ft_available()
#' m <- ft_example_model()
#' csv <- tempfile(fileext = ".csv")
#' utils::write.csv(film_reviews[101:120, c("id", "text")], csv, row.names = FALSE)
#' out <- file.path(tempdir(), "coded-reviews")
#' ft_classify(path = csv, model = m, output = out, quiet = TRUE)
#' ft_read_predictions(out, model = m)
#' @export
ft_read_predictions <- function(output, model = NULL, long = FALSE, id = NULL) {
  check_path_arg(output, "output")
  if (!is.null(model)) check_ft_model(model)
  if (!is.null(id)) check_name_arg(id, "id")
  out <- ft_call("read_output", path.expand(output), .convert = FALSE, .quiet = TRUE)
  prediction_to_r(out, long, model, id %||% "id")
}

#' Zero-shot classification
#'
#' `ft_zero_shot()` codes documents by prompting an instruction-tuned causal
#' language model with the label set (and the codebook's descriptions) and
#' scoring every label, without training; it returns predictions shaped as
#' [ft_classify()]'s. `ft_zero_shot_model()` returns the prompted model itself:
#' an `ft_model` that [predict.ft_model()], [ft_classify()], [ft_propose()],
#' [ft_merge_for_inference()] and [ft_save()] use like a trained one.
#'
#' @inheritParams ft_classify
#' @param model A causal language model: a built-in alias (`"smollm2-135m"`),
#'   a Hugging Face id or a local folder.
#' @param labels The label set: a character vector of classes (the dimensions
#'   for `kind = "dimlevel"`); `NULL` takes them from `codebook`.
#' @param codebook Optional codebook (see [ft_train()]): names and
#'   descriptions used in the prompt.
#' @param kind `"single"`, `"multi"` or `"dimlevel"`.
#' @param levels For `kind = "dimlevel"`: the levels, lowest first.
#' @param prompt A prompt template with the slot `{text}` (and optionally
#'   `{codebook}`, `{labels}`, `{levels}`); `NULL`: the built-in one.
#' @param max_length Tokens of each document kept in the prompt.
#' @param threshold Presence threshold for multi-label and dimension -> level.
#' @param device `"auto"`, `"cpu"`, `"cuda"`, ...
#' @param trust_remote_code Let transformers run the model's own code.
#' @return `ft_zero_shot()`: a tibble of predictions. `ft_zero_shot_model()`:
#'   an `ft_model`.
#' @examplesIf ft_available()
#' zs <- ft_zero_shot_model(labels = c("positive", "negative"), max_length = 32)
#' zs
#' predict(zs, c(a = "a wonderful film", b = "a boring mess"))
#' # the same in one call: ft_zero_shot(texts, labels = c("positive", "negative"))
#' @export
ft_zero_shot <- function(data, model = "smollm2-135m", labels = NULL, codebook = NULL, text = "text",
                         id = NULL, kind = c("single", "multi", "dimlevel"), levels = NULL, prompt = NULL,
                         max_length = 256, threshold = 0.5, long = FALSE, batch_tokens = NULL,
                         device = "auto", trust_remote_code = FALSE, quiet = default_quiet()) {
  zs <- ft_zero_shot_model(model = model, labels = labels, codebook = codebook, kind = kind, levels = levels,
    prompt = prompt, max_length = max_length, threshold = threshold, device = device,
    trust_remote_code = trust_remote_code)
  ft_classify(data, zs, text = text, id = id, long = long, batch_tokens = batch_tokens, progress = FALSE,
    quiet = quiet)
}

#' @rdname ft_zero_shot
#' @export
ft_zero_shot_model <- function(model = "smollm2-135m", labels = NULL, codebook = NULL,
                               kind = c("single", "multi", "dimlevel"), levels = NULL, prompt = NULL,
                               max_length = 256, threshold = 0.5, device = "auto",
                               trust_remote_code = FALSE) {
  kind <- one_of(kind, c("single", "multi", "dimlevel"), "kind")
  if (!is.null(labels) && !is.data.frame(labels)) labels <- as_py_list(as.character(labels))
  py <- ft_call("zero_shot_classifier", prepare_model(model), labels = labels,
    codebook = prepare_codebook(codebook), kind = kind, levels = as_py_list(levels),
    prompt = string_arg(prompt, "prompt", null = TRUE), max_length = count_arg(max_length, "max_length", 1),
    threshold = number_arg(threshold, "threshold", 0, 1, open_low = TRUE, open_high = TRUE),
    device = string_arg(device, "device"), trust_remote_code = flag_arg(trust_remote_code, "trust_remote_code"),
    .convert = FALSE, .quiet = TRUE)
  new_ft_model(py)
}

# Documents for the core: a data frame becomes an Arrow table of the columns needed (with R row numbers as
# ids when it has none), a character vector becomes a table (id = names or 1..n), a single string naming a
# file (or a glob matching files) stays a path for streaming. `id_name`: the name the result's id takes.
prepare_docs <- function(data, text = "text", id = NULL, arg = "data") {
  check_name_arg(text, "text")
  if (!is.null(id)) check_name_arg(id, "id")
  if (inherits(data, "python.builtin.object")) {
    return(list(data = data, text = text, id = id, id_name = id %||% "id"))
  }
  data <- as_docs_frame(data)
  if (is.character(data) && length(data) == 1 && !is.na(data) && names_files(data)) {
    return(list(data = path.expand(data), text = text, id = id, id_name = id %||% "id"))
  }
  if (is.character(data) || is.factor(data)) {
    ids <- names(data) %||% seq_along(data)
    data <- as.character(data)
    frame <- new_frame(list(id = ids, text = unname(data)), length(data))
    return(list(data = r_to_arrow(frame, arg), text = "text", id = "id", id_name = "id"))
  }
  if (is.data.frame(data)) {
    check_columns(data, c(text, id), arg, column_hints(text = text, id = id))
    id_name <- id %||% "id"
    if (is.null(id) && !"id" %in% names(data)) {
      cols <- list(id = seq_len(nrow(data)), text = data[[text]])
      names(cols)[2] <- text
      data <- new_frame(cols, nrow(data))
      id <- "id"
    } else {
      data <- data[unique(c(id %||% "id", text))]
    }
    return(list(data = r_to_arrow(data, arg), text = text, id = id, id_name = id_name))
  }
  stop(fineclass_error(sprintf(
    "`%s` must be a data frame, a character vector of documents, or a path to Parquet/CSV; got %s.",
    arg, describe_value(data)
  ), argument = arg))
}

# Files given explicitly as `path =`: they must exist.
prepare_path <- function(path, text, id) {
  check_name_arg(text, "text")
  if (!is.null(id)) check_name_arg(id, "id")
  if (!is.character(path) || length(path) != 1 || is.na(path) || !nzchar(path)) {
    stop(fineclass_error(sprintf("`path` must be one file, folder or glob (a string); got %s.",
      describe_value(path)), "path"))
  }
  if (!names_files(path)) {
    stop(fineclass_error(sprintf("`path`: '%s' is no file or folder, and as a glob it matches no file.", path),
      "path"))
  }
  list(data = path.expand(path), text = text, id = id, id_name = id %||% "id")
}

# A single string is a file when it names an existing file or folder, or is a glob that matches files.
names_files <- function(x) {
  x <- path.expand(x)
  file.exists(x) || (grepl("[*?[]", x) && length(Sys.glob(x)) > 0)
}

# A quanteda corpus as a data frame: id (document names), text, and the docvars. A corpus (quanteda 3 and
# later) is a character vector of texts named by document, with its docvars in the attribute "docvars"
# (quanteda's own columns there end in "_"); read that way, quanteda need not be installed.
as_docs_frame <- function(data) {
  if (!inherits(data, "corpus")) {
    return(data)
  }
  vars <- attr(data, "docvars", exact = TRUE)
  ids <- names(data) %||% (if (is.data.frame(vars)) as.character(vars$docname_))
  texts <- unclass(data)
  attributes(texts) <- NULL
  cols <- list(id = ids %||% seq_along(texts), text = as.character(texts))
  if (is.data.frame(vars)) {
    user <- vars[!grepl("_$", names(vars))]
    cols <- c(cols, as.list(user[setdiff(names(user), names(cols))]))
  }
  new_frame(cols, length(texts))
}

check_name_arg <- function(x, arg) {
  if (!is.character(x) || length(x) != 1 || is.na(x) || !nzchar(x)) {
    stop(fineclass_error(sprintf("`%s` must be the name of a column (one string); got %s.", arg,
      if (is.character(x)) sprintf("%d strings", length(x)) else describe_value(x)), argument = arg))
  }
}
