# Train, classify, evaluate, save and load with the packaged MiniLM, through the real Python core.

test_that("ft_train returns an ft_model that prints and summarises", {
  skip_if_no_fineclass()
  m <- fitted_model()
  expect_s3_class(m, "ft_model")
  out <- capture.output(print(m))
  expect_match(out[1], "<ft_model> single-label classifier, 2 classes: pos, neg")
  expect_match(paste(out, collapse = "\n"), "model: minilm \\(head")
  expect_match(paste(out, collapse = "\n"), "trained on 24 documents")
  s <- summary(m)
  expect_s3_class(s, "summary.ft_model")
  expect_identical(s$kind, "single")
  expect_identical(s$classes$code, c("pos", "neg"))   # the training factor's order, not sorted
  expect_identical(s$n_train, 24L)
  expect_identical(s$config$epochs, 2L)
  expect_s3_class(s$history, "tbl_df")
  expect_identical(nrow(s$history), 2L)
  expect_output(print(s), "history:")
})

test_that("predict() returns one row per document with the input's id, and probabilities", {
  skip_if_no_fineclass()
  m <- fitted_model()
  docs <- reviews()
  p <- predict(m, docs, text = "review", id = "doc")
  expect_s3_class(p, "tbl_df")
  expect_identical(names(p)[1], "doc")                # the user's id column keeps its name
  expect_identical(p$doc, docs$doc)
  expect_s3_class(p$label, "factor")
  expect_identical(levels(p$label), c("pos", "neg"))  # the training factor's levels, in its order
  expect_equal(p$p_neg + p$p_pos, rep(1, 24), tolerance = 1e-6)
  expect_equal(p$confidence, pmax(p$p_neg, p$p_pos), tolerance = 1e-6)
  expect_null(attr(p, "pandas.index"))
  prob <- predict(m, docs, text = "review", id = "doc", type = "prob")
  expect_identical(names(prob), c("doc", "p_pos", "p_neg"))
  expect_equal(prob$p_pos, p$p_pos)
})

test_that("ft_classify takes a data frame, a character vector or a Parquet path", {
  skip_if_no_fineclass()
  m <- fitted_model()
  docs <- reviews()
  texts <- c(first = "a wonderful, moving film", second = "dull, slow and far too long")
  by_name <- ft_classify(texts, m, quiet = TRUE)
  expect_identical(by_name$id, c("first", "second"))
  unnamed <- ft_classify(unname(texts), m, quiet = TRUE)
  expect_identical(unnamed$id, 1:2)
  expect_equal(unnamed$p_pos, by_name$p_pos, tolerance = 1e-6)

  no_id <- docs[c("review", "sentiment")]
  rows <- ft_classify(no_id, m, text = "review", quiet = TRUE)
  expect_identical(rows$id, seq_len(24))
  from_df <- ft_classify(docs, m, text = "review", id = "doc", quiet = TRUE)
  expect_equal(rows$p_pos, from_df$p_pos, tolerance = 1e-6)

  path <- withr::local_tempfile(fileext = ".parquet")
  pq <- reticulate::import("pyarrow.parquet", convert = FALSE)
  pq$write_table(r_to_arrow(docs[c("doc", "review")]), path)
  from_file <- ft_classify(path, m, text = "review", id = "doc", quiet = TRUE)
  expect_identical(from_file$doc, docs$doc)
  expect_equal(from_file$p_pos, from_df$p_pos, tolerance = 1e-6)
  explicit <- ft_classify(path = path, model = m, text = "review", id = "doc", quiet = TRUE)
  expect_identical(explicit$label, from_file$label)
  err <- expect_error(ft_classify(path = file.path(tempdir(), "nothing-*.parquet"), model = m),
                      class = "fineclass_error")
  expect_identical(err$argument, "path")
})

