#' Plot a learning curve
#'
#' Scores against training-set size: one point per run (size x seed), the
#' mean per size joined by a line, sizes on a log2 axis; for the result of
#' [ft_learning_curve()] also the fitted curve `a - b * n^(-c)` (dashed,
#' extended to four times the largest size) and the target (dotted).
#' `autoplot(curve)` draws the same.
#'
#' @param curve The result of [ft_learning_curve()], or any data frame with a
#'   size column and a score column.
#' @param metric The score column to plot (or, in a long table with `metric`
#'   and `value` columns, the metric to keep). `NULL` picks the first of
#'   score, macro_f1, f1_macro, jaccard, accuracy, f1 that is present.
#' @param size The size column; `NULL` picks size, n_train, train_size or n.
#' @return A ggplot2 object.
#' @examples
#' if (requireNamespace("ggplot2", quietly = TRUE)) {
#'   curve <- data.frame(
#'     size = rep(c(100, 200, 400), each = 2), seed = rep(1:2, 3),
#'     macro_f1 = c(0.41, 0.45, 0.52, 0.55, 0.61, 0.60)
#'   )
#'   ft_plot_learning_curve(curve)
#' }
#' @export
ft_plot_learning_curve <- function(curve, metric = NULL, size = NULL) {
  need_ggplot2()
  runs <- find_frame(curve, c("runs", "table", "curve", "results", "scores"), "curve")
  size <- size %||% first_present(runs, c("size", "n_train", "train_size", "n"))
  if (is.null(size) || !size %in% names(runs)) {
    stop(fineclass_error(sprintf("`curve` has no size column (columns: %s); pass `size=`.",
      paste(names(runs), collapse = ", ")), argument = "size"))
  }
  if (all(c("metric", "value") %in% names(runs))) {
    metric <- metric %||% as.character(runs$metric[1])
    runs <- runs[runs$metric == metric, , drop = FALSE]
    y <- "value"
  } else {
    candidates <- c("score", "macro_f1", "f1_macro", "jaccard", "accuracy", "f1")
    numeric <- names(runs)[vapply(runs, is.numeric, logical(1))]
    metric <- metric %||% first_present(runs, candidates) %||%
      setdiff(numeric, c(size, "seed", "seeds", "run"))[1]
    if (is.null(metric) || is.na(metric) || !metric %in% names(runs)) {
      stop(fineclass_error(sprintf("`metric` must name a score column of `curve` (columns: %s).",
        paste(names(runs), collapse = ", ")), argument = "metric"))
    }
    y <- metric
  }
  means <- stats::aggregate(runs[[y]], list(size = runs[[size]]), mean, na.rm = TRUE)
  names(means) <- c("size", "mean")
  points <- data.frame(size = runs[[size]], score = runs[[y]])
  if (identical(y, "score") && is.list(curve) && is.character(curve$metric)) metric <- curve$metric
  g <- ggplot2::ggplot(points, ggplot2::aes(x = .data$size, y = .data$score)) +
    ggplot2::geom_point(alpha = 0.5) +
    ggplot2::geom_line(data = means, ggplot2::aes(x = .data$size, y = .data$mean)) +
    ggplot2::geom_point(data = means, ggplot2::aes(x = .data$size, y = .data$mean), size = 2.5)
  fitted <- if (is.list(curve) && !is.data.frame(curve)) curve$fitted else NULL
  if (is.data.frame(fitted)) {
    g <- g + ggplot2::geom_line(data = as.data.frame(fitted), ggplot2::aes(x = .data$size, y = .data$score),
      linetype = "dashed", colour = "#cb181d")
  }
  target <- if (is.list(curve) && !is.data.frame(curve)) curve$target else NULL
  if (is.numeric(target) && length(target) == 1 && !is.na(target)) {
    g <- g + ggplot2::geom_hline(yintercept = target, linetype = "dotted", colour = "grey40")
  }
  g +
    ggplot2::scale_x_continuous(trans = "log2") +
    ggplot2::labs(x = "training documents", y = metric, title = "Learning curve",
      caption = if (is.data.frame(fitted)) "dashed: fitted a - b n^-c; dotted: target" else NULL) +
    ggplot2::theme_minimal()
}

