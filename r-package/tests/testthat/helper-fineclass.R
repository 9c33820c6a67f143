# Skip cleanly where the Python core is missing; where FINECLASS_PYTHON is set (CI), a missing core is a
# failure, not a skip.
skip_if_no_fineclass <- function() {
  if (fineclass::ft_available()) {
    return(invisible(TRUE))
  }
  if (nzchar(Sys.getenv("FINECLASS_PYTHON"))) {
    stop("FINECLASS_PYTHON is set (", Sys.getenv("FINECLASS_PYTHON"), ") but the fineclass Python module ",
         "cannot be used from it: see fineclass::ft_doctor().")
  }
  testthat::skip("the fineclass Python module is not available (set FINECLASS_PYTHON to run these tests)")
}

# The reviews every model test uses: 12 positive and 12 negative, written for these tests.
reviews <- function() {
  pos <- c("a wonderful film", "great acting and a moving story", "loved every minute of it",
           "superb, funny and warm", "a joy to watch", "brilliant direction and a great cast",
           "charming and clever", "beautifully shot and well acted", "I enjoyed it a lot",
           "the best film this year", "a delightful surprise", "moving, sharp and very funny")
  neg <- c("a boring mess", "awful plot and bad acting", "I hated it", "dull and far too long",
           "a waste of time", "terrible script", "painfully slow and flat", "the worst film this year",
           "clumsy and tedious", "nothing works here", "a tiresome, ugly film", "bad jokes and no story")
  data.frame(
    doc = sprintf("r%02d", seq_len(24)), review = c(pos, neg),
    sentiment = factor(rep(c("pos", "neg"), each = 12), levels = c("neg", "pos")),
    stringsAsFactors = FALSE
  )
}

# One fitted model shared by the test files (training the packaged MiniLM takes seconds, not minutes).
fitted_model <- local({
  cache <- NULL
  function() {
    if (is.null(cache)) {
      cache <<- fineclass::ft_train(reviews(), text = "review", label = "sentiment", id = "doc",
        model = "minilm", config = list(epochs = 2, max_length = 32, seed = 7, validation = 0),
        progress = FALSE
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
