# Plots are built from R data alone; no Python needed.

test_that("learning curves plot the runs and the mean per size", {
  skip_if_not_installed("ggplot2")
  curve <- data.frame(size = rep(c(100, 200, 400), each = 2), seed = rep(0:1, 3),
                      score = c(0.40, 0.44, 0.50, 0.56, 0.61, 0.63))
  g <- ft_plot_learning_curve(curve)
  expect_s3_class(g, "ggplot")
  layers <- ggplot2::ggplot_build(g)$data
  expect_identical(nrow(layers[[1]]), 6L)
  expect_equal(layers[[2]]$y, c(0.42, 0.53, 0.62))
  expect_identical(g$labels$y, "score")
  long <- data.frame(size = c(100, 100, 200, 200), metric = c("accuracy", "macro_f1"),
                     value = c(0.7, 0.6, 0.8, 0.75))
  g2 <- ft_plot_learning_curve(long, metric = "macro_f1")
  expect_equal(ggplot2::ggplot_build(g2)$data[[2]]$y, c(0.6, 0.75))
  err <- expect_error(ft_plot_learning_curve(data.frame(a = 1)), class = "fineclass_error")
  expect_identical(err$argument, "size")
})

test_that("confusion matrices plot from documents, tidy counts or a wide table", {
  skip_if_not_installed("ggplot2")
  docs <- data.frame(truth = c("a", "a", "b", "b", "b", "c"), predicted = c("a", "b", "b", "b", "a", "c"))
  g <- ft_plot_confusion(docs)
  cells <- ggplot2::ggplot_build(g)$plot$data
  expect_identical(nrow(cells), 9L)
  expect_identical(cells$n[cells$truth == "b" & cells$predicted == "b"], 2)
  expect_identical(sum(cells$n), 6)
  counts <- data.frame(truth = c("a", "a", "b"), predicted = c("a", "b", "b"), n = c(5, 1, 3))
  tidy <- ggplot2::ggplot_build(ft_plot_confusion(counts, normalize = TRUE))$plot$data
  expect_equal(tidy$share[tidy$truth == "a" & tidy$predicted == "a"], 5 / 6)
  wide <- data.frame(label = c("a", "b"), a = c(5, 0), b = c(1, 3))
  w <- ggplot2::ggplot_build(ft_plot_confusion(wide))$plot$data
  expect_identical(w$n[w$truth == "a" & w$predicted == "b"], 1)
  err <- expect_error(ft_plot_confusion(data.frame(x = 1:2, y = 3:4)), class = "fineclass_error")
  expect_identical(err$argument, "x")
})