test_that("a single string is a document unless it names a file or a glob that matches files", {
  skip_if_no_fineclass()
  m <- fitted_model()
  really <- ft_classify("Really?", m, quiet = TRUE)
  expect_identical(nrow(really), 1L)
  expect_identical(really$id, 1L)
  as_text <- ft_classify("my notes on the film.csv", m, quiet = TRUE)
  expect_identical(nrow(as_text), 1L)
  same <- predict(m, data.frame(text = "my notes on the film.csv"))
  expect_equal(as_text$p_pos, same$p_pos, tolerance = 1e-6)
  # an existing file (or a glob matching one) is read as the file
  dir <- withr::local_tempdir()
  csv <- file.path(dir, "reviews.csv")
  utils::write.csv(data.frame(id = 1:3, text = c("great", "awful", "fine")), csv, row.names = FALSE)
  expect_identical(nrow(ft_classify(csv, m, quiet = TRUE)), 3L)
  expect_identical(nrow(ft_classify(file.path(dir, "*.csv"), m, quiet = TRUE)), 3L)
})

test_that("augment() binds the predictions to the input rows", {
  skip_if_no_fineclass()
  m <- fitted_model()
  docs <- reviews()[c(3, 20, 7), c("doc", "review", "sentiment")]
  aug <- augment(m, docs, text = "review")
  expect_s3_class(aug, "tbl_df")
  expect_identical(aug$doc, docs$doc)
  expect_identical(aug$sentiment, docs$sentiment)
  pred <- predict(m, docs, text = "review", id = "doc")
  expect_identical(aug$.pred, pred$label)
  expect_equal(aug$.pred_pos, pred$p_pos, tolerance = 1e-6)
  expect_true(all(c(".confidence", ".pred_neg") %in% names(aug)))
})

test_that("columns of other classes are converted or left out: glue, haven_labelled, integer64, difftime", {
  skip_if_no_fineclass()
  skip_if_not_installed("glue")
  skip_if_not_installed("haven")
  skip_if_not_installed("bit64")
  docs <- reviews()
  expect_s3_class(docs$review, "glue")
  expect_s3_class(docs$tweet, "integer64")
  expect_s3_class(docs$took, "difftime")
  # the shared model was trained on this data frame (glue text; difftime, haven and integer64 columns beside)
  m <- fitted_model()
  p <- predict(m, docs, text = "review", id = "tweet")
  expect_identical(names(p)[1], "tweet")
  expect_identical(p$tweet, as.character(docs$tweet))   # 64-bit ids exactly, as text
  expect_identical(p$tweet[1], "1626583539423780871")
  back <- arrow_to_r(r_to_arrow(docs[c("review", "stars", "tweet")]))
  expect_identical(back$review, as.character(docs$review))
  expect_identical(back$stars, factor(rep(c("great", "awful"), each = 12), levels = c("awful", "great")))
  # a class with no R equivalent is refused only when the call needs that column
  err <- expect_error(r_to_arrow(docs["took"]), class = "fineclass_error")
  expect_match(conditionMessage(err), "column `took` in `data` is of class difftime")
  # reference codes from a .dta file: a tibble with a haven_labelled column, as haven::read_dta() gives
  coded <- haven::labelled(ifelse(docs$sentiment == "pos", 1, 2), labels = c(pos = 1, neg = 2))
  truth <- tibble::tibble(tweet = docs$tweet, label = coded)
  expect_s3_class(truth$label, "haven_labelled")
  ev <- ft_evaluate(p, truth, id = "tweet", bootstrap = 0)
  expect_identical(sort(unique(as.character(ev$confusion$truth))), c("neg", "pos"))   # value labels, not 1, 2
  expect_equal(ev$metrics$estimate[ev$metrics$metric == "accuracy"],
               mean(as.character(p$label) == as.character(docs$sentiment)))
})

