#' Fine-tune a classifier
#'
#' Calls the core's `train()`: fine-tunes a small open language model on
#' labelled documents and returns the fitted classifier as an `ft_model`.
#'
#' The three label shapes of the core are all reachable from R:
#' * single-label: `label` names a column with one class per document
#'   (character, integer or factor). Trained on a factor, predictions come
#'   back as a factor with the same levels in the same order;
#' * multi-label: `label` names a list column of classes, or `labels` is a
#'   long table with one row per (id, label);
#' * dimension -> level: `labels` is a long table with columns id, dimension,
#'   level and `label = c("dimension", "level")`. When the level column is an
#'   ordered factor, its levels (lowest first) are the model's levels.
#'
#' Only the columns the call needs (text, id, label) are sent to Python, so
#' other columns of any class may stay in `data`. A quanteda corpus works too:
#' its texts are the documents, its document names the ids and its docvars
#' the label columns.
#'
#' **Seeds.** `seed` (or `ft_config(seed = )`) seeds training; R's
#' `set.seed()` does not reach Python and has no effect on it.
#'
#' @param data A data frame (or tibble) with a text column, a quanteda corpus,
#'   or a path to a Parquet/CSV file, a folder of Parquet files or a glob.
#' @param text Name of the text column.
#' @param label Name of the label column; with a long `labels` table, the
#'   label column of that table, or `c("dimension", "level")`.
#' @param id Name of the id column. `NULL` uses a column called `id` when there
#'   is one, row numbers otherwise.
#' @param labels Optional long label table (data frame or path), see above.
#' @param model A built-in alias (`"minilm"`, `"smollm2-135m"`), a Hugging Face
#'   model id or a local folder.
#' @param method `"head"` (a classification head), `"generative"` (the label
#'   as text, as in the paper), or one of the methods that read the codebook's
#'   definitions: `"codebook"` (a frozen encoder and the text's likeness to
#'   each definition), `"description"` (a fine-tuned encoder whose classes
#'   start at their definitions) or `"ensemble"` (the two averaged); these
#'   three need `codebook`. See the README for which suits which task.
#' @param codebook Optional codebook: a data frame with columns `code` (or
#'   `class`, `dimension`, `label`), `name` and `description` (or
#'   `definition`), as the coders' own file has them; a named character vector
#'   (code = name), a named list, or a path to a JSON/CSV file.
#' @param config Training settings: [ft_config()] (or a named list of its
#'   arguments).
#' @param epochs,learning_rate,batch_size,max_length,seed,validation The most
#'   common settings (see [ft_config()]); when given, they override `config`.
#' @param levels For dimension -> level labels: the levels, lowest first
#'   (default: the level column's levels when it is an ordered factor, else
#'   low, medium, high).
#' @param spec A label set from [ft_label_spec()] (or a saved model's folder)
#'   that fixes the classes, e.g. so that models trained on subsets share one
#'   label set.
#' @param kind `"single"`, `"multi"` or `"dimlevel"`, when the data do not
#'   make it clear.
#' @param resume Continue an interrupted run from the checkpoint in
#'   `ft_config(checkpoint_dir = )`.
#' @param trust_remote_code Let transformers run a model's own Python code
#'   (off unless you trust the model).
#' @param progress Show a progress bar.
#' @param quiet Show nothing (no progress bar, no notices); the default is the
#'   option `fineclass.quiet`. `suppressMessages()` silences them too.
#' @return An `ft_model`.
#' @seealso [ft_config()], [ft_classify()], [predict.ft_model()],
#'   [ft_save()], [augment.ft_model()].
#' @examplesIf ft_available()
#' docs <- film_reviews[1:40, ]
#' m <- ft_train(docs, label = "sentiment", epochs = 1, max_length = 16, seed = 1)
#' m
#' predict(m, c("what a great film", "so dull"))
#' @export
ft_train <- function(data, text = "text", label = "label", id = NULL, labels = NULL, model = "minilm",
                     method = c("head", "generative", "codebook", "description", "ensemble"), codebook = NULL,
                     config = ft_config(), epochs = NULL,
                     learning_rate = NULL, batch_size = NULL, max_length = NULL, seed = NULL,
                     validation = NULL, levels = NULL, spec = NULL, kind = NULL, resume = FALSE,
                     trust_remote_code = FALSE, progress = TRUE, quiet = default_quiet()) {
  method <- one_of(method, ft_methods, "method")
  config <- as_ft_config(config)
  common <- list(epochs = epochs, learning_rate = learning_rate, batch_size = batch_size,
                 max_length = max_length, seed = seed, validation = validation)
  common <- common[!vapply(common, is.null, logical(1))]
  if (length(common)) config <- do.call(ft_config, utils::modifyList(unclass(config), common))
  quiet <- flag_arg(quiet, "quiet")
  if (!is.null(kind)) kind <- one_of(kind, c("single", "multi", "dimlevel"), "kind")
  data <- as_docs_frame(data)
  label_pair <- length(label) == 2
  if (!is.character(label) || !length(label) %in% 1:2 || anyNA(label)) {
    stop(fineclass_error("`label` must be the name of the label column, or c(\"dimension\", \"level\").",
      "label"))
  }
  if (label_pair && is.null(labels)) {
    stop(fineclass_error(paste0("`label` names two columns (dimension, level) only together with a long ",
      "`labels` table."), "label"))
  }
  needed <- c(text, id %||% "id", if (is.null(labels)) label)
  train_data <- prepare_table(data, "data", columns = needed, required = c(text, id, if (is.null(labels)) label),
    hint = column_hints(text = text, id = id, label = if (is.null(labels)) label))
  train_labels <- prepare_table(labels, "labels", columns = c("id", label), required = c("id", label))
  # evaluated here, not as a promise inside new_ft_model(): an error must not leave a half-run promise
  py <- ft_call(rb()$train, train_data,
    text = text, label = if (label_pair) as.list(label) else label, id = id, labels = train_labels,
    model = prepare_model(model), method = method, codebook = prepare_codebook(codebook),
    config = config_py(config), levels = as_py_list(levels), spec = prepare_spec(spec), kind = kind,
    resume = flag_arg(resume, "resume"), trust_remote_code = flag_arg(trust_remote_code, "trust_remote_code"),
    progress = flag_arg(progress, "progress") && !quiet, .convert = FALSE, .quiet = quiet
  )
  new_ft_model(py)
}

