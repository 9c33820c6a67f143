# broom-style generics (generics::tidy, glance, augment) and ggplot2's autoplot for fineclass results.

#' @export
generics::tidy

#' @export
generics::glance

#' @export
generics::augment

#' Tidy an evaluation
#'
#' `tidy()` gives one row per metric with its bootstrap interval in broom's
#' column names; `glance()` one row with every headline metric as a column.
#'
#' @param x An `ft_evaluation` from [ft_evaluate()].
#' @param ... Not used: an argument given here is an error naming it.
#' @return A tibble. `tidy()`: metric, estimate, conf.low, conf.high, n.
#'   `glance()`: kind, n, then one column per metric.
#' @examplesIf ft_available()
#' pred <- data.frame(id = 1:6, label = c("a", "b", "a", "b", "a", "a"))
#' truth <- data.frame(id = 1:6, label = c("a", "b", "b", "b", "a", "a"))
#' ev <- ft_evaluate(pred, truth, bootstrap = 200)
#' tidy(ev)
#' glance(ev)
#' @method tidy ft_evaluation
#' @export
tidy.ft_evaluation <- function(x, ...) {
  check_dots(...)
  m <- x$metrics
  new_frame(list(metric = m$metric, estimate = m$estimate, conf.low = m$lower, conf.high = m$upper, n = m$n),
    nrow(m))
}

#' @rdname tidy.ft_evaluation
#' @method glance ft_evaluation
#' @export
glance.ft_evaluation <- function(x, ...) {
  check_dots(...)
  m <- x$metrics
  cols <- c(list(kind = evaluation_kind(x), n = if (nrow(m)) m$n[1] else NA_integer_),
    stats::setNames(as.list(m$estimate), m$metric))
  new_frame(cols, 1L)
}

#' Tidy a fitted classifier
#'
#' `tidy()` gives the training history, one row per epoch (training loss and,
#' with a validation share, validation loss); `glance()` one row describing the
#' model: its shape, base model, method, training and validation sizes, best
#' epoch and validation score.
#'
#' @param x An `ft_model`.
#' @param ... Not used: an argument given here is an error naming it.
#' @return A tibble.
#' @examplesIf ft_available()
#' m <- ft_example_model()
#' tidy(m)
#' glance(m)
#' @method tidy ft_model
#' @export
tidy.ft_model <- function(x, ...) {
  check_dots(...)
  history <- .subset2(x, "info")$history
  if (!is.data.frame(history)) {
    return(new_frame(list(epoch = integer(), train_loss = double()), 0L))
  }
  history
}

#' @rdname tidy.ft_model
#' @method glance ft_model
#' @export
glance.ft_model <- function(x, ...) {
  check_dots(...)
  s <- summary(x)
  history <- s$history
  best <- s$best_epoch %||% NA_integer_
  val_loss <- NA_real_
  if (is.data.frame(history) && "val_loss" %in% names(history) && !is.na(best) && best %in% history$epoch) {
    val_loss <- history$val_loss[history$epoch == best]
  }
  num <- function(v, na) if (is.null(v)) na else v
  new_frame(list(
    kind = num(s$kind, NA_character_), model = num(s$model, NA_character_),
    method = num(s$method, NA_character_), n_classes = nrow(s$classes),
    n_train = num(s$n_train, NA_integer_), n_validation = num(s$n_validation, NA_integer_),
    best_epoch = as.integer(best), val_loss = val_loss,
    validation_jaccard = num(s$validation_jaccard, NA_real_), seconds = num(s$seconds, NA_real_)
  ), 1L)
}

#' @rdname ft_learning_curve
#' @param x An `ft_learning_curve`.
#' @param ... Not used: an argument given here is an error naming it.
#' @method tidy ft_learning_curve
#' @export
tidy.ft_learning_curve <- function(x, ...) {
  check_dots(...)
  x$runs
}

#' @rdname ft_learning_curve
#' @method glance ft_learning_curve
#' @export
glance.ft_learning_curve <- function(x, ...) {
  check_dots(...)
  fit <- x$fit %||% list()
  needed <- if (is.data.frame(x$needed)) x$needed else NULL
  val <- function(v) if (is.null(v)) NA_real_ else as.double(v)
  new_frame(list(
    metric = x$metric %||% NA_character_, runs = if (is.data.frame(x$runs)) nrow(x$runs) else 0L,
    a = val(fit$a), b = val(fit$b), c = val(fit$c), rmse = val(fit$rmse), target = val(x$target),
    labels_needed = val(needed$labels), conf.low = val(needed$lower), conf.high = val(needed$upper)
  ), 1L)
}

