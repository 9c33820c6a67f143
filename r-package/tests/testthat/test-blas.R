# Inside R, torch must keep its own BLAS. R exports its BLAS into the process (on Debian the reference
# netlib one), and CPU builds of torch export `sgemm_` too: imported plainly, torch's matrix products run on
# R's copy, about 50 times slower. fineclass imports torch with RTLD_DEEPBIND when it sees that.

test_that("torch's matrix products inside R do not run on R's reference BLAS", {
  skip_if_no_fineclass()
  r_blas <- sessionInfo()$BLAS
  skip_if(!grepl("/blas/libblas\\.so", r_blas), paste("R's BLAS is not the reference one:", r_blas))
  blas <- reticulate::py_to_r(fineclass:::fc()$TORCH_BLAS)
  expect_match(blas, "RTLD_DEEPBIND")
  py <- reticulate::py_run_string(paste(
    "import time, torch",
    "def fc_gemm_seconds(n, reps):",
    "    threads = torch.get_num_threads()",
    "    torch.set_num_threads(1)  # like R's BLAS; two threads on a busy 2-core machine wait on each other",
    "    try:",
    "        a, b = torch.randn(n, n), torch.randn(n, n)",
    "        a @ b",
    "        t = time.perf_counter()",
    "        for _ in range(reps):",
    "            a @ b",
    "        return (time.perf_counter() - t) / reps",
    "    finally:",
    "        torch.set_num_threads(threads)",
    sep = "\n"
  ), convert = TRUE)
  n <- 384L
  torch_seconds <- min(vapply(1:3, function(i) py$fc_gemm_seconds(n, 5L), numeric(1)))
  a <- matrix(stats::rnorm(n * n), n)
  b <- matrix(stats::rnorm(n * n), n)
  r_seconds <- min(vapply(1:3, function(i) system.time(for (k in 1:5) a %*% b)[["elapsed"]] / 5, numeric(1)))
  # netlib's product of two 384 x 384 matrices takes tens of milliseconds; torch's own, on one thread, a few
  # (on R's copy it would take as long as R's)
  expect_lt(torch_seconds, r_seconds / 5)
})