prepare_table <- function(x, arg, columns = NULL, required = NULL, hint = NULL) {
  if (is.null(x) || inherits(x, "python.builtin.object")) {
    return(x)
  }
  if (is.data.frame(x)) {
    check_columns(x, required, arg, hint)
    if (!is.null(columns)) x <- x[intersect(unique(columns), names(x))]
    return(r_to_arrow(x, arg))
  }
  if (is.character(x) && length(x) == 1 && !is.na(x)) {
    return(path.expand(x))
  }
  stop(fineclass_error(sprintf("`%s` must be a data frame or a path to a Parquet/CSV file; got %s.",
    arg, describe_value(x)), argument = arg))
}

# column name -> the argument that named it
column_hints <- function(...) {
  args <- Filter(Negate(is.null), list(...))
  stats::setNames(rep(names(args), lengths(args)), unlist(args, use.names = FALSE))
}

# Columns the call needs must be in the user's data frame; the error lists the user's own columns.
# `hint` maps a column name to the argument that named it (text, id, label).
check_columns <- function(x, required, arg, hint = NULL) {
  for (col in unique(required)) {
    if (!col %in% names(x)) {
      by <- if (!is.null(hint) && col %in% names(hint)) hint[[col]] else NULL
      stop(fineclass_error(sprintf("column `%s` not found in `%s`; columns are: %s.%s", col, arg,
        paste(names(x), collapse = ", "),
        if (!is.null(by)) sprintf(" Pass `%s=` with the name of its %s column.", by, by) else ""),
        argument = by %||% arg))
    }
  }
}

prepare_codebook <- function(codebook) {
  if (is.null(codebook)) {
    return(NULL)
  }
  if (is.data.frame(codebook)) {
    return(r_to_arrow(codebook, "codebook"))
  }
  if (is.character(codebook) && is.null(names(codebook)) && length(codebook) == 1) {
    return(path.expand(codebook))
  }
  if ((is.atomic(codebook) || is.list(codebook)) && !is.null(names(codebook))) {
    return(lapply(as.list(codebook), function(v) if (is.list(v)) as.list(v) else v))
  }
  stop(fineclass_error(paste0(
    "`codebook` must be a data frame (code, name, description), a named vector or list ",
    "(code = name), or a path to a JSON/CSV file."
  ), argument = "codebook"))
}

