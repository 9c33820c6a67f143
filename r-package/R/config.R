#' Training settings
#'
#' One argument per setting of the core's `TrainConfig`, checked in R, with
#' the core's defaults. Pass the result to `ft_train(config = )` or
#' [ft_learning_curve()]; the most common settings are also arguments of
#' [ft_train()] itself. `NULL` means "the method's default": the head method's,
#' or for `method = "generative"` the paper's (LoRA r = 64, learning rate 2e-4,
#' warm-up 0.03, gradient norm clipped at 0.3). The values used are recorded in
#' the model (see `summary(model)$config`).
#'
#' **Seeds.** Training is seeded by `seed` (weights of the new layers, the
#' validation split, the order of batches). R's `set.seed()` does not reach
#' Python and has no effect on training; pass `seed` to repeat a run.
#'
#' @param epochs Passes over the training documents (whole number >= 1).
#' @param batch_size Documents per optimisation step (whole number >= 1).
#' @param learning_rate Peak learning rate, in (0, 1); `NULL`: the method's
#'   default (5e-5 for a fully fine-tuned head, 2e-4 for LoRA).
#' @param weight_decay AdamW weight decay (>= 0).
#' @param warmup_ratio Share of steps with a linearly rising learning rate, in
#'   \[0, 1); `NULL`: the method's default.
#' @param max_grad_norm Gradient clipping norm (> 0); `NULL`: the method's
#'   default.
#' @param max_length Tokens kept per document; longer ones are truncated (a
#'   warning says how many). `"auto"` (the default) follows the training
#'   texts: the 95th percentile of their token lengths, at most 256, reported
#'   in the model's record; or a whole number.
#' @param finetune `"auto"` (full fine-tuning for small encoders, LoRA for
#'   larger models), `"full"`, `"lora"` or `"qlora"` (4-bit, needs a CUDA GPU
#'   and bitsandbytes).
#' @param lora_r,lora_alpha LoRA rank and scaling (whole numbers); `NULL`: the
#'   method's default.
#' @param lora_dropout Dropout on the LoRA layers, in \[0, 1).
#' @param lora_targets Names of the modules LoRA adapts (a character vector);
#'   `NULL`: the attention and MLP projections peft knows for the model.
#' @param class_weights `"balanced"` (weights inverse to class frequency) or
#'   `"none"`.
#' @param validation Share of the training documents held out for early
#'   stopping and the choice of thresholds, in \[0, 0.9); 0 for none; `NULL`:
#'   the method's default (a tenth; a fifth for `method = "ensemble"`, which
#'   trains again on every document once the epoch is chosen). With
#'   `method = "description"` and single-label data, a share of fewer than 100
#'   documents cannot choose an epoch: it trains instead and the last epoch is
#'   kept (the model's manifest says so); `extra = list(min_validation = 0)`
#'   keeps it.
#' @param early_stopping Stop after this many epochs without improvement on
#'   the validation share (whole number), or `NULL` to train every epoch.
#' @param threshold Presence threshold for multi-label and dimension -> level
#'   models: `"tune"` (chosen on the validation share) or a number in (0, 1).
#' @param seed The seed of training (whole number); see "Seeds".
#' @param device `"auto"` (CUDA, then Apple MPS, then CPU), `"cpu"`,
#'   `"cuda"`, `"cuda:1"`, `"mps"`.
#' @param gradient_accumulation Steps whose gradients are summed before an
#'   update (whole number >= 1): an effective batch of `batch_size *
#'   gradient_accumulation`.
#' @param checkpoint_dir A folder for a checkpoint after each epoch, so that
#'   `ft_train(resume = TRUE)` continues an interrupted run; `NULL` for none.
#' @param prompt For the generative method: the prompt template, with the slot
#'   `{text}` (and optionally `{codebook}`, `{labels}`, `{levels}`); `NULL`:
#'   the built-in template.
#' @param extra A named list of further settings for a method. For
#'   `method = "description"`: `head_learning_rate` (the class vectors'),
#'   `min_steps` (100), `min_validation` (100) and `pair_weight` (0.3, the
#'   weight of SetFit's pair objective for single-label data; 0 for none).
#'   For `method = "codebook"` and the ensemble's codebook member: `C` (the
#'   inverse penalty of its logistic regressions; 1), `folds` (5) and
#'   `middle_layer` (`TRUE`: the regressions read the encoder's middle layer
#'   beside its last; `FALSE`: the last alone).
#'   For `method = "ensemble"`: `description_weight` (the description
#'   share of the mixture, 0 to 1; chosen on validation when unset, and
#'   other than 1/2 only where that choice carries over between two halves
#'   of the validation split) and
#'   `description_members` (how many description members are trained side
#'   by side and averaged; 2); its description members use `pair_weight`
#'   only where it is set (0 otherwise). For any method trained by epochs:
#'   `refit` (`TRUE` or `FALSE`): once the validation split has chosen the
#'   epoch (and the ensemble's weight and decision rule), train again from
#'   the start on every document up to that epoch, so that the validation
#'   documents are learnt from too (about twice the training time;
#'   `TRUE` by default for the ensemble, `FALSE` for the others).
#' @return A list of class `ft_config`.
#' @seealso [ft_train()].
#' @examples
#' ft_config(epochs = 2, learning_rate = 1e-4, seed = 1)
#' try(ft_config(epochs = 1.5))
#' @export
ft_config <- function(epochs = 3, batch_size = 16, learning_rate = NULL, weight_decay = 0.01,
                      warmup_ratio = NULL, max_grad_norm = NULL, max_length = "auto",
                      finetune = c("auto", "full", "lora", "qlora"), lora_r = NULL, lora_alpha = NULL,
                      lora_dropout = 0.05, lora_targets = NULL, class_weights = c("balanced", "none"),
                      validation = NULL, early_stopping = 2, threshold = "tune", seed = 0, device = "auto",
                      gradient_accumulation = 1, checkpoint_dir = NULL, prompt = NULL, extra = list()) {
  finetune <- one_of(finetune, c("auto", "full", "lora", "qlora"), "finetune")
  class_weights <- one_of(class_weights, c("balanced", "none"), "class_weights")
  cfg <- list(
    epochs = count_arg(epochs, "epochs", 1), batch_size = count_arg(batch_size, "batch_size", 1),
    learning_rate = number_arg(learning_rate, "learning_rate", 0, 1, open_low = TRUE, open_high = TRUE,
      null = TRUE),
    weight_decay = number_arg(weight_decay, "weight_decay", 0, Inf),
    warmup_ratio = number_arg(warmup_ratio, "warmup_ratio", 0, 1, open_high = TRUE, null = TRUE),
    max_grad_norm = number_arg(max_grad_norm, "max_grad_norm", 0, Inf, open_low = TRUE, null = TRUE),
    max_length = if (identical(max_length, "auto")) "auto" else count_arg(max_length, "max_length", 1),
    finetune = finetune,
    lora_r = count_arg(lora_r, "lora_r", 1, null = TRUE),
    lora_alpha = count_arg(lora_alpha, "lora_alpha", 1, null = TRUE),
    lora_dropout = number_arg(lora_dropout, "lora_dropout", 0, 1, open_high = TRUE),
    lora_targets = string_arg(lora_targets, "lora_targets", null = TRUE, many = TRUE),
    class_weights = class_weights,
    validation = number_arg(validation, "validation", 0, 0.9, open_high = TRUE, null = TRUE),
    early_stopping = count_arg(early_stopping, "early_stopping", 1, null = TRUE),
    threshold = threshold_arg(threshold), seed = count_arg(seed, "seed", -.Machine$integer.max),
    device = string_arg(device, "device"),
    gradient_accumulation = count_arg(gradient_accumulation, "gradient_accumulation", 1),
    checkpoint_dir = string_arg(checkpoint_dir, "checkpoint_dir", null = TRUE),
    prompt = string_arg(prompt, "prompt", null = TRUE), extra = extra_arg(extra)
  )
  if (!is.null(cfg$prompt) && !grepl("{text}", cfg$prompt, fixed = TRUE)) {
    stop(fineclass_error("`prompt` must contain the slot {text}, where each document goes.", "prompt"))
  }
  if (!is.null(cfg$checkpoint_dir)) cfg$checkpoint_dir <- path.expand(cfg$checkpoint_dir)
  structure(cfg, class = "ft_config")
}

