# Tests of the tempered SMC estimator of the marginal likelihood
# (R/marglik-smc.R), the independent reference for moe_marglik().

test_that("the SMC pieces match the bridge-sampling ones", {
  set.seed(1)
  pc <- bayesmoe:::prior_internal(moe_prior(s_w = c(2, 3)), 2, 2)
  n <- 30
  X <- cbind(1, rnorm(n))
  s <- list(y = rnorm(n), X = X, Z = X, w = rep(1, n))
  for (K in 1:3) {
    D <- 3 * K + 2 * (K - 1)
    Phi <- matrix(rnorm(6 * D, sd = 0.5), 6)
    par <- bayesmoe:::par_from_phi(Phi, 2, 2, K)
    expect_equal(bayesmoe:::log_prior_rows(Phi, pc, 2, 2, K),
                 bayesmoe:::log_prior_phi(par, pc))
    expect_equal(bayesmoe:::loglik_particles(Phi, s, 2, 2, K),
                 bayesmoe:::loglik_draws_internal(par, s))
    if (K > 1) {
      P <- t(replicate(6, sample(K)))
      A <- bayesmoe:::smc_permute_rows(Phi, P, 2, 2, K)
      expect_equal(A, bayesmoe:::apply_perms(Phi, P, 2, 2, K))
      # relabelling is undone by the inverse permutations, and leaves the
      # likelihood and the (exchangeable) prior unchanged
      expect_equal(bayesmoe:::smc_permute_rows(A, bayesmoe:::inverse_perms(P), 2, 2, K), Phi)
      expect_equal(bayesmoe:::loglik_particles(A, s, 2, 2, K),
                   bayesmoe:::loglik_particles(Phi, s, 2, 2, K))
      expect_equal(bayesmoe:::log_prior_rows(A, pc, 2, 2, K),
                   bayesmoe:::log_prior_rows(Phi, pc, 2, 2, K))
    }
  }
})

test_that("SMC recovers the closed-form marginal likelihood of one expert", {
  d <- data.frame(x = (1:40) / 40)
  set.seed(3)
  d$y <- 1 + 2 * d$x + rnorm(40, sd = 0.5)
  fit <- moe_mcmc(y ~ x, data = d, K = 1, chains = 1, iter = 20, seed = 1, progress = FALSE)
  exact <- moe_marglik(fit, method = "exact")$logml
  sm <- bayesmoe:::marglik_smc(fit, runs = 3, N = 400, moves = 5, ess = 0.9, seed = 2)
  expect_length(sm$runs, 3L)
  # within 4 Monte Carlo standard errors (and 0.3 nats)
  expect_lt(abs(sm$logml - exact), max(4 * sm$se, 0.05))
  expect_lt(abs(sm$logml - exact), 0.3)
})
