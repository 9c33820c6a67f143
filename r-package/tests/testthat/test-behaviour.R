# R-side behaviour: arguments, settings, sessions, silence, versions, availability.

test_that("a typo among the arguments is an error that names it", {
  expect_error(ft_classify(c("a"), structure(list(), class = "ft_model"), bacth_tokens = 2),
               "unused argument \\(bacth_tokens = 2\\)")
  expect_error(ft_train(data.frame(text = "a", label = "b"), epohcs = 2), "unused argument \\(epohcs = 2\\)")
  skip_if_no_fineclass()
  err <- expect_error(predict(fitted_model(), "a film", bacth_tokens = 2), class = "fineclass_error")
  expect_identical(err$argument, "bacth_tokens")
  expect_match(conditionMessage(err), "unknown argument `bacth_tokens` \\(did you mean `batch_tokens`\\?\\)")
  err <- expect_error(summary(fitted_model(), digits = 2), class = "fineclass_error")
  expect_identical(err$argument, "digits")
})

test_that("ft_config has one argument per setting of the core's TrainConfig, with its defaults", {
  cfg <- ft_config()
  expect_s3_class(cfg, "ft_config")
  expect_identical(cfg$epochs, 3L)
  expect_identical(ft_config(epochs = 2, seed = 5)$seed, 5L)
  err <- expect_error(ft_config(epochs = 0), class = "fineclass_error")
  expect_identical(err$argument, "epochs")
  err <- expect_error(ft_config(finetune = "partial"), class = "fineclass_error")
  expect_identical(err$argument, "finetune")
  err <- expect_error(ft_config(prompt = "no slot"), class = "fineclass_error")
  expect_identical(err$argument, "prompt")
  expect_output(print(ft_config(epochs = 5)), "\\* epochs +5")
  skip_if_no_fineclass()
  py_defaults <- reticulate::py_eval(
    "__import__('dataclasses').asdict(__import__('fineclass').TrainConfig())", convert = TRUE)
  expect_identical(names(formals(ft_config)), names(py_defaults))
  r_defaults <- unclass(ft_config())
  for (nm in setdiff(names(py_defaults), "extra")) {
    expect_equal(r_defaults[[nm]], py_defaults[[nm]], label = paste("default of", nm))
  }
  expect_length(r_defaults$extra, 0)
  expect_length(py_defaults$extra, 0)
  # every setting travels to Python with its R value
  sent <- reticulate::py_to_r(fineclass:::config_py(ft_config(epochs = 2, learning_rate = 1e-4,
                                                              lora_targets = "query"))$to_dict())
  expect_identical(sent$epochs, 2L)
  expect_identical(sent$learning_rate, 1e-4)
  expect_identical(unlist(sent$lora_targets), "query")
})

test_that("ft_train takes the common settings as arguments; they override `config`", {
  cfg <- fineclass:::as_ft_config(list(epochs = 4, seed = 2))
  expect_identical(cfg$epochs, 4L)
  err <- expect_error(fineclass:::as_ft_config(list(epoch = 4)), class = "fineclass_error")
  expect_match(conditionMessage(err), "no setting `epoch`")
  skip_if_no_fineclass()
  expect_identical(summary(fitted_model())$config$epochs, 2L)
  expect_identical(summary(fitted_model())$config$seed, 7L)
  expect_identical(summary(fitted_model())$config$validation, 0)
})

test_that("a model restored by readRDS() reloads itself from its folder; an unsaved one says ft_load()", {
  skip_if_no_fineclass()
  m <- fitted_model()
  path <- file.path(withr::local_tempdir(), "model")
  ft_save(m, path)
  expect_identical(m$path, normalizePath(path))         # every copy of the model knows its folder
  rds <- withr::local_tempfile(fileext = ".rds")
  saveRDS(m, rds)
  restored <- readRDS(rds)                              # its Python pointer did not survive the trip
  expect_false(fineclass:::model_loaded(restored))
  expect_output(print(restored), "not loaded: from a previous R session; reloads from")
  docs <- reviews()
  p <- predict(restored, docs, text = "review", id = "doc")
  expect_equal(p$p_pos, predict(m, docs, text = "review", id = "doc")$p_pos, tolerance = 1e-5)
  expect_true(fineclass:::model_loaded(restored))       # reloaded once, then kept
  expect_output(print(restored), "saved in:")

  unsaved <- ft_load(path)
  unsaved$state$path <- NULL                            # as if it had never been saved
  saveRDS(unsaved, rds)
  gone <- readRDS(rds)
  expect_output(print(gone), "never saved; ft_load\\(path\\) a saved copy")
  err <- expect_error(predict(gone, "a film"), class = "fineclass_error")
  expect_match(conditionMessage(err), "previous R session and was never saved")
  expect_match(conditionMessage(err), "ft_load\\(path\\)")
  expect_no_match(conditionMessage(err), "Rcpp")
})

