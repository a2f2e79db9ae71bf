# Plain-R reference of one FFN expert: theta = (A (H x D, column-major), d, c, e).
ffn_mean_r <- function(X, theta, H, act = "tanh") {
  D <- ncol(X)
  A <- matrix(theta[seq_len(H * D)], H, D)
  d <- theta[H * D + seq_len(H)]
  cc <- theta[H * D + H + seq_len(H)]
  e <- theta[H * D + 2 * H + 1]
  U <- X %*% t(A) + rep(d, each = nrow(X))
  Fm <- switch(act, tanh = tanh(U), sigmoid = plogis(U), gelu = U * pnorm(U))
  drop(Fm %*% cc + e)
}

num_jacobian <- function(f, theta, h = 1e-6) {
  vapply(seq_along(theta), function(j) {
    e <- replace(numeric(length(theta)), j, h)
    (f(theta + e) - f(theta - e)) / (2 * h)
  }, numeric(length(f(theta))))
}

# A curved two-expert truth: a sine-shaped and a tanh-shaped expert.
curved_data <- function(n, seed) {
  set.seed(seed)
  x <- runif(n, -1, 1)
  first <- runif(n) < plogis(6 * x)
  y <- ifelse(first, sin(3 * x) + 1, 2 * tanh(3 * x) - 1) + rnorm(n, sd = 0.15)
  data.frame(x = x, y = y)
}

test_that("the FFN mean and its Jacobian match plain R for every activation", {
  set.seed(11)
  n <- 37
  D <- 2
  H <- 3
  X <- matrix(rnorm(n * D, sd = 2), n, D)
  P <- H * D + 2 * H + 1
  theta <- rnorm(P)
  for (act in c("tanh", "sigmoid", "gelu")) {
    code <- match(act, c("tanh", "sigmoid", "gelu")) - 1L
    r <- .Call(bayesmoe:::ffi_ffn_eval, X, theta, 3L, code, TRUE)
    expect_equal(drop(r$mean), ffn_mean_r(X, theta, H, act), tolerance = 1e-13)
    Jn <- num_jacobian(function(t) ffn_mean_r(X, t, H, act), theta)
    expect_equal(r$J, Jn, tolerance = 1e-7, ignore_attr = TRUE)
  }
  # several experts at once
  Th <- matrix(rnorm(2 * P), P, 2)
  m <- .Call(bayesmoe:::ffi_ffn_eval, X, Th, 3L, 0L, FALSE)$mean
  expect_equal(m[, 2], ffn_mean_r(X, Th[, 2], H), tolerance = 1e-13)
  # saturated units stay finite
  big <- theta * 1e4
  expect_true(all(is.finite(.Call(bayesmoe:::ffi_ffn_eval, X, big, 3L, 1L, TRUE)$J)))
})

test_that("the FFN M-step lowers the weighted residual sum of squares", {
  set.seed(12)
  n <- 200
  X <- matrix(runif(n, -2, 2), n, 1)
  H <- 2
  P <- 3 * H + 1
  truth <- c(2, -1, 0.5, 0, 1, -2, 0.3)
  y <- ffn_mean_r(X, truth, H) + rnorm(n, sd = 0.1)
  v <- runif(n)
  wrss <- function(t) sum(v * (y - ffn_mean_r(X, t, H))^2)
  for (s in 1:5) {
    th0 <- rnorm(P)
    m <- .Call(bayesmoe:::ffi_ffn_mstep, y, X, v, th0, as.integer(H), 0L, c(4, 1e-12, 1))
    expect_lte(wrss(m$theta), wrss(th0))
    expect_equal(m$sigma2, wrss(m$theta) / sum(v), tolerance = 1e-10)
    expect_equal(m$mean, ffn_mean_r(X, m$theta, H), tolerance = 1e-12)
  }
  # the output layer alone (no LM step) is the exact weighted least squares
  th0 <- rnorm(P)
  m <- .Call(bayesmoe:::ffi_ffn_mstep, y, X, v, th0, as.integer(H), 0L, c(0, 1e-12, 1))
  Fm <- tanh(X %*% t(matrix(th0[1:2], 2)) + rep(th0[3:4], each = n))
  ols <- lm.wfit(cbind(Fm, 1), y, v)$coefficients
  expect_equal(m$theta[5:7], unname(ols), tolerance = 1e-8)
  expect_equal(m$theta[1:4], th0[1:4])
  # an expert below min_size is left alone
  m <- .Call(bayesmoe:::ffi_ffn_mstep, y, X, v * 0, th0, as.integer(H), 0L, c(4, 1e-12, 1))
  expect_equal(m$theta, th0)
  expect_true("empty" %in% bayesmoe:::decode_status(m$status))
})

