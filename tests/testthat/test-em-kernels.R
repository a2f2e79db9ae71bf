# Plain-R reference implementations of the C kernels of the EM fit
# (src/em_fused.c, src/gate.c), compared on edge cases, and properties of the
# fused EM loop: monotone log-likelihood, K = 1 equals lm(), agreement with a
# plain-R EM iteration by iteration.

lse_rows <- function(M) {
  mx <- apply(M, 1L, max)
  out <- mx + log(rowSums(exp(M - mx)))
  out[!is.finite(mx)] <- mx[!is.finite(mx)]
  out
}

log_softmax <- function(eta) eta - lse_rows(eta)

# E-step: responsibilities and per-observation log-likelihood
ref_estep <- function(y, X, Z, alpha, sigma2, W) {
  K <- length(sigma2)
  logg <- log_softmax(Z %*% W)
  mu <- X %*% alpha
  l <- logg + vapply(seq_len(K), function(k)
    dnorm(y, mu[, k], sqrt(sigma2[k]), log = TRUE), numeric(length(y)))
  ll <- lse_rows(l)
  resp <- exp(l - ll)
  bad <- !is.finite(ll)
  resp[bad, ] <- 1 / K
  list(resp = resp, loglik_i = ll, log_gate = logg, mean = mu)
}

c_estep <- function(y, X, Z, alpha, sigma2, W) {
  .Call(ffi_estep, y, X, Z, rep(1, length(y)), alpha, sigma2, W)
}

# One damped Newton step on sum_i w_i sum_k R_ik log g_ik(W) - ridge/2 |W|^2
ref_gate_newton <- function(Z, w, R, W, ridge) {
  K <- ncol(R)
  q <- ncol(Z)
  m <- (K - 1L) * q
  Q <- function(W) {
    term <- w * R * log_softmax(Z %*% W)
    sum(term[R > 0 & w > 0]) - 0.5 * ridge * sum(W^2)
  }
  P <- exp(log_softmax(Z %*% W))
  g <- as.vector(crossprod(Z, w * (R - P))[, -K, drop = FALSE]) - ridge * as.vector(W[, -K])
  H <- matrix(0, m, m)
  for (k in seq_len(K - 1L)) for (l in seq_len(K - 1L)) {
    H[(k - 1L) * q + seq_len(q), (l - 1L) * q + seq_len(q)] <-
      crossprod(Z, w * P[, k] * ((k == l) - P[, l]) * Z)
  }
  delta <- solve(H + ridge * diag(m), g)
  Q0 <- Q(W)
  if (!(sum(g * delta) > 1e-13 * (1 + abs(Q0)))) return(W)
  t <- 1
  for (h in 1:20) {
    Wn <- W
    Wn[, -K] <- W[, -K] + t * delta
    Qn <- Q(Wn)
    if (is.finite(Qn) && Qn >= Q0 - 1e-13 * (1 + abs(Q0))) return(Wn)
    t <- t / 2
  }
  W
}

c_gate_newton <- function(Z, w, R, W, ridge) {
  n <- nrow(Z)
  .Call(ffi_gate_newton, rep(0, n), matrix(1, n, 1), Z, w, R, W, ridge)
}

# The EM of moe_em_run(): an M-step from R0, then E-step / M-step, with one
# gating Newton step per M-step. Returns the log-likelihood trace.
ref_em <- function(y, X, Z, w, R0, maxit, min_size, var_floor = 1e-6, ridge = 0) {
  K <- ncol(R0)
  alpha <- matrix(0, ncol(X), K)
  sigma2 <- rep(1, K)
  W <- matrix(0, ncol(Z), K)
  R <- R0
  trace <- numeric(maxit)
  for (it in seq_len(maxit)) {
    for (k in seq_len(K)) {
      v <- w * R[, k]
      if (sum(v) >= min_size) {
        alpha[, k] <- solve(crossprod(X, v * X), crossprod(X, v * y))
        sigma2[k] <- max(sum(v * (y - X %*% alpha[, k])^2) / sum(v), var_floor)
      }
    }
    if (K > 1L) W <- ref_gate_newton(Z, w, R, W, ridge)
    e <- ref_estep(y, X, Z, alpha, sigma2, W)
    R <- e$resp
    trace[it] <- sum((w * e$loglik_i)[w > 0])
  }
  list(trace = trace, alpha = alpha, sigma2 = sigma2, W = W, resp = R)
}

c_em <- function(y, X, Z, w, R0, maxit, min_size, var_floor = 1e-6, ridge = 0,
                 gate_steps = 1L, tol = 1e-300, sep_bound = Inf) {
  .Call(ffi_em, y, X, Z, w, R0, matrix(0, ncol(X), ncol(R0)),
        c(maxit, tol, var_floor, min_size, gate_steps, ridge, sep_bound, 1),
        gate_c(gate_softmax(), ncol(R0)), expert_c(expert_linear()), NULL)
}

