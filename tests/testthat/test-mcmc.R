# Tests of the Gibbs sampler (src/mcmc.c) and of moe_mcmc().
#
# Helpers are defined here (not in a helper file) so they stay next to the
# tests that use them. Functions of the package are reached through
# bayesmoe::: where they are internal.

slow_tests <- function() identical(Sys.getenv("BAYESMOE_SLOW_TESTS"), "true")

# A well separated 3-expert truth with one covariate (original scale): gating
# logits (-8 x, 4 - 4 x, 0), experts y = 4 + x, y = 2 x, y = 6 - x with
# standard deviations 0.3, 0.4, 0.5, x ~ U(-3, 3). Used in bench/ too.
sim_three <- function(n) {
  x <- runif(n, -3, 3)
  eta <- cbind(-8 * x, 4 - 4 * x, 0)
  g <- exp(eta - apply(eta, 1L, max))
  k <- 1L + rowSums(runif(n) * rowSums(g) > t(apply(g, 1L, cumsum))[, 1:2])
  a <- rbind(c(4, 0, 6), c(1, 2, -1))
  data.frame(x = x, y = a[1L, k] + a[2L, k] * x + c(0.3, 0.4, 0.5)[k] * rnorm(n))
}

# One chain of the C sampler (softmax gate, linear experts: the fused
# kernel) on data taken as already on the internal scale.
# mode: 0 Polya-Gamma gating draws, 1 those and the Metropolis-Hastings
# refresh, 2 the refresh only, 3 `steps` collapsed steps and the refresh
# (moe_mcmc_control(gate_update =, gate_steps =)). `accept` holds the gating
# move counts (gating_move_names).
run_c_chain <- function(y, X, Z, w, init, pc, warmup, iter, thin, mode = 1L,
                        steps = 2L, pg_every = 20L) {
  res <- bayesmoe:::gibbs_chain_c(list(y = y, X = X, Z = Z, w = w), pc,
                                  length(init$sigma2), init, gate_softmax(),
                                  expert_linear(), numeric(), numeric(),
                                  c(warmup, iter, thin, 0, 0, 1, mode, steps, pg_every, 1, 0), 0L)
  res$accept <- res$moves
  res
}

# ---- exact results --------------------------------------------------------

test_that("with K = 1 the draws follow the closed-form conjugate posterior", {
  set.seed(11)
  n <- 40
  d <- data.frame(x = rnorm(n, 3, 2), w = sample(0:3, n, replace = TRUE))
  d$y <- 10 + 2 * d$x + rnorm(n, sd = 1.5)
  prior <- moe_prior(m_a = c(0.5, -0.2), V_a = c(2, 3), c0 = 2.5, C0 = 0.3)
  fit <- moe_mcmc(y ~ x, data = d, K = 1, weights = w, prior = prior, chains = 2,
                  iter = 3000, warmup = 0, seed = 3, progress = FALSE)
  # Closed form on the internal scale (frequency weights: weighted sums).
  sc <- fit$scaling
  s <- bayesmoe:::scale_data(sc, fit$y, fit$X, fit$Z)
  w <- fit$weights
  pc <- bayesmoe:::prior_internal(prior, 2, 2)
  P1 <- crossprod(s$X, w * s$X) + pc$Va_inv
  V1 <- solve(P1)
  m1 <- drop(V1 %*% (crossprod(s$X, w * s$y) + pc$Va_inv_m))
  c1 <- pc$c0 + sum(w) / 2
  C1 <- pc$C0 + 0.5 * (sum(w * s$y^2) + pc$m_Va_inv_m - sum(m1 * (P1 %*% m1)))
  # map to the original scale: alpha = sy T a + my e_1, sigma2 = sy^2 s2
  Tm <- sc$x$T
  mean_alpha <- sc$sy * drop(Tm %*% m1) + c(sc$my, 0)
  cov_alpha <- sc$sy^2 * C1 / (c1 - 1) * Tm %*% V1 %*% t(Tm)
  mean_s2 <- sc$sy^2 * C1 / (c1 - 1)
  expect_null(fit$accept)
  D <- matrix(fit$draws, ncol = 3L)
  N <- nrow(D)
  # K = 1 draws are independent (the allocations are fixed), so the Monte
  # Carlo standard error of a mean is sd / sqrt(N).
  z <- (colMeans(D[, 1:2]) - mean_alpha) / sqrt(diag(cov_alpha) / N)
  expect_true(all(abs(z) < 4), info = paste(format(z), collapse = " "))
  expect_equal(cov(D[, 1:2]), cov_alpha, tolerance = 0.1)
  expect_lt(abs(mean(D[, 3]) - mean_s2) / (sd(D[, 3]) / sqrt(N)), 4)
  # whole distributions: sigma2 ~ InvGamma(c1, C1), a_j ~ t_{2 c1}(m1_j, C1/c1 V1_jj)
  s2_int <- D[, 3] / sc$sy^2
  expect_gt(ks.test(s2_int, function(v) pgamma(C1 / v, c1, lower.tail = FALSE))$p.value, 0.001)
  a_int <- solve(Tm, t(D[, 1:2]) - c(sc$my, 0)) / sc$sy
  for (j in 1:2) {
    tj <- (a_int[j, ] - m1[j]) / sqrt(C1 / c1 * V1[j, j])
    expect_gt(ks.test(tj, "pt", df = 2 * c1)$p.value, 0.001)
  }
})

test_that("the exp() of the sampler's passes is within one ulp of exp()", {
  # the range the passes use (x - max <= 0), the ranges near the table
  # points and the edges where it hands over to exp()
  set.seed(5)
  x <- c(0, -1e-300, -.Machine$double.eps, -log(2) / 256 * c(1, 3, 255, 257),
         -runif(20000, 0, 1), -runif(20000, 0, 40), -runif(20000, 0, 700),
         runif(2000, 0, 700), -699.999, -700, -700.001, -745, -746, -800, 700, 710,
         -Inf, Inf, NaN, NA)
  got <- .Call(bayesmoe:::ffi_moe_exp, x, FALSE)
  ref <- exp(x)
  ok <- is.finite(ref) & ref > 0
  expect_true(all(abs(got[ok] - ref[ok]) <= 2^-51 * ref[ok]))
  expect_identical(got[!ok], ref[!ok])
  expect_identical(.Call(bayesmoe:::ffi_moe_exp, c(-700, -800, 700), FALSE),
                   exp(c(-700, -800, 700)))
  # the same bits two at a time in vector lanes (src/moe_v2.h), the pairs
  # mixing arguments inside and outside the range of the table
  expect_identical(.Call(bayesmoe:::ffi_moe_exp, x, TRUE), got)
  expect_identical(.Call(bayesmoe:::ffi_moe_exp, rev(x), TRUE), rev(got))
  y <- c(rbind(x[1:4000], sample(x)[1:4000]))
  expect_identical(.Call(bayesmoe:::ffi_moe_exp, y, TRUE),
                   .Call(bayesmoe:::ffi_moe_exp, y, FALSE))
})