test_that("ft_classify writes Parquet shards to a folder, and ft_read_predictions reads them back", {
  skip_if_no_fineclass()
  m <- fitted_model()
  docs <- reviews()
  out <- file.path(withr::local_tempdir(), "predictions")
  expect_invisible(run <- ft_classify(docs, m, text = "review", id = "doc", output = out, quiet = TRUE))
  expect_s3_class(run, "ft_classify_run")
  expect_identical(run$rows_written, 24L)
  shown <- capture.output(print(run))
  expect_length(shown, 3)
  expect_match(shown[1], "24 documents classified")
  expect_match(shown[3], out, fixed = TRUE)
  expect_true(dir.exists(out))
  back <- ft_read_predictions(out, model = m, id = "doc")
  direct <- ft_classify(docs, m, text = "review", id = "doc", quiet = TRUE)
  expect_identical(back$doc, direct$doc)
  expect_identical(back$label, direct$label)
  expect_equal(back$p_pos, direct$p_pos, tolerance = 1e-6)
  err <- expect_error(ft_read_predictions(file.path(out, "nope")), class = "fineclass_error")
  expect_identical(err$argument, "output")
})

test_that("missing texts are reported with their ids, not dropped", {
  skip_if_no_fineclass()
  docs <- reviews()
  docs$review[c(3, 7)] <- NA
  err <- expect_error(ft_train(docs, text = "review", label = "sentiment", id = "doc", model = "minilm"),
                      class = "fineclass_error")
  expect_match(conditionMessage(err), "r03")
  expect_match(conditionMessage(err), "r07")
  expect_identical(err$argument, "text")
})

test_that("a saved and reloaded model predicts the same", {
  skip_if_no_fineclass()
  m <- fitted_model()
  dir <- withr::local_tempdir()
  path <- file.path(dir, "sentiment-model")
  expect_identical(ft_save(m, path), path)
  expect_true(file.exists(file.path(path, "fineclass.json")))
  err <- expect_error(ft_save(m, path), class = "fineclass_error")
  expect_identical(err$argument, "path")
  expect_match(conditionMessage(err), "overwrite")
  expect_identical(ft_save(m, path, overwrite = TRUE), path)
  loaded <- ft_load(path)
  expect_s3_class(loaded, "ft_model")
  expect_identical(summary(loaded)$classes, summary(m)$classes)
  docs <- reviews()
  before <- predict(m, docs, text = "review", id = "doc")
  after <- predict(loaded, docs, text = "review", id = "doc")
  expect_identical(after$label, before$label)
  expect_equal(after$p_pos, before$p_pos, tolerance = 1e-5)
  by_path <- ft_classify(docs, path, text = "review", id = "doc", quiet = TRUE)
  expect_equal(by_path$p_pos, before$p_pos, tolerance = 1e-5)
})

test_that("ft_evaluate returns tidy tibbles, and the confusion matrix plots", {
  skip_if_no_fineclass()
  m <- fitted_model()
  docs <- reviews()
  pred <- predict(m, docs, text = "review", id = "doc")
  truth <- data.frame(doc = docs$doc, label = as.character(docs$sentiment))
  ev <- ft_evaluate(pred, truth, id = "doc", bootstrap = 200, seed = 1)
  expect_s3_class(ev, "ft_evaluation")
  expect_true(all(c("metrics", "per_class", "confusion", "notes") %in% names(ev)))
  expect_s3_class(ev$metrics, "tbl_df")
  accuracy <- ev$metrics$estimate[ev$metrics$metric == "accuracy"]
  expect_equal(accuracy, mean(pred$label == truth$label))
  expect_identical(sum(ev$confusion$n), 24L)
  lower <- ev$metrics$lower[ev$metrics$metric == "accuracy"]
  expect_true(lower <= accuracy)

  from_model <- ft_evaluate(m, data.frame(doc = docs$doc, review = as.character(docs$review),
                                         label = as.character(docs$sentiment)),
                            text = "review", id = "doc", label = "label", bootstrap = 0)
  expect_equal(from_model$metrics$estimate[from_model$metrics$metric == "accuracy"], accuracy)
  expect_output(print(ev), "<ft_evaluation>")

  skip_if_not_installed("ggplot2")
  g <- ft_plot_confusion(ev)
  expect_s3_class(g, "ggplot")
  built <- ggplot2::ggplot_build(g)
  expect_identical(sum(built$plot$data$n), 24)
})