prepare_model <- function(model, arg = "model") {
  if (inherits(model, "ft_model")) {
    return(model_py(model, arg))
  }
  if (is.character(model) && length(model) == 1 && !is.na(model)) {
    return(if (file.exists(path.expand(model))) normalizePath(model) else model)
  }
  if (inherits(model, "python.builtin.object")) {
    return(model)
  }
  stop(fineclass_error(sprintf(
    "`%s` must be a model name, a path to a saved model, or an ft_model; got %s.",
    arg, describe_value(model)
  ), argument = arg))
}

describe_value <- function(x) {
  if (is.null(x)) {
    return("NULL")
  }
  sprintf("%s of length %d", class(x)[1], length(x))
}

# ------------------------------------------------------------------------------------ the ft_model object
# An ft_model is a list: `info` (what print() and summary() show, plain R data) and `state`, an
# environment holding the Python classifier (`py`) and the folder it was saved to or loaded from (`path`).
# The environment makes ft_save() visible in every copy of the object, and lets a model restored by
# readRDS() (whose Python pointer died with its session) reload itself from its folder once.
new_ft_model <- function(py, path = NULL) {
  info <- tryCatch(from_py(reticulate::py_to_r(rb()$describe(py))), error = function(e) list())
  state <- new.env(parent = emptyenv())
  state$py <- py
  state$path <- path
  structure(list(info = info, state = state), class = "ft_model")
}

#' @export
`$.ft_model` <- function(x, name) {
  if (identical(name, "py")) {
    return(model_py(x))
  }
  if (identical(name, "path")) {
    return(.subset2(x, "state")$path)
  }
  .subset2(x, name)
}

model_loaded <- function(x) {
  py <- .subset2(x, "state")$py
  !is.null(py) && !reticulate::py_is_null_xptr(py)
}

# The Python classifier of an ft_model, reloaded from its folder when it comes from an earlier session.
model_py <- function(x, arg = "model") {
  state <- .subset2(x, "state")
  if (model_loaded(x)) {
    return(state$py)
  }
  path <- state$path
  if (is.null(path)) {
    stop(fineclass_error(paste0(
      "`", arg, "` is from a previous R session and was never saved, so it cannot be used: its Python ",
      "side ended with that session. Train it again, or ft_load(path) a copy saved with ft_save()."
    ), argument = arg))
  }
  if (!dir.exists(path)) {
    stop(fineclass_error(sprintf(paste0(
      "`%s` is from a previous R session and its folder '%s' no longer exists. ft_load(path) the model ",
      "from where it is now."), arg, path), argument = arg))
  }
  state$py <- ft_call("load", path, .convert = FALSE, .quiet = TRUE)
  state$py
}

model_spec <- function(object) {
  .subset2(object, "info")$spec %||% list()
}

# The level order of a model's labels, for factors: class codes (single, multi) or levels (dimlevel).
model_classes <- function(object) {
  as.character(unlist(model_spec(object)$classes))
}

#' @export
print.ft_model <- function(x, ...) {
  spec <- model_spec(x)
  kind <- spec$kind %||% "?"
  shape <- switch(kind,
    single = "single-label",
    multi = "multi-label",
    dimlevel = "dimension -> level",
    kind
  )
  classes <- as.character(unlist(spec$classes))
  what <- if (identical(kind, "dimlevel")) "dimensions" else "classes"
  cat(sprintf("<ft_model> %s classifier, %d %s", shape, length(classes), what))
  if (length(classes)) {
    shown <- paste(utils::head(classes, 8), collapse = ", ")
    if (length(classes) > 8) shown <- paste0(shown, ", ...")
    cat(":", shown)
  }
  cat("\n")
  if (identical(kind, "dimlevel")) {
    cat("  levels:", paste(unlist(spec$levels), collapse = " < "), "\n")
  }
  info <- .subset2(x, "info")
  manifest <- info$manifest %||% list()
  model <- info$model %||% manifest$model
  method <- info$method %||% manifest$method
  if (is.character(model)) {
    how <- c(method, manifest$finetune)
    cat(sprintf("  model: %s (%s)\n", model, paste(how[nzchar(how)], collapse = ", ")))
  }
  if (isTRUE(manifest$zero_shot)) {
    cat("  zero-shot: prompts the model, no training\n")
  } else if (!is.null(manifest$n_train)) {
    cat(sprintf("  trained on %s documents (%s held out for validation), best epoch %s\n",
      format(manifest$n_train, big.mark = ","), format(manifest$n_validation %||% 0, big.mark = ","),
      format(manifest$best_epoch %||% NA)))
    if (isTRUE(manifest$refit$done)) {
      cat(sprintf("  then trained again on all %s documents up to that epoch (refit)\n",
        format(manifest$refit$documents, big.mark = ",")))
    }
    if (is.character(manifest$validation_note)) {
      cat(strwrap(paste("note:", manifest$validation_note), width = getOption("width", 80), indent = 2,
        exdent = 8), sep = "\n")
    }
  }
  path <- .subset2(x, "state")$path
  if (!model_loaded(x)) {
    cat(if (is.null(path)) {
      "  not loaded: from a previous R session and never saved; ft_load(path) a saved copy\n"
    } else {
      sprintf("  not loaded: from a previous R session; reloads from '%s' when used\n", path)
    })
  } else if (!is.null(path)) {
    cat(sprintf("  saved in: %s\n", path))
  }
  invisible(x)
}

