# Setup helpers: the doctor's report (the installer's checks are in test-behaviour.R).

test_that("ft_doctor reports Python, the core, torch and the device", {
  skip_if_no_fineclass()
  out <- capture.output(report <- ft_doctor())
  expect_s3_class(report, "ft_doctor")
  expect_true(file.exists(report$python))
  expect_identical(report$fineclass, reticulate::import("fineclass")$`__version__`)
  expect_identical(report$r_package, as.character(utils::packageVersion("fineclass")))
  expect_match(report$torch, "^[0-9]+\\.[0-9]+")
  expect_true(report$device %in% c("CPU", "MPS (Apple GPU)") || startsWith(report$device, "CUDA"))
  expect_true(report$ok)
  expect_match(paste(out, collapse = "\n"), "fineclass doctor")
  expect_match(paste(out, collapse = "\n"), "All set")
})

test_that("ft_available is TRUE or FALSE, never an error", {
  expect_true(isTRUE(ft_available()) || isFALSE(ft_available()))
})