#' @export
print.ft_config <- function(x, ...) {
  defaults <- unclass(ft_config())
  cat("<ft_config> training settings (* differs from the default)\n")
  for (nm in names(x)) {
    v <- x[[nm]]
    shown <- if (is.null(v)) "NULL (the method's default)" else if (is.list(v)) {
      if (length(v)) paste(names(v), vapply(v, format, character(1)), sep = "=", collapse = ", ") else "list()"
    } else {
      paste(format(v), collapse = ", ")
    }
    mark <- if (identical(v, defaults[[nm]])) " " else "*"
    cat(sprintf("%s %-22s %s\n", mark, nm, shown))
  }
  invisible(x)
}

# A config for Python: an ft_config, a named list of settings (checked by ft_config()), or NULL.
as_ft_config <- function(config, arg = "config") {
  if (is.null(config)) {
    return(ft_config())
  }
  if (inherits(config, "ft_config")) {
    return(config)
  }
  if (!is.list(config) || (length(config) && (is.null(names(config)) || any(!nzchar(names(config)))))) {
    stop(fineclass_error(sprintf("`%s` must be ft_config(...) or a named list of settings, e.g. list(epochs = 3).",
      arg), arg))
  }
  known <- names(formals(ft_config))
  unknown <- setdiff(names(config), known)
  if (length(unknown)) {
    stop(fineclass_error(sprintf("`%s` has no setting %s; settings are: %s (see ?ft_config).", arg,
      paste0("`", unknown, "`", collapse = ", "), paste(known, collapse = ", ")), arg))
  }
  do.call(ft_config, config)
}

