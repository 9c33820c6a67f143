# Setup helpers: the doctor's report, and the installer's checks that need no network.

test_that("ft_doctor reports Python, the core, torch and the device", {
  skip_if_no_fineclass()
  out <- capture.output(report <- ft_doctor())
  expect_s3_class(report, "ft_doctor")
  expect_true(file.exists(report$python))
  expect_identical(report$fineclass, reticulate::import("fineclass")$`__version__`)
  expect_match(report$torch, "^[0-9]+\\.[0-9]+")
  expect_true(report$device %in% c("CPU", "MPS (Apple GPU)") || startsWith(report$device, "CUDA"))
  expect_true(report$ok)
  expect_match(paste(out, collapse = "\n"), "fineclass doctor")
  expect_match(paste(out, collapse = "\n"), "All set")
})

test_that("ft_install refuses a source that is not a fineclass checkout, before touching anything", {
  dir <- withr::local_tempdir()
  err <- expect_error(ft_install(envname = file.path(dir, "env"), source = dir), class = "fineclass_error")
  expect_identical(err$argument, "source")
  expect_false(dir.exists(file.path(dir, "env")))
})

test_that("ft_available is TRUE or FALSE, never an error", {
  expect_true(isTRUE(ft_available()) || isFALSE(ft_available()))
})
