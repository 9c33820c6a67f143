# From codes to findings: estimates from a model's codes plus human codes on a random sample
# (prediction-powered inference, PPI++, DSL), and the sample to draw. Each verb calls one function of the core.

#' Valid estimates from model codes plus a human sample
#'
#' The core's `estimate()`: label shares (overall or by group) or the
#' coefficients of a linear or logistic regression whose outcome or a
#' covariate is a coded label, from the model's codes for every document and
#' human codes for a random sample of them. The intervals stay valid whatever
#' the model's errors: the human sample corrects them, the model's codes on the
#' rest make the estimate more precise than the human sample alone. Beside each
#' estimate come the naive model-only one (the codes taken as the truth), the
#' human-sample-only one and the effective sample size gained.
#'
#' @param codes The model's codes for every document: the tibble [ft_classify()]
#'   or `predict()` returns (`id, label` or `id, labels`), or a long table (`id,
#'   label`, or `id, dimension, level`) with `data`; or a path.
#' @param human The coders' codes for the sampled documents, in any of the
#'   same shapes (e.g. [ft_assemble()] on the review of the sample).
#' @param data One row per document of the corpus (`id` and the `by` or
#'   regression columns); needed when `codes` is a long table.
#' @param sample The drawn sample ([ft_draw_sample()]: id, probability,
#'   design, stratum); needed when `human` is a long table. Without it the
#'   human codes are taken as a simple random sample.
#' @param by Column(s) of `data` to estimate shares by group.
#' @param labels The labels (dimensions) whose shares to estimate (`NULL`:
#'   all).
#' @param regression `NULL` for shares, or `"ols"` / `"logistic"`.
#' @param outcome,covariates The regression's outcome and covariates: columns
#'   of `data` or labels (their 0/1 codes); an intercept is added.
#' @param method `"ppi++"` (power-tuned prediction-powered inference),
#'   `"ppi"` or `"dsl"` (design-based supervised learning).
#' @param population `"finite"` (the corpus is the population) or
#'   `"superpopulation"` (as in the PPI papers and ppi-python).
#' @param design `NULL` (from the sample), `"srs"`, `"stratified"` or
#'   `"poisson"`.
#' @param confidence The confidence level of the intervals.
#' @param small_sample Keep intervals honest when a sample holds few
#'   disagreements between model and coders (`FALSE`: the papers' plain normal
#'   intervals).
#' @param folds,seed DSL's cross-fitting folds and their seed.
#' @param spec The label set ([ft_label_spec()], an `ft_model` or a saved
#'   model's folder); codes outside it are errors.
#' @param id The id column of every table.
#' @return A tibble of class `ft_estimate`, one row per label (and group) or
#'   coefficient: the `by` columns, estimand, outcome, term, estimate,
#'   std_error, conf_low, conf_high, df, method, lambda, model_estimate (and its
#'   std_error, conf_low, conf_high), human_estimate (idem), n_human, n_total,
#'   effective_n, gain, population, design. [tidy()] gives broom's columns and
#'   `autoplot()` the three intervals side by side.
#' @seealso [ft_draw_sample()], [ft_review_export()], [ft_assemble()].
#' @examplesIf ft_available()
#' set.seed(1)
#' truth <- sample(c("pos", "neg"), 300, replace = TRUE, prob = c(0.3, 0.7))
#' wrong <- runif(300) < 0.2
#' codes <- data.frame(id = 1:300, label = ifelse(wrong, "pos", truth))
#' drawn <- ft_draw_sample(codes, 60, seed = 2)
#' human <- data.frame(id = drawn$id, label = truth[drawn$id])
#' est <- ft_estimate(codes, human, sample = drawn)
#' tidy(est)
#' @export
ft_estimate <- function(codes, human, data = NULL, sample = NULL, by = NULL, labels = NULL, regression = NULL,
                        outcome = NULL, covariates = NULL, method = c("ppi++", "ppi", "dsl"),
                        population = c("finite", "superpopulation"), design = NULL, confidence = 0.95,
                        small_sample = TRUE, folds = 5, seed = 0, spec = NULL, id = "id") {
  names_arg <- function(x, arg) if (is.null(x)) NULL else as_py_list(string_arg(x, arg, many = TRUE))
  out <- ft_call("estimate", prepare_table(codes, "codes"), prepare_table(human, "human"),
    data = prepare_table(data, "data"), sample = prepare_table(sample, "sample"),
    by = names_arg(by, "by"), labels = names_arg(labels, "labels"),
    regression = if (is.null(regression)) NULL else one_of(regression, c("ols", "logistic"), "regression"),
    outcome = string_arg(outcome, "outcome", null = TRUE), covariates = names_arg(covariates, "covariates"),
    method = one_of(method, c("ppi++", "ppi", "dsl"), "method"),
    population = one_of(population, c("finite", "superpopulation"), "population"),
    design = if (is.null(design)) NULL else one_of(design, c("srs", "stratified", "poisson"), "design"),
    confidence = number_arg(confidence, "confidence", 0, 1, open_low = TRUE, open_high = TRUE),
    small_sample = flag_arg(small_sample, "small_sample"), folds = count_arg(folds, "folds", 2),
    seed = count_arg(seed, "seed", 0), spec = prepare_spec(spec), id = string_arg(id, "id"), .quiet = TRUE)
  attr(out, "by") <- by
  attr(out, "confidence") <- confidence
  class(out) <- c("ft_estimate", class(out))
  out
}

