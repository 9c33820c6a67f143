# Skip cleanly where the Python core is missing; where FINECLASS_PYTHON is set (CI), a missing core is a
# failure, not a skip.
skip_if_no_fineclass <- function() {
  if (fineclass::ft_available()) {
    return(invisible(TRUE))
  }
  if (nzchar(Sys.getenv("FINECLASS_PYTHON"))) {
    stop("FINECLASS_PYTHON is set (", Sys.getenv("FINECLASS_PYTHON"), ") but the fineclass Python core ",
         "cannot be used from it: see fineclass::ft_doctor().")
  }
  testthat::skip("the fineclass Python core is not available (set FINECLASS_PYTHON to run these tests)")
}

skip_if_not_slow <- function() {
  testthat::skip_if_not(identical(Sys.getenv("FINECLASS_SLOW_TESTS"), "true"), "set FINECLASS_SLOW_TESTS=true")
}

# The reviews every model test uses: 12 positive and 12 negative, written for these tests. The sentiment
# factor's levels are not in alphabetical order (pos before neg), so that a model that sorted its classes
# would be caught. The data frame also holds the column classes R users meet in real data, which the
# package must convert or leave alone: the text is a glue string, `stars` comes from haven (a .dta file,
# value labels), `tweet` is a 64-bit id as data.table::fread() reads it, `took` a difftime.
reviews <- function() {
  pos <- c("a wonderful film", "great acting and a moving story", "loved every minute of it",
           "superb, funny and warm", "a joy to watch", "brilliant direction and a great cast",
           "charming and clever", "beautifully shot and well acted", "I enjoyed it a lot",
           "the best film this year", "a delightful surprise", "moving, sharp and very funny")
  neg <- c("a boring mess", "awful plot and bad acting", "I hated it", "dull and far too long",
           "a waste of time", "terrible script", "painfully slow and flat", "the worst film this year",
           "clumsy and tedious", "nothing works here", "a tiresome, ugly film", "bad jokes and no story")
  docs <- data.frame(
    doc = sprintf("r%02d", seq_len(24)), review = c(pos, neg),
    sentiment = factor(rep(c("pos", "neg"), each = 12), levels = c("pos", "neg")),
    stringsAsFactors = FALSE
  )
  docs$took <- as.difftime(seq_len(24), units = "mins")
  if (requireNamespace("glue", quietly = TRUE)) docs$review <- glue::as_glue(docs$review)
  if (requireNamespace("haven", quietly = TRUE)) {
    docs$stars <- haven::labelled(rep(c(5, 1), each = 12), labels = c(awful = 1, great = 5))
  }
  if (requireNamespace("bit64", quietly = TRUE)) {
    docs$tweet <- bit64::as.integer64("1626583539423780870") + seq_len(24)
  }
  docs
}

# One fitted model shared by the test files (training the packaged MiniLM on 24 short reviews).
fitted_model <- local({
  cache <- NULL
  function() {
    if (is.null(cache)) {
      cache <<- fineclass::ft_train(reviews(), text = "review", label = "sentiment", id = "doc",
        model = "minilm", epochs = 2, max_length = 32, seed = 7, validation = 0, quiet = TRUE
      )
    }
    cache
  }
})

# pyarrow, for building Arrow tables that R never sends (int64, large strings, structs, ...)
pyarrow <- function() reticulate::import("pyarrow", convert = FALSE)

# a pyarrow Table from named Arrow arrays (reticulate::dict() would look the names up as variables)
py_table <- function(...) {
  cols <- list(...)
  pyarrow()$table(reticulate::py_dict(names(cols), unname(cols)))
}

# Run `code` (a function) in a fresh R process with this session's library paths; returns its result and
# everything it wrote to stdout and stderr (Python's writes included, which R's sinks never see).
in_fresh_r <- function(fn, args = list(), env = character()) {
  testthat::skip_if_not_installed("callr")
  out <- tempfile()
  err <- tempfile()
  value <- callr::r(fn, args = args, stdout = out, stderr = err, libpath = .libPaths(),
                    env = c(callr::rcmd_safe_env(), env))
  list(value = value, stdout = readLines(out, warn = FALSE), stderr = readLines(err, warn = FALSE))
}