test_that("EM with FFN experts never decreases the log-likelihood", {
  dat <- curved_data(400, 13)
  X <- cbind("(Intercept)" = 1, x = dat$x)
  sc <- bayesmoe:::moe_scaling(dat$y, X, X)
  s <- bayesmoe:::scale_data(sc, dat$y, X, X)
  Xf <- s$X[, 2, drop = FALSE]
  feats <- bayesmoe:::start_features(s$y, s$X, s$Z)
  set.seed(13)
  for (type in c("residual", "kmeans++", "random")) {
    R0 <- bayesmoe:::start_resp(type, s$y, s$X, feats, 2L)
    th0 <- matrix(0, 7, 2)
    th0[1:4, ] <- rnorm(8)
    ex <- expert_ffn(2, lm_steps = 3)
    r <- .Call(bayesmoe:::ffi_em, s$y, Xf, s$Z, rep(1, 400), R0, th0,
               c(150, 1e-10, 1e-6, 4, 1, 0, Inf, 1), bayesmoe:::gate_c(gate_softmax(), 2L),
               bayesmoe:::expert_c(ex), NULL)
    r$theta <- r$alpha
    expect_true(all(diff(r$trace) >= -1e-8 * abs(r$trace[-1])))
    expect_false("decrease" %in% bayesmoe:::decode_status(r$status))
    # the reported log-likelihood is the one of the reported parameters
    G <- exp(bayesmoe:::log_softmax_rows(s$Z %*% r$W))
    M <- cbind(ffn_mean_r(Xf, r$theta[, 1], 2), ffn_mean_r(Xf, r$theta[, 2], 2))
    ll_r <- sum(log(rowSums(G * dnorm(s$y, M, rep(sqrt(r$sigma2), each = 400)))))
    expect_equal(r$loglik, ll_r, tolerance = 1e-10)
  }
})

test_that("the Metropolis block of an FFN expert passes simulation-based calibration", {
  # One expert with every observation allocated to it: the block is then a
  # sampler of the posterior of a one-unit network regression. Truths are
  # drawn from the prior, chains start from an independent prior draw; the
  # ranks of sign-flip invariant functions of the truth among thinned draws
  # must be uniform.
  slow <- identical(Sys.getenv("BAYESMOE_SLOW_TESTS"), "true")
  set.seed(31)
  H <- 1L
  n <- 15
  prior <- list(m_a = c(0, 0), Va_inv = diag(2), Va_inv_m = c(0, 0), m_Va_inv_m = 0,
                c0 = 3, C0 = 2, s_hid2 = 1)
  draw_prior <- function() {
    s2 <- 1 / rgamma(1, 3, rate = 2)
    c(rnorm(2), rnorm(2, 0, sqrt(s2)), s2)
  }
  X <- matrix(runif(n, -2, 2), n, 1)
  reps <- if (slow) 2000 else 200
  L <- 49 # ranks 0..49: ten bins of five
  thin <- 10
  ranks <- matrix(NA_integer_, reps, 4)
  stat <- function(t) c(t[5], t[4], t[1] * t[3], ffn_mean_r(matrix(0.5), t[1:4], 1))
  for (r in seq_len(reps)) {
    tru <- draw_prior()
    y <- ffn_mean_r(X, tru[1:4], H) + rnorm(n, sd = sqrt(tru[5]))
    init <- draw_prior()
    out <- .Call(bayesmoe:::ffi_ffn_mh, y, X, rep(1, n), init[1:4], init[5], H, 0L, prior,
                 1, as.integer(200 + L * thin))
    fd <- apply(out$draws[, 200 + thin * seq_len(L)], 2, stat)
    ranks[r, ] <- rowSums(fd < stat(tru))
  }
  pv <- apply(ranks, 2, function(rk) chisq.test(tabulate(rk %/% 5 + 1, 10))$p.value)
  expect_true(all(pv > 0.001), label = paste("SBC p-values", paste(signif(pv, 3), collapse = ", ")))
})

