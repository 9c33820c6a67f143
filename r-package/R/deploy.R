#' Export a generative model as GGUF files for llama.cpp
#'
#' Calls the core's `export()`: the LoRA adapter is merged, the model is
#' converted by llama.cpp's own converter to GGUF (with the tokenizer and the
#' chat template it was trained with) and quantized, once per name in
#' `quant`. Beside each `<name>-<quant>.gguf` the folder holds a small JSON
#' file with what fineclass needs to score it (label set, prompt pieces,
#' answer form, the source model's hash), so that [ft_load()] of the `.gguf`
#' gives an `ft_model` that [ft_classify()] and [predict()][predict.ft_model]
#' run with llama.cpp. The folder is written under a temporary name and
#' renamed when complete: a half-written export never looks finished.
#'
#' With `data`, the export checks its files on those documents with
#' [ft_fidelity()] (label agreement with `model`, the change in the task
#' metric with a paired bootstrap interval, the flipped documents), writes the
#' report to `fidelity.json` in the folder and warns when a quantization lowers
#' the metric by more than resampling the documents explains.
#'
#' Needs the Python package llama-cpp-python and llama.cpp's converter (the
#' core's `fineclass gguf install-converter`); without them the error says how
#' to install them.
#'
#' @param model A generative `ft_model` (`method = "generative"`, fitted or
#'   loaded, or [ft_zero_shot_model()]).
#' @param path The output folder.
#' @param format `"gguf"` (llama.cpp, quantized) or `"safetensors"` (the
#'   merged weights, for vLLM and transformers; `quant` and `data` do not
#'   apply).
#' @param quant One quantization or several: `"q4_k_m"` (the paper's),
#'   `"q5_k_m"`, `"q8_0"`, `"f16"`, `"f32"`, ... One file is written per name.
#' @param data The documents of the fidelity check: `NULL` for none, a data
#'   frame (or a Parquet/CSV path) of held-out documents with a text column and
#'   optionally the human codes, or `"validation"` for the validation split
#'   [ft_train()] kept in memory.
#' @param text,label,id The text, human-code and id columns of `data` (`label
#'   = NULL`: a column `label` when there is one).
#' @param name The files' stem.
#' @param overwrite Replace an earlier GGUF export in `path`. A folder that
#'   holds anything else is never overwritten.
#' @param threads CPU threads for conversion, quantization and the check
#'   (`NULL`: torch's setting).
#' @param bootstrap Resamples of the check's paired bootstrap.
#' @param quiet Show no message; the default is the option `fineclass.quiet`.
#' @return The folder `path`, invisibly.
#' @seealso [ft_fidelity()], [ft_load()], [ft_merge_for_inference()].
#' @examplesIf ft_available() && reticulate::py_module_available("llama_cpp")
#' # the packaged SmolLM2, zero-shot; a model fine-tuned with method = "generative" exports alike
#' m <- ft_zero_shot_model(labels = c("negative", "positive"), max_length = 64)
#' dir <- file.path(tempdir(), "deploy")
#' ft_export(m, dir, quant = "q8_0", overwrite = TRUE)
#' list.files(dir)
#' gguf <- ft_load(file.path(dir, "model-q8_0.gguf"))
#' predict(gguf, c("a wonderful film", "dull and far too long"))
#' @export
ft_export <- function(model, path, format = c("gguf", "safetensors"), quant = "q4_k_m", data = NULL,
                      text = "text", label = NULL, id = NULL, name = "model", overwrite = FALSE, threads = NULL,
                      bootstrap = 1000, quiet = default_quiet()) {
  check_ft_model(model)
  check_path_arg(path)
  format <- one_of(format, c("gguf", "safetensors"), "format")
  quiet <- flag_arg(quiet, "quiet")
  overwrite <- flag_arg(overwrite, "overwrite")
  if (format == "safetensors") {
    out <- ft_call("export", model_py(model), path.expand(path), format = format, overwrite = overwrite,
      .quiet = quiet)
    if (!quiet) cli::cli_inform(c(v = "Exported the merged weights to {.path {out}}."))
    return(invisible(path))
  }
  quant <- string_arg(quant, "quant", many = TRUE)
  check_name_arg(text, "text")
  checked <- if (is.null(data)) {
    reticulate::py_none()  # NULL would leave the core's default ("validation") in place
  } else if (identical(data, "validation")) {
    "validation"
  } else {
    prepare_table(data, "data", columns = c(text, id %||% "id", label %||% c("label", "labels")),
      required = c(text, id, label), hint = column_hints(text = text, id = id, label = label))
  }
  out <- ft_call("export", model_py(model), path.expand(path), format = format, quant = as.list(quant),
    data = checked, text = text, label = label, id = id, name = string_arg(name, "name"), overwrite = overwrite,
    threads = count_arg(threads, "threads", 1, null = TRUE), bootstrap = count_arg(bootstrap, "bootstrap", 0),
    .quiet = quiet)
  if (!quiet) {
    files <- sprintf("%s-%s.gguf", name, quant)
    cli::cli_inform(c(v = "Exported {.file {files}} to {.path {out}}.",
      i = if (file.exists(file.path(out, "fidelity.json"))) {
        "The fidelity check is in {.file fidelity.json}; {.fn ft_fidelity} runs one on other documents."
      } else {
        "Check the files against the model with {.fn ft_fidelity}."
      }))
  }
  invisible(path)
}

