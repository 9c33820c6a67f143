# Train, classify, evaluate, save and load with the packaged MiniLM, through the real Python core.

test_that("ft_train returns an ft_model that prints and summarises", {
  skip_if_no_fineclass()
  m <- fitted_model()
  expect_s3_class(m, "ft_model")
  out <- capture.output(print(m))
  expect_match(out[1], "<ft_model> single-label classifier, 2 classes: neg, pos")
  expect_match(paste(out, collapse = "\n"), "model: minilm \\(head")
  expect_match(paste(out, collapse = "\n"), "trained on 24 documents")
  s <- summary(m)
  expect_s3_class(s, "summary.ft_model")
  expect_identical(s$kind, "single")
  expect_identical(s$classes$code, c("neg", "pos"))
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
  expect_identical(p$id, docs$doc)
  expect_true(all(p$label %in% c("neg", "pos")))
  expect_equal(p$p_neg + p$p_pos, rep(1, 24), tolerance = 1e-6)
  expect_equal(p$confidence, pmax(p$p_neg, p$p_pos), tolerance = 1e-6)
  expect_null(attr(p, "pandas.index"))
  prob <- predict(m, docs, text = "review", id = "doc", type = "prob")
  expect_identical(names(prob), c("id", "p_neg", "p_pos"))
  expect_equal(prob$p_pos, p$p_pos)
})

test_that("ft_classify takes a data frame, a character vector or a Parquet path", {
  skip_if_no_fineclass()
  m <- fitted_model()
  docs <- reviews()
  texts <- c(first = "a wonderful, moving film", second = "dull, slow and far too long")
  by_name <- ft_classify(texts, m, progress = FALSE)
  expect_identical(by_name$id, c("first", "second"))
  unnamed <- ft_classify(unname(texts), m, progress = FALSE)
  expect_identical(unnamed$id, 1:2)
  expect_equal(unnamed$p_pos, by_name$p_pos, tolerance = 1e-6)

  no_id <- docs[c("review", "sentiment")]
  rows <- ft_classify(no_id, m, text = "review", progress = FALSE)
  expect_identical(rows$id, seq_len(24))
  from_df <- ft_classify(docs, m, text = "review", id = "doc", progress = FALSE)
  expect_equal(rows$p_pos, from_df$p_pos, tolerance = 1e-6)

  path <- withr::local_tempfile(fileext = ".parquet")
  pq <- reticulate::import("pyarrow.parquet", convert = FALSE)
  pq$write_table(r_to_arrow(docs), path)
  from_file <- ft_classify(path, m, text = "review", id = "doc", progress = FALSE)
  expect_identical(from_file$id, docs$doc)
  expect_equal(from_file$p_pos, from_df$p_pos, tolerance = 1e-6)
})

test_that("ft_classify writes Parquet shards to a folder, and ft_read_predictions reads them back", {
  skip_if_no_fineclass()
  m <- fitted_model()
  docs <- reviews()
  out <- file.path(withr::local_tempdir(), "predictions")
  summary <- ft_classify(docs, m, text = "review", id = "doc", output = out, progress = FALSE)
  expect_type(summary, "list")
  expect_true(dir.exists(out))
  back <- ft_read_predictions(out)
  direct <- ft_classify(docs, m, text = "review", id = "doc", progress = FALSE)
  expect_identical(back$id, direct$id)
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
  loaded <- ft_load(path)
  expect_s3_class(loaded, "ft_model")
  expect_identical(summary(loaded)$classes, summary(m)$classes)
  docs <- reviews()
  before <- predict(m, docs, text = "review", id = "doc")
  after <- predict(loaded, docs, text = "review", id = "doc")
  expect_identical(after$label, before$label)
  expect_equal(after$p_pos, before$p_pos, tolerance = 1e-5)
  by_path <- ft_classify(docs, path, text = "review", id = "doc", progress = FALSE)
  expect_equal(by_path$p_pos, before$p_pos, tolerance = 1e-5)
})

test_that("ft_evaluate returns tidy tibbles, and the confusion matrix plots", {
  skip_if_no_fineclass()
  m <- fitted_model()
  docs <- reviews()
  pred <- predict(m, docs, text = "review", id = "doc")
  truth <- data.frame(id = docs$doc, label = as.character(docs$sentiment))
  ev <- ft_evaluate(pred, truth, bootstrap = 200, seed = 1)
  expect_s3_class(ev, "ft_evaluation")
  expect_true(all(c("metrics", "per_class", "confusion", "notes") %in% names(ev)))
  expect_s3_class(ev$metrics, "tbl_df")
  accuracy <- ev$metrics$estimate[ev$metrics$metric == "accuracy"]
  expect_equal(accuracy, mean(pred$label == truth$label))
  expect_identical(sum(ev$confusion$n), 24L)
  lower <- ev$metrics$lower[ev$metrics$metric == "accuracy"]
  expect_true(lower <= accuracy)

  from_model <- ft_evaluate(m, transform(docs, label = as.character(sentiment)), text = "review", id = "doc",
                            label = "label", bootstrap = 0)
  expect_equal(from_model$metrics$estimate[from_model$metrics$metric == "accuracy"], accuracy)
  expect_output(print(ev), "<ft_evaluation>")

  skip_if_not_installed("ggplot2")
  g <- ft_plot_confusion(ev)
  expect_s3_class(g, "ggplot")
  built <- ggplot2::ggplot_build(g)
  expect_identical(sum(built$plot$data$n), 24)
})

