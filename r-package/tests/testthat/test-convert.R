# The conversion layer: every type round-trips exactly, NA included; Python sees nulls, never "NA".

all_types <- function() {
  tibble::tibble(
    chr = c("a", NA, "h\u00e9llo w\u00f6rld \U0001F600", "", "NA"),
    int = c(1L, NA, -5L, .Machine$integer.max, -.Machine$integer.max),
    dbl = c(1.5, NA, NaN, Inf, -Inf),
    lgl = c(TRUE, NA, FALSE, TRUE, NA),
    fct = factor(c("x", NA, "y", "x", "z"), levels = c("z", "y", "x", "unused")),
    ord = factor(c("low", "high", NA, "medium", "low"), levels = c("low", "medium", "high"), ordered = TRUE),
    date = as.Date(c("2020-01-01", NA, "1969-12-31", "2100-06-30", "1900-01-01")),
    time = as.POSIXct(c("2020-01-01 10:00:00", NA, "1970-01-01 00:00:01", "2000-02-29 23:59:59",
                        "1960-05-05 05:05:05"), tz = "UTC"),
    lst = list(c("a", "b"), NULL, character(0), "c", c(NA, "d")),
    ints = list(1:3, NULL, integer(0), NA_integer_, 5L)
  )
}

test_that("every column type round-trips exactly, NA included", {
  skip_if_no_fineclass()
  df <- all_types()
  back <- arrow_to_r(r_to_arrow(df))
  for (col in names(df)) {
    expect_identical(back[[col]], df[[col]], label = paste("column", col))
  }
  expect_identical(back, df)
})

test_that("each type round-trips on its own, as a plain data.frame too", {
  skip_if_no_fineclass()
  df <- as.data.frame(all_types()[c("chr", "int", "dbl", "lgl", "fct", "date")])
  back <- arrow_to_r(r_to_arrow(df))
  expect_identical(as.data.frame(back), df)
  expect_null(attr(back, "pandas.index"))
  expect_s3_class(back, "tbl_df")
})

test_that("Python sees nulls where R had NA, and NaN stays a value", {
  skip_if_no_fineclass()
  df <- all_types()
  tbl <- r_to_arrow(df)
  for (col in setdiff(names(df), c("lst", "ints"))) {
    nulls <- reticulate::py_to_r(tbl$column(col)$null_count)
    expected <- sum(is.na(df[[col]]) & !is.nan(unclass(df[[col]])))
    expect_equal(nulls, expected, label = paste("nulls in", col))
  }
  expect_equal(reticulate::py_to_r(tbl$column("lst")$null_count), 1)
  chr <- reticulate::py_to_r(tbl$column("chr")$to_pylist())
  expect_null(chr[[2]])
  expect_identical(chr[[5]], "NA")
  lgl <- reticulate::py_to_r(tbl$column("lgl")$to_pylist())
  expect_null(lgl[[2]])
  expect_identical(reticulate::py_to_r(tbl$column("int")$type$`__str__`()), "int32")
  expect_identical(reticulate::py_to_r(tbl$column("fct")$type$`__str__`()),
                   "dictionary<values=string, indices=int32, ordered=0>")
  expect_identical(reticulate::py_to_r(tbl$column("fct")$chunk(0L)$dictionary$to_pylist()),
                   c("z", "y", "x", "unused"))
  expect_identical(reticulate::py_to_r(tbl$column("ord")$type$ordered), TRUE)
  expect_identical(reticulate::py_to_r(tbl$column("date")$type$`__str__`()), "date32[day]")
  dbl <- reticulate::py_to_r(tbl$column("dbl")$to_pylist())
  expect_true(is.nan(dbl[[3]]))
})

test_that("zero rows, all-NA columns and long texts round-trip", {
  skip_if_no_fineclass()
  empty <- all_types()[0, ]
  expect_identical(arrow_to_r(r_to_arrow(empty)), empty)
  nas <- tibble::tibble(chr = NA_character_[rep(1, 3)], int = NA_integer_, dbl = NA_real_, lgl = NA,
                        fct = factor(c(NA, NA, NA), levels = "a"), date = as.Date(c(NA, NA, NA)))
  expect_identical(arrow_to_r(r_to_arrow(nas)), nas)
  long <- tibble::tibble(text = c(strrep("d\u00e9j\u00e0 vu ", 50000), "short", NA))
  expect_identical(arrow_to_r(r_to_arrow(long)), long)
})

test_that("latin1-marked text arrives as UTF-8 and returns equal", {
  skip_if_no_fineclass()
  x <- iconv("caf\u00e9 cr\u00e8me", from = "UTF-8", to = "latin1")
  expect_identical(Encoding(x), "latin1")
  tbl <- r_to_arrow(data.frame(text = x))
  expect_identical(reticulate::py_to_r(tbl$column("text")$to_pylist()), "caf\u00e9 cr\u00e8me")
  expect_equal(arrow_to_r(tbl)$text, x)
})