#' Fidelity of exported models: do they label documents as the model does?
#'
#' Calls the core's `fidelity()`: classifies the same documents with `model`
#' (the reference, usually the torch model an export came from) and with each
#' exported file, and reports per file the share of documents given the same
#' label with its Wilson interval, and, when `data` holds human codes, the
#' task metric of both with their difference (exported minus reference) and
#' its paired bootstrap interval (both scored on the same resamples). A file
#' whose difference has an interval entirely below zero gets a warning.
#'
#' @param model The reference: an `ft_model` or the folder of a saved one.
#' @param against The exported models: `.gguf` files, an export folder (all
#'   its `.gguf` files), `ft_model` objects loaded from `.gguf` files, or a
#'   list of these.
#' @param data Held-out documents: a data frame or a Parquet/CSV path, with a
#'   text column and optionally the human codes.
#' @param text,id The text and id columns of `data`.
#' @param label The column of human codes (`NULL`: `label` when present;
#'   without one, only the agreement is reported).
#' @param metric The metric compared (`NULL`: accuracy for single-label
#'   models, jaccard otherwise).
#' @param bootstrap Resamples of the paired bootstrap.
#' @param confidence Level of the intervals.
#' @param seed Seed of the bootstrap.
#' @param threads CPU threads for llama.cpp (`NULL`: torch's setting).
#' @param quiet Show no progress or notices; the default is the option
#'   `fineclass.quiet`.
#' @return A tibble of class `ft_fidelity`, one row per exported file: file,
#'   quant, bytes, n, agreement, agreement_lower, agreement_upper, flipped,
#'   metric, reference, exported, difference, lower, upper, p_value, seconds.
#'   Its attributes hold `flips` (a tibble: file, id, label_reference and
#'   label_exported (factors with the model's classes for a single-label
#'   model), confidence_reference, confidence_exported,
#'   max_probability_change, truth), `metric`, `confidence`,
#'   `reference_seconds` and `notes`. `tidy()` gives the
#'   files in broom's column names (or, with `what = "flips"`, the flipped
#'   documents); `glance()` one row.
#' @seealso [ft_export()], [ft_compare()].
#' @examplesIf ft_available() && reticulate::py_module_available("llama_cpp")
#' m <- ft_zero_shot_model(labels = c("negative", "positive"), max_length = 64)
#' dir <- file.path(tempdir(), "deploy-check")
#' ft_export(m, dir, quant = "q8_0", overwrite = TRUE, quiet = TRUE)
#' report <- ft_fidelity(m, dir, film_reviews[1:12, ], label = "sentiment", bootstrap = 200)
#' report
#' tidy(report)
#' tidy(report, what = "flips")
#' glance(report)
#' @export
ft_fidelity <- function(model, against, data, text = "text", label = NULL, id = NULL, metric = NULL,
                        bootstrap = 1000, confidence = 0.95, seed = 0, threads = NULL, quiet = default_quiet()) {
  quiet <- flag_arg(quiet, "quiet")
  if (is.character(model) && length(model) == 1 && !is.na(model)) {
    model <- ft_load(model)
  }
  check_ft_model(model)
  check_name_arg(text, "text")
  if (missing(data) || is.null(data)) {
    stop(fineclass_error("`data` must be held-out documents: a data frame or a path to Parquet/CSV.", "data"))
  }
  table <- prepare_table(data, "data", columns = c(text, id %||% "id", label %||% c("label", "labels")),
    required = c(text, id, label), hint = column_hints(text = text, id = id, label = label))
  py <- ft_call("fidelity", model_py(model), prepare_against(against), table, text = text, label = label, id = id,
    metric = string_arg(metric, "metric", null = TRUE), bootstrap = count_arg(bootstrap, "bootstrap", 0),
    confidence = number_arg(confidence, "confidence", 0, 1, open_low = TRUE, open_high = TRUE),
    seed = count_arg(seed, "seed", 0), threads = count_arg(threads, "threads", 1, null = TRUE),
    .convert = FALSE, .quiet = quiet)
  new_ft_fidelity(py, model)
}

