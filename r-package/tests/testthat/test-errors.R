# Errors name the argument the user typed, carry the Python message, and leave the traceback aside.

test_that("a wrong text column name is an error naming `text`", {
  skip_if_no_fineclass()
  docs <- reviews()
  err <- expect_error(ft_train(docs, text = "txt", label = "sentiment", model = "minilm"),
                      class = "fineclass_error")
  expect_identical(err$argument, "text")
  expect_match(conditionMessage(err), "column `txt` not found in `data`; columns are: doc, review, sentiment")
  expect_no_match(conditionMessage(err), "Traceback")
  # the columns listed are the user's own: no `id` column the package would have added
  err <- expect_error(ft_classify(data.frame(review = "a"), fitted_model(), text = "txt"),
                      class = "fineclass_error")
  expect_identical(err$argument, "text")
  expect_match(conditionMessage(err), "columns are: review\\.")
})

test_that("a wrong label column name is an error naming `label`", {
  skip_if_no_fineclass()
  err <- expect_error(ft_train(reviews(), text = "review", label = "rating", model = "minilm"),
                      class = "fineclass_error")
  expect_identical(err$argument, "label")
  expect_match(conditionMessage(err), "`rating`")
})

test_that("a numeric text column is an error naming `text`", {
  skip_if_no_fineclass()
  docs <- data.frame(id = 1:4, score = c(1.5, 2, 3, 4), label = c("a", "b", "a", "b"))
  err <- expect_error(ft_train(docs, text = "score", model = "minilm"), class = "fineclass_error")
  expect_identical(err$argument, "text")
  expect_match(conditionMessage(err), "not text")
  err <- expect_error(predict(fitted_model(), docs, text = "score"), class = "fineclass_error")
  expect_identical(err$argument, "text")
})

test_that("a model path that does not exist is an error naming the argument", {
  skip_if_no_fineclass()
  missing <- file.path(tempdir(), "no-such-model")
  err <- expect_error(ft_load(missing), class = "fineclass_error")
  expect_identical(err$argument, "path")
  expect_match(conditionMessage(err), "does not exist")
  err <- expect_error(ft_classify(c("some text"), model = missing), class = "fineclass_error")
  expect_identical(err$argument, "model")
  expect_match(conditionMessage(err), "does not exist")
  err <- expect_error(ft_classify("some text"), class = "fineclass_error")
  expect_identical(err$argument, "model")
})

test_that("an unknown training setting is an error naming `config`; a wrong value names the setting", {
  err <- expect_error(ft_train(reviews(), text = "review", label = "sentiment", config = list(epoch = 1)),
                      class = "fineclass_error")
  expect_identical(err$argument, "config")
  expect_match(conditionMessage(err), "`epoch`")
  err <- expect_error(ft_train(reviews(), text = "review", label = "sentiment", config = list(epochs = 1.5)),
                      class = "fineclass_error")
  expect_identical(err$argument, "epochs")
  err <- expect_error(ft_train(reviews(), text = "review", label = "sentiment", learning_rate = 2),
                      class = "fineclass_error")
  expect_identical(err$argument, "learning_rate")
})

test_that("a Python exception that is not a FineclassError keeps its type and leaves the traceback aside", {
  skip_if_no_fineclass()
  builtins <- reticulate::import_builtins(convert = FALSE)
  err <- expect_error(ft_call(builtins$int, "not a number"), class = "fineclass_error")
  expect_match(conditionMessage(err), "^ValueError: invalid literal for int\\(\\)")
  expect_no_match(conditionMessage(err), "File \"")
  last <- ft_last_error(print = FALSE)
  expect_identical(last$type, "ValueError")
  expect_match(last$traceback, "Traceback")
})

test_that("Python warnings become R warnings", {
  skip_if_no_fineclass()
  warnings_mod <- reticulate::import("warnings", convert = FALSE)
  expect_warning(ft_call(warnings_mod$warn, "careful: extrapolating"), "careful: extrapolating")
  # rb() never calls stop() with `call.` on a condition (that warns); errors come back as conditions
  expect_no_warning(try(ft_call("no_such_function"), silent = TRUE))
})

test_that("the wrong kind of input names the argument", {
  skip_if_no_fineclass()
  err <- expect_error(ft_classify(list(1, 2), fitted_model()), class = "fineclass_error")
  expect_identical(err$argument, "data")
  err <- expect_error(predict(fitted_model(), reviews(), text = c("a", "b")), class = "fineclass_error")
  expect_identical(err$argument, "text")
  err <- expect_error(ft_save("not a model", tempfile()), class = "fineclass_error")
  expect_identical(err$argument, "model")
})