#' Plot a confusion matrix
#'
#' Tiles of counts (or shares of each true class) for true against predicted
#' labels.
#'
#' @param x The result of [ft_evaluate()] (its confusion-matrix table is
#'   used); a tidy table of counts with truth, predicted and count columns; a
#'   wide matrix table (first column the true label, one column per predicted
#'   label); or one row per document with a truth and a predicted column.
#' @param truth,predicted Names of the truth and predicted columns when they
#'   are not found by name (truth/true/actual/gold, predicted/pred/label).
#' @param normalize Show the share of each true class instead of counts.
#' @return A ggplot2 object.
#' @examples
#' if (requireNamespace("ggplot2", quietly = TRUE)) {
#'   docs <- data.frame(
#'     truth = c("a", "a", "b", "b", "b"),
#'     predicted = c("a", "b", "b", "b", "a")
#'   )
#'   ft_plot_confusion(docs)
#' }
#' @export
ft_plot_confusion <- function(x, truth = NULL, predicted = NULL, normalize = FALSE) {
  need_ggplot2()
  tab <- find_frame(x, grep("confusion", names(x), value = TRUE), "x")
  cells <- confusion_cells(tab, truth, predicted)
  totals <- tapply(cells$n, cells$truth, sum)
  cells$share <- cells$n / totals[as.character(cells$truth)]
  fill <- if (normalize) "share" else "n"
  cells$label <- if (normalize) sprintf("%.2f", cells$share) else format(cells$n, big.mark = ",")
  ggplot2::ggplot(cells, ggplot2::aes(x = .data$predicted, y = .data$truth, fill = .data[[fill]])) +
    ggplot2::geom_tile(colour = "white") +
    ggplot2::geom_text(ggplot2::aes(label = .data$label), size = 3) +
    ggplot2::scale_fill_gradient(low = "#f7fbff", high = "#08519c",
      name = if (normalize) "share of true class" else "documents") +
    ggplot2::scale_y_discrete(limits = rev) +
    ggplot2::labs(x = "predicted", y = "true", title = "Confusion matrix") +
    ggplot2::theme_minimal() +
    ggplot2::theme(axis.text.x = ggplot2::element_text(angle = 45, hjust = 1))
}

confusion_cells <- function(tab, truth, predicted) {
  nm <- names(tab)
  truth <- truth %||% first_present(tab, c("truth", "true", "actual", "gold", "y_true", "label_true"))
  predicted <- predicted %||% first_present(tab, c("predicted", "pred", "prediction", "y_pred", "label_pred"))
  count <- first_present(tab, c("n", "count", "freq", "value"))
  if (is.null(truth) || is.null(predicted)) {
    numeric <- vapply(tab, is.numeric, logical(1))
    if (ncol(tab) >= 2 && !numeric[1] && all(numeric[-1])) {
      # wide: first column the true label, one count column per predicted label
      levels <- as.character(tab[[1]])
      cells <- expand.grid(truth = levels, predicted = nm[-1], stringsAsFactors = FALSE)
      cells$n <- as.vector(as.matrix(tab[-1]))
      return(finish_cells(cells, union(levels, nm[-1])))
    }
    stop(fineclass_error(sprintf(
      "cannot find the truth and predicted columns in `x` (columns: %s); pass `truth=` and `predicted=`.",
      paste(nm, collapse = ", ")), argument = "x"))
  }
  if (!truth %in% nm) stop(fineclass_error(sprintf("column `%s` not found in `x`.", truth), "truth"))
  if (!predicted %in% nm) stop(fineclass_error(sprintf("column `%s` not found in `x`.", predicted), "predicted"))
  t <- as.character(tab[[truth]])
  p <- as.character(tab[[predicted]])
  levels <- union(level_order(tab[[truth]]), level_order(tab[[predicted]]))
  if (!is.null(count)) {
    cells <- data.frame(truth = t, predicted = p, n = as.numeric(tab[[count]]), stringsAsFactors = FALSE)
    cells <- stats::aggregate(n ~ truth + predicted, data = cells, FUN = sum)
  } else {
    counts <- table(factor(t, levels = levels), factor(p, levels = levels))
    cells <- as.data.frame(counts, stringsAsFactors = FALSE)
    names(cells) <- c("truth", "predicted", "n")
  }
  full <- expand.grid(truth = levels, predicted = levels, stringsAsFactors = FALSE)
  cells <- merge(full, cells, all.x = TRUE)
  cells$n[is.na(cells$n)] <- 0
  finish_cells(cells, levels)
}

level_order <- function(v) {
  if (is.factor(v)) levels(v) else sort(unique(as.character(v[!is.na(v)])))
}

finish_cells <- function(cells, levels) {
  cells$truth <- factor(cells$truth, levels = levels)
  cells$predicted <- factor(cells$predicted, levels = levels)
  cells
}

find_frame <- function(x, preferred, arg) {
  if (is.data.frame(x)) {
    return(x)
  }
  if (is.list(x)) {
    for (nm in preferred) {
      if (is.data.frame(x[[nm]])) {
        return(x[[nm]])
      }
    }
    frames <- Filter(is.data.frame, x)
    if (length(frames)) {
      return(frames[[1]])
    }
  }
  stop(fineclass_error(sprintf("`%s` must be a data frame or a result holding one; got %s.",
    arg, describe_value(x)), argument = arg))
}

first_present <- function(frame, candidates) {
  hit <- intersect(candidates, names(frame))
  if (length(hit)) hit[[1]] else NULL
}

need_ggplot2 <- function() {
  if (!requireNamespace("ggplot2", quietly = TRUE)) {
    stop(fineclass_error("plots need the ggplot2 package: install.packages(\"ggplot2\").", NULL))
  }
}