#' Predictions bound to the documents
#'
#' Classifies `data` and returns it with the predictions as new columns,
#' row for row: for a single-label model `.pred` (a factor with the model's
#' classes), `.confidence` and one `.pred_<class>` probability per class; for
#' multi-label and dimension -> level models `.labels` (a list column) and
#' `.n_labels`.
#'
#' @param x An `ft_model`.
#' @param data A data frame with a text column (or a character vector of
#'   documents).
#' @param text Name of the text column.
#' @param batch_tokens Tokens per batch (`NULL`: chosen for the device).
#' @param ... Not used: an argument given here is an error naming it.
#' @return `data` as a tibble, with the prediction columns added.
#' @examplesIf ft_available()
#' m <- ft_example_model()
#' augment(m, film_reviews[41:45, ])
#' @method augment ft_model
#' @export
augment.ft_model <- function(x, data, text = "text", batch_tokens = NULL, ...) {
  check_dots(...)
  if (is.character(data)) data <- new_frame(list(text = data), length(data))
  if (!is.data.frame(data)) {
    stop(fineclass_error(sprintf("`data` must be a data frame with a text column; got %s.",
      describe_value(data)), "data"))
  }
  pred <- predict(x, data[text], text = text, batch_tokens = batch_tokens)
  if (nrow(pred) != nrow(data) || !identical(as.integer(pred$id), seq_len(nrow(data)))) {
    stop(fineclass_error("the predictions do not line up with the rows of `data`.", "data"))
  }
  pred$id <- NULL
  pred$truncated <- NULL
  probs <- grep("^p_", names(pred), value = TRUE)
  names(pred)[names(pred) %in% probs] <- sub("^p_", ".pred_", probs)
  rename <- c(label = ".pred", confidence = ".confidence", labels = ".labels", n_labels = ".n_labels")
  hit <- names(pred) %in% names(rename)
  names(pred)[hit] <- rename[names(pred)[hit]]
  out <- c(as.list(data), as.list(pred))
  new_frame(out, nrow(data))
}

#' Plots of fineclass results
#'
#' `autoplot()` methods (load ggplot2 to use them): for an evaluation, the
#' confusion matrix of a single-label task or the F1 per class (per dimension)
#' otherwise; for a learning curve, the runs, the mean per size, the fitted
#' curve and the target; for a model, the training and validation loss by
#' epoch.
#'
#' @param object An `ft_evaluation`, `ft_learning_curve` or `ft_model`.
#' @param normalize For a confusion matrix: shares of each true class instead
#'   of counts.
#' @param ... Not used: an argument given here is an error naming it.
#' @return A ggplot2 object.
#' @examplesIf ft_available() && requireNamespace("ggplot2", quietly = TRUE)
#' library(ggplot2)
#' pred <- data.frame(id = 1:6, label = c("a", "b", "a", "b", "a", "a"))
#' truth <- data.frame(id = 1:6, label = c("a", "b", "b", "b", "a", "a"))
#' autoplot(ft_evaluate(pred, truth, bootstrap = 0))
#' m <- ft_example_model()
#' autoplot(m)
#' @name autoplot.fineclass
NULL

#' @rdname autoplot.fineclass
#' @exportS3Method ggplot2::autoplot
autoplot.ft_evaluation <- function(object, normalize = FALSE, ...) {
  check_dots(...)
  need_ggplot2()
  if (identical(evaluation_kind(object), "single")) {
    return(ft_plot_confusion(object, normalize = normalize))
  }
  per <- if (is.data.frame(object$per_dimension)) object$per_dimension else object$per_class
  by <- if (is.data.frame(object$per_dimension)) "dimension" else "class"
  per <- per[!is.na(per$f1), , drop = FALSE]
  per[[by]] <- factor(per[[by]], levels = per[[by]][order(per$f1)])
  ggplot2::ggplot(per, ggplot2::aes(x = .data$f1, y = .data[[by]])) +
    ggplot2::geom_col(fill = "#3182bd") +
    ggplot2::scale_x_continuous(limits = c(0, 1)) +
    ggplot2::labs(x = "F1", y = NULL, title = sprintf("F1 per %s", by)) +
    ggplot2::theme_minimal()
}

#' @rdname autoplot.fineclass
#' @exportS3Method ggplot2::autoplot
autoplot.ft_learning_curve <- function(object, ...) {
  check_dots(...)
  ft_plot_learning_curve(object)
}

#' @rdname autoplot.fineclass
#' @exportS3Method ggplot2::autoplot
autoplot.ft_model <- function(object, ...) {
  check_dots(...)
  need_ggplot2()
  history <- tidy(object)
  if (!nrow(history)) {
    stop(fineclass_error("`object` has no training history (a zero-shot model is not trained).", "object"))
  }
  losses <- intersect(c("train_loss", "val_loss"), names(history))
  long <- data.frame(
    epoch = rep(history$epoch, length(losses)),
    loss = unlist(lapply(losses, function(l) history[[l]]), use.names = FALSE),
    set = factor(rep(ifelse(losses == "train_loss", "training", "validation"), each = nrow(history)),
      levels = c("training", "validation"))
  )
  best <- .subset2(object, "info")$manifest$best_epoch
  g <- ggplot2::ggplot(long, ggplot2::aes(x = .data$epoch, y = .data$loss, colour = .data$set)) +
    ggplot2::geom_line() +
    ggplot2::geom_point() +
    ggplot2::scale_x_continuous(breaks = history$epoch) +
    ggplot2::labs(x = "epoch", y = "loss", colour = NULL, title = "Training loss by epoch") +
    ggplot2::theme_minimal()
  if (!is.null(best)) g <- g + ggplot2::geom_vline(xintercept = best, linetype = "dotted", colour = "grey40")
  g
}