test_that("draws and log-likelihoods agree with plain-R maps and densities", {
  set.seed(12)
  d <- sim_three(150)
  d$w <- sample(1:2, nrow(d), replace = TRUE)
  fit <- moe_mcmc(y ~ x, data = d, K = 3, weights = w, chains = 2, iter = 60,
                  warmup = 20, thin = 4, seed = 5, progress = FALSE)
  S <- dim(fit$draws)[1L]
  expect_equal(S, 10L)
  expect_equal(dimnames(fit$draws)[[3L]],
               bayesmoe:::par_names(colnames(fit$X), colnames(fit$Z), 3L))
  for (ch in 1:2) {
    st <- fit$state[[ch]]
    expect_equal(st$iterations_done, 60L)
    # the last iteration is kept, so the stored state is the last draw
    ref <- bayesmoe:::par_flatten(bayesmoe:::par_to_original(fit$scaling, st))
    expect_equal(unname(fit$draws[S, ch, ]), ref, tolerance = 1e-12)
    for (s in c(1L, S)) {
      par <- bayesmoe:::par_unflatten(fit$draws[s, ch, ], 2L, 2L, 3L)
      ll <- sum(fit$weights * bayesmoe:::moe_log_density(par, fit$X, fit$Z, fit$y))
      expect_equal(unname(fit$loglik_draws[s, ch]), ll, tolerance = 1e-10)
    }
  }
  expect_equal(fit$loglik, max(fit$loglik_draws))
  expect_equal(as.numeric(logLik(fit)), max(fit$loglik_draws))
  theta <- colMeans(matrix(fit$draws, ncol = dim(fit$draws)[3L]))
  expect_equal(bayesmoe:::par_flatten(fit$coefficients), theta, ignore_attr = TRUE)
  expect_named(fit$state[[1L]], c("alpha", "sigma2", "W", "rng", "pg_every",
                                  "iterations_done"))
  expect_equal(fit$state[[1L]]$W[, 3L], c(0, 0))
  expect_length(fit$accept, 2L)
  expect_true(all(fit$accept > 0 & fit$accept <= 1))
  expect_length(fit$timing, 2L)
  expect_s3_class(fit, c("moe_mcmc", "moe_fit"))
})

test_that("frequency weights give the posterior of the expanded data", {
  # Same posterior, different random streams: compare the posterior means
  # of label-invariant quantities within Monte Carlo error.
  set.seed(13)
  d <- tonedata
  d$w <- sample(1:3, nrow(d), replace = TRUE)
  e <- d[rep(seq_len(nrow(d)), d$w), ]
  fw <- moe_mcmc(tuned ~ stretchratio, data = d, K = 2, weights = w, chains = 2,
                 iter = 1500, seed = 1, progress = FALSE)
  fe <- moe_mcmc(tuned ~ stretchratio, data = e, K = 2, chains = 2, iter = 1500,
                 seed = 2, progress = FALSE)
  # the scaling differs (it is unweighted), so compare on the original scale
  pred_mean <- function(fit, x0) {
    D <- matrix(fit$draws, ncol = dim(fit$draws)[3L])
    apply(D, 1L, function(th) {
      par <- bayesmoe:::par_unflatten(th, 2L, 2L, 2L)
      cm <- bayesmoe:::moe_components(par, cbind(1, x0), cbind(1, x0))
      rowSums(exp(cm$log_gate) * cm$mean)
    })
  }
  # batch means: 20 batches per chain; v holds the chains one after the other
  batch_se <- function(v, chains = 2) {
    S <- length(v) %/% chains
    L <- S %/% 20
    b <- unlist(lapply(seq_len(chains), function(ch)
      colMeans(matrix(v[(ch - 1) * S + seq_len(20 * L)], L))))
    sd(b) / sqrt(length(b))
  }
  x0 <- c(1.5, 2, 2.5)
  mw <- pred_mean(fw, x0)
  me <- pred_mean(fe, x0)
  for (j in seq_along(x0)) {
    z <- (mean(mw[j, ]) - mean(me[j, ])) / sqrt(batch_se(mw[j, ])^2 + batch_se(me[j, ])^2)
    expect_lt(abs(z), 4.5)
  }
  lw <- as.vector(fw$loglik_draws)
  le <- as.vector(fe$loglik_draws)
  expect_lt(abs(mean(lw) - mean(le)) / sqrt(batch_se(lw)^2 + batch_se(le)^2), 4.5)
})

# ---- simulation-based calibration -------------------------------------------
#
# Parameters are drawn from the prior (on the internal scale, which the data
# are taken to be on), data are simulated, one chain is run from a separate
# prior draw and the ranks of functionals of the truth among the thinned
# draws are checked for uniformity with a chi-square test. Raw parameters
# are not identified (labels can switch), so the functionals are label
# invariant: the predictive mean at x0 = z0 = (1, 0.5) ("pm"), the log of
# the smallest expert variance ("ls"), the largest gating probability at z0
# ("gmax") and the log-likelihood of the data ("ll"; a function of the
# parameters and the data, which SBC allows).

sbc_functionals <- function(alpha, sigma2, W, K, x0, z0) {
  eta <- matrix(drop(z0 %*% matrix(W, length(z0))), K)
  g <- exp(eta - rep(apply(eta, 2L, max), each = K))
  g <- g / rep(colSums(g), each = K)
  mu <- matrix(drop(x0 %*% matrix(alpha, length(x0))), K)
  cbind(pm = colSums(g * mu), ls = log(apply(matrix(sigma2, K), 2L, min)),
        gmax = apply(g, 2L, max))
}