# `against` for the core: paths (expanded) and the Python side of ft_model objects, as one list.
prepare_against <- function(against) {
  items <- if (inherits(against, "ft_model") || is.character(against)) as.list(against) else against
  if (inherits(against, "ft_model")) items <- list(against)
  if (!is.list(items) || !length(items)) {
    stop(fineclass_error(paste0("`against` must be .gguf files, an export folder, or ft_model objects loaded ",
      "from .gguf files (a vector or a list)."), "against"))
  }
  lapply(items, function(x) {
    if (inherits(x, "ft_model")) {
      return(model_py(x, "against"))
    }
    if (is.character(x) && length(x) == 1 && !is.na(x) && nzchar(x)) {
      return(path.expand(x))
    }
    stop(fineclass_error(sprintf(paste0("`against` must hold paths (strings) or ft_model objects; it holds %s."),
      describe_value(x)), "against"))
  })
}

# The core's FidelityReport as an R object: the summary tibble with the flips and the rest as attributes.
new_ft_fidelity <- function(py, model) {
  summary <- arrow_to_r(reticulate::py_get_attr(py, "summary"))
  flips <- arrow_to_r(reticulate::py_get_attr(py, "flips"))
  classes <- model_classes(model)
  if (identical(model_spec(model)$kind, "single") && length(classes)) {
    for (col in intersect(c("label_reference", "label_exported", "truth"), names(flips))) {
      if (is.character(flips[[col]]) || is.factor(flips[[col]])) {
        flips[[col]] <- factor(as.character(flips[[col]]), levels = classes)
      }
    }
  }
  get <- function(name) reticulate::py_to_r(reticulate::py_get_attr(py, name))
  structure(summary, flips = flips, metric = get("metric"), confidence = get("confidence"),
    reference_seconds = get("reference_seconds"), notes = as.character(unlist(get("notes"))),
    class = c("ft_fidelity", class(summary)))
}

#' @export
print.ft_fidelity <- function(x, ...) {
  n <- if (nrow(x)) x$n[1] else 0L
  cat(sprintf("<ft_fidelity> %d exported file%s against the reference, %s documents (metric: %s, %s intervals)\n",
    nrow(x), if (nrow(x) == 1) "" else "s", format(n, big.mark = ","), attr(x, "metric") %||% "none",
    sprintf("%g%%", 100 * (attr(x, "confidence") %||% 0.95))))
  # a plain data frame: the file names and the column names stay whole
  shown <- data.frame(file = x$file, agreement = x$agreement, lower = x$agreement_lower,
    upper = x$agreement_upper, flipped = x$flipped, reference = x$reference, exported = x$exported,
    difference = x$difference, diff.lower = x$lower, diff.upper = x$upper, stringsAsFactors = FALSE)
  print(shown, row.names = FALSE, digits = 4)
  flips <- attr(x, "flips")
  if (is.data.frame(flips) && nrow(flips)) {
    cat(sprintf("%d flipped document%s: tidy(x, what = \"flips\")\n", nrow(flips), if (nrow(flips) == 1) "" else "s"))
  }
  notes <- attr(x, "notes")
  if (length(notes)) cat(paste0("note: ", notes, "\n"), sep = "")
  invisible(x)
}

#' @rdname ft_fidelity
#' @param x An `ft_fidelity` from [ft_fidelity()].
#' @param what For `tidy()`: `"files"` (one row per exported file, in broom's
#'   column names: file, quant, n, agreement, agreement.low, agreement.high,
#'   flipped, metric, reference, exported, estimate (the difference), conf.low,
#'   conf.high, p.value) or `"flips"` (one row per file and flipped document).
#' @param ... Not used: an argument given here is an error naming it.
#' @details `glance()` gives one row: files, documents, metric, the lowest
#'   agreement, the flips in all, the reference's metric and its seconds.
#' @method tidy ft_fidelity
#' @export
tidy.ft_fidelity <- function(x, what = c("files", "flips"), ...) {
  check_dots(...)
  what <- one_of(what, c("files", "flips"), "what")
  if (what == "flips") {
    return(attr(x, "flips"))
  }
  new_frame(list(
    file = x$file, quant = x$quant, n = x$n, agreement = x$agreement, agreement.low = x$agreement_lower,
    agreement.high = x$agreement_upper, flipped = x$flipped, metric = x$metric, reference = x$reference,
    exported = x$exported, estimate = x$difference, conf.low = x$lower, conf.high = x$upper, p.value = x$p_value
  ), nrow(x))
}

#' @rdname ft_fidelity
#' @method glance ft_fidelity
#' @export
glance.ft_fidelity <- function(x, ...) {
  check_dots(...)
  num <- function(v, na) if (is.null(v) || !length(v)) na else v
  new_frame(list(
    files = nrow(x), n = if (nrow(x)) x$n[1] else NA_integer_, metric = num(attr(x, "metric"), NA_character_),
    min_agreement = if (nrow(x)) min(x$agreement) else NA_real_,
    flipped = if (nrow(x)) sum(x$flipped) else 0L, reference = if (nrow(x)) x$reference[1] else NA_real_,
    reference_seconds = num(attr(x, "reference_seconds"), NA_real_)
  ), 1L)
}
