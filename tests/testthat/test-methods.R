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
  # tonedata with three experts has a spike expert (see test-em.R)
  expect_warning(f3 <- update(fit, K = 3), class = "bayesmoe_warning_degenerate")
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

test_that("delta-method standard errors match finite differences times vcov()", {
  set.seed(1)
  fit <- fit_tone()
  nd <- data.frame(stretchratio = c(1.2, 1.8, 2.4, 3))
  V <- vcov(fit)
  theta <- coef(fit)
  p <- ncol(fit$X); q <- ncol(fit$Z); K <- fit$K
  X <- cbind(1, nd$stretchratio)
  # plain-R predictive mean and gating probabilities at a parameter vector
  pred <- function(th) {
    alpha <- matrix(th[c(1, 2, 4, 5)], 2)
    eta <- cbind(X %*% th[7:8], 0)
    g <- exp(eta - apply(eta, 1, max))
    g <- g / rowSums(g)
    cbind(mean = rowSums(g * (X %*% alpha)), g)
  }
  h <- 1e-6 * pmax(abs(theta), 1)
  J <- lapply(seq_along(theta), function(j) {
    e <- replace(numeric(length(theta)), j, h[j])
    (pred(theta + e) - pred(theta - e)) / (2 * h[j])
  })
  se_ref <- sapply(1:3, function(col) {
    Jc <- sapply(J, function(d) d[, col])
    sqrt(rowSums((Jc %*% V) * Jc))
  })
  out <- predict(fit, nd, se.fit = TRUE)
  expect_named(out, c("fit", "se.fit"))
  expect_equal(out$fit, predict(fit, nd))
  expect_equal(unname(out$se.fit), se_ref[, 1], tolerance = 1e-6)
  g <- predict(fit, nd, type = "gating", se.fit = TRUE)
  expect_equal(unname(g$se.fit), se_ref[, 2:3], tolerance = 1e-6)
  expect_equal(g$se.fit[, 1], g$se.fit[, 2])
  # expert means: the usual x' V_k x
  e <- predict(fit, nd, type = "expert", se.fit = TRUE)
  expect_equal(unname(e$se.fit[, 2]), sqrt(rowSums((X %*% V[4:5, 4:5]) * X)))
})

test_that("confidence and prediction intervals have the lm() layout", {
  fit <- fit_tone()
  nd <- data.frame(stretchratio = c(1.5, 2, 2.5))
  ci <- predict(fit, nd, interval = "confidence", level = 0.9)
  expect_equal(dimnames(ci), list(c("1", "2", "3"), c("fit", "lwr", "upr")))
  se <- predict(fit, nd, se.fit = TRUE)$se.fit
  expect_equal(ci[, "upr"] - ci[, "fit"], qnorm(0.95) * se)
  expect_equal(ci[, "fit"], predict(fit, nd))
  pi <- predict(fit, nd, interval = "prediction")
  expect_equal(unname(pi[, c("lwr", "upr")]),
               unname(predict(fit, nd, type = "quantile", probs = c(0.025, 0.975))))
  expect_true(all(pi[, "lwr"] < ci[, "lwr"] & pi[, "upr"] > ci[, "upr"]))
  # gating limits on the logit scale stay in (0, 1) and surround the estimate
  g <- predict(fit, nd, type = "gating", interval = "confidence")
  expect_equal(dim(g), c(3L, 2L, 3L))
  expect_equal(dimnames(g)[[3L]], c("fit", "lwr", "upr"))
  expect_equal(g[, , "fit"], predict(fit, nd, type = "gating"))
  expect_true(all(g[, , "lwr"] > 0 & g[, , "lwr"] <= g[, , "fit"] &
                    g[, , "upr"] < 1 & g[, , "upr"] >= g[, , "fit"]))
  both <- predict(fit, nd, interval = "confidence", se.fit = TRUE)
  expect_equal(both$fit, predict(fit, nd, interval = "confidence"))
  # K = 1: the confidence band of the mean is lm()'s with the ML variance
  f1 <- moe_em(tuned ~ stretchratio, data = tonedata, K = 1)
  l1 <- lm(tuned ~ stretchratio, data = tonedata)
  s_ml <- predict(l1, nd, se.fit = TRUE)$se.fit * sqrt(nrow(tonedata) / l1$df.residual)^-1
  expect_equal(predict(f1, nd, se.fit = TRUE)$se.fit, s_ml, tolerance = 1e-6)
})

test_that("unknown and unsupported prediction arguments are errors", {
  fit <- fit_tone()
  nd <- data.frame(stretchratio = 2)
  expect_error(predict(fit, nd, standard_errors = TRUE), class = "bayesmoe_error_input")
  # `se` partially matches `se.fit`, as for predict.lm()
  expect_identical(predict(fit, nd, se = TRUE), predict(fit, nd, se.fit = TRUE))
  expect_snapshot(error = TRUE, {
    predict(fit, nd, standard_errors = TRUE)
    predict(fit, nd, intervals = "confidence", ci = TRUE)
    predict(fit, nd, interval = "credible")
    predict(fit, nd, type = "gating", interval = "prediction")
    predict(fit, nd, type = "density", se.fit = TRUE)
    predict(fit, nd, interval = "confidence", level = 95)
  })
})

test_that("vcov() of EM fits is computed on the internal scale: finite at extreme covariate scales", {
  set.seed(71)
  d <- rmoe(300, moe_truth_example("p4"))
  f1 <- moe_em(y ~ x, data = d, K = 2, seed = 1)
  for (s in c(1e-8, 1e17, 1e50)) {
    ds <- d
    ds$x <- d$x * s
    fs <- moe_em(y ~ x, data = ds, K = 2, seed = 1)
    # the same optimum up to the order of the experts, so compare the
    # standard errors as sets per parameter kind
    se1 <- sqrt(diag(vcov(f1)))
    ses <- sqrt(diag(vcov(fs)))
    slope <- grepl(":x$", names(se1))
    expect_true(all(is.finite(ses)))
    expect_equal(unname(sort(ses[slope] * s)), unname(sort(se1[slope])), tolerance = 1e-4)
    expect_equal(unname(sort(ses[!slope])), unname(sort(se1[!slope])), tolerance = 1e-4)
  }
})