test_that("ft_propose collects proposals from a fitted model and a zero-shot model", {
  skip_if_no_fineclass()
  m <- fitted_model()
  props <- ft_propose(c("a wonderful film", "a boring mess"), list(sentiment = m))
  expect_s3_class(props, "tbl_df")
  expect_true(all(c("id", "label", "proposer", "confidence", "error") %in% names(props)))
  expect_identical(unique(props$proposer), "sentiment")
  expect_setequal(props$id, 1:2)
})

test_that("ft_evaluate puts Krippendorff's alpha beside kappa", {
  skip_if_no_fineclass()
  pred <- data.frame(id = 1:8, label = c("a", "b", "a", "a", "b", "b", "a", "b"))
  truth <- data.frame(id = 1:8, label = c("a", "b", "b", "a", "b", "a", "a", "b"))
  ev <- ft_evaluate(pred, truth, bootstrap = 0)
  metrics <- ev$metrics$metric
  expect_identical(metrics[which(metrics == "kappa") + 1], "krippendorff_alpha")
  # nominal alpha for two coders, by hand: 1 - (n - 1) * disagreements / expected disagreements
  values <- c(pred$label, truth$label)
  n <- length(values)
  observed <- sum(pred$label != truth$label) * 2 / 2
  nc <- table(values)
  expected <- (n^2 - sum(nc^2)) / (n - 1) / 2
  alpha <- 1 - observed / expected
  expect_equal(ev$metrics$estimate[metrics == "krippendorff_alpha"], alpha, tolerance = 1e-9)
})

test_that("ft_learning_curve trains at each size, resumes from a checkpoint, and plots its fitted curve", {
  skip_if_no_fineclass()
  skip_if_not_slow()
  settings <- ft_config(epochs = 1, max_length = 16, validation = 0)
  ck <- withr::local_tempfile(fileext = ".jsonl")
  first <- ft_learning_curve(reviews(), sizes = c(8, 16), seeds = 0, text = "review", label = "sentiment",
                             id = "doc", test_share = 0.25, checkpoint = ck, config = settings, quiet = TRUE)
  expect_s3_class(first, "ft_learning_curve")
  expect_identical(first$metric, "accuracy")
  expect_identical(sort(unique(first$runs$size)), c(8L, 16L))
  expect_true(all(first$runs$score >= 0 & first$runs$score <= 1))
  expect_null(first$fitted)                       # two sizes: no curve is fitted
  expect_length(readLines(ck), 2L)
  # the same call with one more size reuses the recorded runs and trains only the new one
  # (on so few reviews the curve may not rise, which the core says in a warning)
  curve <- suppressWarnings(ft_learning_curve(reviews(), sizes = c(8, 12, 16), seeds = 0, text = "review",
                                              label = "sentiment", id = "doc", test_share = 0.25, checkpoint = ck,
                                              config = settings, target = 0.9, quiet = TRUE))
  expect_length(readLines(ck), 3L)
  expect_identical(curve$runs$size, c(8L, 12L, 16L))
  expect_identical(curve$runs$seconds[c(1, 3)], first$runs$seconds)
  expect_identical(curve$target, 0.9)
  expect_s3_class(curve$fitted, "tbl_df")
  expect_equal(min(curve$fitted$size), 8)
  expect_equal(max(curve$fitted$size), 64)
  fit <- curve$fit
  expect_equal(curve$fitted$score, fit$a - fit$b * curve$fitted$size^(-fit$c), tolerance = 1e-9)
  expect_s3_class(curve$needed, "tbl_df")
  g <- glance(curve)
  expect_identical(g$metric, "accuracy")
  expect_equal(g$a, fit$a)
  expect_identical(tidy(curve), curve$runs)
  skip_if_not_installed("ggplot2")
  built <- ggplot2::ggplot_build(ggplot2::autoplot(curve))
  expect_identical(nrow(built$data[[1]]), 3L)     # one point per run
  expect_identical(nrow(built$data[[4]]), nrow(curve$fitted))   # the fitted curve
  expect_equal(built$data[[5]]$yintercept, 0.9)   # the target
  expect_identical(built$plot$labels$y, "accuracy")
})

