# From codes to findings from R: ft_draw_sample(), ft_estimate() and its tidy()/glance()/autoplot(), and the
# review round trip with a coder's corrections and additions.

flourishing_file <- function(file) {
  dir <- Sys.getenv("FINECLASS_DATA")
  skip_if(!nzchar(dir) || !file.exists(file.path(dir, file)), "set FINECLASS_DATA to the flourishing data")
  file.path(dir, file)
}

# The 2,000 labelled tweets as the corpus, the fine-tuned Llama-2-7B's codes (its one misspelt dimension
# fixed, codes outside the 46 dimensions dropped) and the coders' codes.
labelled_tweets <- function() {
  ids <- ft_read_data(flourishing_file("labeled_ids.parquet"))["id"]
  labels <- ft_read_data(flourishing_file("labels.parquet"))
  codes <- ft_read_data(flourishing_file("llama2_7b_finetuned.parquet"))
  codes$dimension[codes$dimension == "capability)"] <- "mastery (ability, capability)"
  codes <- codes[codes$id %in% ids$id & codes$dimension %in% labels$dimension, ]
  list(ids = ids, labels = labels, codes = codes)
}

test_that("ft_estimate with PPI on a simple random sample is the textbook design estimate", {
  skip_if_no_fineclass()
  tw <- labelled_tweets()
  drawn <- ft_draw_sample(tw$ids, 250, seed = 9)
  expect_identical(names(drawn), c("id", "probability", "design", "stratum"))
  expect_identical(nrow(drawn), 250L)
  expect_equal(unique(drawn$probability), 250 / 2000)
  expect_identical(drawn$id, ft_draw_sample(tw$ids[rev(seq_len(2000)), , drop = FALSE], 250, seed = 9)$id)
  human <- tw$labels[tw$labels$id %in% drawn$id, ]
  est <- ft_estimate(tw$codes, human, data = tw$ids, sample = drawn, labels = c("anxiety", "happiness"),
                     method = "ppi", small_sample = FALSE)
  expect_s3_class(est, "ft_estimate")
  expect_identical(est$term, c("anxiety", "happiness"))
  # by hand in R: the codes' share plus the mean error on the sample, variance (1 - n/N) s^2 / n
  for (dim in est$term) {
    y <- as.numeric(tw$ids$id %in% tw$labels$id[tw$labels$dimension == dim])
    f <- as.numeric(tw$ids$id %in% tw$codes$id[tw$codes$dimension == dim])
    s <- tw$ids$id %in% drawn$id
    e <- y[s] - f[s]
    row <- est[est$term == dim, ]
    expect_equal(row$estimate, mean(f) + mean(e), tolerance = 1e-12)
    expect_equal(row$std_error, sqrt((1 - 250 / 2000) * stats::var(e) / 250), tolerance = 1e-10)
    expect_equal(row$model_estimate, mean(f), tolerance = 1e-12)
    expect_equal(row$human_estimate, mean(y[s]), tolerance = 1e-12)
  }
  # tidy, glance, print
  td <- tidy(est)
  expect_identical(names(td), c("term", "estimate", "std.error", "conf.low", "conf.high", "model.estimate",
                                "human.estimate", "effective.n"))
  expect_equal(td$conf.low, est$conf_low)
  gl <- glance(est)
  expect_identical(gl$n_human, 250L)
  expect_identical(gl$method, "ppi")
  expect_output(print(est), "label shares, ppi \\(finite population\\), 250 human codes of 2000 documents")
  # PPI++ (the default) is never wider than the human sample alone here, and a regression with a coded label
  tuned <- ft_estimate(tw$codes, human, data = tw$ids, sample = drawn, labels = "happiness")
  expect_lte(tuned$conf_high - tuned$conf_low, tuned$human_conf_high - tuned$human_conf_low)
  set.seed(3)
  tw$ids$x <- stats::rnorm(2000) + 0.8 * (tw$ids$id %in% tw$labels$id[tw$labels$dimension == "happiness"])
  reg <- ft_estimate(tw$codes, human, data = tw$ids, sample = drawn, regression = "ols", outcome = "x",
                     covariates = "happiness")
  expect_identical(reg$term, c("(Intercept)", "happiness"))
  expect_true(reg$conf_low[2] < 0.8 + 0.3 && reg$conf_high[2] > 0.8 - 0.3)
  expect_output(print(reg), "regression coefficients")
})