test_that("ft_propose collects proposals from a fitted model", {
  skip_if_no_fineclass()
  m <- fitted_model()
  props <- ft_propose(c("a wonderful film", "a boring mess"), list(sentiment = m))
  expect_s3_class(props, "tbl_df")
  expect_true(all(c("id", "label", "proposer", "confidence", "error") %in% names(props)))
  expect_identical(unique(props$proposer), "sentiment")
  expect_setequal(props$id, 1:2)
})

test_that("ft_learning_curve trains at each size and plots", {
  skip_if_no_fineclass()
  skip_if_not(identical(Sys.getenv("FINECLASS_SLOW_TESTS"), "true"), "set FINECLASS_SLOW_TESTS=true")
  curve <- ft_learning_curve(reviews(), sizes = c(8, 16), seeds = 0, text = "review", label = "sentiment",
                             id = "doc", test_share = 0.25,
                             config = list(epochs = 1, max_length = 16, validation = 0), progress = FALSE)
  expect_s3_class(curve, "ft_learning_curve")
  expect_identical(sort(unique(curve$runs$size)), c(8L, 16L))
  expect_true(all(curve$runs$score >= 0 & curve$runs$score <= 1))
  # with a checkpoint, a second call reuses the recorded runs and trains only the new size
  ck <- tempfile(fileext = ".jsonl")
  first <- ft_learning_curve(reviews(), sizes = c(8, 16), seeds = 0, text = "review", label = "sentiment",
                             id = "doc", test_share = 0.25, checkpoint = ck,
                             config = list(epochs = 1, max_length = 16, validation = 0), progress = FALSE)
  expect_length(readLines(ck), 2L)
  again <- ft_learning_curve(reviews(), sizes = c(8, 12, 16), seeds = 0, text = "review", label = "sentiment",
                             id = "doc", test_share = 0.25, checkpoint = ck,
                             config = list(epochs = 1, max_length = 16, validation = 0), progress = FALSE)
  expect_length(readLines(ck), 3L)
  expect_identical(again$runs$size, c(8L, 12L, 16L))
  expect_identical(again$runs$seconds[c(1, 3)], first$runs$seconds)
  skip_if_not_installed("ggplot2")
  g <- ft_plot_learning_curve(curve)
  expect_s3_class(g, "ggplot")
  expect_identical(nrow(ggplot2::ggplot_build(g)$data[[1]]), 2L)
})

test_that("ft_zero_shot scores every label with the packaged SmolLM2", {
  skip_if_no_fineclass()
  skip_if_not(identical(Sys.getenv("FINECLASS_SLOW_TESTS"), "true"), "set FINECLASS_SLOW_TESTS=true")
  out <- ft_zero_shot(c(a = "a wonderful film", b = "a boring mess"), labels = c("positive", "negative"))
  expect_identical(out$id, c("a", "b"))
  expect_equal(out$p_positive + out$p_negative, c(1, 1), tolerance = 1e-6)
})

test_that("a dimension -> level model predicts a list column, or long rows", {
  skip_if_no_fineclass()
  skip_if_not(identical(Sys.getenv("FINECLASS_SLOW_TESTS"), "true"), "set FINECLASS_SLOW_TESTS=true")
  docs <- reviews()
  labels <- data.frame(id = docs$doc, dimension = ifelse(docs$sentiment == "pos", "joy", "anger"),
                       level = rep(c("low", "medium", "high"), 8))
  m <- ft_train(docs, text = "review", id = "doc", labels = labels, label = c("dimension", "level"),
                model = "minilm", config = list(epochs = 1, max_length = 16, validation = 0, threshold = 0.3),
                progress = FALSE)
  expect_output(print(m), "dimension -> level classifier, 2 dimensions: anger, joy")
  wide <- predict(m, docs, text = "review", id = "doc")
  expect_identical(wide$id, docs$doc)
  expect_type(wide$labels, "list")
  long <- predict(m, docs, text = "review", id = "doc", long = TRUE)
  expect_identical(names(long), c("id", "dimension", "level", "confidence"))
  expect_identical(nrow(long), sum(wide$n_labels))
  expect_true(all(long$dimension %in% c("anger", "joy")))
  expect_true(all(long$level %in% c("low", "medium", "high")))
  first <- which(wide$n_labels > 0)[1]
  if (!is.na(first)) {
    expect_identical(long$dimension[long$id == wide$id[first]], wide$labels[[first]]$dimension)
  }
})

test_that("ft_merge_for_inference gives a generative model bf16 weights that save and load", {
  skip_if_no_fineclass()
  generative <- reticulate::import("fineclass.methods.generative", convert = FALSE)
  m <- new_ft_model(ft_call(generative$zero_shot_classifier, "smollm2-135m",
    labels = as_py_list(c("negative", "positive")), max_length = 32L, .convert = FALSE))
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
