#' A small fitted model, for examples and first experiments
#'
#' A sentiment classifier trained on the first 100 reviews of [film_reviews]
#' with the packaged MiniLM (one epoch, 32 tokens per review, `seed = 1`):
#' trained on the first call of an R session and reused afterwards, so that
#' the examples of this package (and a first look at the verbs) need not wait
#' for training each time. Its accuracy is modest; train your own with
#' [ft_train()].
#'
#' @return An `ft_model` with the classes `negative` and `positive`.
#' @examplesIf ft_available()
#' m <- ft_example_model()
#' m
#' predict(m, "a wonderful film")
#' @export
ft_example_model <- function() {
  cached <- .fc$example_model
  if (is.null(cached) || !model_loaded(cached)) {
    data <- new.env()
    utils::data("film_reviews", package = "fineclass", envir = data)
    .fc$example_model <- ft_train(data$film_reviews[1:100, ], label = "sentiment", model = "minilm",
      epochs = 1, max_length = 32, seed = 1, quiet = TRUE)
  }
  .fc$example_model
}
