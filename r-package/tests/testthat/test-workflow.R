# The hybrid workflow from R, on the paper's own record (the shared flourishing data), and the shapes and
# prints of results (snapshots).

flourishing <- function(file) {
  dir <- Sys.getenv("FINECLASS_DATA")
  skip_if(!nzchar(dir) || !file.exists(file.path(dir, file)), "set FINECLASS_DATA to the flourishing data")
  file.path(dir, file)
}

test_that("review export -> import -> assemble -> acceptance reproduces the paper's acceptance rates", {
  skip_if_no_fineclass()
  record <- ft_read_data(flourishing("proposals.parquet"))   # id, dimension, level, proposer, coder, accepted
  expect_identical(names(record), c("id", "dimension", "level", "proposer", "coder", "accepted"))
  dir <- withr::local_tempdir()
  # each of the paper's coders gets a sheet with the proposals they reviewed, fills it with their own
  # recorded decision (the first one, where the record holds several for one proposal), and the sheet is
  # read back against the proposals it was made from
  decisions <- list()
  for (coder in sort(unique(record$coder))) {
    mine <- record[record$coder == coder, ]
    asked <- mine[c("id", "dimension", "level", "proposer")]
    sheet <- ft_review_export(asked, file.path(dir, paste0("coder", coder), "review.csv"),
                              coders = paste0("c", coder), overlap = 0)
    expect_length(sheet, 1)
    rows <- utils::read.csv(sheet, colClasses = "character", check.names = FALSE)
    expect_true(all(rows$accept == ""))
    key <- paste(mine$id, mine$dimension, mine$level)
    first <- !duplicated(key)
    decided <- stats::setNames(mine$accepted[first], key[first])
    rows$accept <- unname(decided[paste(rows$id, rows$dimension, rows$level)])
    utils::write.csv(rows, sheet, row.names = FALSE, na = "")
    decisions[[length(decisions) + 1]] <- ft_review_import(sheet, asked)
  }
  decisions <- do.call(rbind, decisions)
  expect_s3_class(decisions, "tbl_df")
  expect_identical(nrow(decisions), nrow(unique(record[c("id", "dimension", "level", "proposer", "coder")])))
  expect_true(all(c("id", "dimension", "level", "proposer", "coder", "accepted") %in% names(decisions)))
  report <- ft_acceptance(decisions)
  expect_s3_class(report, "ft_acceptance")
  rate <- stats::setNames(report$proposer$rate, report$proposer$proposer)
  expect_lt(abs(rate[["LLAMA2"]] - 0.315), 0.005)   # the paper: 31.5%
  expect_lt(abs(rate[["GPT4"]] - 0.763), 0.005)     # the paper: 76.3%
  # and on the record itself, as the paper kept it
  direct <- ft_acceptance(record)
  direct_rate <- stats::setNames(direct$proposer$rate, direct$proposer$proposer)
  expect_lt(abs(direct_rate[["LLAMA2"]] - 0.315), 0.005)
  expect_lt(abs(direct_rate[["GPT4"]] - 0.763), 0.005)
  expect_true(all(c("kappa", "alpha") %in% names(direct$agreement)))
  # the assembled training set: the released labels, less the few the sheets' single decisions flip
  assembled <- ft_assemble(decisions, rule = "any-accept")
  coded <- assembled[!is.na(assembled$dimension), ]
  labels <- ft_read_data(flourishing("labels.parquet"))
  key <- function(d) paste(d$id, d$dimension, d$level)
  expect_true(all(key(coded) %in% key(labels)))
  expect_gt(mean(key(labels) %in% key(coded)), 0.99)
  expect_setequal(key(ft_assemble(record)[!is.na(ft_assemble(record)$dimension), ]), key(labels))
})

test_that("ft_compare gives the paired difference of the paper's two models", {
  skip_if_no_fineclass()
  labels <- ft_read_data(flourishing("labels.parquet"))
  test <- labels[labels$split == "test", c("id", "dimension", "level")]
  ids <- unique(ft_read_data(flourishing("labeled_ids.parquet"))$id[
    ft_read_data(flourishing("labeled_ids.parquet"))$split == "test"])
  # (the core notes the paper files' codes outside the 46 dimensions in warnings: they count as wrong)
  cmp <- suppressWarnings(ft_compare(flourishing("llama2_7b_finetuned.parquet"),
                                     flourishing("gpt4_zero_shot.parquet"), test, label = c("dimension", "level"),
                                     ids = ids, kind = "dimlevel", metric = "jaccard", bootstrap = 200, seed = 0))
  expect_identical(names(cmp), c("metric", "a", "b", "difference", "lower", "upper", "p_value", "n"))
  expect_lt(abs(cmp$a - 0.5594), 5e-4)   # Jaccard of the fine-tuned Llama-2-7B on the 400 test tweets
  expect_lt(abs(cmp$b - 0.4898), 5e-4)   # and of GPT-4 zero-shot
  expect_equal(cmp$difference, cmp$a - cmp$b)
  expect_true(cmp$lower < cmp$difference && cmp$difference < cmp$upper)
  spec <- ft_label_spec(sort(unique(labels$dimension)), kind = "dimlevel")
  expect_output(print(spec), "dimlevel, 46 dimensions")
  expect_identical(spec$levels, c("low", "medium", "high"))
})