test_that("ft_zero_shot and ft_zero_shot_model score every label with the packaged SmolLM2", {
  skip_if_no_fineclass()
  skip_if_not_slow()
  docs <- c(a = "a wonderful film", b = "a boring mess")
  out <- ft_zero_shot(docs, labels = c("positive", "negative"), max_length = 32)
  expect_identical(out$id, c("a", "b"))
  expect_equal(out$p_positive + out$p_negative, c(1, 1), tolerance = 1e-6)
  expect_identical(levels(out$label), c("positive", "negative"))
  zs <- ft_zero_shot_model(labels = c("positive", "negative"), max_length = 32)
  expect_s3_class(zs, "ft_model")
  expect_output(print(zs), "zero-shot")
  expect_equal(predict(zs, docs)$p_positive, out$p_positive, tolerance = 1e-6)
  props <- ft_propose(docs, list(zs = zs))
  expect_identical(unique(props$proposer), "zs")
  expect_true(all(props$label %in% c("positive", "negative")))
  err <- expect_error(ft_zero_shot_model(labels = c("positive", "negative"), threshold = 2),
                      class = "fineclass_error")
  expect_identical(err$argument, "threshold")
})

test_that("a dimension -> level model: ordered levels from an ordered factor, list column or long rows", {
  skip_if_no_fineclass()
  skip_if_not_slow()
  docs <- reviews()
  labels <- data.frame(id = docs$doc, dimension = ifelse(docs$sentiment == "pos", "joy", "anger"),
                       level = factor(rep(c("mild", "strong", "extreme"), 8),
                                      levels = c("mild", "strong", "extreme"), ordered = TRUE))
  m <- ft_train(docs, text = "review", id = "doc", labels = labels, label = c("dimension", "level"),
                model = "minilm", config = ft_config(epochs = 1, max_length = 16, validation = 0, threshold = 0.3),
                quiet = TRUE)
  expect_output(print(m), "dimension -> level classifier, 2 dimensions: anger, joy")
  expect_output(print(m), "levels: mild < strong < extreme")   # the ordered factor's order, not sorted
  wide <- predict(m, docs, text = "review", id = "doc")
  expect_identical(wide$doc, docs$doc)
  expect_type(wide$labels, "list")
  long <- predict(m, docs, text = "review", id = "doc", long = TRUE)
  expect_identical(names(long), c("doc", "dimension", "level", "confidence"))
  expect_s3_class(long$level, "ordered")
  expect_identical(levels(long$level), c("mild", "strong", "extreme"))
  expect_identical(nrow(long), sum(wide$n_labels))
  expect_true(all(long$dimension %in% c("anger", "joy")))
  first <- which(wide$n_labels > 0)[1]
  if (!is.na(first)) {
    expect_identical(long$dimension[long$doc == wide$doc[first]], wide$labels[[first]]$dimension)
    expect_s3_class(wide$labels[[first]]$level, "ordered")
  }
})

test_that("ft_merge_for_inference gives a generative model bf16 weights that save and load", {
  skip_if_no_fineclass()
  skip_if_not_slow()
  m <- ft_zero_shot_model(labels = c("negative", "positive"), max_length = 32)
  docs <- c(a = "a wonderful, moving film", b = "a boring mess", c = "not bad at all")
  before <- predict(m, docs, type = "prob")
  expect_identical(ft_merge_for_inference(m, dtype = "bfloat16", activations = "float32"), m)
  layers <- reticulate::py_eval("lambda m: sorted({type(x).__name__ for x in m.modules()})")
  expect_true("LowPrecisionLinear" %in% unlist(layers(m$py$module_)))
  after <- predict(m, docs, type = "prob")
  expect_equal(after$p_positive, before$p_positive, tolerance = 0.05)
  expect_false(identical(after$p_positive, before$p_positive))      # the weights did change precision
  path <- file.path(withr::local_tempdir(), "merged")
  ft_save(m, path)
  again <- ft_load(path)
  expect_identical(predict(again, docs, type = "prob")$p_positive, after$p_positive)
  err <- expect_error(ft_merge_for_inference(m, activations = "int8"), class = "fineclass_error")
  expect_identical(err$argument, "activations")
  err <- expect_error(ft_merge_for_inference(fitted_model()), class = "fineclass_error")
  expect_identical(err$argument, "model")
  expect_match(conditionMessage(err), "generative")
})

