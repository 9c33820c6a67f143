#!/usr/bin/env Rscript
# Render every vignette in vignettes/ with knitr + rmarkdown (Quarto's CLI is not needed) to GitHub
# Markdown beside its .qmd, then check the figures each vignette wrote to vignettes/results/<name>.json
# against the tolerances below. Exits non-zero when a render fails or a check fails.
#
#   Rscript scripts/render_vignettes.R                       # render all three in place, then check
#   Rscript scripts/render_vignettes.R --only python         # one (or a comma-separated list)
#   Rscript scripts/render_vignettes.R --check-only          # check the results already there
#   Rscript scripts/render_vignettes.R --quick               # tiny settings, rendered into a temporary
#                                                            #   folder (the committed pages stay as they
#                                                            #   are); quality checks are skipped
#   Rscript scripts/render_vignettes.R --out DIR             # render into DIR instead of in place
#   Rscript scripts/render_vignettes.R --installed           # use the installed R package instead of
#                                                            #   installing r-package/ into a temporary library
#   Rscript scripts/render_vignettes.R --self-test           # only test the checks themselves
#
# Environment: FINECLASS_PYTHON (default <repo>/.venv/bin/python), FINECLASS_DATA (default
# ../shared/data/flourishing beside the repository).

VIGNETTES <- c("getting-started", "python", "rethinking-scale")

# Small settings for --quick: every code path runs, the numbers mean little.
QUICK <- list(
  "getting-started" = list(n_train = 64, n_corpus = 48, epochs = 1),
  "python" = list(n_train = 64, n_corpus = 48, epochs = 1),
  "rethinking-scale" = list(head_train = 64, head_epochs = 1, curve_sizes = c(16, 24, 32), curve_seeds = 0,
                            curve_epochs = 1, generative_train = 3, generative_test = 2, max_length = 32)
)

# --------------------------------------------------------------------------------------------- checks
# Each check returns a data frame of (vignette, check, ok, detail). `quick` skips the checks on model
# quality, which tiny settings cannot meet; the pinned figures of the paper's data are checked always.

result_row <- function(vignette, check, ok, detail = "") {
  ok <- isTRUE(ok)
  data.frame(vignette = vignette, check = check, ok = ok, detail = as.character(detail)[1],
             stringsAsFactors = FALSE)
}

num <- function(x) if (is.null(x) || length(x) != 1 || !is.numeric(x)) NA_real_ else as.numeric(x)

within <- function(x, target, tol) !is.na(num(x)) && abs(num(x) - target) <= tol
between <- function(x, lo, hi) !is.na(num(x)) && num(x) >= lo && num(x) <= hi

# A PNG file: the 8-byte signature, then an IHDR chunk with a non-zero width and height.
png_ok <- function(path) {
  if (is.null(path) || !is.character(path) || !file.exists(path)) return(FALSE)
  con <- file(path, "rb")
  on.exit(close(con))
  head <- readBin(con, "raw", 24)
  if (length(head) < 24) return(FALSE)
  signature <- as.raw(c(0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a))
  if (!identical(head[1:8], signature) || rawToChar(head[13:16]) != "IHDR") return(FALSE)
  dim <- function(bytes) sum(as.integer(bytes) * 256^(3:0))
  dim(head[17:20]) > 0 && dim(head[21:24]) > 0
}

interval_ok <- function(m) {
  !is.null(m) && !is.na(num(m$lower)) && !is.na(num(m$upper)) &&
    num(m$lower) <= num(m$estimate) && num(m$estimate) <= num(m$upper)
}