sim_moe_data <- function(n, K, d, noise = 0.3) {
  x <- matrix(rnorm(n * d), n, d)
  X <- cbind(1, x)
  W <- cbind(matrix(rnorm((d + 1) * (K - 1), sd = 1.5), d + 1), 0)
  eta <- X %*% W
  g <- exp(eta - lse_rows(eta))
  z <- vapply(seq_len(n), function(i) sample.int(K, 1L, prob = g[i, ]), 0L)
  alpha <- matrix(rnorm((d + 1) * K, sd = 2), d + 1)
  y <- rowSums(X * t(alpha)[z, , drop = FALSE]) + rnorm(n, sd = noise)
  list(y = y, X = X, z = z)
}

soft_start <- function(lab, K) {
  R0 <- matrix(0.1 / max(K - 1, 1), length(lab), K)
  R0[cbind(seq_along(lab), lab)] <- if (K > 1) 0.9 else 1
  R0
}

test_that("E-step matches plain R, with huge logits, -Inf log weights and n < K", {
  set.seed(101)
  n <- 30
  X <- cbind(1, rnorm(n))
  Z <- cbind(1, rnorm(n))
  y <- rnorm(n)
  alpha <- matrix(c(0, 1, 1, -1, -1, 0.5), 2)
  sigma2 <- c(0.5, 1, 2)
  for (W in list(
    matrix(c(0.3, -1, 1, 0.5, 0, 0), 2),          # ordinary
    matrix(c(1e4, 0, -1e4, 0, 0, 0), 2),          # logits of +-1e4
    matrix(c(0, 1e4, 0, -1e4, 0, 0), 2)           # +-1e4 times a covariate
  )) {
    got <- c_estep(y, X, Z, alpha, sigma2, W)
    want <- ref_estep(y, X, Z, alpha, sigma2, W)
    expect_false(anyNA(got$resp))
    expect_equal(rowSums(got$resp), rep(1, n), tolerance = 1e-14)
    expect_equal(got$resp, want$resp, tolerance = 1e-12)
    expect_equal(got$loglik_i, want$loglik_i, tolerance = 1e-12)
    expect_equal(got$log_gate, want$log_gate, tolerance = 1e-12)
  }
  # a gating weight of exactly zero: log g = -Inf, responsibility 0
  Z1 <- matrix(1, n, 1)
  W <- matrix(c(-Inf, 0, 0), 1)
  got <- c_estep(y, X, Z1, alpha, sigma2, W)
  want <- ref_estep(y, X, Z1, alpha, sigma2, W)
  expect_true(all(got$log_gate[, 1] == -Inf))
  expect_true(all(got$resp[, 1] == 0))
  expect_equal(got$resp, want$resp, tolerance = 1e-12)
  expect_equal(got$loglik_i, want$loglik_i, tolerance = 1e-12)
  # no finite term: responsibilities 1 / K and log-likelihood -Inf
  got <- c_estep(c(1e200, y[-1]), X, Z, alpha, c(1e-300, 1e-300, 1e-300),
                 matrix(0, 2, 3))
  expect_equal(got$resp[1, ], rep(1 / 3, 3))
  expect_identical(got$loglik_i[1], -Inf)
  # fewer observations than experts
  got <- c_estep(y[1:2], X[1:2, ], Z[1:2, ], cbind(alpha, 0), c(sigma2, 1),
                 cbind(matrix(c(0.3, -1, 1, 0.5, 2, 2), 2), 0))
  want <- ref_estep(y[1:2], X[1:2, ], Z[1:2, ], cbind(alpha, 0), c(sigma2, 1),
                    cbind(matrix(c(0.3, -1, 1, 0.5, 2, 2), 2), 0))
  expect_equal(got$resp, want$resp, tolerance = 1e-12)
  expect_equal(got$loglik_i, want$loglik_i, tolerance = 1e-12)
})

test_that("one gating Newton step matches plain R", {
  set.seed(102)
  n <- 200
  Z <- cbind(1, rnorm(n), runif(n))
  w <- rexp(n)
  w[1:5] <- 0
  R <- matrix(runif(n * 3), n, 3)
  R <- R / rowSums(R)
  R[6, ] <- c(1, 0, 0)
  cases <- list(
    list(W = matrix(0, 3, 3), ridge = 0),
    list(W = cbind(matrix(c(0.5, -1, 2, -0.5, 1, 0), 3), 0), ridge = 0),
    list(W = cbind(matrix(c(0.5, -1, 2, -0.5, 1, 0), 3), 0), ridge = 0.5),
    # saturated gating: logits of order 1e4, the Hessian nearly vanishes
    list(W = cbind(matrix(c(1e4, 0, 0, -1e4, 0, 0), 3), 0), ridge = 1)
  )
  for (cs in cases) {
    got <- c_gate_newton(Z, w, R, cs$W, cs$ridge)
    want <- ref_gate_newton(Z, w, R, cs$W, cs$ridge)
    expect_equal(got$W, want, tolerance = 1e-10)
    expect_true(all(got$W[, 3] == 0))
  }
  # a saturated start on the wrong side: the full step overshoots and is
  # halved (to t = 1/4 with this seed)
  zz <- rnorm(100)
  Zh <- cbind(1, zz)
  Rh <- cbind(plogis(-zz), plogis(zz))
  got <- c_gate_newton(Zh, rep(1, 100), Rh, cbind(c(0, 5), 0), 0)
  want <- ref_gate_newton(Zh, rep(1, 100), Rh, cbind(c(0, 5), 0), 0)
  expect_equal(got$W, want, tolerance = 1e-10)
  # fewer observations than experts: a ridge keeps the Hessian definite
  Zs <- Z[1:2, 1:2]
  Rs <- rbind(c(0.7, 0.1, 0.1, 0.1), c(0.1, 0.1, 0.2, 0.6))
  got <- c_gate_newton(Zs, c(1, 2), Rs, matrix(0, 2, 4), 0.1)
  want <- ref_gate_newton(Zs, c(1, 2), Rs, matrix(0, 2, 4), 0.1)
  expect_equal(got$W, want, tolerance = 1e-10)
  expect_identical(got$status, 0L)
})