sbc_ranks <- function(K, n, pc, q, warmup, iter, thin, mode, pg_every = 20L) {
  th <- bayesmoe:::prior_draw(pc, K)
  x <- rnorm(n)
  X <- cbind(1, x)
  Z <- if (q == 1L) matrix(1, n, 1L) else X
  g <- exp(bayesmoe:::log_softmax_rows(Z %*% th$W))
  k <- 1L + rowSums(runif(n) > t(apply(g, 1L, cumsum))[, -K, drop = FALSE])
  y <- rowSums(X * t(th$alpha[, k])) + sqrt(th$sigma2[k]) * rnorm(n)
  init <- bayesmoe:::prior_draw(pc, K)
  res <- run_c_chain(y, X, Z, rep(1, n), init, pc, warmup, iter, thin, mode,
                     pg_every = pg_every)
  S <- length(res$loglik)
  x0 <- c(1, 0.5)
  z0 <- if (q == 1L) 1 else x0
  f <- sbc_functionals(res$alpha, res$sigma2, res$W, K, x0, z0)
  ft <- sbc_functionals(th$alpha, th$sigma2, th$W, K, x0, z0)
  ll_true <- sum(bayesmoe:::moe_log_density(th, X, Z, y))
  c(colSums(f < rep(ft, each = S)), ll = sum(res$loglik < ll_true))
}

# p-values of chi-square uniformity tests of the ranks (0..L) in `bins` bins.
sbc_pvalues <- function(reps, K, n, q, prior, warmup = 50, iter = 190, thin = 10,
                        bins = 5, mode = 1L, pg_every = 20L) {
  pc <- bayesmoe:::prior_internal(prior, 2L, q)
  r <- t(replicate(reps, sbc_ranks(K, n, pc, q, warmup, iter, thin, mode, pg_every)))
  L <- iter %/% thin
  apply(r, 2L, function(v)
    suppressWarnings(chisq.test(table(factor(v %/% ((L + 1) / bins), 0:(bins - 1)))))$p.value)
}

sbc_prior <- function() moe_prior(s_w = 1.5, V_a = 4, c0 = 3, C0 = 1)

# With n = 3 observations the posterior is close to the prior, so the ranks
# of the raw gating coefficients (w_1 intercept, w_1 slope, and the
# intercept of w_1 - w_2) check the prior the gating steps use: the
# conditional exchangeable prior of the Polya-Gamma step and the joint one
# of the Metropolis-Hastings step. Raw parameters are valid SBC functionals
# (identifiability is not needed), and this close to the exchangeable prior
# the chain moves freely between labellings. (Power, checked with
# deliberate bugs and 500-1000 replications: a wrong conditional prior mean
# in the Polya-Gamma step was caught here with p < 1e-4 but not by the
# n = 40 runs, where the data dominate; an independent instead of the
# exchangeable prior in the Metropolis-Hastings step was caught here and by
# the n = 40 runs with p < 1e-20.)
sbc_gate_pvalues <- function(reps, K, prior, mode, warmup = 50, iter = 190,
                             thin = 10, bins = 10, pg_every = 20L) {
  pc <- bayesmoe:::prior_internal(prior, 2L, 2L)
  one <- function() {
    th <- bayesmoe:::prior_draw(pc, K)
    n <- 3L
    X <- cbind(1, rnorm(n))
    g <- exp(bayesmoe:::log_softmax_rows(X %*% th$W))
    k <- 1L + rowSums(runif(n) > t(apply(g, 1L, cumsum))[, -K, drop = FALSE])
    y <- rowSums(X * t(th$alpha[, k])) + sqrt(th$sigma2[k]) * rnorm(n)
    res <- run_c_chain(y, X, X, rep(1, n), bayesmoe:::prior_draw(pc, K), pc, warmup,
                       iter, thin, mode, pg_every = pg_every)
    W <- array(res$W, c(2L, K, length(res$loglik)))
    f <- cbind(w1_int = W[1, 1, ], w1_slope = W[2, 1, ], d12_int = W[1, 1, ] - W[1, 2, ])
    ft <- c(th$W[1, 1], th$W[2, 1], th$W[1, 1] - th$W[1, 2])
    colSums(f < rep(ft, each = nrow(f)))
  }
  r <- t(replicate(reps, one()))
  L <- iter %/% thin
  apply(r, 2L, function(v)
    suppressWarnings(chisq.test(table(factor(v %/% ((L + 1) / bins), 0:(bins - 1)))))$p.value)
}

test_that("simulation-based calibration, K = 2 and 3 (fast version)", {
  set.seed(21)
  p <- sbc_pvalues(200, K = 2, n = 40, q = 2, prior = sbc_prior())
  expect_true(all(p > 0.001), info = paste(names(p), format(p), collapse = " "))
  p <- sbc_gate_pvalues(300, K = 3, prior = sbc_prior(), mode = 0L)
  expect_true(all(p > 0.001), info = paste(names(p), format(p), collapse = " "))
  # the collapsed gating update (the default of moe_mcmc())
  p <- sbc_pvalues(200, K = 2, n = 40, q = 2, prior = sbc_prior(), mode = 3L)
  expect_true(all(p > 0.001), info = paste(names(p), format(p), collapse = " "))
  # and with its Polya-Gamma draw (made by chunks, from the threads'
  # generator: update_gating_pg_chunks()) in every sweep
  p <- sbc_pvalues(200, K = 2, n = 40, q = 2, prior = sbc_prior(), mode = 3L, pg_every = 1L)
  expect_true(all(p > 0.001), info = paste(names(p), format(p), collapse = " "))
  p <- sbc_gate_pvalues(300, K = 3, prior = sbc_prior(), mode = 3L, pg_every = 1L)
  expect_true(all(p > 0.001), info = paste(names(p), format(p), collapse = " "))
})