# The images a rendered page links to must exist next to it.
markdown_checks <- function(name, dir) {
  md <- file.path(dir, paste0(name, ".md"))
  if (!file.exists(md)) return(result_row(name, "rendered markdown exists", FALSE, md))
  text <- readLines(md, warn = FALSE)
  whole <- paste(text, collapse = "\n")        # image alt texts wrap over lines
  links <- c(
    sub("^!\\[[^]]*\\]\\(([^) ]+).*$", "\\1", regmatches(whole, gregexpr("!\\[[^]]*\\]\\([^)]+\\)", whole))[[1]]),
    sub("^<img src=\"([^\"]+)\".*$", "\\1", regmatches(whole, gregexpr("<img src=\"[^\"]+\"", whole))[[1]])
  )
  links <- links[!grepl("^https?://", links)]
  missing <- links[!file.exists(file.path(dir, links))]
  rbind(
    result_row(name, "rendered markdown exists", TRUE, md),
    result_row(name, "markdown shows no error output", !any(grepl("^##? ?Error", text)), ""),
    result_row(name, "every linked figure exists", length(missing) == 0 && length(links) > 0,
               if (length(missing)) paste(missing, collapse = ", ") else paste(length(links), "figures"))
  )
}

check_classifier_page <- function(name, rec, dir, quick) {
  s <- rec$settings
  out <- list(
    result_row(name, "every corpus document coded once", num(rec$n_coded) == num(s$n_corpus),
               sprintf("%s coded of %s", rec$n_coded, s$n_corpus)),
    result_row(name, "predicted ids equal the corpus ids", isTRUE(rec$ids_match)),
    result_row(name, "accuracy has a 95% interval around it", interval_ok(rec$accuracy),
               sprintf("%.3f [%.3f, %.3f]", num(rec$accuracy$estimate), num(rec$accuracy$lower),
                       num(rec$accuracy$upper))),
    result_row(name, "accuracy n equals the corpus size", num(rec$accuracy$n) == num(s$n_corpus))
  )
  for (fig in names(rec$figures)) {
    out[[length(out) + 1]] <- result_row(name, paste("figure", fig, "is a valid PNG"),
                                         png_ok(file.path(dir, rec$figures[[fig]] %||% "")),
                                         rec$figures[[fig]] %||% "missing")
  }
  if (!quick) {
    out[[length(out) + 1]] <- result_row(name, "accuracy >= 0.65 (MiniLM on Rotten Tomatoes; chance is 0.5)",
                                         num(rec$accuracy$estimate) >= 0.65,
                                         sprintf("%.3f", num(rec$accuracy$estimate)))
    out[[length(out) + 1]] <- result_row(name, "kappa >= 0.30", num(rec$kappa$estimate) >= 0.30,
                                         sprintf("%.3f", num(rec$kappa$estimate)))
  }
  if (identical(name, "python")) {
    out[[length(out) + 1]] <- result_row(name, "classify wrote Parquet shards", num(rec$shards) >= 1,
                                         sprintf("%s shards", rec$shards))
  }
  do.call(rbind, out)
}

`%||%` <- function(a, b) if (is.null(a)) b else a

