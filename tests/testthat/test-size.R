# The memory guard of R/size.R. The limit is fixed by the option so that the
# outcomes do not depend on the machine.

test_that("requests beyond the memory limit are refused before allocating", {
  old <- options(bayesmoe.max_bytes = 4 * 2^30)
  on.exit(options(old), add = TRUE)
  set.seed(1)
  d <- data.frame(x = runif(40))
  d$y <- d$x + rnorm(40)
  fit <- moe_em(y ~ x, data = d, K = 1)
  expect_snapshot(moe_em(y ~ x, data = d, K = 2, starts = 1e8), error = TRUE)
  expect_snapshot(simulate(fit, nsim = 1e7), error = TRUE)
  expect_snapshot(check_mcmc_size(chains = 1e9, iter = 2000, warmup = 1000, thin = 1),
                  error = TRUE)
  expect_error(check_mcmc_size(chains = 1e6, iter = 3e6, warmup = 1.5e6, thin = 1),
               class = "bayesmoe_error_size")
  expect_error(check_mcmc_size(chains = 4, iter = 1e9, warmup = 5e8, thin = 1, npar = 8),
               class = "bayesmoe_error_size")
  # feasible requests pass
  expect_silent(check_mcmc_size(chains = 4, iter = 1e6, warmup = 5e5, thin = 1, npar = 8))
  expect_equal(dim(simulate(fit, nsim = 3, seed = 1)), c(40L, 3L))
  expect_snapshot(density_loss(moe_truth_example("p4"), moe_truth_example("p4"),
                               min_points = 2^31 - 1), error = TRUE)
})

test_that("the limit defaults to the physical memory", {
  old <- options(bayesmoe.max_bytes = NULL)
  on.exit(options(old), add = TRUE)
  mem <- physical_memory()
  expect_identical(as.numeric(size_limit()), if (is.finite(mem)) mem else 64 * 2^30)
  expect_identical(format_bytes(64 * 2^30), "64 GB")
})