#' Summarise a fitted classifier
#'
#' @param object An `ft_model`.
#' @param ... Unused.
#' @return A `summary.ft_model` list: `kind`, `classes` (a tibble with code,
#'   name and description per class), `levels`, and the model's recorded
#'   settings (`config`, `manifest`, `history`, `metrics` where the core keeps
#'   them).
#' @examplesIf ft_available()
#' m <- ft_example_model()
#' summary(m)
#' @export
summary.ft_model <- function(object, ...) {
  check_dots(...)
  spec <- model_spec(object)
  codes <- as.character(unlist(spec$classes))
  lookup <- function(map) {
    vapply(codes, function(k) as.character(map[[k]] %||% NA_character_), character(1), USE.NAMES = FALSE)
  }
  classes <- new_frame(list(
    code = codes, name = lookup(spec$names %||% list()),
    description = lookup(spec$descriptions %||% list())
  ), length(codes))
  info <- .subset2(object, "info")
  manifest <- info$manifest %||% list()
  structure(list(
    kind = spec$kind, classes = classes, levels = as.character(unlist(spec$levels)),
    value_type = spec$value_type, model = info$model %||% manifest$model,
    method = info$method %||% manifest$method, finetune = manifest$finetune,
    n_train = manifest$n_train, n_validation = manifest$n_validation, best_epoch = manifest$best_epoch,
    validation_jaccard = manifest$validation_jaccard, seconds = manifest$seconds,
    config = info$config %||% manifest$config, history = info$history, manifest = manifest,
    path = .subset2(object, "state")$path
  ), class = "summary.ft_model")
}

#' @export
print.summary.ft_model <- function(x, ...) {
  cat("fineclass model:", x$kind %||% "?", "labels\n")
  if (!is.null(x$model)) cat("  model:", format(x$model), "\n")
  if (!is.null(x$method)) cat("  method:", paste(c(x$method, x$finetune), collapse = ", "), "\n")
  if (length(x$levels)) cat("  levels:", paste(x$levels, collapse = " < "), "\n")
  if (!is.null(x$n_train)) {
    cat(sprintf("  training: %s documents, %s for validation, best epoch %s, %s s\n", x$n_train,
      x$n_validation %||% 0, format(x$best_epoch %||% NA), format(x$seconds %||% NA)))
  }
  if (is.list(x$config) && length(x$config)) {
    set <- x$config[!vapply(x$config, function(v) is.null(v) || length(v) == 0, logical(1))]
    settings <- vapply(set, function(v) paste(format(unlist(v)), collapse = ","), character(1))
    cat("  config:", paste(names(settings), settings, sep = "=", collapse = ", "), "\n")
  }
  if (!is.null(x$path)) cat("  saved in:", x$path, "\n")
  cat("  classes:\n")
  print(x$classes)
  if (is.data.frame(x$history) && nrow(x$history)) {
    cat("  history:\n")
    print(x$history)
  }
  invisible(x)
}