check_rethinking_scale <- function(rec, dir, quick) {
  name <- "rethinking-scale"
  cmp <- rec$comparison
  j <- function(model, what = "estimate") num(cmp[[model]]$jaccard[[what]])
  s <- rec$settings
  out <- list(
    # the paper's outputs scored by fineclass.evaluate on the 400 test tweets (seed 0, 1000 resamples)
    result_row(name, "GPT-4 zero-shot Jaccard = 0.490 (0.4898 +- 0.0005)",
               within(j("gpt4"), 0.4898, 5e-4) && round(j("gpt4"), 3) == 0.490, sprintf("%.5f", j("gpt4"))),
    result_row(name, "Llama-2-7B fine-tuned Jaccard = 0.559 (0.5594 +- 0.0005)",
               within(j("llama2"), 0.5594, 5e-4) && round(j("llama2"), 3) == 0.559, sprintf("%.5f", j("llama2"))),
    result_row(name, "GPT-4 Jaccard interval [0.454, 0.525] (+- 0.003)",
               within(j("gpt4", "lower"), 0.4538, 3e-3) && within(j("gpt4", "upper"), 0.5254, 3e-3),
               sprintf("[%.4f, %.4f]", j("gpt4", "lower"), j("gpt4", "upper"))),
    result_row(name, "Llama-2-7B Jaccard interval [0.523, 0.596] (+- 0.003)",
               within(j("llama2", "lower"), 0.5227, 3e-3) && within(j("llama2", "upper"), 0.5960, 3e-3),
               sprintf("[%.4f, %.4f]", j("llama2", "lower"), j("llama2", "upper"))),
    result_row(name, "GPT-4 accD = 0.936 and Llama-2-7B accD = 0.938 (+- 0.0005)",
               within(cmp$gpt4$accD$estimate, 0.9363, 5e-4) && within(cmp$llama2$accD$estimate, 0.9382, 5e-4),
               sprintf("%.4f, %.4f", num(cmp$gpt4$accD$estimate), num(cmp$llama2$accD$estimate))),
    result_row(name, "paper models scored on the 400 test tweets",
               num(cmp$gpt4$jaccard$n) == 400 && num(cmp$llama2$jaccard$n) == 400)
  )
  for (model in c("tfidf", "head", "codebook", "generative")) {
    out[[length(out) + 1]] <- result_row(name, paste(model, "Jaccard has a 95% interval around it"),
                                         interval_ok(cmp[[model]]$jaccard),
                                         sprintf("%.3f [%.3f, %.3f]", j(model), j(model, "lower"), j(model, "upper")))
  }
  out[[length(out) + 1]] <- result_row(name, "TF-IDF, head and codebook scored on the 400 test tweets",
                                       num(cmp$tfidf$jaccard$n) == 400 && num(cmp$head$jaccard$n) == 400 &&
                                         num(cmp$codebook$jaccard$n) == 400)
  out[[length(out) + 1]] <- result_row(name, "generative scored on its sample of test tweets",
                                       num(cmp$generative$jaccard$n) == num(s$generative_test),
                                       sprintf("n = %s", cmp$generative$jaccard$n))
  out[[length(out) + 1]] <- result_row(name, "TF-IDF baseline Jaccard = 0.115 (+- 0.005; it is deterministic)",
                                       within(j("tfidf"), 0.1149, 5e-3), sprintf("%.4f", j("tfidf")))
  if (!quick) {
    out[[length(out) + 1]] <- result_row(name, "fineclass head (MiniLM) Jaccard > TF-IDF Jaccard",
                                         j("head") > j("tfidf"), sprintf("%.3f vs %.3f", j("head"), j("tfidf")))
    out[[length(out) + 1]] <- result_row(name, "fineclass codebook (MiniLM, the definitions) Jaccard > head Jaccard",
                                         j("codebook") > j("head"),
                                         sprintf("%.3f vs %.3f", j("codebook"), j("head")))
  }
  # paired bootstrap of the two paper models
  pb <- rec$paired_llama2_minus_gpt4
  out[[length(out) + 1]] <- result_row(name, "paired bootstrap: Llama-2-7B - GPT-4 Jaccard = 0.070 (+- 0.001)",
                                       within(pb$difference, 0.0696, 1e-3), sprintf("%.4f", num(pb$difference)))
  # learning curve
  runs <- rec$curve$runs
  n_runs <- length(s$curve_sizes) * length(s$curve_seeds)
  scores <- vapply(runs %||% list(), function(r) num(r$score), numeric(1))
  out[[length(out) + 1]] <- result_row(name, "learning curve: one run per size and seed", length(runs) == n_runs,
                                       sprintf("%d runs, expected %d", length(runs), n_runs))
  out[[length(out) + 1]] <- result_row(name, "learning curve: scores in [0, 1]",
                                       length(scores) > 0 && all(!is.na(scores) & scores >= 0 & scores <= 1),
                                       paste(sprintf("%.3f", scores), collapse = " "))
  out[[length(out) + 1]] <- result_row(name, "learning curve PNG is a valid PNG",
                                       png_ok(file.path(dir, rec$curve$png %||% "")), rec$curve$png %||% "missing")
  needed <- rec$curve$needed
  out[[length(out) + 1]] <- result_row(name, "labels-needed estimate reported for GPT-4's Jaccard",
                                       !is.null(needed) && within(needed$target, 0.49, 1e-3) &&
                                         (is.null(needed$labels) || num(needed$labels) > 0),
                                       sprintf("target %s: %s labels", needed$target %||% "?",
                                               if (is.null(needed$labels)) "unreachable" else round(num(needed$labels))))
  if (!quick) {
    summ <- rec$curve$summary
    means <- vapply(summ %||% list(), function(r) num(r$mean), numeric(1))
    out[[length(out) + 1]] <- result_row(name, "learning curve: mean score grows from the smallest to the largest size",
                                         length(means) >= 2 && means[length(means)] > means[1],
                                         paste(sprintf("%.3f", means), collapse = " < "))
  }
  # hybrid workflow
  r <- rec$acceptance$rates
  out[[length(out) + 1]] <- result_row(name, "acceptance rate LLAMA2 in [0.31, 0.325]", between(r$LLAMA2, 0.31, 0.325),
                                       sprintf("%.4f", num(r$LLAMA2)))
  out[[length(out) + 1]] <- result_row(name, "acceptance rate GPT4 in [0.755, 0.77]", between(r$GPT4, 0.755, 0.77),
                                       sprintf("%.4f", num(r$GPT4)))
  d <- rec$acceptance$decisions
  out[[length(out) + 1]] <- result_row(name, "decisions: 17,496 LLAMA2 and 4,334 GPT4",
                                       num(d$LLAMA2) == 17496 && num(d$GPT4) == 4334,
                                       sprintf("%s, %s", d$LLAMA2, d$GPT4))
  a <- rec$assembled
  out[[length(out) + 1]] <- result_row(name, "assembled training set equals labels.parquet (7,358 codes, 2,000 tweets)",
                                       isTRUE(a$equals_labels) && num(a$accepted_codes) == 7358 &&
                                         num(a$tweets_with_codes) == 2000 && num(a$reviewed_tweets) == 2030,
                                       sprintf("%s codes, %s tweets with codes, %s reviewed", a$accepted_codes,
                                               a$tweets_with_codes, a$reviewed_tweets))
  # section 4: shares of all tweets from the head's codes plus the 400 test tweets
  e <- rec$estimate
  terms <- unlist(e$terms %||% list())
  out[[length(out) + 1]] <- result_row(name, "estimate: one share per dimension (46 rows, 46 distinct terms)",
                                       num(e$rows) == 46 && length(unique(terms)) == 46,
                                       sprintf("%s rows, %d terms", e$rows %||% "?", length(unique(terms))))
  out[[length(out) + 1]] <- result_row(name, "estimate: 400 human codes, 9,591 tweets, 7,991 estimated",
                                       num(e$n_human) == 400 && num(e$n_corpus) == 9591 &&
                                         num(e$n_estimated) == 7991,
                                       sprintf("%s, %s, %s", e$n_human, e$n_corpus, e$n_estimated))
  out[[length(out) + 1]] <- result_row(name, "estimate: every interval contains its estimate and lies in [0, 1]",
                                       isTRUE(e$inside) && isTRUE(e$human_inside) && isTRUE(e$in_unit))
  out[[length(out) + 1]] <- result_row(name, "estimate: median width at most the human sample's",
                                       !is.na(num(e$median_width)) && num(e$median_width) > 0 &&
                                         num(e$median_width) <= num(e$median_human_width) + 1e-12,
                                       sprintf("%.4f vs %.4f", num(e$median_width), num(e$median_human_width)))
  out[[length(out) + 1]] <- result_row(name, "estimate figure is a valid PNG",
                                       png_ok(file.path(dir, e$png %||% "")), e$png %||% "missing")
  do.call(rbind, out)
}