test_that("simulation-based calibration, K = 2 and 3, full version", {
  skip_if_not(slow_tests(), "set BAYESMOE_SLOW_TESTS=true for the full SBC")
  set.seed(22)
  # K = 3 exercises the exchangeable conditional prior of the gating
  # vectors; q = 1 is a gating with only an intercept (a mixture of
  # regressions); the independent prior and the three gating updates
  # (mode 0 Polya-Gamma, 1 Polya-Gamma and Metropolis-Hastings, 2
  # Metropolis-Hastings) are checked too.
  indep <- moe_prior(s_w = 1.5, V_a = 4, c0 = 3, C0 = 1, exchangeable = FALSE)
  cases <- list(list(K = 2, q = 2, prior = sbc_prior(), mode = 1L),
                list(K = 3, q = 2, prior = sbc_prior(), mode = 1L),
                list(K = 2, q = 1, prior = sbc_prior(), mode = 1L),
                list(K = 3, q = 2, prior = indep, mode = 1L),
                list(K = 2, q = 2, prior = sbc_prior(), mode = 0L),
                list(K = 3, q = 2, prior = sbc_prior(), mode = 0L),
                list(K = 2, q = 2, prior = sbc_prior(), mode = 2L),
                list(K = 3, q = 2, prior = sbc_prior(), mode = 2L),
                list(K = 2, q = 2, prior = sbc_prior(), mode = 3L),
                list(K = 3, q = 2, prior = sbc_prior(), mode = 3L),
                list(K = 2, q = 1, prior = sbc_prior(), mode = 3L),
                list(K = 3, q = 2, prior = indep, mode = 3L))
  # 50 p-values: each must exceed 1e-4 (a family-wise false alarm rate of
  # about 0.5% for a correct sampler)
  for (cs in cases) {
    p <- sbc_pvalues(1000, K = cs$K, n = 40, q = cs$q, prior = cs$prior, bins = 10,
                     mode = cs$mode)
    expect_true(all(p > 1e-4),
                info = paste(cs$K, cs$q, cs$mode, paste(names(p), format(p), collapse = " ")))
  }
  for (K in 2:3) {
    p <- sbc_pvalues(1000, K = K, n = 40, q = 2, prior = sbc_prior(), bins = 10, mode = 3L,
                     pg_every = 1L)
    expect_true(all(p > 1e-4), info = paste(K, "pg_every = 1", paste(names(p), format(p), collapse = " ")))
  }
  for (mode in 0:3) {
    for (pr in list(sbc_prior(), indep)) {
      if (mode >= 2L && !pr$exchangeable) next
      p <- sbc_gate_pvalues(1000, K = 3, prior = pr, mode = mode)
      expect_true(all(p > 1e-4), info = paste(mode, pr$exchangeable,
                                               paste(names(p), format(p), collapse = " ")))
    }
  }
})

# ---- reproducibility ----------------------------------------------------------

test_that("the same seed gives identical draws and leaves the session RNG alone", {
  set.seed(31)
  before <- .Random.seed
  kind <- RNGkind()
  f1 <- moe_mcmc(tuned ~ stretchratio, data = tonedata, K = 2, chains = 2, iter = 100,
                 seed = 7, progress = FALSE)
  expect_identical(.Random.seed, before)
  expect_identical(RNGkind(), kind)
  f2 <- moe_mcmc(tuned ~ stretchratio, data = tonedata, K = 2, chains = 2, iter = 100,
                 seed = 7, progress = FALSE)
  expect_identical(f1$draws, f2$draws)
  expect_identical(f1$loglik_draws, f2$loglik_draws)
  expect_identical(f1$state, f2$state)
  # chains use different streams
  expect_false(identical(f1$draws[, 1, ], f1$draws[, 2, ]))
  f3 <- moe_mcmc(tuned ~ stretchratio, data = tonedata, K = 2, chains = 2, iter = 100,
                 seed = 8, progress = FALSE)
  expect_false(identical(f1$draws, f3$draws))
  # seed = NULL draws the seed from the session RNG
  set.seed(32)
  g1 <- quiet_stall(moe_mcmc(tuned ~ stretchratio, data = tonedata, K = 2, chains = 1,
                             iter = 50, init = "random", progress = FALSE))
  set.seed(32)
  g2 <- quiet_stall(moe_mcmc(tuned ~ stretchratio, data = tonedata, K = 2, chains = 1,
                             iter = 50, init = "random", progress = FALSE))
  expect_identical(g1$draws, g2$draws)
  expect_identical(g1$seed, g2$seed)
  g3 <- quiet_stall(moe_mcmc(tuned ~ stretchratio, data = tonedata, K = 2, chains = 1,
                             iter = 50, init = "random", seed = g1$seed, progress = FALSE))
  expect_identical(g1$draws, g3$draws)
})

test_that("the workhorse gives the same draws as the front end", {
  set.seed(33)
  f <- moe_mcmc(tuned ~ stretchratio, data = tonedata, K = 2, chains = 2, iter = 80,
                seed = 3, progress = FALSE)
  r <- moe_mcmc_fit(f$y, f$X, f$Z, K = 2, chains = 2, iter = 80, seed = 3)
  expect_identical(r$draws, f$draws)
  expect_identical(r$loglik_draws, f$loglik_draws)
})

test_that("draws are identical under plan(sequential) and plan(multisession)", {
  skip_if_not_installed("future.apply")
  skip_on_cran()
  set.seed(34)
  oplan <- future::plan(future::sequential)
  on.exit(future::plan(oplan), add = TRUE)
  f1 <- moe_mcmc(tuned ~ stretchratio, data = tonedata, K = 2, chains = 2, iter = 100,
                 seed = 9, progress = FALSE)
  future::plan(future::multisession, workers = 2)
  before <- .Random.seed
  f2 <- moe_mcmc(tuned ~ stretchratio, data = tonedata, K = 2, chains = 2, iter = 100,
                 seed = 9, progress = FALSE)
  expect_identical(.Random.seed, before)
  expect_identical(f1$draws, f2$draws)
  expect_identical(f1$loglik_draws, f2$loglik_draws)
  expect_identical(f1$state, f2$state)
  # continuation in the workers too
  expect_identical(moe_mcmc(f1, iter = 20)$draws, moe_mcmc(f2, iter = 20)$draws)
})

test_that("a continued run is identical to one long run", {
  set.seed(35)
  d <- sim_three(100)
  # 200 post-warm-up iterations in the first run, not a multiple of thin = 3:
  # the continuation must keep the thinning phase.
  short <- moe_mcmc(y ~ x, data = d, K = 3, chains = 2, iter = 300, warmup = 100,
                    thin = 3, seed = 4, progress = FALSE)
  cont <- moe_mcmc(short, iter = 200)
  long <- moe_mcmc(y ~ x, data = d, K = 3, chains = 2, iter = 500, warmup = 100,
                   thin = 3, seed = 4, progress = FALSE)
  expect_equal(dim(short$draws)[1L], 66L)
  expect_equal(dim(long$draws)[1L], 133L)
  expect_identical(cont$draws, long$draws)
  expect_identical(cont$loglik_draws, long$loglik_draws)
  expect_identical(cont$state, long$state)
  expect_identical(cont$coefficients, long$coefficients)
  expect_identical(cont$iter, long$iter)
  expect_identical(cont$loglik, long$loglik)
  expect_identical(cont$accept, long$accept)
  # and again, from random starting values
  s2 <- moe_mcmc(y ~ x, data = d, K = 2, chains = 1, iter = 40, warmup = 10,
                 init = "random", seed = 6, progress = FALSE)
  l2 <- moe_mcmc(y ~ x, data = d, K = 2, chains = 1, iter = 70, warmup = 10,
                 init = "random", seed = 6, progress = FALSE)
  expect_identical(moe_mcmc(moe_mcmc(s2, iter = 10), iter = 20)$draws, l2$draws)
  # the default gating update is "collapsed", which keeps the gating
  # probabilities between sweeps; the others, and more collapsed steps
  for (ctl in list(moe_mcmc_control(gate_update = "pg+mh"),
                   moe_mcmc_control(gate_update = "collapsed", gate_steps = 3))) {
    s3 <- moe_mcmc(y ~ x, data = d, K = 3, chains = 1, iter = 60, warmup = 20,
                   seed = 8, control = ctl, progress = FALSE)
    l3 <- moe_mcmc(y ~ x, data = d, K = 3, chains = 1, iter = 100, warmup = 20,
                   seed = 8, control = ctl, progress = FALSE)
    c3 <- moe_mcmc(s3, iter = 40)
    expect_identical(c3$draws, l3$draws)
    expect_identical(c3$accept, l3$accept)
  }
})