#' Draw the documents for human coding
#'
#' The core's `draw_sample()`: a reproducible random sample of the corpus,
#' each document with its probability of being drawn, which [ft_estimate()]
#' needs. `"simple"`: a simple random sample; `"stratified"`: within each
#' stratum of the column `strata` (a group, or `"label"` of single-label
#' predictions); `"uncertainty"`: Poisson sampling, the less sure the model,
#' the likelier a document is drawn (never with probability zero).
#'
#' @param data One row per document (predictions, or any table with ids).
#' @param size The number of documents to draw (on average for
#'   `"uncertainty"`).
#' @param method `"simple"`, `"stratified"` or `"uncertainty"`.
#' @param strata The stratum column for `"stratified"`.
#' @param allocation `"proportional"` or `"equal"` (or a named vector of
#'   counts per stratum).
#' @param uncertainty For `"uncertainty"`: a column of the model's
#'   uncertainty (default `1 - confidence`).
#' @param uniform_share For `"uncertainty"`: the share drawn uniformly.
#' @param seed The random seed.
#' @param id The id column.
#' @return A tibble, one row per drawn document in id order: id, probability,
#'   design, stratum.
#' @examplesIf ft_available()
#' codes <- data.frame(id = 1:100, label = rep(c("a", "b"), c(70, 30)))
#' ft_draw_sample(codes, 20, method = "stratified", strata = "label", seed = 1)
#' @export
ft_draw_sample <- function(data, size, method = c("simple", "stratified", "uncertainty"), strata = NULL,
                           allocation = "proportional", uncertainty = NULL, uniform_share = 0.5, seed = 0,
                           id = "id") {
  if (is.character(allocation)) {
    allocation <- one_of(allocation, c("proportional", "equal"), "allocation")
  } else if (!is.numeric(allocation) || is.null(names(allocation))) {
    stop(fineclass_error("`allocation` must be \"proportional\", \"equal\" or a named vector of counts.",
      "allocation"))
  } else {
    allocation <- as.list(allocation)
  }
  ft_call("draw_sample", prepare_table(data, "data"), count_arg(size, "size", 1),
    method = one_of(method, c("simple", "stratified", "uncertainty"), "method"),
    strata = string_arg(strata, "strata", null = TRUE), allocation = allocation,
    uncertainty = string_arg(uncertainty, "uncertainty", null = TRUE),
    uniform_share = number_arg(uniform_share, "uniform_share", 0, 1, open_low = TRUE),
    seed = count_arg(seed, "seed", 0), id = string_arg(id, "id"), .quiet = TRUE)
}

#' @export
print.ft_estimate <- function(x, ...) {
  what <- if (nrow(x) && identical(x$estimand[1], "share")) "label shares" else "regression coefficients"
  cat(sprintf("<ft_estimate> %s, %s (%s population), %d human codes of %d documents\n", what,
    if (nrow(x)) x$method[1] else "", if (nrow(x)) x$population[1] else "",
    if (nrow(x)) as.integer(x$n_human[1]) else 0L, if (nrow(x)) as.integer(x$n_total[1]) else 0L))
  print(tidy(x), ...)
  invisible(x)
}

