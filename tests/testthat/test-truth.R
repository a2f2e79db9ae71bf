p4 <- function() moe_truth_example("p4")

test_that("moe_truth() stores the parameters with the last expert as reference", {
  tru <- moe_truth(beta0 = -8, beta1 = 25, a = c(-20, 20), b = c(15, -5), sigma = c(0.3, 0.4))
  expect_s3_class(tru, "moe_truth")
  expect_equal(tru$K, 2L)
  expect_equal(tru$d, 1L)
  expect_equal(unname(tru$beta0), c(-8, 0))
  expect_equal(unname(tru$beta1[1, ]), c(25, 0))
  expect_equal(unname(tru$sigma2), c(0.09, 0.16))
  expect_equal(tru, p4())
})

test_that("a non-zero last gating vector is re-referenced (same model)", {
  a <- moe_truth(beta0 = c(-6, 2), beta1 = c(30, 5), a = c(-20, 20), b = c(15, -5),
                 sigma = c(0.3, 0.4))
  expect_equal(a, p4())
})

test_that("several covariates and experts are supported", {
  tru <- moe_truth(beta0 = c(0.3, 0.5), beta1 = cbind(c(1, -1), c(1, 0.5)),
                   a = cbind(c(1.5, 0.9), c(0.6, 0.5), c(1.1, -0.3)),
                   b = c(0.5, 0.5, 0.5), sigma = c(0.9, 0.5, 1.2))
  expect_equal(tru$d, 2L)
  expect_equal(tru$K, 3L)
  expect_equal(tru$xnames, c("x1", "x2"))
  expect_equal(unname(tru$beta1[, 3]), c(0, 0))
  one <- moe_truth(beta0 = numeric(0), beta1 = numeric(0), a = 2, b = 1, sigma = 1)
  expect_equal(one$K, 1L)
  expect_equal(unname(one$beta0), 0)
})

test_that("rmoe() is reproducible and follows the truth", {
  tru <- p4()
  set.seed(11)
  a <- rmoe(20000, tru)
  set.seed(11)
  b <- rmoe(20000, tru)
  expect_identical(a, b)
  expect_named(a, c("x", "y"))
  expect_true(all(a$x >= 0 & a$x <= 1))
  k <- attr(a, "expert")
  g1 <- plogis(-8 + 25 * a$x)
  # expert frequencies match the gating probabilities (binomial s.e. ~ 0.0034)
  expect_lt(abs(mean(k == 1) - mean(g1)), 0.015)
  # residuals inside each expert have the true noise s.d.
  r1 <- a$y[k == 1] - (15 - 20 * a$x[k == 1])
  r2 <- a$y[k == 2] - (-5 + 20 * a$x[k == 2])
  expect_equal(sd(r1), 0.3, tolerance = 0.03)
  expect_equal(sd(r2), 0.4, tolerance = 0.03)
  expect_lt(abs(mean(r1)), 0.02)
})

test_that("rmoe() designs: grid, given x, several covariates", {
  tru <- p4()
  set.seed(2)
  g <- rmoe(11, tru, x_design = "grid")
  expect_equal(g$x, seq(0, 1, length.out = 11))
  x <- c(0.1, 0.5, 0.9)
  set.seed(3)
  s <- rmoe(truth = tru, x = x)
  expect_equal(s$x, x)
  tru2 <- moe_truth(beta0 = 1, beta1 = cbind(c(2, -2)), a = cbind(c(1, 1), c(-1, 0)),
                    b = c(0, 1), sigma = c(1, 1))
  set.seed(4)
  s2 <- rmoe(50, tru2)
  expect_named(s2, c("x1", "x2", "y"))
  expect_equal(nrow(s2), 50L)
})

test_that("moe_truth(fit) recovers the parameters of an EM fit", {
  tru <- p4()
  set.seed(5)
  sim <- rmoe(600, tru)
  fit <- moe_em(y ~ x, data = sim, K = 2, starts = 2, seed = 1)
  tf <- moe_truth(fit)
  cf <- coef(fit, matrix = TRUE)
  expect_equal(unname(tf$b), unname(cf$alpha["(Intercept)", ]))
  expect_equal(unname(tf$a[1, ]), unname(cf$alpha["x", ]))
  expect_equal(unname(tf$beta0), unname(cf$W["(Intercept)", ]))
  expect_equal(unname(tf$sigma2), unname(cf$sigma2))
  # the same conditional model: identical predictive means
  nd <- data.frame(x = c(0.1, 0.4, 0.8))
  D <- cbind(1, nd$x)
  expect_equal(unname(bayesmoe:::predict_par(bayesmoe:::truth_par(tf), list(X = D, Z = D),
                                             "mean", K = 2)),
               unname(predict(fit, nd)))
})

