# The Polya-Gamma draw of the gating in the collapsed sampler
# (moe_mcmc_control(pg_every = )), made by chunks of observations on the
# threads, each chunk from its own stream of the fast generator
# (update_gating_pg_chunks() in src/mcmc_fused.c). Its draws not depending on
# the threads is in test-mcmc.R ("the draws do not depend on the number of
# threads"), its calibration at n = 40 in the SBC there; here, with several
# chunks, that it leaves the posterior as it is and continues exactly.

pg_data <- function(n, seed) {
  set.seed(seed)
  x <- rnorm(n)
  g <- ifelse(runif(n) < plogis(1.5 * x), 1, 2)
  y <- ifelse(g == 1, 1 + x, -1 - 0.5 * x) + rnorm(n, sd = 0.5)
  list(y = y, X = cbind(1, x))
}

pg_fit <- function(s, pg_every, iter, warmup, seed, threads = 1) {
  quiet_stall(moe_mcmc_fit(s$y, s$X, s$X, K = 2, chains = 1, iter = iter, warmup = warmup,
                           seed = seed,
                           control = moe_mcmc_control(em_starts = 1, pg_every = pg_every,
                                                      threads = threads)))
}

test_that("the chunked Polya-Gamma draws leave the posterior as it is", {
  # two chunks (MOE_CHUNK = 4096); a chain with the Polya-Gamma draw in every
  # sweep against one without it: every move of both keeps the posterior, so
  # the posterior means of label-free functionals (the log-likelihood, the
  # gating probability and the predictive mean at three points) agree within
  # Monte Carlo error, and so do the spreads (expect_same_posterior())
  s <- pg_data(6000, 71)
  xs <- c(-1, 0, 1.5)
  functionals <- function(f) {
    dr <- f$draws[, 1, ]
    g1 <- sapply(xs, function(x) plogis(dr[, 7] + dr[, 8] * x))
    pm <- sapply(seq_along(xs), function(j)
      g1[, j] * (dr[, 1] + dr[, 2] * xs[j]) + (1 - g1[, j]) * (dr[, 4] + dr[, 5] * xs[j]))
    cbind(loglik = f$loglik_draws[, 1], g1, pm)
  }
  fa <- pg_fit(s, 1, iter = 1700, warmup = 100, seed = 21)
  fb <- pg_fit(s, Inf, iter = 1700, warmup = 100, seed = 22)
  expect_equal(unname(fa$gating_moves[, "pg"]), 1600)
  expect_equal(unname(fb$gating_moves[, "pg"]), 0)
  expect_same_posterior(functionals(fa), functionals(fb))
})

test_that("a run with chunked Polya-Gamma draws continues exactly, on any threads", {
  s <- pg_data(5000, 72)
  d <- data.frame(y = s$y, x = s$X[, 2])
  ctl <- moe_mcmc_control(em_starts = 1, pg_every = 3, threads = 2)
  short <- moe_mcmc(y ~ x, data = d, K = 2, chains = 1, iter = 25, warmup = 5, seed = 4,
                    control = ctl, progress = FALSE)
  long <- moe_mcmc(y ~ x, data = d, K = 2, chains = 1, iter = 45, warmup = 5, seed = 4,
                   control = ctl, progress = FALSE)
  short$control$threads <- 1
  cont <- moe_mcmc(short, iter = 20)
  expect_identical(cont$draws, long$draws)
  expect_identical(cont$gating_moves, long$gating_moves)
})