test_that("ft_estimate by group, and its plot", {
  skip_if_no_fineclass()
  skip_if_not_installed("ggplot2")
  set.seed(1)
  truth <- sample(c("pos", "neg"), 400, replace = TRUE, prob = c(0.3, 0.7))
  codes <- data.frame(id = 1:400, label = ifelse(stats::runif(400) < 0.2, "pos", truth),
                      party = rep(c("left", "right"), 200))
  drawn <- ft_draw_sample(codes, 100, method = "stratified", strata = "party", seed = 2)
  expect_identical(sort(unique(drawn$stratum)), c("left", "right"))
  human <- data.frame(id = drawn$id, label = truth[drawn$id])
  est <- ft_estimate(codes, human, sample = drawn, by = "party")
  expect_identical(names(tidy(est))[1:2], c("party", "term"))
  expect_identical(nrow(est), 4L)
  # the naive model-only share of "pos" is biased upwards by the errors; the estimate corrects it
  pos <- est[est$term == "pos", ]
  truth_share <- tapply(truth == "pos", codes$party, mean)[pos$party]
  expect_true(all(pos$model_estimate > truth_share))
  expect_true(all(pos$conf_low < truth_share & truth_share < pos$conf_high))
  g <- ggplot2::autoplot(est)
  expect_s3_class(g, "ggplot")
  expect_identical(levels(g$data$source), c("estimate", "model codes only", "human sample only"))
  expect_identical(nrow(g$data), 12L)
})

test_that("bad estimate arguments are fineclass errors naming the argument", {
  skip_if_no_fineclass()
  codes <- data.frame(id = 1:50, label = rep(c("a", "b"), 25))
  human <- data.frame(id = 1:10, label = rep(c("a", "b"), 5))
  err <- function(expr) tryCatch(expr, fineclass_error = function(e) e)
  expect_identical(err(ft_estimate(codes, human, method = "mle"))$argument, "method")
  expect_identical(err(ft_estimate(codes, human, confidence = 95))$argument, "confidence")
  expect_identical(err(ft_estimate(codes, human, by = 3))$argument, "by")
  stray <- data.frame(id = c(1, 99), label = c("a", "b"))
  e <- err(ft_estimate(codes, stray))
  expect_s3_class(e, "fineclass_error")
  expect_match(conditionMessage(e), "99")
  expect_identical(err(ft_draw_sample(codes, 51))$argument, "size")
  expect_identical(err(ft_draw_sample(codes, 10, method = "stratified", allocation = list(1)))$argument,
                   "allocation")
})

test_that("a review round trip from R keeps the coders' corrections and additions, and refuses a bad sheet", {
  skip_if_no_fineclass()
  proposals <- data.frame(id = c(1, 1, 2, 3, 4), label = c("pos", "neg", "neg", "pos", "neu"),
                          proposer = c("m", "gpt", "m", "m", "gpt"))
  dir <- withr::local_tempdir()
  sheets <- ft_review_export(proposals, file.path(dir, "review.csv"), coders = c("ana", "ben"), overlap = 0)
  filled <- lapply(sheets, function(s) utils::read.csv(s, colClasses = "character", check.names = FALSE))
  for (k in seq_along(sheets)) {
    rows <- filled[[k]]
    rows$accept <- ifelse(rows$id == "1" & rows$label == "pos" | rows$id == "4", "Y", "N")
    rows$correction[rows$id == "2"] <- "pos"        # not neg: pos
    rows$correction[rows$id == "3"] <- "NEU"        # matched without case
    rows$addition[rows$id == "4"] <- "pos"          # a second code nobody proposed
    rows$started <- "2026-05-04 10:00:00"
    rows$finished <- "2026-05-04 10:00:30"
    utils::write.csv(rows, sheets[k], row.names = FALSE, na = "")
    filled[[k]] <- rows
  }
  decisions <- ft_review_import(sheets, proposals)
  expect_true(all(c("correction", "added", "seconds") %in% names(decisions)))
  expect_true(all(decisions$seconds[!decisions$added] == 30))
  assembled <- ft_assemble(decisions)
  got <- assembled[order(assembled$id, assembled$label), c("id", "label", "source", "coders")]
  coder_of <- stats::setNames(unlist(lapply(filled, function(r) r$coder)), unlist(lapply(filled, function(r) r$id)))
  expect_identical(paste(got$id, got$label, got$source),
                   c("1 pos proposal", "2 pos correction", "3 neu correction", "4 neu proposal", "4 pos addition"))
  expect_identical(got$coders, unname(coder_of[as.character(got$id)]))
  report <- ft_acceptance(decisions)
  expect_identical(sum(report$proposer$corrected), 2L)
  expect_identical(report$additions$additions[report$additions$coder == "all"], 1L)
  # a correction outside the label set: an error naming the sheet's row, nothing imported
  rows <- filled[[1]]
  bad <- which(rows$accept == "N")[1]
  rows$correction[bad] <- "ecstatic"
  utils::write.csv(rows, sheets[1], row.names = FALSE, na = "")
  e <- tryCatch(ft_review_import(sheets, proposals), fineclass_error = function(e) e)
  expect_s3_class(e, "fineclass_error")
  expect_identical(e$argument, "paths")
  expect_match(conditionMessage(e), sprintf("review-%s.csv row %d: correction 'ecstatic' is not in the label set",
                                            rows$coder[1], bad + 1), fixed = TRUE)
  expect_match(conditionMessage(e), "nothing was imported", fixed = TRUE)
})