test_that("expert_ffn() objects, names and errors", {
  expect_snapshot(print(expert_ffn()))
  expect_snapshot(print(expert_ffn(hidden = 1, activation = "sigmoid")))
  ex <- expert_ffn(2)
  expect_s3_class(ex, c("moe_expert_ffn", "moe_expert"))
  expect_equal(bayesmoe:::expert_npar(ex, 3L), 2 * 2 + 2 * 2 + 1)
  expect_equal(bayesmoe:::expert_par_names(ex, c("(Intercept)", "u", "v")),
               c("A[1,u]", "A[2,u]", "A[1,v]", "A[2,v]", "d[1]", "d[2]", "c[1]", "c[2]", "e"))
  expect_snapshot(error = TRUE, expert_ffn(hidden = 0))
  expect_snapshot(error = TRUE, expert_ffn(hidden = 1.5))
  expect_snapshot(error = TRUE, expert_ffn(activation = "relu"))
  expect_snapshot(error = TRUE, expert_ffn(lm_steps = -1))
  expect_snapshot(error = TRUE, expert_ffn(prior_sd = 0))
  d <- curved_data(50, 1)
  expect_snapshot(error = TRUE, moe_em(y ~ x - 1, data = d, K = 2, expert = expert_ffn()))
  expect_snapshot(error = TRUE, moe_em(y ~ 1, data = d, K = 2, expert = expert_ffn()))
  expect_snapshot(error = TRUE, moe_mcmc(y ~ x, data = d, K = 2, expert = expert_ffn(),
                                         gate = gate_topk(1)))
})

test_that("canonical FFN parameters and the internal scale leave the mean unchanged", {
  set.seed(14)
  X <- cbind("(Intercept)" = 1, u = rnorm(40, 3, 2), v = runif(40))
  for (act in c("tanh", "sigmoid", "gelu")) {
    ex <- expert_ffn(3, act)
    alpha <- matrix(rnorm(2 * 13), 13, 2)
    m0 <- bayesmoe:::expert_mean(ex, X, alpha)
    expect_equal(m0[, 1], ffn_mean_r(X[, -1], alpha[, 1], 3, act), tolerance = 1e-12)
    can <- bayesmoe:::ffn_canonical(alpha, ex)
    expect_equal(bayesmoe:::expert_mean(ex, X, can), m0, tolerance = 1e-12)
    if (act != "gelu") expect_true(all(can[10:12, ] > 0))
    expect_false(is.unsorted(can[7:9, 1]))
    expect_equal(bayesmoe:::ffn_canonical(can, ex), can)
    # internal <-> original scale
    y <- rnorm(40, 10, 3)
    sc <- bayesmoe:::moe_scaling(y, X, X)
    s <- bayesmoe:::scale_data(sc, y, X, X)
    orig <- bayesmoe:::expert_to_original(ex, sc, alpha)
    expect_equal(bayesmoe:::expert_mean(ex, X, orig),
                 sc$sy * bayesmoe:::expert_mean(ex, s$X, alpha) + sc$my, tolerance = 1e-10)
    back <- bayesmoe:::expert_to_internal(ex, sc, orig)
    expect_equal(bayesmoe:::expert_mean(ex, s$X, back), bayesmoe:::expert_mean(ex, s$X, alpha),
                 tolerance = 1e-10)
  }
})