test_that("suppressMessages() and quiet = TRUE silence training and classification completely", {
  skip_if_no_fineclass()
  skip_on_cran()
  run <- in_fresh_r(function() {
    library(fineclass)
    docs <- data.frame(text = c("great film", "awful plot", "loved it", "boring", "superb", "dull"),
                       label = c("pos", "neg", "pos", "neg", "pos", "neg"))
    options(cli.progress_show_after = 0)           # bars would show at once: nothing may show at all
    m <- suppressMessages(ft_train(docs, epochs = 1, max_length = 8, validation = 0))
    p <- suppressMessages(ft_classify(docs, m))
    q <- ft_classify(docs, m, quiet = TRUE)
    loud <- utils::capture.output(m2 <- ft_train(docs, epochs = 1, max_length = 8, validation = 0),
                                  type = "message")
    list(n = nrow(p), same = identical(p$label, q$label), loud = loud)
  }, env = c(CLI_TICK_TIME = "1"))   # cli redraws every 200 ms by default: a fast run would show no bar
  expect_identical(run$value$n, 6L)
  expect_true(run$value$same)
  expect_identical(run$stdout, character())
  expect_identical(run$stderr, character())
  # without them, the bar and the notice come through R's messages (so the silence above is real)
  expect_true(any(grepl("fineclass: trained head on minilm", run$value$loud)))
  expect_true(any(grepl("training", run$value$loud)))
})

test_that("a core of another version is named, with what to run", {
  expect_null(fineclass:::version_problem("0.1.0", "0.1.0"))
  msg <- fineclass:::version_problem("0.0.9", "0.1.0")
  expect_match(msg, "core is version 0.0.9 but this R package is version 0.1.0")
  expect_match(msg, "Run ft_install\\(\\)")
  skip_if_no_fineclass()
  core <- fineclass:::fc()
  real <- reticulate::py_to_r(core$`__version__`)
  state <- fineclass:::.fc
  withr::defer({
    reticulate::py_set_attr(core, "__version__", real)
    state$version_checked <- TRUE
  })
  reticulate::py_set_attr(core, "__version__", "0.0.9")
  state$version_checked <- NULL                         # as in a new session: the first call checks
  expect_warning(fineclass:::fc(), "core is version 0.0.9 but this R package is version")
  expect_silent(fineclass:::fc())                       # once per session
  out <- capture.output(report <- ft_doctor())
  expect_false(report$ok)
  expect_true(any(grepl("Run ft_install\\(\\)", report$problems)))
})

test_that("ft_available() is FALSE, not an error, beside a folder called fineclass without the core", {
  skip_on_cran()
  # a python3 on the PATH outside any virtualenv (reticulate puts the one in use first on the PATH)
  dirs <- strsplit(Sys.getenv("PATH"), .Platform$path.sep)[[1]]
  venv <- c(Sys.getenv("VIRTUAL_ENV"), dirname(dirname(Sys.getenv("FINECLASS_PYTHON"))))
  dirs <- dirs[!vapply(dirs, function(d) any(nzchar(venv) & startsWith(d, venv)), logical(1))]
  found <- file.path(dirs, "python3")
  python <- found[file.exists(found)][1]
  skip_if(is.na(python), "no python3 outside a virtualenv on the PATH")
  withr::local_envvar(PYTHONPATH = NA)
  has_core <- system2(python, c("-c", shQuote("import fineclass.rbridge")), stdout = FALSE, stderr = FALSE)
  skip_if(has_core == 0, "the python3 on the PATH has the core")
  dir <- withr::local_tempdir()
  dir.create(file.path(dir, "fineclass", "R"), recursive = TRUE)   # e.g. the installed R package's folder
  run <- in_fresh_r(function(dir) {
    setwd(dir)
    library(fineclass)
    list(available = ft_available(), error = tryCatch(ft_train(data.frame(text = "a", label = "b")),
                                                       error = function(e) conditionMessage(e)))
  }, args = list(dir = dir), env = c(FINECLASS_PYTHON = "", RETICULATE_PYTHON = unname(python),
                                     FINECLASS_ENV = "no-such-env"))
  expect_false(run$value$available)
  expect_match(run$value$error, "ft_install\\(\\)")
})

