# The information of the collapsed proposals from a subsample of the
# observations (moe_mcmc_control(info_obs = )): same draws when the data are
# no larger than info_obs, draws that do not depend on the threads, and the
# same posterior (the Metropolis-Hastings steps stay exact).

info_data <- function(n, d, seed) {
  set.seed(seed)
  X <- cbind(1, matrix(rnorm(n * d), n, d))
  g <- ifelse(runif(n) < plogis(2 * X[, 2]), 1, 2)
  y <- ifelse(g == 1, 1 + X[, 2], -1 - 0.5 * X[, 2]) + rnorm(n, sd = 0.4)
  list(y = y, X = X)
}

info_fit <- function(s, K, info_obs, threads = 1, iter = 40, warmup = 10, seed = 5) {
  quiet_stall(moe_mcmc_fit(s$y, s$X, s$X, K = K, chains = 1, iter = iter, warmup = warmup,
                           seed = seed,
                           control = moe_mcmc_control(em_starts = 1, threads = threads,
                                                      info_obs = info_obs)))
}

test_that("info_obs >= n gives the draws of every observation, and never depends on threads", {
  # three chunks of the passes (MOE_CHUNK = 4096); with every observation,
  # d = 1 with K = 2 keeps the information in registers and d = 3 with K = 4
  # (60 information terms) takes the blocked pass (pass_accumulate_block()),
  # which also sums the information of a subsample
  for (cfg in list(c(d = 1, K = 2), c(d = 3, K = 4))) {
    s <- info_data(9000, cfg[["d"]], 41)
    K <- cfg[["K"]]
    all <- info_fit(s, K, Inf)
    expect_identical(info_fit(s, K, 9000)$draws, all$draws)
    expect_identical(info_fit(s, K, 20000)$draws, all$draws)
    # every 9th observation (info_obs = 1000): other proposals, so other draws
    sub1 <- info_fit(s, K, 1000)
    expect_false(identical(sub1$draws, all$draws))
    expect_true(all(is.finite(sub1$draws)))
    # the subsample is fixed by the observation index, not by the chunks a
    # thread takes
    sub2 <- info_fit(s, K, 1000, threads = 2)
    expect_identical(sub2$draws, sub1$draws)
    expect_identical(sub2$loglik_draws, sub1$loglik_draws)
  }
  # frequency weights: the subsample is scaled by the weights it holds
  s <- info_data(9000, 1, 42)
  w <- rep(c(1, 3), length.out = 9000)
  f1 <- quiet_stall(moe_mcmc_fit(s$y, s$X, s$X, w = w, K = 2, chains = 1, iter = 30,
                                 warmup = 10, seed = 5,
                                 control = moe_mcmc_control(em_starts = 1, info_obs = 2000)))
  expect_true(all(is.finite(f1$draws)))
  expect_gt(f1$accept, 0.2)
})

test_that("a continued run keeps the information subsample of the run it continues", {
  s <- info_data(6000, 1, 43)
  d <- data.frame(y = s$y, x = s$X[, 2])
  ctl <- moe_mcmc_control(em_starts = 1, info_obs = 1500)
  short <- moe_mcmc(y ~ x, data = d, K = 2, chains = 1, iter = 30, warmup = 10, seed = 3,
                    control = ctl, progress = FALSE)
  long <- moe_mcmc(y ~ x, data = d, K = 2, chains = 1, iter = 50, warmup = 10, seed = 3,
                   control = ctl, progress = FALSE)
  expect_identical(moe_mcmc(short, iter = 20)$draws, long$draws)
  # a fit saved before info_obs existed continues with every observation
  old <- moe_mcmc(y ~ x, data = d, K = 2, chains = 1, iter = 30, warmup = 10, seed = 3,
                  control = moe_mcmc_control(em_starts = 1, info_obs = Inf), progress = FALSE)
  all <- moe_mcmc(y ~ x, data = d, K = 2, chains = 1, iter = 50, warmup = 10, seed = 3,
                  control = moe_mcmc_control(em_starts = 1, info_obs = Inf), progress = FALSE)
  old$control$info_obs <- NULL
  expect_identical(moe_mcmc(old, iter = 20)$draws, all$draws)
})

test_that("the subsampled information leaves the posterior as it is", {
  # two long chains on the same data, one with the information of every
  # observation and one with that of every 8th: the Metropolis-Hastings
  # steps are exact for any proposal that is a fixed function of the point,
  # so their posterior means of label-free functionals (the log-likelihood,
  # the predictive mean at three points) agree within Monte Carlo error
  # (batch means, 20 batches)
  s <- info_data(8000, 1, 44)
  xs <- c(-1, 0, 1.5)
  functionals <- function(f) {
    # expert 1 (intercept, slope, variance), expert 2, gate 1 (intercept,
    # slope; expert 2 is the reference)
    dr <- f$draws[, 1, ]
    pm <- sapply(xs, function(x) {
      g1 <- plogis(dr[, 7] + dr[, 8] * x)
      g1 * (dr[, 1] + dr[, 2] * x) + (1 - g1) * (dr[, 4] + dr[, 5] * x)
    })
    cbind(loglik = f$loglik_draws[, 1], pm)
  }
  # (and the posterior spread is the same: ratio of standard deviations)
  expect_same_posterior(functionals(info_fit(s, 2, Inf, iter = 2200, warmup = 200, seed = 11)),
                        functionals(info_fit(s, 2, 1000, iter = 2200, warmup = 200, seed = 12)))
})

test_that("moe_mcmc_control(info_obs = ) takes a whole number >= 1000 or Inf", {
  expect_equal(moe_mcmc_control()$info_obs, 50000)
  expect_identical(moe_mcmc_control(info_obs = Inf)$info_obs, Inf)
  for (v in list(10, 999, 2500.5, -Inf, NA, "all", c(1000, 2000), 3e9)) {
    expect_error(moe_mcmc_control(info_obs = v), class = "bayesmoe_error_input",
                 regexp = "info_obs")
  }
  # the C controls: 0 for every observation
  ctl <- bayesmoe:::gate_mode(moe_mcmc_control(info_obs = Inf))
  expect_identical(ctl[5L], 0L)
  expect_identical(bayesmoe:::gate_mode(moe_mcmc_control(info_obs = 1234))[5L], 1234L)
})
