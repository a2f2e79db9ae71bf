# Marginal likelihood of mixtures of GLM experts (moe_marglik() bridge
# sampling through the ml_*() family pieces of R/marglik.R and
# R/family-glm.R; marglik_smc() as the independent estimator).

glm_sim <- function(n, seed) {
  set.seed(seed)
  x <- runif(n)
  k <- rbinom(n, 1, plogis(8 * (x - 0.5)))
  data.frame(x = x, k = k,
             y = rpois(n, exp(ifelse(k == 1, 0.2 + 0.5 * x, 2.5 - 0.5 * x))),
             b = rbinom(n, 1, plogis(ifelse(k == 1, 2.5 - x, -2.5 + x))))
}

test_that("the GLM pieces are the model's likelihood and prior", {
  d <- glm_sim(40, 1)
  d$e <- runif(40, 0.5, 2)
  pc <- bayesmoe:::prior_internal(moe_prior(V_a = c(2, 3), m_a = c(0.5, -1)), 2, 2)
  X <- cbind(1, scale(d$x))
  for (fam in c("poisson", "binomial")) {
    ex <- bayesmoe:::new_expert_glm(fam, if (fam == "poisson") "log" else "logit")
    y <- if (fam == "poisson") d$y else d$b
    off <- if (fam == "poisson") log(d$e) else NULL
    s <- list(y = y, X = X, Z = X, w = rep(c(1, 2), 20),
              family = bayesmoe:::glm_family_data(ex, y, off, NULL))
    for (K in 1:3) {
      set.seed(K)
      D <- 2 * K + 2 * (K - 1)
      Phi <- matrix(rnorm(5 * D, sd = 0.7), 5)
      par <- bayesmoe:::ml_par(ex, Phi, 2, 2, K)
      expect_equal(bayesmoe:::ml_phi(ex, par), Phi)
      # the log-likelihood against moe_log_density() (R/fit.R), draw by draw
      ref <- vapply(1:5, function(j) {
        pj <- list(alpha = matrix(par$alpha[, , j], 2), sigma2 = rep(1, K),
                   W = matrix(par$W[, , j], 2), spec = bayesmoe:::make_spec(expert = ex))
        sum(s$w * bayesmoe:::moe_log_density(pj, X, X, y, off, NULL))
      }, 0)
      expect_equal(bayesmoe:::ml_loglik(ex, par, s), ref)
      # the prior: independent N(m_a, V_a) experts (no Jacobian: no transform)
      lp <- vapply(1:5, function(j) sum(vapply(seq_len(K), function(k) {
        sum(dnorm(par$alpha[, k, j], c(0.5, -1), sqrt(c(2, 3)), log = TRUE))
      }, 0)), 0)
      expect_equal(bayesmoe:::ml_log_prior_experts(ex, par, pc), lp)
      if (K > 1) {
        # relabelling (r = 0 coordinates after the coefficients) leaves the
        # likelihood and the exchangeable prior unchanged
        P <- t(replicate(5, sample(K)))
        A <- bayesmoe:::smc_permute_rows(Phi, P, 2, 2, K, 0L)
        pa <- bayesmoe:::ml_par(ex, A, 2, 2, K)
        expect_equal(bayesmoe:::ml_loglik(ex, pa, s), bayesmoe:::ml_loglik(ex, par, s))
        expect_equal(bayesmoe:::ml_log_prior(ex, pa, pc), bayesmoe:::ml_log_prior(ex, par, pc))
        expect_equal(bayesmoe:::smc_permute_rows(A, bayesmoe:::inverse_perms(P), 2, 2, K, 0L),
                     Phi)
      }
    }
  }
})