test_that("the installer's choices follow reticulate and the machine", {
  expect_true("numpy<2" %in% fineclass:::python_pins(package_version("1.28")))
  expect_false("numpy<2" %in% fineclass:::python_pins(package_version("1.38.0")))
  expect_identical(fineclass:::default_python_version(package_version("1.28")), ">=3.9,<3.12")
  expect_identical(fineclass:::default_python_version(package_version("1.41")), ">=3.9")
  expect_true(fineclass:::version_ok("3.11.7", ">=3.9,<3.12"))
  expect_false(fineclass:::version_ok("3.13.0", ">=3.9,<3.12"))
  expect_false(fineclass:::version_ok("3.8.18", ">=3.9,<3.12"))
  expect_identical(fineclass:::default_torch_index(FALSE, "Linux"), "https://download.pytorch.org/whl/cpu")
  expect_null(fineclass:::default_torch_index(TRUE, "Linux"))
  expect_null(fineclass:::default_torch_index(FALSE, "Darwin"))
  expect_type(fineclass:::has_nvidia_gpu(), "logical")
  err <- expect_error(fineclass:::find_python(">=9.0"), class = "fineclass_error")
  expect_identical(err$argument, "python_version")
  python <- tryCatch(fineclass:::find_python(">=3.9"), error = function(e) NULL)
  if (!is.null(python)) {
    version <- system2(python, c("-c", shQuote("import sys; print('%d.%d.%d' % sys.version_info[:3])")),
                       stdout = TRUE)
    expect_true(fineclass:::version_ok(version, ">=3.9"))
  }
  dir <- withr::local_tempdir()
  err <- expect_error(ft_install(envname = file.path(dir, "env"), source = dir), class = "fineclass_error")
  expect_identical(err$argument, "source")
  expect_false(dir.exists(file.path(dir, "env")))
  err <- expect_error(ft_install(envname = file.path(dir, "env"), gpu = "yes"), class = "fineclass_error")
  expect_identical(err$argument, "gpu")
})

test_that("the built package carries the Python core of its own version", {
  skip_if(is.null(fineclass:::bundled_core()), "installed from a source folder without the bundled core")
  core <- fineclass:::bundled_core()
  init <- readLines(file.path(core, "fineclass", "__init__.py"))
  expect_true(any(init == sprintf('__version__ = "%s"', utils::packageVersion("fineclass"))))
  expect_true(file.exists(file.path(core, "fineclass", "rbridge.py")))
})

test_that("a quanteda corpus trains and predicts with its docnames and docvars", {
  skip_if_not_installed("quanteda")
  skip_if_no_fineclass()
  docs <- reviews()
  corpus <- getExportedValue("quanteda", "corpus")   # quanteda is optional, and not in Debian
  corp <- corpus(data.frame(doc_id = docs$doc, text = as.character(docs$review),
                            sentiment = as.character(docs$sentiment)))
  frame <- fineclass:::as_docs_frame(corp)
  expect_identical(frame$id, docs$doc)
  expect_identical(frame$sentiment, as.character(docs$sentiment))
  p <- predict(fitted_model(), corp)
  expect_identical(p$id, docs$doc)
})

# quanteda is not in Debian, so the test above skips here. A corpus as quanteda (3 and 4) stores it: the
# texts as a character vector named by document, class c("corpus", "character"), the docvars in the
# attribute "docvars" beside quanteda's own columns (docname_, docid_, segid_), and a "meta" attribute.
quanteda_layout_corpus <- function(ids, texts, vars) {
  docvars <- data.frame(docname_ = ids, docid_ = factor(ids, levels = ids), segid_ = 1L,
                        stringsAsFactors = FALSE)
  docvars <- cbind(docvars, vars)
  structure(stats::setNames(texts, ids), class = c("corpus", "character"), docvars = docvars,
            meta = list(system = list(), object = list(unit = "documents"), user = list()))
}

test_that("a corpus in quanteda's layout trains and predicts without quanteda being loaded", {
  docs <- reviews()
  corp <- quanteda_layout_corpus(docs$doc, as.character(docs$review),
                                 data.frame(sentiment = docs$sentiment, year = 2000L + seq_len(24)))
  frame <- fineclass:::as_docs_frame(corp)
  expect_identical(names(frame), c("id", "text", "sentiment", "year"))   # quanteda's own columns left out
  expect_identical(frame$id, docs$doc)
  expect_identical(frame$text, as.character(docs$review))
  expect_identical(frame$sentiment, docs$sentiment)
  skip_if_no_fineclass()
  expect_false("quanteda" %in% loadedNamespaces())
  m <- ft_train(corp, label = "sentiment", epochs = 1, max_length = 16, validation = 0, quiet = TRUE)
  p <- predict(m, corp)
  expect_identical(names(p)[1], "id")
  expect_identical(p$id, docs$doc)
  expect_identical(levels(p$label), c("pos", "neg"))       # the docvar factor's order
  expect_identical(glance(m)$n_train, 24L)
})
