ar1_chains <- function(n, chains, phi, shift = 0) {
  x <- matrix(0, n, chains)
  for (j in seq_len(chains)) {
    e <- rnorm(n)
    x[1, j] <- e[1] / sqrt(1 - phi^2)
    for (i in 2:n) x[i, j] <- phi * x[i - 1, j] + e[i]
    x[, j] <- x[, j] + shift * (j - 1)
  }
  x
}

test_that("the fallback diagnostics equal the posterior package's", {
  skip_if_not_installed("posterior")
  set.seed(1)
  cases <- list(
    iid = matrix(rnorm(4000), 1000, 4),
    ar_high = ar1_chains(500, 4, 0.95),
    ar_neg = ar1_chains(400, 3, -0.6),
    shifted = ar1_chains(300, 4, 0.5, shift = 1),
    odd_length = ar1_chains(301, 2, 0.3),
    heavy = matrix(rt(2000, df = 1.5), 500, 4),
    ties = matrix(rpois(2000, 1), 500, 4),
    one_chain = ar1_chains(600, 1, 0.7),
    short = matrix(rnorm(12), 6, 2)
  )
  for (nm in names(cases)) {
    x <- cases[[nm]]
    expect_equal(diag_rhat(x), posterior::rhat(x), tolerance = 1e-10, info = nm)
    expect_equal(diag_ess_bulk(x), suppressWarnings(posterior::ess_bulk(x)),
                 tolerance = 1e-10, info = nm)
    expect_equal(diag_ess_tail(x), suppressWarnings(posterior::ess_tail(x)),
                 tolerance = 1e-10, info = nm)
    expect_equal(diag_mcse_mean(x), suppressWarnings(posterior::mcse_mean(x)),
                 tolerance = 1e-10, info = nm)
  }
})

test_that("diagnostics behave as expected on known chains", {
  set.seed(2)
  iid <- matrix(rnorm(8000), 2000, 4)
  expect_lt(abs(diag_rhat(iid) - 1), 0.01)
  expect_gt(diag_ess_bulk(iid), 6000)
  # AR(1): the ESS of the mean is about N (1 - phi) / (1 + phi)
  ar <- ar1_chains(5000, 4, 0.8)
  expect_equal(diag_ess_raw(diag_split(ar)) / 20000, (1 - 0.8) / (1 + 0.8), tolerance = 0.25)
  expect_equal(diag_mcse_mean(ar), sd(as.vector(ar)) / sqrt(diag_ess_raw(diag_split(ar))))
  # chains stuck at different places
  stuck <- ar1_chains(500, 4, 0.5, shift = 3)
  expect_gt(diag_rhat(stuck), 1.5)
  # a chain that drifts is caught by splitting
  drift <- matrix(rnorm(2000), 500, 4) + seq(0, 5, length.out = 500)
  expect_gt(diag_rhat(drift), 1.1)
  # constant or non-finite draws give NA
  expect_true(is.na(diag_rhat(matrix(1, 100, 2))))
  expect_true(is.na(diag_ess_bulk(matrix(1, 100, 2))))
  expect_true(is.na(diag_ess_tail(matrix(c(rnorm(199), NA), 100, 2))))
  expect_true(is.na(diag_mcse_mean(matrix(c(rnorm(199), Inf), 100, 2))))
})

test_that("draws_diagnostics() gives the same table with either backend", {
  skip_if_not_installed("posterior")
  set.seed(3)
  a <- array(c(ar1_chains(200, 3, 0.5), ar1_chains(200, 3, 0.9), rep(2, 600)),
             c(200, 3, 3), list(NULL, NULL, c("a", "b", "const")))
  p <- draws_diagnostics(a, backend = "posterior")
  b <- draws_diagnostics(a, backend = "bayesmoe")
  expect_equal(attr(p, "backend"), "posterior")
  expect_equal(attr(b, "backend"), "bayesmoe")
  expect_equal(dimnames(b), list(c("a", "b", "const"),
                                 c("rhat", "ess_bulk", "ess_tail", "mcse_mean")))
  expect_equal(unclass(p)[, ], unclass(b)[, ], tolerance = 1e-10, ignore_attr = TRUE)
  expect_true(all(is.na(b["const", ])))
  withr_option <- options(bayesmoe.use_posterior = FALSE)
  on.exit(options(withr_option))
  expect_equal(attr(draws_diagnostics(a), "backend"), "bayesmoe")
})
