test_that("internal scaling round-trips parameters", {
  set.seed(1)
  X <- cbind("(Intercept)" = 1, a = rnorm(20, 5, 3), b = runif(20))
  Z <- cbind("(Intercept)" = 1, a = X[, 2])
  y <- rnorm(20, 10, 4)
  sc <- bayesmoe:::moe_scaling(y, X, Z)
  par <- list(alpha = matrix(rnorm(6), 3), sigma2 = c(0.5, 2), W = cbind(rnorm(2), 0))
  back <- bayesmoe:::par_to_original(sc, bayesmoe:::par_to_internal(sc, par))
  expect_equal(bayesmoe:::user_par(back), par, ignore_attr = TRUE)
  # the scaled means reproduce the original ones
  s <- bayesmoe:::scale_data(sc, y, X, Z)
  pin <- bayesmoe:::par_to_internal(sc, par)
  expect_equal(sc$my + sc$sy * s$X %*% pin$alpha, X %*% par$alpha)
  expect_equal(s$Z %*% pin$W, Z %*% par$W)
})

test_that("formulas without an intercept are scaled, not centred", {
  set.seed(2)
  d <- data.frame(x = runif(200, 1, 2))
  d$y <- ifelse(runif(200) < 0.5, 2 * d$x, -d$x) + rnorm(200, sd = 0.1)
  fit <- moe_em(y ~ x - 1, data = d, K = 2, gating = ~ 1, seed = 1)
  expect_identical(rownames(fit$coefficients$alpha), "x")
  expect_equal(unname(sort(fit$coefficients$alpha[1, ])), c(-1, 2), tolerance = 0.05)
})

test_that("factors, interactions and poly() work, and predict() reuses their bases", {
  set.seed(3)
  d <- data.frame(x = runif(300), f = factor(sample(c("a", "b"), 300, TRUE)))
  d$y <- ifelse(runif(300) < plogis(6 * (d$x - 0.5)), 1 + 2 * d$x, -1 + d$x^2) +
    0.3 * (d$f == "b") + rnorm(300, sd = 0.2)
  fit <- moe_em(y ~ poly(x, 2) * f, data = d, K = 2, gating = ~ x + f, seed = 1)
  expect_identical(ncol(fit$X), 6L)
  nd <- d[c(5, 50, 150), c("x", "f")]
  expect_equal(predict(fit, nd), fitted(fit)[c(5, 50, 150)], ignore_attr = TRUE)
  expect_equal(predict(fit, nd, type = "gating"),
               predict(fit, type = "gating")[c(5, 50, 150), ], ignore_attr = TRUE)
  # a single new row still gets the training polynomial basis
  expect_equal(predict(fit, nd[1, ]), fitted(fit)[5], ignore_attr = TRUE)
  # a level unseen in training is an error from model.frame
  expect_error(predict(fit, data.frame(x = 0.5, f = "zz")))
})

test_that("subset and na.action are honoured and reported", {
  d <- tonedata
  d$tuned[1:3] <- NA
  f <- moe_em(tuned ~ stretchratio, data = d, K = 2, seed = 1)
  expect_identical(nobs(f), 147L)
  expect_length(f$na.action, 3L)
  expect_error(moe_em(tuned ~ stretchratio, data = d, K = 2, na.action = na.fail))
  f2 <- moe_em(tuned ~ stretchratio, data = tonedata, K = 2, seed = 1,
               subset = stretchratio > 1.5)
  expect_identical(nobs(f2), sum(tonedata$stretchratio > 1.5))
})

test_that("variables are found in the calling environment when data is missing", {
  x <- tonedata$stretchratio
  y <- tonedata$tuned
  f <- moe_em(y ~ x, K = 2, seed = 1)
  g <- moe_em(tuned ~ stretchratio, data = tonedata, K = 2, seed = 1)
  expect_equal(as.numeric(logLik(f)), as.numeric(logLik(g)))
})

test_that("a dot in the formula expands over data", {
  d <- data.frame(y = tonedata$tuned, x = tonedata$stretchratio)
  f <- moe_em(y ~ ., data = d, K = 2, seed = 1)
  expect_identical(colnames(f$X), c("(Intercept)", "x"))
  expect_identical(colnames(f$Z), c("(Intercept)", "x"))
})

# ---- offsets -------------------------------------------------------------------------

