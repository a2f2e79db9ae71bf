# Plain-R reference of the least-squares regression function.
ls_f_r <- function(theta, X, Z, K, expert_mean) {
  pe <- (length(theta) - ncol(Z) * (K - 1)) / K
  alpha <- matrix(theta[seq_len(pe * K)], pe, K)
  W <- cbind(matrix(theta[pe * K + seq_len(ncol(Z) * (K - 1))], ncol(Z)), 0)
  G <- exp(Z %*% W)
  G <- G / rowSums(G)
  rowSums(G * expert_mean(alpha))
}

test_that("the least-squares model and its Jacobian match plain R", {
  set.seed(21)
  n <- 30
  K <- 3
  x <- runif(n)
  X <- cbind("(Intercept)" = 1, x = x)
  Z <- X
  Xf <- matrix(x)
  jac <- function(f, th) vapply(seq_along(th), function(j) {
    e <- replace(numeric(length(th)), j, 1e-6)
    (f(th + e) - f(th - e)) / 2e-6
  }, numeric(n))
  # linear experts
  th <- rnorm(2 * K + 2 * (K - 1))
  f <- function(t) ls_f_r(t, X, Z, K, function(a) X %*% a)
  r <- .Call(bayesmoe:::ffi_ls_eval, rnorm(n), X, Z, rep(1, n), Xf, th, K, 0L, 0L, 0L, TRUE)
  expect_equal(r$f, f(th), tolerance = 1e-13)
  expect_equal(r$J, jac(f, th), tolerance = 1e-7)
  # FFN experts, 2 hidden units
  ffn <- function(a) apply(a, 2, function(t) drop(tanh(Xf %*% t(matrix(t[1:2], 2)) +
                                                       rep(t[3:4], each = n)) %*% t[5:6] + t[7]))
  th <- rnorm(7 * K + 2 * (K - 1))
  f <- function(t) ls_f_r(t, X, Z, K, ffn)
  r <- .Call(bayesmoe:::ffi_ls_eval, rnorm(n), X, Z, rep(1, n), Xf, th, K, 1L, 2L, 0L, TRUE)
  expect_equal(r$f, f(th), tolerance = 1e-13)
  expect_equal(r$J, jac(f, th), tolerance = 1e-7)
})

test_that("moe_ls() with one linear expert is lm()", {
  set.seed(22)
  d <- data.frame(x1 = rnorm(50), x2 = runif(50))
  d$y <- 1 + 2 * d$x1 - d$x2 + rnorm(50)
  w <- runif(50)
  fit <- moe_ls(y ~ x1 + x2, data = d, K = 1, starts = 1, weights = w)
  ref <- lm(y ~ x1 + x2, data = d, weights = w)
  expect_equal(unname(coef(fit)[1:3]), unname(coef(ref)), tolerance = 1e-8)
  expect_equal(fit$rss, sum(w * residuals(ref)^2), tolerance = 1e-10)
  expect_equal(unname(fitted(fit)), unname(fitted(ref)), tolerance = 1e-8)
  # Gauss-Newton standard errors with the ML variance
  se <- sqrt(diag(vcov(fit)))
  s2_ml <- sum(w * residuals(ref)^2) / sum(w)
  expect_equal(unname(se), unname(sqrt(diag(vcov(ref)) * s2_ml / summary(ref)$sigma^2)),
               tolerance = 1e-6)
})

test_that("moe_ls() recovers a known two-expert regression truth", {
  set.seed(23)
  n <- 3000
  x <- runif(n)
  g1 <- plogis(-6 + 12 * x)
  y <- g1 * (2 - 3 * x) + (1 - g1) * (1 + 4 * x) + rnorm(n, sd = 0.05)
  fit <- moe_ls(y ~ x, data = data.frame(x, y), K = 2, starts = 4, seed = 1)
  par <- coef(fit, matrix = TRUE)
  # the expert whose gate rises with x is expert 1 or 2
  k1 <- if (par$W["x", 1] > 0) 1L else 2L
  a1 <- par$alpha[, k1]
  a2 <- par$alpha[, 3L - k1]
  expect_equal(unname(a1), c(2, -3), tolerance = 0.05)
  expect_equal(unname(a2), c(1, 4), tolerance = 0.05)
  W <- par$W[, k1] - par$W[, 3L - k1]
  expect_equal(unname(W), c(-6, 12), tolerance = 0.1)
  expect_equal(sqrt(par$sigma2), 0.05, tolerance = 0.05)
  expect_equal(fit$starts$rss[fit$best], min(fit$starts$rss))
})

