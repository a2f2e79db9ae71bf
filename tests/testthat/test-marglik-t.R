# Marginal likelihood of mixtures of Student-t experts (the ml_*() methods
# of R/family-t.R): the pieces against the model's density and prior, and
# bridge sampling against the tempered SMC estimator.

test_that("the t pieces are the model's likelihood and prior", {
  set.seed(1)
  n <- 30
  X <- cbind(1, rnorm(n))
  y <- rnorm(n)
  s <- list(y = y, X = X, Z = X, w = rep(c(1, 2), 15))
  pr <- moe_prior(df_shape = 3, df_rate = 0.2)
  pc <- bayesmoe:::prior_internal(pr, 2, 2)
  for (df in list(NULL, 4)) {
    ex <- bayesmoe:::expert_t(df)
    r <- if (is.null(df)) 2 else 1
    for (K in 1:2) {
      D <- (2 + r) * K + 2 * (K - 1)
      Phi <- matrix(rnorm(4 * D, sd = 0.5), 4)
      par <- bayesmoe:::ml_par(ex, Phi, 2, 2, K)
      expect_equal(bayesmoe:::ml_phi(ex, par), Phi)
      ref <- vapply(1:4, function(j) {
        pj <- list(alpha = matrix(par$alpha[, , j], ncol = K), sigma2 = par$sigma2[, j],
                   W = matrix(par$W[, , j], 2), spec = bayesmoe:::make_spec(expert = ex))
        sum(s$w * bayesmoe:::moe_log_density(pj, X, X, y))
      }, 0)
      expect_equal(bayesmoe:::ml_loglik(ex, par, s), ref)
      # prior: a | s2 ~ N(m_a, s2 V_a), s2 ~ IG(c0, C0), df ~ Gamma truncated
      # to [0.1, 1e4], in (a, log s2, log df): Jacobians s2 and df
      lp <- vapply(1:4, function(j) sum(vapply(seq_len(K), function(k) {
        s2 <- par$sigma2[k, j]
        v <- sum(dnorm(par$alpha[1:2, k, j], pc$m_a, sqrt(s2 * diag(pc$V_a)), log = TRUE)) +
          pc$c0 * log(pc$C0) - lgamma(pc$c0) - (pc$c0 + 1) * log(s2) - pc$C0 / s2 + log(s2)
        if (is.null(df)) {
          nu <- par$alpha[3, k, j]
          v <- v + dgamma(nu, 3, 0.2, log = TRUE) + log(nu) -
            log(pgamma(1e4, 3, 0.2) - pgamma(0.1, 3, 0.2))
        }
        v
      }, 0)), 0)
      expect_equal(bayesmoe:::ml_log_prior_experts(ex, par, pc), lp)
    }
  }
})

test_that("bridge sampling for t experts agrees with tempered SMC", {
  set.seed(4)
  n <- 80
  x <- runif(n)
  k <- rbinom(n, 1, plogis(8 * (x - 0.5)))
  d <- data.frame(x = x, y = ifelse(k == 1, 1 + 2 * x, 4 - 2 * x) + 0.3 * rt(n, df = 3))
  for (K in 1:2) {
    fit <- moe_mcmc(y ~ x, data = d, K = K, family = student_t(), chains = 2, iter = 1500,
                    seed = 1, progress = FALSE)
    m <- moe_marglik(fit, seed = 1)
    expect_identical(m$proposal, "normal")
    sm <- bayesmoe:::marglik_smc(fit, runs = 3, N = 300, moves = 5, seed = 2)
    expect_lt(abs(m$logml - sm$logml), 4 * sqrt(m$se^2 + sm$se^2) + 0.1)
  }
  expect_error(moe_marglik(fit, proposal = "mixture"), class = "bayesmoe_error_unavailable")
})