test_that("the codebook methods train from R with a codebook, and a learning curve hands it to every run", {
  skip_if_no_fineclass()
  skip_if_not_slow()
  book <- data.frame(code = c("pos", "neg"), name = c("positive", "negative"),
                     description = c("a positive review: the critic liked the film",
                                     "a negative review: the critic disliked the film"))
  m <- ft_train(reviews(), text = "review", label = "sentiment", id = "doc", model = "minilm",
                method = "codebook", codebook = book, quiet = TRUE)
  expect_s3_class(m, "ft_model")
  pred <- predict(m, c("a wonderful, moving film", "a dull and tedious mess"))
  expect_s3_class(pred$label, "factor")
  expect_identical(as.character(pred$label), c("pos", "neg"))
  # the coders' own column names (dimension, definition) are read as they are
  coders <- data.frame(dimension = book$code, name = book$name, definition = book$description)
  m2 <- ft_train(reviews(), text = "review", label = "sentiment", id = "doc", model = "minilm",
                 method = "codebook", codebook = coders, quiet = TRUE)
  expect_equal(predict(m2, c("a wonderful, moving film", "a dull and tedious mess"), type = "prob"),
               predict(m, c("a wonderful, moving film", "a dull and tedious mess"), type = "prob"))
  curve <- ft_learning_curve(reviews(), sizes = c(8, 16), seeds = 0, text = "review", label = "sentiment",
                             id = "doc", method = "codebook", codebook = book, test_share = 0.25, quiet = TRUE)
  expect_identical(curve$runs$size, c(8L, 16L))
  expect_true(all(curve$runs$score >= 0 & curve$runs$score <= 1))
  expect_snapshot(ft_train(reviews(), text = "review", label = "sentiment", method = "pairs"), error = TRUE)
})

test_that("print() wraps a model's validation note to the console's width", {
  skip_if_no_fineclass()
  # 24 reviews hold out 2 for validation: too few to choose an epoch, so they train and the model says so
  m <- ft_train(reviews(), text = "review", label = "sentiment", id = "doc", model = "minilm",
    method = "description", config = ft_config(extra = list(min_steps = 4)), epochs = 1, max_length = 32,
    seed = 7, quiet = TRUE)
  out <- withr::with_options(list(width = 60), capture.output(print(m)))
  first <- grep("^  note: a validation split of 2 documents", out)
  expect_length(first, 1)
  wrapped <- out[first:length(out)]
  wrapped <- wrapped[seq_len(match(FALSE, startsWith(wrapped[-1], "        "), nomatch = length(wrapped)))]
  expect_gt(length(wrapped), 2)
  expect_true(all(nchar(wrapped) <= 60))
  expect_match(paste(trimws(wrapped), collapse = " "), "min_validation=0 keeps the split", fixed = TRUE)
})

test_that("a refit is shown when printed, and a bad refit setting names config", {
  skip_if_no_fineclass()
  m <- ft_train(reviews(), text = "review", label = "sentiment", id = "doc", model = "minilm",
    config = ft_config(validation = 0.25, extra = list(refit = TRUE)), epochs = 1, max_length = 32,
    quiet = TRUE)
  out <- paste(capture.output(print(m)), collapse = "\n")
  expect_match(out, "trained on 18 documents (6 held out for validation), best epoch 1", fixed = TRUE)
  expect_match(out, "then trained again on all 24 documents up to that epoch (refit)", fixed = TRUE)
  expect_true(summary(m)$manifest$refit$done)
  expect_error(
    ft_train(reviews(), text = "review", label = "sentiment", id = "doc", model = "minilm",
      config = ft_config(extra = list(refit = "yes")), epochs = 1, max_length = 32, quiet = TRUE),
    "extra['refit'] must be True or False", fixed = TRUE
  )
})
