fit_tone <- function(K = 2) moe_em(tuned ~ stretchratio, data = tonedata, K = K, seed = 1,
                                   control = moe_em_control(tol = 1e-12))

test_that("coef() has the documented layout and matches the matrices", {
  fit <- fit_tone()
  cf <- coef(fit)
  expect_named(cf, c("expert1:(Intercept)", "expert1:stretchratio", "expert1:sigma2",
                     "expert2:(Intercept)", "expert2:stretchratio", "expert2:sigma2",
                     "gate1:(Intercept)", "gate1:stretchratio"))
  m <- coef(fit, matrix = TRUE)
  expect_equal(unname(cf[c(1, 2, 4, 5)]), as.vector(m$alpha))
  expect_equal(unname(cf[c(3, 6)]), unname(m$sigma2))
  expect_equal(unname(cf[7:8]), unname(m$W[, 1]))
  expect_equal(unname(m$W[, 2]), c(0, 0))
})

test_that("vcov() inverts the observed information, which matches a numerical Hessian", {
  fit <- fit_tone()
  theta <- coef(fit)
  p <- ncol(fit$X); q <- ncol(fit$Z); K <- fit$K
  ll <- function(th) {
    par <- bayesmoe:::par_unflatten(th, p, q, K)
    sum(bayesmoe:::moe_log_density(par, fit$X, fit$Z, fit$y))
  }
  expect_equal(ll(theta), as.numeric(logLik(fit)), tolerance = 1e-10)
  # central second differences
  P <- length(theta)
  h <- 1e-4 * pmax(abs(theta), 0.1)
  H <- matrix(0, P, P)
  for (i in 1:P) for (j in i:P) {
    ei <- replace(numeric(P), i, h[i]); ej <- replace(numeric(P), j, h[j])
    H[i, j] <- H[j, i] <- (ll(theta + ei + ej) - ll(theta + ei - ej) -
                             ll(theta - ei + ej) + ll(theta - ei - ej)) / (4 * h[i] * h[j])
  }
  info <- bayesmoe:::moe_information(fit$coefficients, fit$y, fit$X, fit$Z, fit$weights)
  expect_equal(info, -H, tolerance = 1e-4, ignore_attr = TRUE)
  V <- vcov(fit)
  expect_equal(rownames(V), names(theta))
  expect_equal(V %*% info, diag(P), tolerance = 1e-6, ignore_attr = TRUE)
})

test_that("K = 1 standard errors match lm() up to the ML variance", {
  fit <- fit_tone(1)
  ref <- lm(tuned ~ stretchratio, data = tonedata)
  n <- nrow(tonedata)
  se <- sqrt(diag(vcov(fit)))[1:2]
  expect_equal(unname(se), unname(sqrt(diag(vcov(ref))) * sqrt((n - 2) / n)), tolerance = 1e-6)
})

test_that("logLik() carries df and nobs, so AIC and BIC work", {
  fit <- fit_tone()
  ll <- logLik(fit)
  expect_identical(attr(ll, "df"), 8L)
  expect_identical(attr(ll, "nobs"), 150L)
  expect_equal(AIC(fit), -2 * as.numeric(ll) + 2 * 8)
  expect_equal(BIC(fit), -2 * as.numeric(ll) + log(150) * 8)
  expect_identical(nobs(fit), 150L)
  s <- summary(fit)
  expect_gte(s$ICL, s$BIC)
})

test_that("fitted, residuals and predictions agree", {
  fit <- fit_tone()
  expect_equal(fitted(fit), predict(fit, tonedata, type = "mean"), ignore_attr = TRUE)
  expect_equal(residuals(fit), tonedata$tuned - fitted(fit), ignore_attr = TRUE)
  g <- predict(fit, type = "gating")
  expect_equal(rowSums(g), rep(1, 150), ignore_attr = TRUE)
  em <- predict(fit, type = "expert")
  expect_equal(rowSums(g * em), fitted(fit), ignore_attr = TRUE)
  pr <- residuals(fit, type = "pearson")
  expect_equal(mean(pr^2), 1, tolerance = 0.3)
})

