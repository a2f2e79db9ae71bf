library(testthat)
library(bayesmoe)

test_check("bayesmoe")