test_that("moe_ls() with FFN experts fits a curved regression and predicts", {
  set.seed(24)
  n <- 1000
  x <- runif(n, -1, 1)
  g1 <- plogis(8 * x)
  y <- g1 * (1.5 * tanh(3 * x - 1) + 0.5) + (1 - g1) * (-tanh(2 * x + 1)) + rnorm(n, sd = 0.05)
  d <- data.frame(x, y)
  fit <- moe_ls(y ~ x, data = d, K = 2, expert = expert_ffn(1), starts = 4, seed = 2)
  lin <- moe_ls(y ~ x, data = d, K = 2, starts = 4, seed = 2)
  expect_lt(fit$rss, lin$rss)
  expect_lt(sqrt(coef(fit, matrix = TRUE)$sigma2), 0.06)
  nd <- data.frame(x = c(-0.5, 0, 0.5))
  truth <- with(nd, plogis(8 * x) * (1.5 * tanh(3 * x - 1) + 0.5) +
                  (1 - plogis(8 * x)) * (-tanh(2 * x + 1)))
  expect_equal(unname(predict(fit, nd)), truth, tolerance = 0.02)
  g <- predict(fit, nd, type = "gating")
  expect_equal(unname(rowSums(g)), rep(1, 3))
  em <- predict(fit, nd, type = "expert")
  expect_equal(unname(rowSums(g * em)), unname(predict(fit, nd)), tolerance = 1e-12)
  # canonical parameters: positive output weights
  expect_true(all(coef(fit, matrix = TRUE)$alpha["c[1]", ] > 0))
  expect_equal(unname(residuals(fit)), unname(d$y - fitted(fit)))
  ll <- logLik(fit)
  expect_equal(attr(ll, "df"), 2 * 4 + 2 + 1)
})

test_that("moe_ls() print, summary and errors", {
  set.seed(25)
  x <- runif(200)
  y <- plogis(10 * (x - 0.5)) * (1 - 2 * x) + rnorm(200, sd = 0.1)
  d <- data.frame(x, y)
  fit <- moe_ls(y ~ x, data = d, K = 2, starts = 2, seed = 1)
  expect_snapshot(print(fit))
  expect_snapshot(print(summary(fit)))
  expect_s3_class(fit, c("moe_ls", "moe_fit"))
  expect_silent(plot(fit))
  expect_silent(plot(fit, what = "gating"))
  expect_snapshot(error = TRUE, moe_ls(y ~ x, data = d))
  expect_snapshot(error = TRUE, moe_ls(y ~ x, data = d, K = 2, expert = "ffn"))
  expect_snapshot(error = TRUE, moe_ls(y ~ x, data = d, K = 2, control = list()))
  expect_snapshot(error = TRUE, moe_ls(y ~ x - 1, data = d, K = 2, expert = expert_ffn()))
  expect_snapshot(error = TRUE, moe_ls(y ~ 1, data = d, K = 2, expert = expert_ffn()))
  expect_snapshot(error = TRUE, moe_ls_control(maxit = 0))
  expect_snapshot(error = TRUE, predict(fit, type = "density"))
})

test_that("an exact least-squares fit warns: variance 0, infinite log-likelihood, NA errors", {
  d <- data.frame(x = 1:100, y = 2 * (1:100))
  expect_snapshot(fit <- moe_ls(y ~ x, data = d, K = 1))
  expect_true(fit$exact)
  expect_identical(fit$coefficients$sigma2, 0)
  expect_identical(as.numeric(logLik(fit)), Inf)
  expect_equal(unname(coef(fit)[1:2]), c(0, 2), tolerance = 1e-8)
  expect_warning(vcov(fit), class = "bayesmoe_warning_exact_fit")
  expect_snapshot(print(summary(fit)))
  expect_warning(moe_ls(y ~ x, data = data.frame(x = c(1, 1, 2, 2), y = c(1, 1, 3, 3)), K = 1),
                 class = "bayesmoe_warning_exact_fit")
  X <- cbind("(Intercept)" = 1, x = d$x)
  expect_warning(r <- moe_ls_fit(d$y, X, X, K = 1), class = "bayesmoe_warning_exact_fit")
  expect_true(r$exact)
  # noisy data: no warning
  set.seed(1)
  expect_no_warning(f2 <- moe_ls(y ~ x, data = transform(d, y = y + rnorm(100)), K = 1))
  expect_false(f2$exact)
})
