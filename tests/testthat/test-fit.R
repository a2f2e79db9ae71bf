test_that("the parameter vector round-trips", {
  set.seed(1)
  par <- list(alpha = matrix(rnorm(6), 2, 3), sigma2 = c(1, 2, 3),
              W = cbind(matrix(rnorm(4), 2), 0))
  th <- bayesmoe:::par_flatten(par)
  expect_length(th, 3 * 3 + 2 * 2)
  back <- bayesmoe:::par_unflatten(th, 2, 2, 3)
  expect_equal(bayesmoe:::user_par(back), par)
  expect_identical(back$spec, bayesmoe:::make_spec(gate_softmax(), expert_linear()))
  expect_identical(bayesmoe:::par_names(c("a", "b"), "c", 2),
                   c("expert1:a", "expert1:b", "expert1:sigma2",
                     "expert2:a", "expert2:b", "expert2:sigma2", "gate1:c"))
})

test_that("log-softmax is finite for logits of +-1e4", {
  eta <- rbind(c(1e4, 0, -1e4), c(0, 0, 0), c(-1e4, -1e4, 0))
  ls <- bayesmoe:::log_softmax_rows(eta)
  expect_false(anyNA(ls))
  expect_equal(ls[1, 1:2], c(0, -1e4))
  expect_equal(rowSums(exp(ls)), c(1, 1, 1))
  expect_equal(ls[2, ], rep(-log(3), 3))
})

test_that("the C log-likelihood pass equals the R reference, also for huge logits", {
  set.seed(2)
  n <- 50
  X <- cbind(1, runif(n))
  Z <- cbind(1, rnorm(n))
  y <- rnorm(n)
  w <- runif(n)
  for (scale in c(1, 1e4)) {
    par <- list(alpha = matrix(rnorm(6), 2), sigma2 = c(0.5, 1, 2),
                W = cbind(scale * matrix(rnorm(4), 2), 0))
    ref <- sum(w * bayesmoe:::moe_log_density(par, X, Z, y))
    got <- .Call(bayesmoe:::ffi_loglik, y, X, Z, w, par$alpha, par$sigma2, par$W)
    expect_equal(got, ref, tolerance = 1e-12)
    es <- .Call(bayesmoe:::ffi_estep, y, X, Z, w, par$alpha, par$sigma2, par$W)
    expect_equal(es$resp, bayesmoe:::responsibilities(par, X, Z, y), tolerance = 1e-12)
    expect_false(anyNA(es$resp))
  }
})

test_that("BIC() of a weighted fit counts the frequency weights, as the expanded data", {
  set.seed(3)
  d <- data.frame(x = runif(40))
  d$y <- 1 + 2 * d$x + rnorm(40, sd = 0.3)
  w <- rep(c(1, 2, 3, 0), 10)
  long <- d[rep(seq_len(40), w), ]
  fw <- moe_em(y ~ x, data = d, K = 1, weights = w)
  fl <- moe_em(y ~ x, data = long, K = 1)
  expect_equal(as.numeric(logLik(fw)), as.numeric(logLik(fl)), tolerance = 1e-10)
  expect_equal(attr(logLik(fw), "nobs"), 60)
  expect_equal(BIC(fw), BIC(fl), tolerance = 1e-10)
  expect_equal(AIC(fw), AIC(fl), tolerance = 1e-10)
  # nobs() still counts the rows that enter the fit
  expect_equal(nobs(fw), 30L)
  mc <- moe_mcmc(y ~ x, data = d, K = 1, weights = w, chains = 1, iter = 50, seed = 1,
                 progress = FALSE)
  expect_equal(attr(logLik(mc), "nobs"), 60)
  expect_equal(BIC(mc), -2 * as.numeric(logLik(mc)) + log(60) * 3)
  ls <- moe_ls(y ~ x, data = d, K = 1, weights = w)
  expect_equal(attr(logLik(ls), "nobs"), 60)
})