test_that("the draws do not depend on the number of threads", {
  set.seed(36)
  # more observations than one chunk of the passes (MOE_CHUNK = 4096 in
  # src/mcmc_fused.c), so the partial sums of several chunks are added
  n <- 9000
  x <- rnorm(n)
  X <- cbind(1, x)
  g <- ifelse(runif(n) < plogis(2 * x), 1, 2)
  y <- ifelse(g == 1, 1 + x, -1 - 0.5 * x) + rnorm(n, sd = 0.4)
  fit <- function(threads, w = rep(1, n), K = 2, pg_every = 20) {
    quiet_stall(moe_mcmc_fit(y, X, X, w = w, K = K, chains = 1, iter = 40, warmup = 10,
                             seed = 5, control = moe_mcmc_control(em_starts = 1,
                                                                  threads = threads,
                                                                  pg_every = pg_every)))
  }
  for (K in 2:3) {
    f1 <- fit(1, K = K)
    f2 <- fit(2, K = K)
    expect_identical(f1$draws, f2$draws)
    expect_identical(f1$loglik_draws, f2$loglik_draws)
    expect_identical(f1$state, f2$state)
    # the Polya-Gamma draw in every sweep: each chunk draws from its own
    # stream, so these draws do not depend on the threads either
    p1 <- fit(1, K = K, pg_every = 1)
    p2 <- fit(2, K = K, pg_every = 1)
    expect_identical(p1$draws, p2$draws)
    expect_identical(p1$state, p2$state)
    expect_equal(unname(p1$gating_moves[, "pg"]), 30)
    expect_false(identical(p1$draws, f1$draws))
  }
  # frequency weights: the multinomial draws stay on one thread, the rest
  # of the passes do not
  w <- rep(c(1, 3), length.out = n)
  expect_identical(fit(1, w)$draws, fit(2, w)$draws)
  # the threads are a setting of the run, not of the model: a run continued
  # with one thread from a run made with two is one long run
  d <- data.frame(y = y, x = x)
  s2 <- moe_mcmc(y ~ x, data = d, K = 2, chains = 1, iter = 30, warmup = 10, seed = 2,
                 control = moe_mcmc_control(em_starts = 1, threads = 2), progress = FALSE)
  s2$control$threads <- 1
  l1 <- moe_mcmc(y ~ x, data = d, K = 2, chains = 1, iter = 50, warmup = 10, seed = 2,
                 control = moe_mcmc_control(em_starts = 1), progress = FALSE)
  expect_identical(moe_mcmc(s2, iter = 20)$draws, l1$draws)
})

test_that("the passes give the same draws with observations in pairs in vector lanes", {
  # The collapsed passes compute two observations at once in the lanes of a
  # vector (src/moe_v2.h) where the compiler has vector extensions, each lane
  # with the operations of the scalar code: the draws must be the same bits
  # as one observation at a time (the internal switch ffi_set_v2()).
  old <- .Call(bayesmoe:::ffi_set_v2, TRUE)
  on.exit(.Call(bayesmoe:::ffi_set_v2, old[1]), add = TRUE)
  skip_if_not(old[2], "this build has no vector code (not GCC or clang)")
  run <- function(v2, expr) {
    .Call(bayesmoe:::ffi_set_v2, v2)
    quiet_stall(force(expr))
  }
  same <- function(make) {
    a <- run(TRUE, make())
    b <- run(FALSE, make())
    expect_identical(a$draws, b$draws)
    expect_identical(a$loglik_draws, b$loglik_draws)
    expect_identical(a$gating_moves, b$gating_moves)
    expect_identical(a$state, b$state)
  }
  set.seed(41)
  # an odd number of observations (the last of each block alone) with an
  # outlier (expert densities below exp(-700), which go to exp()) and a
  # covariate value far out (steep logits)
  n <- 301
  x <- rnorm(n); z <- rnorm(n)
  g <- ifelse(runif(n) < plogis(2 * x - z), 1, 2)
  y <- ifelse(g == 1, 1 + x, -1 - 0.5 * x) + rnorm(n, sd = 0.3)
  y[7] <- 80
  z[11] <- 60
  d <- data.frame(y = y, x = x, z = z)
  # sized passes (p = q = 2, 3 and K = 2..5) and the generic one (p != q, K = 7)
  for (K in 2:5) {
    same(function() moe_mcmc(y ~ x, data = d, K = K, chains = 1, iter = 40, warmup = 10,
                             seed = K, progress = FALSE))
  }
  same(function() moe_mcmc(y ~ x + z, gating = ~ x + z, data = d, K = 3, chains = 1,
                           iter = 40, warmup = 10, seed = 3, progress = FALSE))
  same(function() moe_mcmc(y ~ x, gating = ~ x + z, data = d, K = 7, chains = 1, iter = 30,
                           warmup = 10, seed = 7, init = "random", progress = FALSE))
  # frequency weights, random starts, three collapsed steps
  w <- rep(1:3, length.out = n)
  same(function() moe_mcmc_fit(y, cbind(1, x), cbind(1, x, z), w = w, K = 3, chains = 1,
                               iter = 40, warmup = 10, seed = 9, init = "random",
                               control = moe_mcmc_control(gate_steps = 3)))
  # several chunks on two threads, with the Polya-Gamma draw in every sweep
  n <- 9001
  x <- rnorm(n)
  y <- ifelse(runif(n) < plogis(2 * x), 1 + x, -1 - 0.5 * x) + rnorm(n, sd = 0.4)
  same(function() moe_mcmc_fit(y, cbind(1, x), cbind(1, x), K = 3, chains = 1, iter = 25,
                               warmup = 5, seed = 4,
                               control = moe_mcmc_control(em_starts = 1, threads = 2,
                                                          pg_every = 1)))
})