evaluation_fixture <- function() {
  pred <- data.frame(id = 1:10, label = c("a", "b", "a", "a", "b", "b", "a", "b", "c", "a"))
  truth <- data.frame(id = 1:10, label = c("a", "b", "b", "a", "b", "a", "a", "b", "c", "c"))
  ft_evaluate(pred, truth, bootstrap = 200, seed = 1)
}

test_that("tidy() and glance() of an evaluation, and its print", {
  skip_if_no_fineclass()
  ev <- evaluation_fixture()
  td <- tidy(ev)
  expect_identical(names(td), c("metric", "estimate", "conf.low", "conf.high", "n"))
  expect_identical(td$estimate, ev$metrics$estimate)
  expect_identical(td$conf.low, ev$metrics$lower)
  gl <- glance(ev)
  expect_identical(nrow(gl), 1L)
  expect_identical(gl$kind, "single")
  expect_equal(gl$accuracy, 0.7)
  expect_identical(gl$krippendorff_alpha, ev$metrics$estimate[ev$metrics$metric == "krippendorff_alpha"])
  expect_snapshot(print(ev))
  expect_snapshot(td)
})

test_that("autoplot() of an evaluation is its confusion matrix; of other shapes, F1 per class", {
  skip_if_no_fineclass()
  skip_if_not_installed("ggplot2")
  ev <- evaluation_fixture()
  built <- ggplot2::ggplot_build(ggplot2::autoplot(ev))
  cells <- built$plot$data
  expect_identical(nrow(cells), 9L)
  expect_identical(sum(cells$n), 10)
  expect_identical(cells$n[cells$truth == "a" & cells$predicted == "a"], 3)
  pred <- data.frame(id = c(1, 1, 2, 3), label = c("x", "y", "y", "x"))
  truth <- data.frame(id = c(1, 2, 2, 3), label = c("x", "y", "x", "x"))
  multi <- ft_evaluate(pred, truth, bootstrap = 0, kind = "multi")
  bars <- ggplot2::ggplot_build(ggplot2::autoplot(multi))$data[[1]]
  expect_identical(nrow(bars), 2L)
  expect_equal(sort(bars$x), sort(multi$per_class$f1))
})

test_that("tidy(), glance() and autoplot() of a model show its training", {
  skip_if_no_fineclass()
  m <- fitted_model()
  td <- tidy(m)
  expect_identical(names(td), c("epoch", "train_loss", "seconds"))  # no validation share: no validation loss
  expect_identical(td$epoch, 1:2)
  gl <- glance(m)
  expect_identical(gl$n_train, 24L)
  expect_identical(gl$n_classes, 2L)
  expect_identical(gl$best_epoch, 2L)
  expect_identical(gl$model, "minilm")
  skip_if_not_installed("ggplot2")
  built <- ggplot2::ggplot_build(ggplot2::autoplot(m))
  expect_equal(built$data[[1]]$y, td$train_loss)
  expect_equal(built$data[[3]]$xintercept, 2)
})

test_that("prints and errors read well", {
  expect_snapshot(print(ft_config(epochs = 2, learning_rate = 1e-4)))
  expect_snapshot(error = TRUE, ft_config(validation = 0.95))
  expect_snapshot(error = TRUE, ft_train(data.frame(txt = "a", label = "b"), text = "text"))
  expect_snapshot(error = TRUE, fineclass:::as_ft_config(list(epoch = 2)))
  skip_if_no_fineclass()
  expect_snapshot(print(fineclass:::label_spec_from_py(fineclass:::label_spec_py(
    structure(list(kind = "single", classes = c("neg", "pos"), levels = character()), class = "ft_label_spec")))))
  expect_snapshot(error = TRUE, predict(fitted_model(), "a film", bacth_tokens = 2))
})
