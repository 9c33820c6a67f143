#' Fine-tune a classifier
#'
#' Calls `fineclass.train()`: fine-tunes a small open language model on
#' labelled documents and returns the fitted classifier as an `ft_model`.
#'
#' The three label shapes of the core are all reachable from R:
#' * single-label: `label` names a column with one class per document
#'   (character, integer or factor);
#' * multi-label: `label` names a list column of classes, or `labels` is a
#'   long table with one row per (id, label);
#' * dimension -> level: `labels` is a long table with columns id, dimension,
#'   level and `label = c("dimension", "level")`.
#'
#' @param data A data frame (or tibble) with a text column, or a path to a
#'   Parquet/CSV file, a folder of Parquet files or a glob.
#' @param text Name of the text column.
#' @param label Name of the label column; with a long `labels` table, the
#'   label column of that table, or `c("dimension", "level")`.
#' @param id Name of the id column. `NULL` uses a column called `id` when there
#'   is one, row numbers otherwise.
#' @param labels Optional long label table (data frame or path), see above.
#' @param model A built-in alias (`"minilm"`, `"smollm2-135m"`), a Hugging Face
#'   model id or a local folder.
#' @param method `"head"` (a classification head) or `"generative"` (the label
#'   as text, as in the paper).
#' @param codebook Optional codebook: a data frame with columns `code`, `name`
#'   (and `description`), a named character vector (code = name), a named
#'   list, or a path to a JSON/CSV file.
#' @param config Optional named list of training settings (fields of the
#'   core's `TrainConfig`, e.g. `list(epochs = 3, batch_size = 16, seed = 1)`);
#'   whole numbers are passed as Python integers where the field wants one.
#' @param ... Further arguments of `fineclass.train()`.
#' @return An `ft_model`.
#' @seealso [ft_classify()], [predict.ft_model()], [ft_save()], [ft_load()].
#' @examples
#' \donttest{
#' if (ft_available()) {
#'   docs <- data.frame(
#'     text = c("great film", "awful plot", "loved it", "boring", "superb", "dull"),
#'     label = c("pos", "neg", "pos", "neg", "pos", "neg")
#'   )
#'   m <- ft_train(docs, model = "minilm", config = list(epochs = 1))
#'   predict(m, c("what a great film", "so dull"))
#' }
#' }
#' @export
ft_train <- function(data, text = "text", label = "label", id = NULL, labels = NULL,
                     model = "minilm", method = "head", codebook = NULL, config = NULL, ...) {
  label <- if (length(label) > 1) as.list(label) else label
  # evaluated here, not as a promise inside new_ft_model(): an error must not leave a half-run promise
  py <- ft_call("train", prepare_table(data, "data"),
    text = text, label = label, id = id, labels = prepare_table(labels, "labels"),
    model = prepare_model(model), method = method, codebook = prepare_codebook(codebook),
    config = py_config(config), ..., .convert = FALSE
  )
  new_ft_model(py)
}

py_config <- function(config) {
  if (is.null(config) || inherits(config, "python.builtin.object")) {
    return(config)
  }
  if (!is.list(config) || (length(config) && is.null(names(config)))) {
    stop(fineclass_error("`config` must be a named list of settings, e.g. list(epochs = 3).", "config"))
  }
  ft_call(rb()$train_config, config, .convert = FALSE, .call = NULL)
}