test_that("every gating update runs and only Metropolis-Hastings records acceptance", {
  set.seed(38)
  fits <- lapply(c("pg", "pg+mh", "mh", "collapsed"), function(u)
    moe_mcmc(tuned ~ stretchratio, data = tonedata, K = 2, chains = 1, iter = 60,
             seed = 1, control = moe_mcmc_control(gate_update = u), progress = FALSE))
  expect_null(fits[[1]]$accept)
  expect_named(fits[[2]]$accept, "chain1")
  expect_true(fits[[3]]$accept > 0)
  expect_true(fits[[4]]$accept > 0 && fits[[4]]$accept <= 1)
  # the first sweep draws allocations and experts identically; gating differs
  expect_false(identical(fits[[1]]$draws, fits[[2]]$draws))
  for (f in fits) expect_true(all(is.finite(f$draws)))
})

test_that("progress is printed when asked", {
  set.seed(36)
  expect_output(
    moe_mcmc(tuned ~ stretchratio, data = tonedata, K = 2, chains = 1, iter = 20,
             seed = 1, progress = TRUE),
    "chain 1: iteration 20 / 20 \\(sampling\\)")
  expect_silent(moe_mcmc(tuned ~ stretchratio, data = tonedata, K = 2, chains = 1,
                         iter = 20, seed = 1, progress = FALSE))
})

# ---- starting values ----------------------------------------------------------

test_that("EM starting values are distinct solutions with labels aligned to the best", {
  set.seed(37)
  par <- list(alpha = matrix(c(1, 2, 3, 4, 5, 6), 2), sigma2 = c(1, 2, 3),
              W = cbind(c(1, 1), c(-1, 2), 0))
  perm <- c(3, 1, 2)
  shuffled <- bayesmoe:::permute_par(par, perm)
  expect_equal(shuffled$W[, 3], c(0, 0))
  back <- bayesmoe:::align_labels(shuffled, par)
  expect_equal(back, par)
  # the gating probabilities are unchanged by the permutation
  Z <- cbind(1, rnorm(5))
  g <- exp(bayesmoe:::log_softmax_rows(Z %*% par$W))
  gs <- exp(bayesmoe:::log_softmax_rows(Z %*% shuffled$W))
  expect_equal(gs, g[, perm])
  cost <- matrix(runif(25), 5)
  brute <- bayesmoe:::all_permutations(5)
  expect_equal(nrow(brute), 120L)
  best <- brute[which.min(apply(brute, 1, function(pm) sum(cost[cbind(1:5, pm)]))), ]
  expect_equal(bayesmoe:::best_assignment(cost), best)
  d <- sim_three(200)
  fit <- moe_mcmc(y ~ x, data = d, K = 3, chains = 3, iter = 20, seed = 2,
                  control = moe_mcmc_control(em_starts = 6, init_tol = Inf),
                  progress = FALSE)
  expect_equal(nrow(fit$em$starts), 6L)
  expect_length(fit$em$start_par, 6L)
})

# ---- chains that agree ----------------------------------------------------------

test_that("four chains agree on a well separated 3-expert problem", {
  skip_if_not_installed("posterior")
  set.seed(41)
  d <- sim_three(1000)
  fit <- moe_mcmc(y ~ x, data = d, K = 3, chains = 4, iter = 2000, seed = 1,
                  progress = FALSE)
  rhat <- posterior::rhat(fit$loglik_draws)
  m <- colMeans(fit$loglik_draws)
  expect_lt(rhat, 1.01)
  expect_lt(diff(range(m)), 2)
})

# ---- printing and errors ------------------------------------------------------

test_that("print() of a fit", {
  set.seed(51)
  # K = 1 uses no Polya-Gamma draws, so this output does not depend on the
  # Polya-Gamma sampler.
  fit <- moe_mcmc(tuned ~ stretchratio, data = tonedata, K = 1, chains = 2, iter = 200,
                  seed = 1, progress = FALSE)
  expect_snapshot(print(fit))
  expect_invisible(print(fit))
})

# ---- the gating updates cannot freeze ---------------------------------------

# A data set (n = 100, K = 2, taken as the internal scale) and a start drawn
# from the prior from which the Metropolis-Hastings moves alone ("collapsed"
# and "mh") never move: their Newton and Fisher-scoring proposals overshoot
# and the reverse move is never proposed.
stuck_case <- function() {
  pc <- bayesmoe:::prior_internal(sbc_prior(), 2L, 2L)
  withr_seed(78, {
    th <- bayesmoe:::prior_draw(pc, 2L)
    x <- rnorm(100)
    X <- cbind(1, x)
    g <- exp(bayesmoe:::log_softmax_rows(X %*% th$W))
    k <- 1L + (runif(100) > g[, 1L])
    y <- rowSums(X * t(th$alpha[, k])) + sqrt(th$sigma2[k]) * rnorm(100)
    list(y = y, x = x, X = X, pc = pc, init = bayesmoe:::prior_draw(pc, 2L))
  })
}

stuck_chain <- function(cs, seed, warmup, iter, mode, pg_every) {
  set.seed(seed)
  run_c_chain(cs$y, cs$X, cs$X, rep(1, 100), cs$init, cs$pc, warmup, iter, 1L,
              mode = mode, pg_every = pg_every)
}

test_that("a stuck start stays stuck without the Polya-Gamma draws and escapes with them", {
  cs <- stuck_case()
  for (mode in 2:3) {
    steps <- if (mode == 3L) 3L else 1L
    for (seed in 1:3) {
      # no warm-up, no Polya-Gamma draws: the gating never changes
      frozen <- stuck_chain(cs, seed, 0L, 300L, mode, 0L)
      W <- matrix(frozen$W, 4L)
      expect_true(all(W == W[, 1L]))
      expect_equal(frozen$accept[3:4], c(0L, 300L * steps))
      expect_equal(frozen$accept[6L], 0L)
      # the default schedule (every 20th sweep) moves it to where the
      # Metropolis-Hastings moves are accepted
      moving <- stuck_chain(cs, seed, 0L, 300L, mode, 20L)
      expect_equal(moving$accept[6L], 15L)
      expect_gt(moving$accept[3L] / moving$accept[4L], 0.1)
      # in warm-up the chain leaves the stuck start whatever the schedule:
      # the Polya-Gamma draws start after 10 sweeps without an accepted move
      # (mode 2); the collapsed update (mode 3) moves to its Newton point
      # when every step was rejected and the target is higher there, and
      # needs no Polya-Gamma draw
      warm <- stuck_chain(cs, seed, 200L, 100L, mode, 0L)
      if (mode == 2L) expect_gt(warm$accept[5L], 0L) else expect_equal(warm$accept[5L], 0L)
      expect_gt(warm$accept[3L] / warm$accept[4L], 0.1)
      expect_equal(warm$pg_every, 0L)
    }
  }
})