#' Tidy an estimate
#'
#' `tidy()` gives one row per label (and group) or coefficient in broom's
#' column names, with the model-only and human-only estimates beside it;
#' `glance()` one row: method, population, design, sample size, corpus size
#' and the median gain (effective sample size over sample size).
#'
#' @param x An `ft_estimate` from [ft_estimate()].
#' @param ... Not used: an argument given here is an error naming it.
#' @return A tibble. `tidy()`: the `by` columns, term, estimate, std.error,
#'   conf.low, conf.high, model.estimate, human.estimate, effective.n.
#' @examplesIf ft_available()
#' codes <- data.frame(id = 1:200, label = rep(c("a", "b"), c(120, 80)))
#' human <- data.frame(id = seq(1, 200, by = 4), label = rep(c("a", "b", "b", "a", "a"), 10))
#' est <- ft_estimate(codes, human)
#' tidy(est)
#' glance(est)
#' @method tidy ft_estimate
#' @export
tidy.ft_estimate <- function(x, ...) {
  check_dots(...)
  by <- attr(x, "by")
  cols <- c(lapply(stats::setNames(by, by), function(b) x[[b]]), list(
    term = x$term, estimate = x$estimate, std.error = x$std_error, conf.low = x$conf_low,
    conf.high = x$conf_high, model.estimate = x$model_estimate, human.estimate = x$human_estimate,
    effective.n = x$effective_n
  ))
  new_frame(cols, nrow(x))
}

#' @rdname tidy.ft_estimate
#' @method glance ft_estimate
#' @export
glance.ft_estimate <- function(x, ...) {
  check_dots(...)
  first <- function(col, na) if (nrow(x)) x[[col]][1] else na
  new_frame(list(
    method = first("method", NA_character_), population = first("population", NA_character_),
    design = first("design", NA_character_), n_human = first("n_human", NA_integer_),
    n_total = first("n_total", NA_integer_), median_gain = if (nrow(x)) stats::median(x$gain) else NA_real_
  ), 1L)
}

#' @rdname tidy.ft_estimate
#' @param object An `ft_estimate`.
#' @details `autoplot()` draws, per label (or coefficient), the interval of
#'   the estimate beside the model-only and human-only ones, one panel per
#'   group.
#' @exportS3Method ggplot2::autoplot
autoplot.ft_estimate <- function(object, ...) {
  check_dots(...)
  need_ggplot2()
  sources <- c("estimate" = "", "model codes only" = "model_", "human sample only" = "human_")
  by <- attr(object, "by")
  long <- do.call(rbind, lapply(names(sources), function(s) {
    p <- sources[[s]]
    data.frame(
      term = object$term, group = if (length(by)) do.call(paste, c(lapply(by, function(b) object[[b]]),
        sep = " / ")) else "",
      source = s, estimate = object[[paste0(p, "estimate")]], low = object[[paste0(p, "conf_low")]],
      high = object[[paste0(p, "conf_high")]], stringsAsFactors = FALSE
    )
  }))
  long$source <- factor(long$source, levels = names(sources))
  long$term <- factor(long$term, levels = rev(unique(object$term)))
  g <- ggplot2::ggplot(long, ggplot2::aes(x = .data$estimate, y = .data$term, colour = .data$source)) +
    ggplot2::geom_pointrange(ggplot2::aes(xmin = .data$low, xmax = .data$high),
      position = ggplot2::position_dodge(width = 0.6)) +
    ggplot2::labs(x = if (nrow(object) && identical(object$estimand[1], "share")) "share" else "coefficient",
      y = NULL, colour = NULL, title = sprintf("%s estimates with %g%% intervals",
        if (nrow(object)) object$method[1] else "", 100 * (attr(object, "confidence") %||% 0.95))) +
    ggplot2::theme_minimal()
  if (length(by)) g <- g + ggplot2::facet_wrap(ggplot2::vars(.data$group))
  g
}