test_that("K = 1: bridge sampling agrees with quadrature for GLM experts", {
  d <- glm_sim(60, 2)
  prior <- moe_prior(V_a = 4)
  # brute-force reference on the internal scale (covariate centred and
  # scaled as the fit stores it, prior a ~ N(0, 4 I)), on a grid around the
  # posterior mode: the integral of likelihood x prior
  quad <- function(fit, loglik) {
    sc <- fit$scaling$x
    X <- cbind(1, (fit$X[, 2] - sc$center[2]) / sc$scale[2])
    lq <- function(a) loglik(drop(X %*% a)) + sum(dnorm(a, 0, 2, log = TRUE))
    opt <- optim(c(0, 0), function(a) -lq(a), hessian = TRUE, method = "BFGS")
    sd <- sqrt(diag(solve(opt$hessian)))
    g1 <- seq(-9, 9, length.out = 241) * sd[1] + opt$par[1]
    g2 <- seq(-9, 9, length.out = 241) * sd[2] + opt$par[2]
    L <- outer(g1, g2, Vectorize(function(u, v) lq(c(u, v))))
    m <- max(L)
    m + log(sum(exp(L - m)) * diff(g1[1:2]) * diff(g2[1:2]))
  }
  # an offset (exposure) for the counts, trials for the binomial response
  set.seed(4)
  d$e <- runif(60, 0.5, 2)
  d$m <- sample(1:4, 60, replace = TRUE)
  d$s <- rbinom(60, d$m, plogis(1 - 2 * d$x))
  fp <- moe_mcmc(y ~ x + offset(log(e)), data = d, K = 1, family = poisson(), prior = prior,
                 chains = 2, iter = 1000, seed = 1, progress = FALSE)
  ref_p <- quad(fp, function(eta) sum(dpois(d$y, exp(eta + log(d$e)), log = TRUE)))
  fb <- moe_mcmc(cbind(s, m - s) ~ x, data = d, K = 1, family = binomial(), prior = prior,
                 chains = 2, iter = 1000, seed = 1, progress = FALSE)
  ref_b <- quad(fb, function(eta) sum(dbinom(d$s, d$m, plogis(eta), log = TRUE)))
  for (pr in c("mixture", "normal")) {
    mp <- moe_marglik(fp, proposal = pr, seed = 1)
    mb <- moe_marglik(fb, proposal = pr, seed = 1)
    expect_lt(abs(mp$logml - ref_p), max(4 * mp$se, 0.01))
    expect_lt(abs(mb$logml - ref_b), max(4 * mb$se, 0.01))
  }
  expect_error(moe_marglik(fp, method = "exact"), class = "bayesmoe_error_unavailable")
})

test_that("K = 2: bridge sampling agrees with tempered SMC for Poisson experts", {
  d <- glm_sim(100, 5)
  fit <- moe_mcmc(y ~ x, data = d, K = 2, family = poisson(), chains = 2, iter = 1000,
                  seed = 1, progress = FALSE)
  sm <- bayesmoe:::marglik_smc(fit, runs = 3, N = 300, moves = 5, seed = 2)
  for (pr in c("mixture", "normal")) {
    m <- moe_marglik(fit, proposal = pr, seed = 1)
    expect_true(m$converged)
    # within 4 combined Monte Carlo standard errors
    expect_lt(abs(m$logml - sm$logml), 4 * sqrt(m$se^2 + sm$se^2))
  }
})

test_that("K = 3 (over-fitted): the mixture importance density stays reliable", {
  d <- glm_sim(100, 5)
  m <- lapply(2:3, function(K) {
    fit <- moe_mcmc(y ~ x, data = d, K = K, family = poisson(), chains = 2, iter = 1000,
                    seed = 1, progress = FALSE)
    moe_marglik(fit, seed = 1)
  })
  expect_true(m[[2]]$converged)
  expect_lt(m[[2]]$se, 0.5)
  # an empty third expert costs prior mass: K = 3 is not more likely than
  # K = 2 by more than the Monte Carlo error
  expect_lt(m[[2]]$logml, m[[1]]$logml + 4 * sqrt(m[[1]]$se^2 + m[[2]]$se^2))
})