test_that("a chain whose warm-up ends stuck draws the gating by Polya-Gamma in every sweep", {
  cs <- stuck_case()
  # a warm-up too short to leave the stuck start (10 sweeps: the
  # Polya-Gamma draws of warm-up have not started)
  res <- stuck_chain(cs, 1, 10L, 50L, 2L, 20L)
  expect_equal(res$accept[c(1L, 5L)], c(0L, 0L))
  expect_equal(res$pg_every, 1L)
  expect_equal(res$accept[6L], 50L)
  expect_gt(res$accept[3L], 0L)
})

test_that("from random starts on fresh data no chain freezes, and stuck chains warn", {
  set.seed(63)
  frozen <- 0L
  for (r in 1:6) {
    n <- 500
    x <- runif(n)
    k <- 1L + (runif(n) > plogis(rnorm(1, 0, 3) + rnorm(1, 0, 6) * x))
    a <- rnorm(2, 0, 5)
    b <- rnorm(2, 0, 5)
    d <- data.frame(x = x, y = a[k] + b[k] * x + runif(2, 0.2, 1)[k] * rnorm(n))
    fit <- withCallingHandlers(
      moe_mcmc(y ~ x, data = d, K = 2, chains = 2, iter = 600, init = "random", seed = r,
               progress = FALSE),
      bayesmoe_warning_gating_stall = function(w) {
        # a warning names chains whose acceptance is below 1%
        expect_match(conditionMessage(w), "^Chains? [0-9]")
        invokeRestart("muffleWarning")
      })
    gate <- grep("^gate", dimnames(fit$draws)[[3L]])
    for (ch in 1:2) {
      G <- fit$draws[, ch, gate]
      frozen <- frozen + all(G == rep(G[1L, ], each = nrow(G)))
    }
    expect_equal(rowSums(fit$gating_moves[, c("proposed_warmup", "proposed")]),
                 c(chain1 = 1800, chain2 = 1800))
  }
  expect_equal(frozen, 0L)
})

test_that("a hand-made stuck start warns, naming the chain", {
  cs <- stuck_case()
  d <- data.frame(x = cs$x, y = cs$y)
  fit <- moe_mcmc(y ~ x, data = d, K = 2, prior = sbc_prior(), chains = 2, iter = 20,
                  seed = 1, progress = FALSE)
  # chain 2 continues from the stuck start of stuck_case() (mapped to the
  # fit's internal scale) without the scheduled Polya-Gamma draws
  st <- bayesmoe:::par_to_internal(fit$scaling, cs$init)
  stuck <- fit
  stuck$state[[2L]][c("alpha", "sigma2", "W")] <- st[c("alpha", "sigma2", "W")]
  stuck$state[[2L]]$pg_every <- 0L
  expect_warning(cont <- moe_mcmc(stuck, iter = 200), class = "bayesmoe_warning_gating_stall")
  new_moves <- cont$gating_moves - fit$gating_moves
  expect_equal(new_moves[, "accepted"] > 0, c(chain1 = TRUE, chain2 = FALSE))
  # `accept` covers both runs
  expect_equal(cont$accept, cont$gating_moves[, "accepted"] / cont$gating_moves[, "proposed"])
  expect_snapshot(bayesmoe:::mcmc_report(0L, NULL, cont$gating_moves - fit$gating_moves))
  # the counts of both runs add up, and summary() shows them per chain
  expect_equal(cont$gating_moves[, "proposed"] - fit$gating_moves[, "proposed"],
               c(chain1 = 600, chain2 = 600))
  s <- summary(cont)
  expect_equal(rownames(s$gating_moves), c("chain1", "chain2"))
  expect_match(s$gating_moves["chain2", "sampling"],
               sprintf("(%d/630)", cont$gating_moves["chain2", "accepted"]), fixed = TRUE)
  expect_snapshot(print(s$gating_moves, quote = FALSE, right = TRUE))
  # with the scheduled draws the same start escapes: no warning
  stuck$state[[2L]]$pg_every <- 20L
  expect_no_warning(esc <- moe_mcmc(stuck, iter = 200))
  expect_gt(esc$accept[["chain2"]], 0.1)
})

test_that("a continued run keeps the Polya-Gamma schedule chosen in warm-up", {
  set.seed(65)
  d <- sim_three(150)
  short <- quiet_stall(moe_mcmc(y ~ x, data = d, K = 3, chains = 2, iter = 40, warmup = 20,
                                init = "random", seed = 9, progress = FALSE))
  long <- quiet_stall(moe_mcmc(y ~ x, data = d, K = 3, chains = 2, iter = 90, warmup = 20,
                               init = "random", seed = 9, progress = FALSE))
  cont <- quiet_stall(moe_mcmc(short, iter = 50))
  expect_identical(cont$draws, long$draws)
  expect_identical(cont$state, long$state)
  expect_identical(cont$gating_moves, long$gating_moves)
  # a stored schedule of 1 is used by the continuation
  short$state[[1L]]$pg_every <- 1L
  c1 <- quiet_stall(moe_mcmc(short, iter = 50))
  expect_equal(unname(c1$gating_moves[, "pg"] - short$gating_moves[, "pg"]), c(50, 2))
})

test_that("moe_mcmc_control() rejects invalid settings", {
  set.seed(52)
  expect_snapshot(moe_mcmc_control(em_starts = 0), error = TRUE)
  expect_snapshot(moe_mcmc_control(em_control = list()), error = TRUE)
  expect_snapshot(moe_mcmc_control(init_tol = -1), error = TRUE)
  expect_snapshot(moe_mcmc_control(refresh = 0.5), error = TRUE)
  expect_snapshot(moe_mcmc_control(gate_update = "gibbs"), error = TRUE)
  expect_snapshot(moe_mcmc_control(gate_steps = 0), error = TRUE)
  expect_snapshot(moe_mcmc_control(pg_every = 0), error = TRUE)
  expect_snapshot(moe_mcmc_control(pg_every = 2.5), error = TRUE)
  expect_snapshot(moe_mcmc_control(threads = 0), error = TRUE)
  expect_snapshot(moe_mcmc_control(info_obs = 10), error = TRUE)
  expect_identical(moe_mcmc_control(pg_every = Inf)$pg_every, Inf)
})