prepare_table <- function(x, arg) {
  if (is.null(x) || inherits(x, "python.builtin.object")) {
    return(x)
  }
  if (is.data.frame(x)) {
    return(r_to_arrow(x, arg))
  }
  if (is.character(x) && length(x) == 1 && !is.na(x)) {
    return(path.expand(x))
  }
  stop(fineclass_error(sprintf("`%s` must be a data frame or a path to a Parquet/CSV file; got %s.",
    arg, describe_value(x)), argument = arg))
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
    return(model$py)
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

new_ft_model <- function(py) {
  info <- tryCatch(from_py(reticulate::py_to_r(rb()$describe(py))), error = function(e) list())
  structure(list(py = py, info = info), class = "ft_model")
}

model_spec <- function(object) {
  object$info$spec %||% list()
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
  info <- x$info
  manifest <- info$manifest %||% list()
  model <- info$model %||% manifest$model
  method <- info$method %||% manifest$method
  if (is.character(model)) {
    how <- c(method, manifest$finetune)
    cat(sprintf("  model: %s (%s)\n", model, paste(how[nzchar(how)], collapse = ", ")))
  }
  if (!is.null(manifest$n_train)) {
    cat(sprintf("  trained on %s documents (%s held out for validation), best epoch %s\n",
      format(manifest$n_train, big.mark = ","), format(manifest$n_validation %||% 0, big.mark = ","),
      format(manifest$best_epoch %||% NA)))
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
#' @export
summary.ft_model <- function(object, ...) {
  spec <- model_spec(object)
  codes <- as.character(unlist(spec$classes))
  lookup <- function(map) {
    vapply(codes, function(k) as.character(map[[k]] %||% NA_character_), character(1), USE.NAMES = FALSE)
  }
  classes <- new_frame(list(
    code = codes, name = lookup(spec$names %||% list()),
    description = lookup(spec$descriptions %||% list())
  ), length(codes))
  info <- object$info
  manifest <- info$manifest %||% list()
  structure(list(
    kind = spec$kind, classes = classes, levels = as.character(unlist(spec$levels)),
    value_type = spec$value_type, model = info$model %||% manifest$model,
    method = info$method %||% manifest$method, finetune = manifest$finetune,
    n_train = manifest$n_train, n_validation = manifest$n_validation, best_epoch = manifest$best_epoch,
    validation_jaccard = manifest$validation_jaccard, seconds = manifest$seconds,
    config = info$config %||% manifest$config, history = info$history, manifest = manifest
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
  cat("  classes:\n")
  print(x$classes)
  if (is.data.frame(x$history)) {
    cat("  history:\n")
    print(x$history)
  }
  invisible(x)
}

#' Predict with a fitted classifier
#'
#' Calls the Python classifier's `predict()` (or `predict_proba()`).
#'
#' @param object An `ft_model`.
#' @param newdata A data frame with a text column, a character vector of
#'   documents, or a path to Parquet/CSV.
#' @param text Name of the text column.
#' @param id Name of the id column; `NULL` uses a column `id` when there is
#'   one, row numbers (1, 2, ...) otherwise, or the names of a named character
#'   vector.
#' @param type `"class"` for predicted labels with confidence, `"prob"` for one
#'   probability column per class.
#' @param long For multi-label and dimension -> level models: one row per
#'   predicted label (id, label) or (id, dimension, level, confidence) instead
#'   of a list column.
#' @param ... Further arguments of the Python method.
#' @return A tibble with the input's id first.
#' @export
predict.ft_model <- function(object, newdata, text = "text", id = NULL, type = c("class", "prob"),
                             long = FALSE, ...) {
  type <- match.arg(type)
  docs <- prepare_docs(newdata, text, id)
  method <- reticulate::py_get_attr(object$py, if (type == "prob") "predict_proba" else "predict")
  out <- ft_call(method, docs$data, text = docs$text, id = docs$id, ..., .convert = FALSE)
  prediction_to_r(out, long)
}

prediction_to_r <- function(out, long) {
  if (isTRUE(long)) {
    names <- as.character(reticulate::py_to_r(reticulate::py_get_attr(out, "column_names")))
    col <- intersect(c("labels", "label"), names)[1]
    return(arrow_to_r(out, unnest = if (identical(col, "labels")) "labels" else NULL))
  }
  arrow_to_r(out)
}

#' Save and load a fitted classifier
#'
#' `ft_save()` writes the classifier to a folder (safetensors weights plus
#' JSON: label spec, config, manifest; no pickle); `ft_load()` reads it back
#' through `fineclass.load()`.
#'
#' @param model An `ft_model`.
#' @param path A folder.
#' @return `ft_save()`: `path`, invisibly. `ft_load()`: an `ft_model`.
#' @examples
#' \donttest{
#' if (ft_available()) {
#'   try(ft_load(tempfile()))  # an error naming `path`
#' }
#' }
#' @export
ft_save <- function(model, path) {
  check_ft_model(model)
  check_path_arg(path)
  ft_call(reticulate::py_get_attr(model$py, "save"), path.expand(path))
  invisible(path)
}

#' @rdname ft_save
#' @export
ft_load <- function(path) {
  check_path_arg(path)
  py <- ft_call("load", path.expand(path), .convert = FALSE)
  new_ft_model(py)
}

#' Merge a generative model's adapter, and choose its precision, for prediction
#'
#' Calls `fineclass.methods.generative.merge_for_inference()` on a generative
#' model (`method = "generative"` or a zero-shot classifier): the LoRA adapter
#' is folded into the weights and, with `dtype`, the weights are cast. With
#' `dtype = "bfloat16", activations = "float32"` the linear layers keep their
#' weights in bf16 and everything else stays in fp32: on CPUs with AMX
#' (recent Xeons) scoring runs about twice as fast as in fp32, with far less
#' rounding than bf16 throughout. The model is changed in place;
#' [ft_save()] records the precision and [ft_load()] restores it.
#'
#' @param model A generative `ft_model`.
#' @param dtype `NULL` (keep), `"float32"`, `"bfloat16"` or `"float16"`: the
#'   precision of the weights.
#' @param activations `NULL` (the same as `dtype`) or `"float32"`: keep
#'   everything but the linear layers' weights in fp32.
#' @return `model`, invisibly.
#' @examples
#' \donttest{
#' if (ft_available()) {
#'   m <- ft_train(data.frame(text = c("great", "awful", "superb", "dull"),
#'                            label = c("pos", "neg", "pos", "neg")),
#'                 model = "smollm2-135m", method = "generative",
#'                 config = list(epochs = 1, validation = 0))
#'   ft_merge_for_inference(m, dtype = "bfloat16", activations = "float32")
#'   predict(m, "what a film")
#' }
#' }
#' @export
ft_merge_for_inference <- function(model, dtype = NULL, activations = NULL) {
  check_ft_model(model)
  method <- model$info$method %||% model$info$manifest$method
  if (!identical(method, "generative")) {
    stop(fineclass_error(sprintf(paste0(
      "`model` uses the %s method; merging and choosing a precision need a generative model ",
      "(ft_train(method = \"generative\"))."), if (is.null(method)) "unknown" else dQuote(method, FALSE)),
      argument = "model"))
  }
  fc()
  generative <- reticulate::import("fineclass.methods.generative", convert = FALSE)
  ft_call(generative$merge_for_inference, model$py, dtype = dtype, activations = activations, .convert = FALSE)
  invisible(model)
}

check_ft_model <- function(model) {
  if (!inherits(model, "ft_model")) {
    stop(fineclass_error(sprintf("`model` must be an ft_model (from ft_train() or ft_load()); got %s.",
      describe_value(model)), argument = "model"))
  }
}

check_path_arg <- function(path, arg = "path") {
  if (!is.character(path) || length(path) != 1 || is.na(path) || !nzchar(path)) {
    stop(fineclass_error(sprintf("`%s` must be one folder path (a string); got %s.", arg,
      describe_value(path)), argument = arg))
  }
}