check_vignette <- function(name, dir, quick = FALSE) {
  path <- file.path(dir, "results", paste0(name, ".json"))
  if (!file.exists(path)) return(result_row(name, "results JSON exists", FALSE, path))
  rec <- tryCatch(jsonlite::read_json(path, simplifyVector = FALSE), error = function(e) e)
  if (inherits(rec, "error")) return(result_row(name, "results JSON parses", FALSE, conditionMessage(rec)))
  body <- tryCatch(
    switch(name,
      "rethinking-scale" = check_rethinking_scale(rec, dir, quick),
      check_classifier_page(name, rec, dir, quick)
    ),
    error = function(e) result_row(name, "checks ran", FALSE, conditionMessage(e))
  )
  rbind(result_row(name, "results JSON exists", TRUE, path), markdown_checks(name, dir), body)
}

# --------------------------------------------------------------------------------------------- self-test
# The checks must fail on wrong figures, or the vignettes prove nothing: good records pass, and each
# damaged copy fails exactly the check it should.
self_test <- function() {
  dir <- tempfile("vignette-checks-")
  dir.create(file.path(dir, "results"), recursive = TRUE)
  dir.create(file.path(dir, "figures"))
  png_bytes <- as.raw(c(0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13,
                        charToRaw("IHDR"), 0, 0, 1, 0, 0, 0, 0, 200, 8, 2, 0, 0, 0, 0, 0, 0, 0))
  for (f in c("a.png", "b.png", "curve.png")) writeBin(png_bytes, file.path(dir, "figures", f))
  writeBin(charToRaw("not a png at all, just text"), file.path(dir, "figures", "bad.png"))
  md <- paste0("# Title\n\n![](figures/a.png)<!-- -->\n\n![A caption that wraps\nover two lines.](figures/b.png)\n\n",
               "<img src=\"figures/curve.png\" alt=\"x\" width=\"384\" />\n")
  for (n in VIGNETTES) writeLines(md, file.path(dir, paste0(n, ".md")))
  m <- function(e, lo, hi, n) list(estimate = e, lower = lo, upper = hi, n = n)
  classifier <- function(name) list(
    vignette = name, settings = list(n_corpus = 400), n_coded = 400, ids_match = TRUE, shards = 1,
    accuracy = m(0.78, 0.74, 0.82, 400), macro_f1 = m(0.78, 0.74, 0.82, 400), kappa = m(0.56, 0.48, 0.64, 400),
    figures = list(confusion = "figures/a.png", confidence = "figures/b.png"))
  metrics <- function(j, lo, hi, n = 400, accd = 0.93) list(jaccard = m(j, lo, hi, n), accD = m(accd, accd - 0.01, accd + 0.01, n))
  rs <- list(
    settings = list(curve_sizes = list(100, 200, 400), curve_seeds = list(0, 1), generative_test = 40),
    comparison = list(gpt4 = metrics(0.48980, 0.4538, 0.5254, accd = 0.9363),
                      llama2 = metrics(0.55945, 0.5227, 0.5960, accd = 0.9382),
                      tfidf = metrics(0.1149, 0.091, 0.137), head = metrics(0.32, 0.29, 0.35),
                      codebook = metrics(0.36, 0.33, 0.39),
                      generative = metrics(0.05, 0.02, 0.08, n = 40)),
    paired_llama2_minus_gpt4 = list(difference = 0.0696),
    curve = list(runs = lapply(seq_len(6), function(i) list(size = c(100, 200, 400)[(i - 1) %/% 2 + 1], score = 0.1 * i)),
                 summary = list(list(size = 100, mean = 0.15), list(size = 200, mean = 0.35), list(size = 400, mean = 0.55)),
                 needed = list(target = 0.49, labels = 950), png = "figures/curve.png"),
    acceptance = list(rates = list(GPT4 = 0.7589, LLAMA2 = 0.3180), decisions = list(GPT4 = 4334, LLAMA2 = 17496)),
    assembled = list(reviewed_tweets = 2030, tweets_with_codes = 2000, accepted_codes = 7358, equals_labels = TRUE),
    estimate = list(rows = 46, terms = as.list(sprintf("dimension %02d", 1:46)), n_human = 400, n_corpus = 9591,
                    n_estimated = 7991, inside = TRUE, human_inside = TRUE, in_unit = TRUE, median_width = 0.04,
                    median_human_width = 0.05, png = "figures/b.png"))
  write <- function(name, rec) jsonlite::write_json(rec, file.path(dir, "results", paste0(name, ".json")),
                                                    auto_unbox = TRUE, digits = NA, null = "null")
  failures <- character()
  expect <- function(label, name, rec, failing) {
    write(name, rec)
    res <- check_vignette(name, dir)
    bad <- res$check[!res$ok]
    ok <- if (is.null(failing)) length(bad) == 0 else length(bad) >= 1 && all(grepl(failing, bad, fixed = TRUE))
    if (!ok) failures <<- c(failures, sprintf("%s: expected %s, failed: %s", label,
                                              if (is.null(failing)) "no failure" else failing,
                                              if (length(bad)) paste(bad, collapse = "; ") else "none"))
  }
  for (n in c("getting-started", "python")) expect(paste(n, "good record"), n, classifier(n), NULL)
  expect("rethinking-scale good record", "rethinking-scale", rs, NULL)
  bad <- classifier("python"); bad$accuracy$estimate <- 0.55; bad$accuracy$lower <- 0.5; bad$accuracy$upper <- 0.6
  expect("low accuracy", "python", bad, "accuracy >= 0.65")
  bad <- classifier("python"); bad$accuracy$lower <- 0.80
  expect("estimate outside its interval", "python", bad, "accuracy has a 95% interval")
  bad <- classifier("getting-started"); bad$figures$confusion <- "figures/bad.png"
  expect("corrupt PNG", "getting-started", bad, "figure confusion is a valid PNG")
  bad <- classifier("getting-started"); bad$n_coded <- 399
  expect("missing predictions", "getting-started", bad, "every corpus document coded once")
  bad <- rs; bad$comparison$gpt4$jaccard$estimate <- 0.4912
  expect("GPT-4 off by 0.0014", "rethinking-scale", bad, "GPT-4 zero-shot Jaccard")
  bad <- rs; bad$comparison$llama2$jaccard$estimate <- 0.5585
  expect("Llama-2 off by 0.001", "rethinking-scale", bad, "Llama-2-7B fine-tuned Jaccard")
  bad <- rs; bad$comparison$head$jaccard <- m(0.10, 0.08, 0.12, 400)
  expect("head below TF-IDF", "rethinking-scale", bad, "Jaccard > TF-IDF")
  bad <- rs; bad$comparison$codebook$jaccard <- m(0.30, 0.27, 0.33, 400)
  expect("codebook below the head", "rethinking-scale", bad, "Jaccard > head Jaccard")
  bad <- rs; bad$comparison$codebook$jaccard <- m(0.36, 0.33, 0.39, 380)
  expect("codebook on fewer tweets", "rethinking-scale", bad, "scored on the 400 test tweets")
  bad <- rs; bad$acceptance$rates$LLAMA2 <- 0.33
  expect("LLAMA2 acceptance too high", "rethinking-scale", bad, "acceptance rate LLAMA2")
  bad <- rs; bad$acceptance$rates$GPT4 <- 0.75
  expect("GPT4 acceptance too low", "rethinking-scale", bad, "acceptance rate GPT4")
  bad <- rs; bad$curve$png <- "figures/missing.png"
  expect("curve PNG missing", "rethinking-scale", bad, "learning curve PNG")
  bad <- rs; bad$curve$runs <- bad$curve$runs[1:5]
  expect("a curve run missing", "rethinking-scale", bad, "one run per size and seed")
  bad <- rs; bad$assembled$equals_labels <- FALSE
  expect("assembled set differs", "rethinking-scale", bad, "assembled training set")
  bad <- rs; bad$estimate$rows <- 45; bad$estimate$terms <- bad$estimate$terms[-1]
  expect("a dimension missing from the estimate", "rethinking-scale", bad, "one share per dimension")
  bad <- rs; bad$estimate$inside <- FALSE
  expect("an estimate outside its interval", "rethinking-scale", bad, "every interval contains")
  bad <- rs; bad$estimate$median_width <- 0.06
  expect("estimate wider than the human sample's", "rethinking-scale", bad, "median width at most")
  bad <- rs; bad$estimate$png <- "figures/gone.png"
  expect("estimate figure missing", "rethinking-scale", bad, "estimate figure")
  writeLines("# Title\n\n![A caption\nthat wraps.](figures/gone.png)\n", file.path(dir, "python.md"))
  expect("a wrapped figure link missing", "python", classifier("python"), "every linked figure exists")
  writeLines("# Title\n\n<img src=\"figures/gone.png\" width=\"384\" />\n", file.path(dir, "python.md"))
  expect("a linked figure missing", "python", classifier("python"), "every linked figure exists")
  unlink(dir, recursive = TRUE)
  failures
}