test_that("moe_mcmc() rejects invalid arguments with classed errors", {
  set.seed(53)
  f <- tuned ~ stretchratio
  expect_snapshot(moe_mcmc(f, data = tonedata), error = TRUE)
  expect_snapshot(moe_mcmc(f, data = tonedata, K = 1.5), error = TRUE)
  expect_snapshot(moe_mcmc(f, data = tonedata, K = 2, prior = list()), error = TRUE)
  expect_snapshot(moe_mcmc(f, data = tonedata, K = 2, chains = 0), error = TRUE)
  expect_snapshot(moe_mcmc(f, data = tonedata, K = 2, iter = 0), error = TRUE)
  expect_snapshot(moe_mcmc(f, data = tonedata, K = 2, iter = 10, warmup = 10), error = TRUE)
  expect_snapshot(moe_mcmc(f, data = tonedata, K = 2, iter = 10, warmup = 5, thin = 6),
                  error = TRUE)
  expect_snapshot(moe_mcmc(f, data = tonedata, K = 2, init = "kmeans"), error = TRUE)
  expect_snapshot(moe_mcmc(f, data = tonedata, K = 2, seed = 1.5), error = TRUE)
  expect_snapshot(moe_mcmc(f, data = tonedata, K = 2, control = moe_em_control()),
                  error = TRUE)
  expect_snapshot(moe_mcmc(f, data = tonedata, K = 2, progress = NA), error = TRUE)
  expect_snapshot(moe_mcmc(f, data = tonedata, K = 2, prior = moe_prior(s_w = c(1, 2, 3))),
                  error = TRUE)
  expect_snapshot(moe_mcmc(f, data = tonedata, K = 2, weights = rep(0.5, 150)),
                  error = TRUE)
  expect_error(moe_mcmc(f, data = tonedata, K = 2, weights = rep(0.5, 150)),
               class = "bayesmoe_error_data")
  expect_snapshot(moe_mcmc(y ~ x, data = data.frame(x = 1:3, y = c(1, 2, 4)), K = 5),
                  error = TRUE)
  fit <- moe_mcmc(f, data = tonedata, K = 1, chains = 1, iter = 20, seed = 1,
                  progress = FALSE)
  expect_snapshot(moe_mcmc(fit), error = TRUE)
  expect_snapshot(moe_mcmc(fit, iter = 10, thin = 2), error = TRUE)
  expect_snapshot(moe_mcmc(fit, iter = 0), error = TRUE)
  expect_error(moe_mcmc(fit, iter = 10, seed = 1), class = "bayesmoe_error_input")
})

test_that("an EM start stopped by separation starts the chain with its gate scaled down", {
  set.seed(1)
  n <- 1500
  x1 <- runif(n)
  x2 <- runif(n)
  y <- ifelse(x1 > 0.5, 2 + x1 - x2, -1 - 2 * x1 + x2) + rnorm(n, sd = 0.3)
  X <- cbind("(Intercept)" = 1, x1 = x1, x2 = x2)
  em <- moe_em_fit(y, X, X, K = 2, starts = 2)
  expect_match(em$starts$status[em$best], "separation")
  sc <- bayesmoe:::moe_scaling(y, X, X)
  raw <- bayesmoe:::em_inits(em, sc, 1, 10)[[1]]
  capped <- bayesmoe:::em_inits(em, sc, 1, 10, cap = 50)[[1]]
  expect_gt(max(abs(raw$W)), 1000)
  expect_equal(max(abs(capped$W)), 50)
  # the same partition of the gating space, the same experts
  Zs <- bayesmoe:::scale_data(sc, y, X, X)$Z
  expect_identical(max.col(Zs %*% capped$W, ties.method = "first"),
                   max.col(Zs %*% raw$W, ties.method = "first"))
  expect_identical(capped$alpha, raw$alpha)
})

test_that("a chain from a separated EM start reaches the posterior of a step gate in warm-up", {
  # y follows one line for x1 > 0.5 and another below: the posterior of the
  # gate is steep, beyond the start's cap (10 s_w on the internal scale). The
  # Newton proposal from the capped start reaches the mode, but its reverse
  # density is negligible, so every step is rejected; the warm-up moves of
  # the collapsed update go to the Newton point instead, and the chain then
  # mixes by Metropolis-Hastings moves alone (no Polya-Gamma draws)
  set.seed(2)
  n <- 50000
  d <- data.frame(x1 = runif(n), x2 = runif(n))
  d$y <- ifelse(d$x1 > 0.5, 1 + 2 * d$x2, -1 - d$x2) + rnorm(n, sd = 0.3)
  fit <- withCallingHandlers(
    moe_mcmc(y ~ x1 + x2, data = d, K = 2, chains = 1, iter = 60, warmup = 30, seed = 1,
             progress = FALSE),
    bayesmoe_warning_separation = function(w) invokeRestart("muffleWarning"))
  mv <- fit$gating_moves[1L, ]
  expect_gt(mv[["accepted_warmup"]] / mv[["proposed_warmup"]], 0.3)
  expect_gt(mv[["accepted"]] / mv[["proposed"]], 0.2)
  expect_equal(mv[["pg_warmup"]], 0)
  # the draws of the internal gating slope lie beyond the start's cap
  slope <- abs(bayesmoe:::draws_internal(fit)$W[2L, 1L, ])
  expect_gt(min(slope), 10 * fit$prior$s_w)
})

test_that("a fit stores nothing of size n x draws, nor the warm start's responsibilities", {
  fit_of <- function(n) {
    set.seed(3)
    d <- data.frame(x = runif(n))
    d$y <- ifelse(d$x > 0.5, 1 + d$x, -1 - d$x) + rnorm(n, sd = 0.2)
    moe_mcmc(y ~ x, data = d, K = 2, chains = 2, iter = 300, seed = 1, progress = FALSE,
             control = moe_mcmc_control(em_starts = 2))
  }
  a <- fit_of(300)
  b <- fit_of(600)
  expect_null(a$em$resp)
  expect_false(is.null(a$em$par))
  # bytes per extra observation: the response, the two designs, the model
  # frame, weights and their row names (a few hundred bytes), far below
  # the 300 kept draws of even one double per observation (2,400 bytes)
  per_obs <- (as.numeric(object.size(b)) - as.numeric(object.size(a))) / 300
  expect_lt(per_obs, 600)
  # point-wise log-likelihoods are computed on demand
  expect_equal(dim(log_lik(a)), c(150L, 2L, 300L))
})
