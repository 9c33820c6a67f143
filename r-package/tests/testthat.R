library(testthat)
library(fineclass)

test_check("fineclass")