#' Predict with a fitted classifier
#'
#' Calls the classifier's `predict()` (or `predict_proba()`) in the core.
#' Single-label predictions come back with `label` as a factor whose levels
#' are the model's classes (in the training factor's order when it was trained
#' on a factor); dimension -> level predictions have `level` as an ordered
#' factor.
#'
#' @param object An `ft_model`.
#' @param newdata A data frame with a text column, a character vector of
#'   documents, a quanteda corpus, or a path to Parquet/CSV.
#' @param text Name of the text column.
#' @param id Name of the id column; `NULL` uses a column `id` when there is
#'   one, row numbers (1, 2, ...) otherwise, or the names of a named character
#'   vector. The result's id column keeps this name.
#' @param type `"class"` for predicted labels with confidence, `"prob"` for one
#'   probability column per class.
#' @param long For multi-label and dimension -> level models: one row per
#'   predicted label (id, label) or (id, dimension, level, confidence) instead
#'   of a list column.
#' @param batch_tokens Tokens per batch (`NULL`: chosen for the device).
#' @param ... Not used: an argument given here is an error naming it.
#' @return A tibble with the input's id first.
#' @examplesIf ft_available()
#' m <- ft_example_model()
#' predict(m, c(a = "a wonderful film", b = "dull and long"))
#' predict(m, film_reviews[41:44, ], type = "prob")
#' @export
predict.ft_model <- function(object, newdata, text = "text", id = NULL, type = c("class", "prob"),
                             long = FALSE, batch_tokens = NULL, ...) {
  check_dots(...)
  type <- one_of(type, c("class", "prob"), "type")
  docs <- prepare_docs(newdata, text, id, arg = "newdata")
  method <- reticulate::py_get_attr(model_py(object, "object"),
    if (type == "prob") "predict_proba" else "predict")
  out <- ft_call(method, docs$data, text = docs$text, id = docs$id,
    batch_tokens = count_arg(batch_tokens, "batch_tokens", 1, null = TRUE), .convert = FALSE, .quiet = TRUE)
  prediction_to_r(out, long, object, docs$id_name)
}

# Predictions for R: factors with the model's level order, the user's id name.
prediction_to_r <- function(out, long, model = NULL, id_name = "id") {
  names <- as.character(reticulate::py_to_r(reticulate::py_get_attr(out, "column_names")))
  unnest <- if (isTRUE(long) && "labels" %in% names) "labels" else NULL
  res <- arrow_to_r(out, unnest = unnest)
  if (!is.null(model)) res <- as_r_labels(res, model)
  rename_id(res, id_name)
}

as_r_labels <- function(res, model) {
  spec <- model_spec(model)
  classes <- as.character(unlist(spec$classes))
  levels <- as.character(unlist(spec$levels))
  if (identical(spec$kind, "single") && "label" %in% names(res) && length(classes)) {
    res$label <- factor(as.character(res$label), levels = classes)
  }
  if (identical(spec$kind, "dimlevel") && length(levels)) {
    to_ordered <- function(v) factor(as.character(v), levels = levels, ordered = TRUE)
    if ("level" %in% names(res)) res$level <- to_ordered(res$level)
    if ("labels" %in% names(res) && is.list(res$labels)) {
      res$labels <- lapply(res$labels, function(d) {
        if (is.data.frame(d) && "level" %in% names(d)) d$level <- to_ordered(d$level)
        d
      })
    }
  }
  res
}

rename_id <- function(res, id_name) {
  if (!is.null(id_name) && !identical(id_name, "id") && "id" %in% names(res) && !id_name %in% names(res)) {
    names(res)[names(res) == "id"] <- id_name
  }
  res
}

#' Save and load a fitted classifier
#'
#' `ft_save()` writes the classifier to a folder (safetensors weights plus
#' JSON: label set, settings, manifest; no pickle); `ft_load()` reads it back.
#' Both record the folder in the model, so a model kept with `saveRDS()` or in
#' a saved workspace reloads itself from there in a later R session.
#'
#' @param model An `ft_model`.
#' @param path A folder.
#' @param overwrite Replace a model already saved in `path`. A folder that
#'   holds anything else is never overwritten.
#' @param device For `ft_load()`: `"auto"`, `"cpu"`, `"cuda"`, ...
#' @return `ft_save()`: `path`, invisibly. `ft_load()`: an `ft_model`.
#' @examplesIf ft_available()
#' m <- ft_example_model()
#' dir <- file.path(tempdir(), "sentiment-model")
#' ft_save(m, dir, overwrite = TRUE)
#' again <- ft_load(dir)
#' predict(again, "a wonderful film")
#' try(ft_load(tempfile()))  # an error naming `path`
#' @export
ft_save <- function(model, path, overwrite = FALSE) {
  check_ft_model(model)
  check_path_arg(path)
  ft_call(reticulate::py_get_attr(model_py(model), "save"), path.expand(path),
    overwrite = flag_arg(overwrite, "overwrite"), .quiet = TRUE)
  state <- .subset2(model, "state")
  state$path <- normalizePath(path.expand(path))
  invisible(path)
}