# An EM fit turned into an object with the documented structure of an MCMC
# fit (the fields validate_moe_fit() checks) with hand-made draws.
fake_mcmc <- function(fit, iter = 4, chains = 2, sd = 0.01) {
  th <- coef(fit)
  P <- length(th)
  dr <- array(rep(th, each = iter * chains), c(iter, chains, P))
  dr <- dr + array(rnorm(iter * chains * P, sd = sd), dim(dr))
  dimnames(dr) <- list(NULL, NULL, names(th))
  f <- unclass(fit)
  f[c("draws", "loglik_draws", "chains", "iter", "warmup", "thin")] <-
    list(dr, matrix(0, iter, chains), chains, iter, 0L, 1L)
  structure(f, class = c("moe_mcmc", "moe_fit"))
}

test_that("moe_truth(fit, draw) takes one posterior draw", {
  set.seed(6)
  sim <- rmoe(400, p4())
  fit <- moe_em(y ~ x, data = sim, K = 2, starts = 2, seed = 1)
  mc <- fake_mcmc(fit)
  th <- mc$draws[3, 2, ]  # draw 7 = iteration 3 of chain 2
  tr <- moe_truth(mc, draw = 7)
  expect_equal(unname(tr$b[1]), unname(th["expert1:(Intercept)"]))
  expect_equal(unname(tr$a[1, 2]), unname(th["expert2:x"]))
  expect_equal(unname(tr$sigma2[2]), unname(th["expert2:sigma2"]))
  expect_equal(unname(tr$beta1[1, 1]), unname(th["gate1:x"]))
})

test_that("print() of a truth", {
  expect_snapshot(print(p4()))
  expect_snapshot(print(moe_truth(beta0 = c(0.3, 0.5), beta1 = cbind(c(1, -1), c(1, 0.5)),
                                  a = cbind(c(1.5, 0.9), c(0.6, 0.5), c(1.1, -0.3)),
                                  b = c(0.5, 0.5, 0.5), sigma = c(0.9, 0.5, 1.2))))
})

test_that("errors of moe_truth(), moe_truth_example() and rmoe()", {
  set.seed(7)
  sim <- rmoe(200, p4())
  fit1 <- moe_em(y ~ x, data = sim, K = 2, gating = ~ 1, starts = 1, seed = 1)
  fit <- moe_em(y ~ x, data = sim, K = 2, starts = 1, seed = 1)
  expect_snapshot(error = TRUE, {
    moe_truth(beta0 = -8, beta1 = 25, a = c(-20, 20), b = c(15, -5))
    moe_truth(beta0 = -8, beta1 = 25, a = c(-20, 20), b = c(15, -5), sigma = c(0.3, -1))
    moe_truth(beta0 = -8, beta1 = 25, a = c(-20, 20, 1), b = c(15, -5), sigma = c(0.3, 0.4))
    moe_truth(beta0 = c(1, 2, 3), beta1 = 25, a = c(-20, 20), b = c(15, -5), sigma = c(0.3, 0.4))
    moe_truth(beta0 = -8, beta1 = matrix(1, 2, 1), a = c(-20, 20), b = c(15, -5),
              sigma = c(0.3, 0.4))
    moe_truth(beta0 = -8, beta1 = 25, a = c(-20, NA), b = c(15, -5), sigma = c(0.3, 0.4))
    moe_truth(beta0 = "a", beta1 = 25, a = c(-20, 20), b = c(15, -5), sigma = c(0.3, 0.4))
    moe_truth(beta0 = -8, beta1 = 25, a = c(-20, 20), b = matrix(1, 2, 2), sigma = c(0.3, 0.4))
    moe_truth(beta0 = -8, beta1 = 25, a = c(-20, 20), b = c(15, -5), sigma = c(0.3, 0.4),
              draw = 1)
    moe_truth(fit, sigma = 1)
    moe_truth(fit, draw = 2)
    moe_truth(fit1)
    moe_truth_example("lambda")
    rmoe(10, list())
    rmoe(truth = p4())
    rmoe(0, p4())
    rmoe(10, p4(), x_design = "sobol")
    rmoe(3, p4(), x = c(0.1, 0.2))
    rmoe(2, p4(), x = matrix(0.5, 2, 2))
    rmoe(2, p4(), x = c(0.1, Inf))
  })
  mc <- fake_mcmc(fit)
  expect_snapshot(error = TRUE, {
    moe_truth(mc)
    moe_truth(mc, draw = 9)
  })
  tru2 <- moe_truth(beta0 = 1, beta1 = cbind(c(2, -2)), a = cbind(c(1, 1), c(-1, 0)),
                    b = c(0, 1), sigma = c(1, 1))
  expect_snapshot(error = TRUE, rmoe(10, tru2, x_design = "grid"))
  expect_error(moe_truth(beta0 = -8, beta1 = 25, a = c(-20, 20), b = c(15, -5),
                         sigma = c(0.3, -1)), class = "bayesmoe_error_input")
})