test_that("FFN experts reach a log-likelihood far above linear experts on a curved truth", {
  d <- curved_data(2000, 15)
  # (EM with networks converges slowly; 400 iterations suffice for the margin)
  ffn <- suppressWarnings(
    moe_em(y ~ x, data = d, K = 2, expert = expert_ffn(2), starts = 2, seed = 1,
           control = moe_em_control(maxit = 400, tol = 1e-7)),
    classes = "bayesmoe_warning_convergence")
  lin <- moe_em(y ~ x, data = d, K = 2, starts = 2, seed = 1)
  # the truth: expert means sin(3x) + 1 and 2 tanh(3x) - 1, noise sd 0.15
  expect_gt(as.numeric(logLik(ffn)) - as.numeric(logLik(lin)), 500)
  expect_true(all(diff(ffn$trace) >= -1e-8 * abs(ffn$trace[-1])))
  nd <- data.frame(x = c(-0.8, 0.8))
  ex <- predict(ffn, nd, type = "expert")
  g <- predict(ffn, nd, type = "gating")
  # at x = -0.8 the tanh-shaped expert dominates, at 0.8 the sine-shaped one
  k_left <- which.max(g[1, ])
  k_right <- which.max(g[2, ])
  expect_false(k_left == k_right)
  expect_equal(unname(ex[1, k_left]), 2 * tanh(-2.4) - 1, tolerance = 0.05)
  expect_equal(unname(ex[2, k_right]), sin(2.4) + 1, tolerance = 0.05)
  expect_equal(attr(logLik(ffn), "df"), 2 * (7 + 1) + 2)
  expect_snapshot(print(ffn), transform = function(x) {
    gsub(" +", " ", gsub("-?[0-9]+\\.[0-9]+(e-?[0-9]+)?", "<num>", x))
  })
})

test_that("MCMC with FFN experts: finite log-likelihoods, acceptance rates, continuation", {
  d <- curved_data(300, 16)
  fit <- moe_mcmc(y ~ x, data = d, K = 2, expert = expert_ffn(1), chains = 2, iter = 300,
                  seed = 3, control = moe_mcmc_control(em_starts = 2))
  expect_true(all(is.finite(fit$loglik_draws)))
  expect_equal(dim(fit$accept), c(2L, 2L))
  expect_true(all(fit$accept > 0.05 & fit$accept < 0.9))
  expect_equal(dimnames(fit$draws)[[3]][1:5],
               c("expert1:A[1,x]", "expert1:d[1]", "expert1:c[1]", "expert1:e", "expert1:sigma2"))
  # canonical draws: output weights positive
  expect_true(all(fit$draws[, , "expert1:c[1]"] > 0))
  # a continued chain is identical to one long run
  long <- moe_mcmc(y ~ x, data = d, K = 2, expert = expert_ffn(1), chains = 2, iter = 400,
                   warmup = 150, seed = 3, control = moe_mcmc_control(em_starts = 2))
  short <- moe_mcmc(y ~ x, data = d, K = 2, expert = expert_ffn(1), chains = 2, iter = 250,
                    warmup = 150, seed = 3, control = moe_mcmc_control(em_starts = 2))
  cont <- moe_mcmc(short, iter = 150)
  expect_identical(cont$draws, long$draws)
  expect_identical(cont$loglik_draws, long$loglik_draws)
  # (rates are combined from counts rounded to whole sweeps)
  expect_equal(cont$accept, long$accept, tolerance = 0.01)
  # the stored log-likelihood of a draw is the one of its parameters
  th <- long$draws[7, 2, ]
  par <- bayesmoe:::par_unflatten(th, 2L, 2L, 2L, bayesmoe:::fit_spec(long))
  ll <- sum(bayesmoe:::moe_log_density(par, long$X, long$Z, long$y))
  expect_equal(ll, unname(long$loglik_draws[7, 2]), tolerance = 1e-8)
})