# The config as a Python TrainConfig.
config_py <- function(config) {
  values <- unclass(config)
  values$extra <- reticulate::py_dict(names(values$extra) %||% character(), unname(values$extra))
  if (!is.null(values$lora_targets)) values$lora_targets <- as.list(values$lora_targets)
  values <- values[!vapply(values, is.null, logical(1))]
  py_invoke(rb()$train_config, list(values), convert = FALSE)
}

# ---------------------------------------------------------------------------- argument checks (one place)

count_arg <- function(x, arg, minimum = 0, null = FALSE) {
  if (is.null(x) && null) {
    return(NULL)
  }
  ok <- is.numeric(x) && length(x) == 1 && !is.na(x) && is.finite(x) && x == round(x) && x >= minimum &&
    abs(x) <= .Machine$integer.max
  if (!ok) {
    stop(fineclass_error(sprintf("`%s` must be one whole number%s%s; got %s.", arg,
      if (minimum > -.Machine$integer.max) sprintf(" of at least %s", format(minimum)) else "",
      if (null) " (or NULL)" else "", shown_value(x)), arg))
  }
  as.integer(x)
}

number_arg <- function(x, arg, low, high, open_low = FALSE, open_high = FALSE, null = FALSE) {
  if (is.null(x) && null) {
    return(NULL)
  }
  ok <- is.numeric(x) && length(x) == 1 && !is.na(x) &&
    (if (open_low) x > low else x >= low) && (if (open_high) x < high else x <= high)
  if (!ok) {
    range <- sprintf("%s%s, %s%s", if (open_low) "(" else "[", format(low), format(high), if (open_high) ")" else "]")
    stop(fineclass_error(sprintf("`%s` must be one number in %s%s; got %s.", arg, range,
      if (null) " (or NULL)" else "", shown_value(x)), arg))
  }
  as.double(x)
}

string_arg <- function(x, arg, null = FALSE, many = FALSE) {
  if (is.null(x) && null) {
    return(NULL)
  }
  ok <- is.character(x) && (many && length(x) >= 1 || length(x) == 1) && !anyNA(x) && all(nzchar(x))
  if (!ok) {
    stop(fineclass_error(sprintf("`%s` must be %s%s; got %s.", arg,
      if (many) "a character vector" else "one string", if (null) " (or NULL)" else "", shown_value(x)), arg))
  }
  x
}

flag_arg <- function(x, arg) {
  if (!is.logical(x) || length(x) != 1 || is.na(x)) {
    stop(fineclass_error(sprintf("`%s` must be TRUE or FALSE; got %s.", arg, shown_value(x)), arg))
  }
  x
}

one_of <- function(x, choices, arg) {
  if (identical(x, choices)) {
    return(choices[[1]])
  }
  if (!is.character(x) || length(x) != 1 || !x %in% choices) {
    stop(fineclass_error(sprintf("`%s` must be one of %s; got %s.", arg,
      paste0("\"", choices, "\"", collapse = ", "), shown_value(x)), arg))
  }
  x
}

threshold_arg <- function(x) {
  if (identical(x, "tune")) {
    return(x)
  }
  number_arg(x, "threshold", 0, 1, open_low = TRUE, open_high = TRUE)
}

extra_arg <- function(x) {
  if (!is.list(x) || (length(x) && (is.null(names(x)) || any(!nzchar(names(x)))))) {
    stop(fineclass_error("`extra` must be a named list.", "extra"))
  }
  x
}

shown_value <- function(x) {
  if (is.null(x)) {
    return("NULL")
  }
  if (is.atomic(x) && length(x) >= 1 && length(x) <= 3) {
    return(paste(if (is.character(x)) paste0("\"", x, "\"") else format(x), collapse = ", "))
  }
  sprintf("%s of length %d", class(x)[1], length(x))
}

# the training methods of the core, as ft_train() and ft_learning_curve() offer them (the first is the default)
ft_methods <- c("head", "generative", "codebook", "description", "ensemble")