offset_data <- function(n = 60, seed = 1) {
  set.seed(seed)
  d <- data.frame(x = runif(n), o = rnorm(n, sd = 2))
  d$y <- 1 + 2 * d$x + d$o + rnorm(n, sd = 0.3)
  d
}

test_that("an offset in the expert formula: K = 1 EM equals lm(), in every method", {
  d <- offset_data()
  fit <- moe_em(y ~ x + offset(o), data = d, K = 1)
  ref <- lm(y ~ x + offset(o), data = d)
  expect_equal(unname(coef(fit, matrix = TRUE)$alpha[, 1]), unname(coef(ref)), tolerance = 1e-8)
  expect_equal(as.numeric(logLik(fit)), as.numeric(logLik(ref)), tolerance = 1e-8)
  expect_equal(unname(fitted(fit)), unname(fitted(ref)), tolerance = 1e-8)
  expect_equal(unname(residuals(fit)), unname(residuals(ref)), tolerance = 1e-8)
  expect_identical(fit$offset, d$o)
  # new data: the offset is evaluated in newdata
  nd <- data.frame(x = c(0.2, 0.7), o = c(10, -5))
  mu <- predict(ref, nd)
  s <- sqrt(coef(fit, matrix = TRUE)$sigma2)
  expect_equal(unname(predict(fit, nd)), unname(mu), tolerance = 1e-8)
  expect_equal(unname(predict(fit, nd, type = "expert")[, 1]), unname(mu), tolerance = 1e-8)
  expect_equal(unname(predict(fit, nd, type = "quantile", probs = 0.9)[, 1]),
               unname(qnorm(0.9, mu, s)), tolerance = 1e-8)
  expect_equal(unname(predict(fit, transform(nd, y = c(11, -3)), type = "density", log = TRUE)),
               dnorm(c(11, -3), mu, s, log = TRUE), tolerance = 1e-8)
  expect_equal(unname(predict(fit, nd, type = "density", y = c(11, -3), log = TRUE)),
               unname(outer(unname(mu), c(11, -3), function(m, v) dnorm(v, m, s, log = TRUE))),
               tolerance = 1e-8)
  # simulate() draws around the fitted values including the offset
  sims <- simulate(fit, nsim = 200, seed = 1)
  expect_lt(max(abs(rowMeans(sims) - fitted(ref))), 0.2)
  # a call of the offset (offset(10 * x)) changes the fit, as in lm()
  f10 <- moe_em(y ~ x + offset(10 * x), data = d, K = 1)
  expect_equal(unname(coef(f10)[2]), unname(coef(lm(y ~ x + offset(10 * x), data = d))[2]),
               tolerance = 1e-8)
})

test_that("with an offset, K = 2 EM and MCMC fits equal the fits of y - offset", {
  d <- offset_data(80, seed = 2)
  d$r <- d$y - d$o
  e1 <- moe_em(y ~ x + offset(o), data = d, K = 2, starts = 2, seed = 1)
  e0 <- moe_em(r ~ x, data = d, K = 2, starts = 2, seed = 1)
  expect_equal(coef(e1), coef(e0))
  expect_equal(as.numeric(logLik(e1)), as.numeric(logLik(e0)))
  expect_equal(unname(fitted(e1)), unname(fitted(e0) + d$o))
  expect_equal(residuals(e1), residuals(e0))
  m1 <- moe_mcmc(y ~ x + offset(o), data = d, K = 1, chains = 1, iter = 60, seed = 1,
                 progress = FALSE)
  m0 <- moe_mcmc(r ~ x, data = d, K = 1, chains = 1, iter = 60, seed = 1, progress = FALSE)
  expect_identical(unname(m1$draws), unname(m0$draws))
  nd <- data.frame(x = c(0.2, 0.7), o = c(10, -5))
  expect_equal(unname(predict(m1, nd)), unname(predict(m0, nd) + nd$o))
  expect_equal(unname(predict(m1, nd, type = "quantile", probs = 0.5)),
               unname(predict(m0, nd, type = "quantile", probs = 0.5) + nd$o))
  expect_equal(unname(predict(m1, nd, type = "density", y = 11)),
               unname(cbind(predict(m0, nd, type = "density", y = 11 - nd$o)[cbind(1:2, 1:2)])))
  expect_equal(unname(log_lik(m1, newdata = transform(nd, y = c(11, -3)))),
               unname(log_lik(m0, newdata = transform(nd, r = c(11, -3) - nd$o))))
  expect_equal(unname(fitted(m1)), unname(fitted(m0) + d$o))
  # the K = 1 posterior mean is close to the maximum likelihood estimate
  e <- moe_em(y ~ x + offset(o), data = d, K = 1)
  expect_equal(unname(coef(m1)[1:2]), unname(coef(e)[1:2]), tolerance = 0.05)
  # least squares
  l1 <- moe_ls(y ~ x + offset(o), data = d, K = 1)
  expect_equal(unname(coef(l1)[1:2]), unname(coef(lm(y ~ x + offset(o), data = d))),
               tolerance = 1e-6)
  expect_equal(unname(predict(l1, nd)),
               unname(predict(lm(y ~ x + offset(o), data = d), nd)), tolerance = 1e-6)
})