# --------------------------------------------------------------------------------------------- render
render_one <- function(name, src_dir, out_dir, params, env) {
  if (!identical(normalizePath(src_dir), normalizePath(out_dir, mustWork = FALSE))) {
    file.copy(file.path(src_dir, paste0(name, ".qmd")), out_dir, overwrite = TRUE)
  }
  input <- file.path(out_dir, paste0(name, ".qmd"))
  unlink(file.path(out_dir, "results", paste0(name, ".json")))
  old_figs <- list.files(file.path(out_dir, "figures"), pattern = paste0("^", name, "-"), full.names = TRUE)
  unlink(old_figs)
  expr <- sprintf(paste0(
    "rmarkdown::render(%s, output_format = rmarkdown::github_document(html_preview = FALSE), ",
    "output_file = %s, params = %s, envir = new.env(), quiet = TRUE)"),
    deparse(input), deparse(paste0(name, ".md")), paste(deparse(params), collapse = " "))
  log <- file.path(tempdir(), paste0("render-", name, ".log"))
  t0 <- Sys.time()
  cpu0 <- proc.time()
  status <- system2(file.path(R.home("bin"), "Rscript"), c("-e", shQuote(expr)), env = env,
                    stdout = log, stderr = log)
  cpu <- proc.time() - cpu0
  seconds <- as.numeric(difftime(Sys.time(), t0, units = "secs"))
  if (!identical(as.integer(status), 0L)) {
    cat(tail(readLines(log, warn = FALSE), 40), sep = "\n")
  }
  # CPU time of the render (all threads, children included): on a shared machine the wall time says
  # more about the neighbours than about the page
  cpu_seconds <- sum(cpu[c("user.child", "sys.child")], na.rm = TRUE)
  list(ok = identical(as.integer(status), 0L), seconds = seconds, cpu = cpu_seconds, log = log)
}