test_that("the fused EM equals a plain-R EM iteration by iteration", {
  set.seed(103)
  for (cs in list(list(K = 2, d = 1, same = TRUE), list(K = 3, d = 2, same = TRUE),
                  list(K = 3, d = 2, same = FALSE), list(K = 4, d = 1, same = FALSE))) {
    s <- sim_moe_data(300, cs$K, cs$d)
    Z <- if (cs$same) s$X else s$X[, 1:2, drop = FALSE]
    w <- rexp(300)
    w[1:3] <- 0
    lab <- ((seq_len(300) + sample.int(3, 300, replace = TRUE)) %% cs$K) + 1L
    R0 <- soft_start(ifelse(runif(300) < 0.5, s$z, lab), cs$K)
    got <- c_em(s$y, s$X, Z, w, R0, maxit = 8, min_size = 3)
    want <- ref_em(s$y, s$X, Z, w, R0, maxit = 8, min_size = 3)
    expect_equal(got$trace, want$trace, tolerance = 1e-10)
    expect_equal(got$alpha, want$alpha, tolerance = 1e-8)
    expect_equal(got$sigma2, want$sigma2, tolerance = 1e-8)
    expect_equal(got$W, want$W, tolerance = 1e-8)
    expect_equal(got$resp, want$resp, tolerance = 1e-8)
  }
})

test_that("the fused EM handles a near-exact expert (residual sum of squares recomputed)", {
  set.seed(104)
  s <- sim_moe_data(200, 2, 1, noise = 1e-5)
  R0 <- soft_start(s$z, 2)
  got <- c_em(s$y, s$X, s$X, rep(1, 200), R0, maxit = 5, min_size = 3, var_floor = 1e-14)
  want <- ref_em(s$y, s$X, s$X, rep(1, 200), R0, maxit = 5, min_size = 3, var_floor = 1e-14)
  expect_equal(got$sigma2, want$sigma2, tolerance = 1e-6)
  expect_equal(got$trace, want$trace, tolerance = 1e-9)
})

test_that("the same gating and expert design, passed as one or as two, give one fit", {
  set.seed(105)
  s <- sim_moe_data(400, 3, 2)
  R0 <- soft_start(s$z, 3)
  a <- c_em(s$y, s$X, s$X, rep(1, 400), R0, maxit = 15, min_size = 4)
  Zp <- s$X[, c(2, 1, 3)]  # the same columns in another order: a second copy
  b <- c_em(s$y, s$X, Zp, rep(1, 400), R0, maxit = 15, min_size = 4)
  expect_equal(a$trace, b$trace, tolerance = 1e-10)
  expect_equal(a$W, b$W[c(2, 1, 3), ], tolerance = 1e-7)
})

test_that("EM log-likelihood never decreases and K = 1 equals lm()", {
  set.seed(106)
  for (cs in list(c(K = 2, d = 1), c(K = 3, d = 2), c(K = 4, d = 3), c(K = 5, d = 1))) {
    s <- sim_moe_data(500, cs[["K"]], cs[["d"]], noise = 0.5)
    colnames(s$X) <- c("(Intercept)", paste0("x", seq_len(cs[["d"]])))
    for (gs in 1:2) {
      fit <- moe_em_fit(s$y, s$X, s$X, K = cs[["K"]], starts = 3,
                        control = moe_em_control(gate_steps = gs, tol = 1e-10))
      expect_false("decrease" %in% bayesmoe:::decode_status(fit$status))
      tr <- fit$trace
      expect_true(all(diff(tr) >= -1e-9 * abs(tr[-1])))
    }
  }
  s <- sim_moe_data(100, 1, 2)
  colnames(s$X) <- c("(Intercept)", "x1", "x2")
  w <- rexp(100)
  fit <- moe_em_fit(s$y, s$X, s$X[, 1, drop = FALSE], w = w, K = 1, starts = 1)
  ols <- lm.wfit(s$X, s$y, w)
  expect_equal(as.vector(fit$par$alpha), unname(ols$coefficients), tolerance = 1e-10)
  expect_equal(fit$par$sigma2, sum(w * ols$residuals^2) / sum(w), tolerance = 1e-10)
  expect_identical(fit$iter, 2L)
})