test_that("text that is not valid UTF-8 is an error naming the column and the rows", {
  skip_if_no_fineclass()
  bad <- c("fine", "caf\xe9", "ok", "\xff\xfe")
  Encoding(bad) <- "bytes"
  err <- expect_error(r_to_arrow(data.frame(text = bad), arg = "data"), class = "fineclass_error")
  expect_match(conditionMessage(err), "column `text` in `data`")
  expect_match(conditionMessage(err), "rows 2, 4")
  expect_identical(err$argument, "data")
})

test_that("an unsupported column class is an error naming the column and the argument", {
  skip_if_no_fineclass()
  df <- data.frame(text = "a", took = as.difftime(3, units = "mins"))
  err <- expect_error(r_to_arrow(df, arg = "data"), class = "fineclass_error")
  expect_match(conditionMessage(err), "column `took` in `data` is of class difftime")
  expect_identical(err$argument, "data")
})

test_that("Arrow types R never sends come back as the nearest R type", {
  skip_if_no_fineclass()
  pa <- pyarrow()
  big <- pa$array(list(1, 3e9, NULL), type = pa$int64())
  small <- pa$array(list(1L, NULL, 7L), type = pa$int64())
  u8 <- pa$array(list(1L, 255L, NULL), type = pa$uint8())
  ls <- pa$array(list("a", NULL, "\u00e9"), type = pa$large_string())
  ts <- pa$array(list(0L, 1500000L, NULL), type = pa$timestamp("ms", tz = "Europe/Rome"))
  nul <- pa$nulls(3L)
  tbl <- py_table(big = big, small = small, u8 = u8, ls = ls, ts = ts, nul = nul)
  out <- arrow_to_r(tbl)
  expect_identical(out$big, c(1, 3e9, NA))
  expect_identical(out$small, c(1L, NA, 7L))
  expect_identical(out$u8, c(1L, 255L, NA))
  expect_identical(out$ls, c("a", NA, "\u00e9"))
  expect_equal(as.numeric(out$ts), c(0, 1500, NA))
  expect_identical(attr(out$ts, "tzone"), "Europe/Rome")
  expect_identical(out$nul, c(NA, NA, NA))
})

test_that("dictionary chunks with different dictionaries come back as one factor", {
  skip_if_no_fineclass()
  pa <- pyarrow()
  a <- pa$array(list("x", "y", NULL))$dictionary_encode()
  b <- pa$array(list("z", "x"))$dictionary_encode()
  tbl <- py_table(f = pa$chunked_array(list(a, b)))
  out <- arrow_to_r(tbl)$f
  expect_s3_class(out, "factor")
  expect_identical(as.character(out), c("x", "y", NA, "z", "x"))
})

test_that("dimension -> level predictions come back as a list column or as long rows", {
  skip_if_no_fineclass()
  pa <- pyarrow()
  item <- pa$struct(list(pa$field("dimension", pa$string()), pa$field("level", pa$string()),
                         pa$field("confidence", pa$float64())))
  labels <- pa$array(list(
    list(list(dimension = "hope", level = "high", confidence = 0.9),
         list(dimension = "trust", level = "low", confidence = 0.6)),
    list(),
    list(list(dimension = "trust", level = "medium", confidence = 0.7))
  ), type = pa$list_(item))
  tbl <- py_table(id = pa$array(list("t1", "t2", "t3")), labels = labels,
                  n_labels = pa$array(list(2L, 0L, 1L), type = pa$int64()))
  wide <- arrow_to_r(tbl)
  expect_identical(wide$id, c("t1", "t2", "t3"))
  expect_length(wide$labels, 3)
  expect_identical(wide$labels[[1]]$dimension, c("hope", "trust"))
  expect_identical(nrow(wide$labels[[2]]), 0L)
  long <- arrow_to_r(tbl, unnest = "labels")
  expect_identical(names(long), c("id", "dimension", "level", "confidence"))
  expect_identical(long$id, c("t1", "t1", "t3"))
  expect_identical(long$level, c("high", "low", "medium"))
  expect_equal(long$confidence, c(0.9, 0.6, 0.7))
})

test_that("whole numbers reach Python as integers; others are refused naming the argument", {
  expect_identical(as_py_int(c(100, 200)), c(100L, 200L))
  expect_null(as_py_int(NULL))
  err <- expect_error(as_py_int(2.5, "epochs"), class = "fineclass_error")
  expect_identical(err$argument, "epochs")
  expect_error(as_py_int(NA_real_, "seed"), "`seed` must be whole numbers")
  expect_error(as_py_int("3", "sizes"), "`sizes` must be whole numbers")
  skip_if_no_fineclass()
  builtins <- reticulate::import_builtins(convert = FALSE)
  expect_identical(reticulate::py_to_r(builtins$type(reticulate::r_to_py(as_py_int(3)))$`__name__`), "int")
})