main <- function(args) {
  flag <- function(x) x %in% args
  value <- function(x) {
    i <- match(x, args)
    if (is.na(i) || i == length(args)) NULL else args[[i + 1]]
  }
  file_arg <- grep("^--file=", commandArgs(FALSE), value = TRUE)
  script <- if (length(file_arg)) normalizePath(sub("^--file=", "", file_arg[1])) else normalizePath("scripts/render_vignettes.R")
  repo <- dirname(dirname(script))
  src_dir <- file.path(repo, "vignettes")

  failures <- self_test()
  if (length(failures)) {
    cat("self-test of the vignette checks FAILED:\n", paste0("  - ", failures, "\n"), sep = "")
    return(1L)
  }
  cat("self-test of the vignette checks: ok\n")
  if (flag("--self-test")) return(0L)

  only <- value("--only")
  names <- if (is.null(only)) VIGNETTES else strsplit(only, ",")[[1]]
  unknown <- setdiff(names, VIGNETTES)
  if (length(unknown)) {
    cat("unknown vignette(s):", paste(unknown, collapse = ", "), "; known:", paste(VIGNETTES, collapse = ", "), "\n")
    return(2L)
  }
  quick <- flag("--quick")
  out_dir <- value("--out") %||% if (quick) tempfile("vignettes-quick-") else src_dir
  dir.create(out_dir, showWarnings = FALSE, recursive = TRUE)
  out_dir <- normalizePath(out_dir)

  status <- 0L
  timings <- cpu_times <- numeric()
  if (!flag("--check-only")) {
    python <- Sys.getenv("FINECLASS_PYTHON", file.path(repo, ".venv", "bin", "python"))
    data <- Sys.getenv("FINECLASS_DATA", file.path(dirname(repo), "shared", "data", "flourishing"))
    if (!file.exists(python)) {
      cat("FINECLASS_PYTHON =", python, "does not exist; run scripts/setup.sh or set it.\n")
      return(1L)
    }
    if (!dir.exists(data)) {
      cat("FINECLASS_DATA =", data, "is not a folder; set it to the flourishing data.\n")
      return(1L)
    }
    libs <- Sys.getenv("R_LIBS")
    if (!flag("--installed")) {
      # the vignettes test this checkout's R package, not whatever version is installed
      lib <- tempfile("fineclass-lib-")
      dir.create(lib)
      st <- system2(file.path(R.home("bin"), "R"), c("CMD", "INSTALL", "--no-multiarch", "--no-docs", "-l",
                                                     shQuote(lib), shQuote(file.path(repo, "r-package"))),
                    stdout = FALSE, stderr = FALSE)
      if (!identical(as.integer(st), 0L)) {
        cat("R CMD INSTALL r-package failed; run it by hand to see why.\n")
        return(1L)
      }
      libs <- paste(c(lib, if (nzchar(libs)) libs), collapse = .Platform$path.sep)
    }
    env <- c(sprintf("FINECLASS_PYTHON=%s", python), sprintf("RETICULATE_PYTHON=%s", python),
             sprintf("FINECLASS_DATA=%s", normalizePath(data)), sprintf("R_LIBS=%s", libs),
             "HF_HUB_OFFLINE=1", "TRANSFORMERS_OFFLINE=1", "TOKENIZERS_PARALLELISM=false")
    for (name in names) {
      params <- if (quick) QUICK[[name]] else list()
      cat(sprintf("== rendering vignettes/%s.qmd%s\n", name, if (quick) " (quick settings)" else ""))
      r <- render_one(name, src_dir, out_dir, params, env)
      timings[name] <- r$seconds
      cpu_times[name] <- r$cpu
      cat(sprintf("   %s in %.0f s wall, %.0f s CPU (log: %s)\n", if (r$ok) "rendered" else "FAILED", r$seconds,
                  r$cpu, r$log))
      if (!r$ok) status <- 1L
    }
  }
  results <- do.call(rbind, lapply(names, check_vignette, dir = out_dir, quick = quick))
  for (i in seq_len(nrow(results))) {
    cat(sprintf("%s %-17s %s%s\n", if (results$ok[i]) "PASS" else "FAIL", results$vignette[i], results$check[i],
                if (nzchar(results$detail[i])) paste0(" (", results$detail[i], ")") else ""))
  }
  if (length(timings)) {
    cat(sprintf("render times (wall): %s; total %.0f s\n",
                paste(sprintf("%s %.0f s", names(timings), timings), collapse = ", "), sum(timings)))
    cat(sprintf("render times (CPU):  %s; total %.0f s\n",
                paste(sprintf("%s %.0f s", names(cpu_times), cpu_times), collapse = ", "), sum(cpu_times)))
  }
  if (!all(results$ok)) status <- 1L
  cat(if (status == 0L) "vignettes: all checks passed\n" else "vignettes: FAILED\n")
  status
}

if (sys.nframe() == 0L) {
  quit(status = main(commandArgs(trailingOnly = TRUE)), save = "no")
}