test_that("truths with FFN experts: canonical parameters, printing, simulation", {
  set.seed(4)
  ex <- expert_ffn(1)
  eta <- cbind(c(2, 0.5, 1.5, -0.5), c(3, -1, -1, 0.5))   # expert 2 sign-flipped
  tru <- moe_truth(beta0 = 0.5, beta1 = 3, eta = eta, sigma = c(0.1, 0.2), expert = ex)
  expect_null(tru$a)
  expect_null(tru$b)
  expect_identical(tru$expert, ex)
  expect_equal(unname(tru$eta[, 2]), c(-3, 1, 1, 0.5))
  expect_equal(rownames(tru$eta), c("A[1,x]", "d[1]", "c[1]", "e"))
  expect_null(tru$sd)
  expect_snapshot(print(tru))
  # the mixture density: the expert that generated each y and its network mean
  sim <- rmoe(5000, tru)
  k <- attr(sim, "expert")
  X <- cbind("(Intercept)" = 1, x = sim$x)
  m <- bayesmoe:::expert_mean(ex, X, tru$eta)
  r <- sim$y - m[cbind(seq_along(k), k)]
  expect_equal(sd(r[k == 1]), 0.1, tolerance = 0.05)
  expect_equal(sd(r[k == 2]), 0.2, tolerance = 0.05)
  expect_lt(abs(mean(k == 1) - mean(plogis(0.5 + 3 * sim$x))), 0.025)
  # the plain expert tanh network by hand
  expect_equal(m[, 1], 1.5 * tanh(2 * sim$x + 0.5) - 0.5)
  lin <- moe_truth(beta0 = -8, beta1 = 25, a = c(-20, 20), b = c(15, -5), sigma = c(0.3, 0.4),
                   sd = 0.35)
  expect_equal(lin$sd, 0.35)
  expect_output(print(lin), "regression form: 0.35")
})

test_that("errors of truths with FFN experts", {
  set.seed(5)
  eta <- cbind(c(2, 0.5, 1.5, -0.5), c(3, -1, -1, 0.5))
  sim <- rmoe(200, p4())
  fit <- suppressWarnings(moe_em(y ~ x, data = sim, K = 2, expert = expert_ffn(1), starts = 1,
                                 seed = 1, control = moe_em_control(maxit = 20)))
  expect_snapshot(error = TRUE, {
    moe_truth(beta0 = 0, beta1 = 1, a = 1:2, b = 1:2, sigma = c(1, 1), expert = "ffn")
    moe_truth(beta0 = 0, beta1 = 1, a = 1:2, b = 1:2, sigma = c(1, 1), eta = eta)
    moe_truth(beta0 = 0, beta1 = 1, a = 1:2, eta = eta, sigma = c(1, 1), expert = expert_ffn(1))
    moe_truth(beta0 = 0, beta1 = 1, sigma = c(1, 1), expert = expert_ffn(1))
    moe_truth(beta0 = 0, beta1 = 1, eta = eta, sigma = c(1, 1), expert = expert_ffn(2))
    moe_truth(beta0 = 0, beta1 = 1, a = 1:2, b = 1:2, sigma = c(1, 1), sd = -1)
    moe_truth(fit)
  })
})

test_that("truth parameters are bounded like the prior settings", {
  targs <- list(beta0 = -8, beta1 = 25, a = c(-20, 20), b = c(15, -5), sigma = c(0.3, 0.4))
  tr <- function(...) do.call(moe_truth, utils::modifyList(targs, list(...)))
  expect_snapshot(tr(sigma = c(1e300, 1)), error = TRUE)
  expect_snapshot(tr(sigma = c(1e-300, 1)), error = TRUE)
  expect_snapshot(tr(b = c(1e200, 1)), error = TRUE)
  expect_error(tr(a = c(-1e101, 1)), class = "bayesmoe_error_input")
  expect_error(tr(beta1 = 1e101), class = "bayesmoe_error_input")
  expect_error(tr(beta0 = -1e101), class = "bayesmoe_error_input")
  expect_error(moe_truth(beta0 = 0, beta1 = 1, eta = matrix(c(1e200, 0, 0, 0, 0), 5, 2),
                         sigma = c(1, 1), expert = expert_ffn(1)),
               class = "bayesmoe_error_input")
  # at the bounds: finite simulations
  set.seed(1)
  big <- tr(sigma = c(1e50, 1), a = c(1e100, 1), b = c(-1e100, 0))
  expect_true(all(is.finite(rmoe(50, big)$y)))
  expect_true(is.finite(density_loss(moe_truth_example("p4"), big)))
})
