# Poisson (log-linear) experts: family = poisson() (R/family-poisson.R,
# R/family-glm.R, src/family_poisson.c).

sim_poisson <- function(n = 400, seed = 1) {
  set.seed(seed)
  x <- runif(n)
  expo <- runif(n, 0.5, 2)
  k <- rbinom(n, 1, plogis(8 * (x - 0.5)))
  y <- rpois(n, expo * exp(ifelse(k == 1, 2 - 1.5 * x, 0.3 + 1.2 * x)))
  data.frame(x = x, y = y, expo = expo)
}

test_that("K = 1 EM equals glm(), offsets included", {
  d <- sim_poisson(300)
  for (f in list(y ~ x, y ~ x + offset(log(expo)))) {
    fit <- moe_em(f, data = d, K = 1, family = poisson())
    ref <- glm(f, family = poisson(), data = d)
    expect_equal(unname(coef(fit)), unname(coef(ref)), tolerance = 1e-7)
    expect_equal(as.numeric(logLik(fit)), as.numeric(logLik(ref)), tolerance = 1e-9)
    expect_equal(unname(fitted(fit)), unname(fitted(ref)), tolerance = 1e-6)
    expect_equal(unname(sqrt(diag(vcov(fit)))), unname(sqrt(diag(vcov(ref)))),
                 tolerance = 1e-4)
    # predictions at new data evaluate the offset there
    nd <- d[1:5, ]
    nd$expo <- 3
    expect_equal(unname(predict(fit, newdata = nd)),
                 unname(predict(ref, newdata = nd, type = "response")), tolerance = 1e-6)
  }
})

test_that("case weights equal replicated rows", {
  d <- sim_poisson(200)
  w <- rep(1:3, length.out = nrow(d))
  dd <- d[rep(seq_len(nrow(d)), w), ]
  a <- moe_em(y ~ x + offset(log(expo)), data = d, weights = w, K = 1, family = poisson())
  b <- moe_em(y ~ x + offset(log(expo)), data = dd, K = 1, family = poisson())
  expect_equal(coef(a), coef(b), tolerance = 1e-8)
  expect_equal(as.numeric(logLik(a)), as.numeric(logLik(b)), tolerance = 1e-9)
  # K = 2: one EM run of the engine from the same starting responsibilities
  X <- cbind("(Intercept)" = 1, x = d$x)
  idx <- rep(seq_len(nrow(d)), w)
  ex <- bayesmoe:::resolve_family(poisson(), expert_linear())
  set.seed(1)
  R0 <- matrix(runif(2 * nrow(d)), nrow(d))
  R0 <- R0 / rowSums(R0)
  run <- function(rows, wt) {
    s <- list(y = d$y[rows], X = X[rows, ], Z = X[rows, ],
              family = bayesmoe:::glm_family_data(ex, d$y[rows], log(d$expo[rows])))
    bayesmoe:::em_run(s, wt, R0[rows, ], moe_em_control(tol = 1e-12), 3, gate_softmax(), ex)
  }
  fa <- run(seq_len(nrow(d)), w)
  fb <- run(idx, rep(1, length(idx)))
  expect_equal(fa$loglik, fb$loglik, tolerance = 1e-8)
  expect_equal(fa$alpha, fb$alpha, tolerance = 1e-5)
})

test_that("EM is monotone and the log-likelihood is the Poisson one", {
  d <- sim_poisson(500)
  fit <- moe_em(y ~ x + offset(log(expo)), data = d, K = 2, family = poisson(), seed = 3)
  expect_true(all(diff(fit$trace) >= -1e-8 * abs(fit$trace[-1])))
  par <- coef(fit, matrix = TRUE)
  expect_null(par$sigma2)
  mu <- d$expo * exp(cbind(1, d$x) %*% par$alpha)
  g <- predict(fit, type = "gating")
  expect_equal(as.numeric(logLik(fit)), sum(log(rowSums(g * dpois(d$y, mu)))),
               tolerance = 1e-8)
  expect_false(any(grepl("sigma2", names(coef(fit)))))
})