test_that("offsets in the gating formula are refused; the default gating drops them", {
  d <- offset_data()
  expect_snapshot(moe_em(y ~ x, gating = ~ x + offset(x), data = d, K = 2), error = TRUE)
  expect_error(moe_mcmc(y ~ x, gating = ~ offset(o), data = d, K = 2),
               class = "bayesmoe_error_formula")
  expect_error(moe_ls(y ~ x, gating = ~ x + offset(o), data = d, K = 2),
               class = "bayesmoe_error_formula")
  fit <- moe_em(y ~ x + offset(o), data = d, K = 2, starts = 1, seed = 1)
  expect_identical(colnames(fit$Z), c("(Intercept)", "x"))
  expect_identical(colnames(moe_em(y ~ offset(o), data = d, K = 1)$Z), "(Intercept)")
  expect_snapshot(moe_em(y ~ x + offset(o * Inf), data = d, K = 1), error = TRUE)
  expect_snapshot(density_loss(fit, moe_truth_example("p4")), error = TRUE)
  expect_snapshot(predict(fit, data.frame(x = 1, o = Inf)), error = TRUE)
})

test_that("messages name missing responses and unseen factor levels", {
  set.seed(3)
  d <- data.frame(x = runif(30), f = factor(sample(c("a", "b"), 30, TRUE)))
  d$y <- d$x + rnorm(30)
  expect_snapshot(moe_em(y ~ x, data = within(d, y[3] <- NA), K = 1, na.action = na.pass),
                  error = TRUE)
  expect_snapshot(moe_em(y ~ x, data = within(d, { y[3] <- NA; y[4] <- Inf }), K = 1,
                         na.action = na.pass), error = TRUE)
  fit <- moe_em(y ~ x + f, data = d, K = 1)
  expect_snapshot(predict(fit, data.frame(x = 1, f = c("c", "a", "d"))), error = TRUE)
  expect_snapshot(predict(fit, data.frame(x = 1)), error = TRUE)
})

test_that("more parameters than usable rows are warned of, ten times more refused", {
  set.seed(8)
  d <- data.frame(x = runif(100))
  d$y <- d$x + rnorm(100)
  w <- character()
  withCallingHandlers(moe_em(y ~ x, data = d, K = 50, starts = 1, seed = 1,
                             control = moe_em_control(maxit = 20)),
                      warning = function(c) {
                        w <<- c(w, class(c)[1L])
                        invokeRestart("muffleWarning")
                      })
  expect_identical(w[1L], "bayesmoe_warning_overparameterised")
  expect_snapshot(moe_em(y ~ x, data = d, K = 2, expert = expert_ffn(hidden = 500)),
                  error = TRUE)
  fr <- list(X = cbind("(Intercept)" = 1, x = d$x), Z = cbind("(Intercept)" = 1, x = d$x),
             weights = rep(1, 100))
  expect_snapshot(check_npar(gate_softmax(), expert_linear(), 50, fr, "mcmc"))
  expect_snapshot(check_npar(gate_softmax(), expert_linear(), 50, fr, "em"))
  expect_snapshot(check_npar(gate_softmax(), expert_ffn(hidden = 500), 2, fr, "mcmc"),
                  error = TRUE)
  expect_identical(check_npar(gate_softmax(), expert_linear(), 2, fr, "mcmc"), 8L)
  expect_identical(check_npar(gate_topk(2), expert_linear(), 3, fr, "em"),
                   length(par_names(colnames(fr$X), colnames(fr$Z), 3,
                                    make_spec(gate_topk(2), expert_linear()))))
})
