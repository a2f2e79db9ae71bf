test_that("check_number() accepts and rejects as documented", {
  expect_identical(bayesmoe:::check_number(3, "K", lower = 1, whole = TRUE), 3L)
  expect_error(bayesmoe:::check_number(NA_real_, "x"), class = "bayesmoe_error_input")
  expect_error(bayesmoe:::check_number(Inf, "x"), class = "bayesmoe_error_input")
  expect_identical(bayesmoe:::check_number(Inf, "x", allow_inf = TRUE), Inf)
  expect_snapshot(error = TRUE, bayesmoe:::check_number(1:2, "x"))
  expect_snapshot(error = TRUE, bayesmoe:::check_number(0, "x", lower = 0, strict_lower = TRUE))
  expect_snapshot(error = TRUE, bayesmoe:::check_number(5, "x", lower = 0, upper = 1))
  expect_snapshot(error = TRUE, bayesmoe:::check_flag(NA, "progress"))
})

test_that("status flags decode", {
  expect_identical(bayesmoe:::decode_status(0L), character())
  expect_identical(bayesmoe:::decode_status(1L + 4L), c("maxit", "var_floor"))
  expect_identical(bayesmoe:::status_text(0L), "ok")
})