test_that("the Metropolis-Hastings sampler matches the K = 1 posterior on a grid", {
  set.seed(12)
  n <- 60
  x <- rnorm(n)
  x <- (x - mean(x)) / sqrt(mean((x - mean(x))^2))  # internal scale = original
  y <- rpois(n, exp(0.8 + 0.5 * x))
  fit <- moe_mcmc(y ~ x, data = data.frame(x, y), K = 1, family = poisson(),
                  prior = moe_prior(V_a = 2), chains = 2, iter = 3000, seed = 1)
  D <- as.data.frame(fit)
  a0 <- seq(0, 1.6, length.out = 301)
  a1 <- seq(-0.3, 1.3, length.out = 301)
  lp <- outer(a0, a1, Vectorize(function(u, v) {
    sum(dpois(y, exp(u + v * x), log = TRUE)) - (u^2 + v^2) / 4
  }))
  pw <- exp(lp - max(lp))
  pw <- pw / sum(pw)
  m0 <- sum(rowSums(pw) * a0)
  m1 <- sum(colSums(pw) * a1)
  s0 <- sqrt(sum(rowSums(pw) * (a0 - m0)^2))
  s1 <- sqrt(sum(colSums(pw) * (a1 - m1)^2))
  # the independence sampler accepts most proposals: nearly independent draws
  expect_gt(min(fit$accept[, "expert1"]), 0.7)
  N <- nrow(D) / 2
  expect_lt(abs(mean(D[["expert1:(Intercept)"]]) - m0), 5 * s0 / sqrt(N))
  expect_lt(abs(mean(D[["expert1:x"]]) - m1), 5 * s1 / sqrt(N))
  expect_lt(abs(sd(D[["expert1:x"]]) / s1 - 1), 0.08)
})

test_that("every method works on Poisson fits, the predictive distribution included", {
  d <- sim_poisson(300)
  f <- y ~ x + offset(log(expo))
  em <- moe_em(f, data = d, K = 2, family = poisson(), seed = 1)
  mc <- moe_mcmc(f, data = d, K = 2, family = poisson(), chains = 2, iter = 300, seed = 1)
  for (fit in list(em, mc)) {
    expect_output(print(fit), "Poisson \\(log\\)")
    expect_output(print(summary(fit)))
    p <- predict(fit, type = "mean")
    expect_true(all(p > 0))
    g <- predict(fit, type = "gating")
    expect_equal(unname(rowSums(g)), rep(1, nrow(d)))
    # the predictive distribution of the counts: a pmf over 0, 1, 2, ...
    pmf <- predict(fit, newdata = d[1:5, ], type = "density", y = 0:200)
    expect_equal(unname(rowSums(pmf)), rep(1, 5), tolerance = 1e-8)
    if (inherits(fit, "moe_em")) {
      expect_equal(unname(drop(pmf %*% (0:200))), unname(p[1:5]), tolerance = 1e-8)
    }
    q <- predict(fit, newdata = d[1:5, ], type = "quantile", probs = c(0.1, 0.5, 0.9))
    expect_true(all(q >= 0))
    # (MCMC fits average the quantiles of the draws)
    if (inherits(fit, "moe_em")) expect_true(all(q == round(q)))
    if (inherits(fit, "moe_em")) {
      cdf <- t(apply(pmf, 1L, cumsum))
      for (i in 1:5) expect_gte(cdf[i, q[i, 2L] + 1L], 0.5)
    }
    s <- simulate(fit, nsim = 2, seed = 1)
    expect_true(all(unlist(s) >= 0 & unlist(s) == round(unlist(s))))
    expect_true(all(is.finite(residuals(fit, type = "pearson"))))
    pdf(NULL)
    # on a grid of x, the exposure at its median
    expect_silent(plot(fit, "fit"))
    expect_silent(plot(fit, "gating"))
    dev.off()
  }
  expect_true(all(is.finite(confint(em))))
  ll <- log_lik(mc)
  expect_equal(apply(ll, c(1, 2), sum), unname(mc$loglik_draws), tolerance = 1e-8,
               ignore_attr = TRUE)
  skip_if_not_installed("loo")
  expect_s3_class(suppressWarnings(loo::loo(mc)), "loo")
  r <- moe_relabel(mc)
  expect_false(any(grepl("sigma", dimnames(r$draws)[[3L]])))
  skip_if_not_installed("rstantools")
  pp <- rstantools::posterior_predict(mc, draws = 10, seed = 1)
  expect_true(all(pp >= 0 & pp == round(pp)))
})

test_that("malformed Poisson input gets classed errors", {
  d <- sim_poisson(50)
  d$neg <- d$y - 5
  expect_error(moe_em(neg ~ x, data = d, K = 2, family = poisson()),
               class = "bayesmoe_error_data", regexp = "negative")
  d$half <- d$y + 0.5
  expect_error(moe_mcmc(half ~ x, data = d, K = 2, family = poisson()),
               class = "bayesmoe_error_data", regexp = "whole numbers")
  expect_error(moe_em(y ~ x, data = d, K = 2, family = poisson(link = "identity")),
               class = "bayesmoe_error_family")
})

test_that("SBC of the Poisson sampler: calibrated ranks, no frozen chain", {
  path <- system.file("extdata", "sbc-poisson.rds", package = "bayesmoe")
  skip_if(!nzchar(path), "inst/extdata/sbc-poisson.rds not installed")
  sbc <- readRDS(path)
  expect_gte(sbc$reps, 500)
  expect_identical(c(sbc$K, sbc$n), c(2L, 100L))
  expect_true(all(sbc$tests[, "chisq_p"] > 0.001))
  expect_true(all(sbc$tests[, "extreme_p"] > 0.001))
  expect_equal(sbc$frozen, 0)
})