#' @rdname ft_save
#' @export
ft_load <- function(path, device = "auto") {
  check_path_arg(path)
  py <- ft_call("load", path.expand(path), device = string_arg(device, "device"), .convert = FALSE, .quiet = TRUE)
  new_ft_model(py, path = normalizePath(path.expand(path)))
}

#' Merge a generative model's adapter, and choose its precision, for prediction
#'
#' Calls the core's `merge_for_inference()` on a generative model (`method =
#' "generative"` or [ft_zero_shot_model()]): the LoRA adapter is folded into
#' the weights and, with `dtype`, the weights are cast. With `dtype =
#' "bfloat16", activations = "float32"` the linear layers keep their weights in
#' bf16 and everything else stays in fp32: on CPUs with AMX (recent Xeons)
#' scoring runs about twice as fast as in fp32, with far less rounding than bf16
#' throughout. The model is changed in place; [ft_save()] records the precision
#' and [ft_load()] restores it.
#'
#' @param model A generative `ft_model`.
#' @param dtype `NULL` (keep), `"float32"`, `"bfloat16"` or `"float16"`: the
#'   precision of the weights.
#' @param activations `NULL` (the same as `dtype`) or `"float32"`: keep
#'   everything but the linear layers' weights in fp32.
#' @return `model`, invisibly.
#' @examplesIf ft_available()
#' m <- ft_zero_shot_model(labels = c("negative", "positive"), max_length = 32)
#' ft_merge_for_inference(m, dtype = "bfloat16", activations = "float32")
#' predict(m, "what a film")
#' @export
ft_merge_for_inference <- function(model, dtype = NULL, activations = NULL) {
  check_ft_model(model)
  info <- .subset2(model, "info")
  method <- info$method %||% info$manifest$method
  if (!identical(method, "generative")) {
    stop(fineclass_error(sprintf(paste0(
      "`model` uses the %s method; merging and choosing a precision need a generative model ",
      "(ft_train(method = \"generative\") or ft_zero_shot_model())."),
      if (is.null(method)) "unknown" else dQuote(method, FALSE)), argument = "model"))
  }
  ft_call("merge_for_inference", model_py(model), dtype = dtype, activations = activations, .convert = FALSE,
    .quiet = TRUE)
  invisible(model)
}

check_ft_model <- function(model, arg = "model") {
  if (!inherits(model, "ft_model")) {
    stop(fineclass_error(sprintf("`%s` must be an ft_model (from ft_train() or ft_load()); got %s.", arg,
      describe_value(model)), argument = arg))
  }
}

check_path_arg <- function(path, arg = "path") {
  if (!is.character(path) || length(path) != 1 || is.na(path) || !nzchar(path)) {
    stop(fineclass_error(sprintf("`%s` must be one folder path (a string); got %s.", arg,
      describe_value(path)), argument = arg))
  }
}

# Generics carry `...`; a name given there that the method does not know is an error naming it.
check_dots <- function(...) {
  n <- ...length()
  if (!n) {
    return(invisible())
  }
  nms <- names(list(...)) %||% rep("", n)
  shown <- ifelse(nzchar(nms), paste0("`", nms, "`"), "an unnamed argument")
  caller <- sys.function(-1)
  known <- setdiff(names(formals(caller)), "...")
  hints <- vapply(nms, function(nm) {
    if (!nzchar(nm)) return("")
    near <- known[utils::adist(nm, known) <= 2]
    if (length(near)) sprintf(" (did you mean `%s`?)", near[1]) else ""
  }, character(1))
  stop(fineclass_error(sprintf("unknown argument%s %s; known arguments are: %s.", if (n > 1) "s" else "",
    paste0(shown, hints, collapse = ", "), paste(known, collapse = ", ")), argument = nms[nzchar(nms)][1]))
}