test_that("predicted densities integrate to one and quantiles invert the CDF", {
  fit <- fit_tone()
  nd <- data.frame(stretchratio = c(1.4, 2.1, 2.9))
  for (i in 1:3) {
    dens <- function(y) vapply(y, function(v) predict(fit, nd[i, , drop = FALSE],
                                                      type = "density", y = v), 0)
    expect_equal(integrate(dens, -Inf, Inf, rel.tol = 1e-10)$value, 1, tolerance = 1e-6)
  }
  qs <- predict(fit, nd, type = "quantile", probs = c(0.1, 0.5, 0.9))
  expect_identical(dim(qs), c(3L, 3L))
  for (i in 1:3) for (j in 1:3) {
    cdf <- integrate(function(y) vapply(y, function(v) predict(fit, nd[i, , drop = FALSE],
                                                                type = "density", y = v), 0),
                     -Inf, qs[i, j], rel.tol = 1e-10)$value
    expect_equal(cdf, c(0.1, 0.5, 0.9)[j], tolerance = 1e-6)
  }
  # density at the observed response equals the per-observation likelihood
  ld <- predict(fit, type = "density", log = TRUE)
  expect_equal(sum(ld), as.numeric(logLik(fit)), tolerance = 1e-10)
  dm <- predict(fit, nd, type = "density", y = c(1.5, 2))
  expect_identical(dim(dm), c(3L, 2L))
})

test_that("gating probabilities stay finite for huge logits", {
  fit <- fit_tone()
  far <- data.frame(stretchratio = c(-1e6, 1e6))
  g <- predict(fit, far, type = "gating")
  expect_true(all(is.finite(g)))
  expect_equal(rowSums(g), c(1, 1), ignore_attr = TRUE)
  expect_true(all(is.finite(predict(fit, far))))
  expect_true(all(is.finite(predict(fit, far, type = "quantile", probs = 0.5))))
})

test_that("predict() validates its arguments", {
  fit <- fit_tone()
  expect_snapshot(error = TRUE, predict(fit, type = "nonsense"))
  expect_snapshot(error = TRUE, predict(fit, data.frame(a = 1)))
  expect_snapshot(error = TRUE, predict(fit, 1:3))
  expect_snapshot(error = TRUE, predict(fit, data.frame(stretchratio = 2), type = "density"))
  expect_snapshot(error = TRUE, predict(fit, type = "density", y = "a"))
  expect_snapshot(error = TRUE, predict(fit, type = "quantile", probs = c(0, 1.2)))
})

test_that("simulate() is reproducible, leaves the RNG alone and matches the model", {
  fit <- fit_tone()
  set.seed(3)
  before <- .Random.seed
  s1 <- simulate(fit, nsim = 2, seed = 10)
  expect_identical(.Random.seed, before)
  s2 <- simulate(fit, nsim = 2, seed = 10)
  expect_identical(s1, s2)
  expect_named(s1, c("sim_1", "sim_2"))
  expect_identical(nrow(s1), 150L)
  big <- simulate(fit, nsim = 200, seed = 1)
  expect_equal(rowMeans(big), fitted(fit), tolerance = 0.05, ignore_attr = TRUE)
  expect_snapshot(error = TRUE, simulate(fit, nsim = 0))
})

test_that("update() refits with changed arguments", {
  fit <- fit_tone()
  f3 <- update(fit, K = 3)
  expect_identical(f3$K, 3L)
  f1 <- update(fit, . ~ 1, K = 1)
  expect_identical(colnames(f1$X), "(Intercept)")
})

test_that("print and summary are stable", {
  fit <- fit_tone()
  expect_snapshot(print(fit))
  expect_snapshot(print(summary(fit)))
  na <- tonedata
  na$tuned[c(2, 7)] <- NA
  fit_na <- moe_em(tuned ~ stretchratio, data = na, K = 2, seed = 1)
  expect_snapshot(print(fit_na))
  expect_identical(nobs(fit_na), 148L)
})

test_that("densities far out are finite in log space; larger values are refused", {
  set.seed(41)
  d <- data.frame(x = runif(40))
  d$y <- 1 + d$x + rnorm(40, sd = 0.1)
  fit <- moe_em(y ~ x, data = d, K = 1)
  nd <- data.frame(x = 0.5)
  ld <- predict(fit, newdata = nd, type = "density", y = 1e100, log = TRUE)
  s2 <- coef(fit, matrix = TRUE)$sigma2
  mu <- predict(fit, nd)
  expect_true(is.finite(ld))
  expect_equal(unname(ld[1, 1]), dnorm(1e100, mu, sqrt(s2), log = TRUE))
  expect_snapshot(predict(fit, newdata = nd, type = "density", y = 1e300, log = TRUE),
                  error = TRUE)
  expect_snapshot(predict(fit, newdata = data.frame(x = 0.5, y = 1e300), type = "density"),
                  error = TRUE)
  expect_snapshot(predict(fit, newdata = data.frame(x = c(1e307, -1e307))), error = TRUE)
  expect_true(all(is.finite(predict(fit, newdata = data.frame(x = c(1e99, -1e99))))))
})
