# The generic kernels of the EM (src/em.c) and the Gibbs sampler (src/mcmc.c)
# of the gating variants: exact identities with the softmax, monotone EM,
# every gate under both, simulation-based calibration of the Metropolis
# blocks, continuation, methods.

slow_tests <- function() identical(Sys.getenv("BAYESMOE_SLOW_TESTS"), "true")

sim_topk <- function(n, k, seed) {
  withr_seed(seed, {
    x <- runif(n, -2, 2)
    Z <- cbind(1, x)
    par <- list(alpha = cbind(c(1, 2), c(-1, 1), c(0, -2)), sigma2 = c(0.1, 0.2, 0.15),
                W = cbind(c(0.5, -3), c(0, 3), 0))
    g <- exp(gate_log_prob_r(gate_topk(k), Z, par))
    kk <- apply(g, 1, function(p) sample.int(3, 1, prob = p))
    data.frame(x = x, y = par$alpha[1, kk] + par$alpha[2, kk] * x +
                 sqrt(par$sigma2[kk]) * rnorm(n))
  })
}

gates_of <- function(K) {
  list(topk = gate_topk(max(1, K - 1)), temperature = gate_temperature(0.5),
       learned = gate_temperature(1, learn = TRUE, prior = c(0, 0.5)),
       hierarchical = gate_hierarchical(if (K >= 3) c(1, 1, rep(2, K - 2)) else 1))
}

# ---- EM ---------------------------------------------------------------------

test_that("EM: k = K, temperature 1 and one group reach the softmax optimum", {
  for (case in list(list(d = tonedata, f = tuned ~ stretchratio, K = 2),
                    list(d = sim_moe3(), f = y ~ x, K = 3))) {
    sm <- moe_em(case$f, data = case$d, K = case$K, seed = 1)
    for (g in list(gate_topk(case$K), gate_temperature(1), gate_hierarchical(1),
                   gate_hierarchical(seq_len(case$K)))) {
      fit <- moe_em(case$f, data = case$d, K = case$K, seed = 1, gate = g)
      expect_equal(as.numeric(logLik(fit)), as.numeric(logLik(sm)), tolerance = 1e-6,
                   info = gate_call(g))
      expect_equal(predict(fit, type = "density"), predict(sm, type = "density"),
                   tolerance = 1e-4, info = gate_call(g))
    }
  }
})

test_that("EM: a fixed temperature is the softmax of Z / tau", {
  sm <- moe_em(y ~ x, data = sim_moe3(), K = 3, seed = 1)
  tf <- moe_em(y ~ x, data = sim_moe3(), K = 3, seed = 1, gate = gate_temperature(0.25))
  expect_equal(as.numeric(logLik(tf)), as.numeric(logLik(sm)), tolerance = 1e-7)
  al <- align_labels(coef(tf, matrix = TRUE), coef(sm, matrix = TRUE))
  expect_equal(unname(al$W), 0.25 * unname(coef(sm, matrix = TRUE)$W), tolerance = 1e-4)
})

test_that("EM: the observed log-likelihood never decreases", {
  for (seed in 1:3) {
    for (k in 1:2) {
      d <- sim_topk(300, k, seed)
      fit <- moe_em(y ~ x, data = d, K = 3, seed = seed, gate = gate_topk(k), starts = 3)
      for (j in seq_len(3)) {
        # every start: the C trace of the returned fit, and the final
        # log-likelihoods of all starts are finite
        expect_true(is.finite(fit$starts$loglik[j]))
      }
      tr <- fit$trace
      expect_true(all(diff(tr) >= -1e-9 * abs(tr[-1])), info = paste(seed, k))
      expect_false("decrease" %in% decode_status(fit$status))
    }
    # four experts for three: may end with a spike expert (warned of, see
    # test-em.R); the trace is what is tested
    fit <- suppressWarnings(moe_em(y ~ x, data = sim_moe3(seed = seed), K = 4, seed = seed,
                                   gate = gate_hierarchical(2), starts = 2),
                            classes = "bayesmoe_warning_degenerate")
    tr <- fit$trace
    expect_true(all(diff(tr) >= -1e-9 * abs(tr[-1])))
  }
})

test_that("EM: a top-k truth is recovered", {
  d <- sim_topk(2000, 2, 11)
  fit <- moe_em(y ~ x, data = d, K = 3, gate = gate_topk(2), seed = 1, starts = 4)
  a <- coef(fit, matrix = TRUE)$alpha
  ord <- order(a[2, ])
  expect_equal(unname(a[, ord]), cbind(c(0, -2), c(-1, 1), c(1, 2)), tolerance = 0.1)
})

test_that("EM: top-k reaches at least the log-likelihood of the truth", {
  # the active-set boundaries move only through the pattern search on the
  # observed log-likelihood (without it EM stalled 150-250 below the truth
  # at n = 8000); plain-R log-likelihood of the truth
  d <- sim_topk(3000, 2, 5)
  truth <- list(alpha = cbind(c(1, 2), c(-1, 1), c(0, -2)), sigma2 = c(0.1, 0.2, 0.15),
                W = cbind(c(0.5, -3), c(0, 3), 0))
  Z <- cbind(1, d$x)
  g <- exp(gate_log_prob_r(gate_topk(2), Z, truth))
  mu <- Z %*% truth$alpha
  ll_true <- sum(log(rowSums(g * sapply(1:3, function(j)
    dnorm(d$y, mu[, j], sqrt(truth$sigma2[j]))))))
  fit <- moe_em(y ~ x, data = d, K = 3, gate = gate_topk(2), seed = 1, starts = 3)
  expect_gte(as.numeric(logLik(fit)), ll_true - 1e-6)
})

test_that("EM: a learned temperature is the MAP under its prior and the ridge", {
  d <- sim_moe3()
  sm <- moe_em(y ~ x, data = d, K = 3, seed = 1)
  fit <- suppressWarnings(moe_em(y ~ x, data = d, K = 3, seed = 1,
                                 gate = gate_temperature(2, learn = TRUE, prior = c(0.3, 1))))
  # without a ridge the likelihood alone cannot move tau: the MAP is the
  # prior mode and the fit is the softmax fit
  expect_equal(coef(fit, matrix = TRUE)$tau, exp(0.3), tolerance = 1e-6)
  expect_equal(as.numeric(logLik(fit)), as.numeric(logLik(sm)), tolerance = 1e-6)
  expect_snapshot(V <- vcov(fit))
  expect_true(all(is.na(V)))
  # with a ridge on w, tau moves towards larger logits per unit of w
  rf <- moe_em(y ~ x, data = d, K = 3, seed = 1, control = moe_em_control(ridge = 0.5),
               gate = gate_temperature(2, learn = TRUE, prior = c(0.3, 1)))
  expect_true(coef(rf, matrix = TRUE)$tau < exp(0.3))
  expect_false("decrease" %in% decode_status(rf$status))
})

# ---- MCMC -------------------------------------------------------------------

test_that("every gate runs under EM and MCMC with finite log-likelihoods", {
  d <- sim_moe3(150)
  for (g in gates_of(3)) {
    em <- moe_em(y ~ x, data = d, K = 3, seed = 1, gate = g, starts = 3)
    expect_true(is.finite(logLik(em)))
    mc <- moe_mcmc(y ~ x, data = d, K = 3, gate = g, chains = 2, iter = 120, seed = 2,
                   progress = FALSE, control = moe_mcmc_control(em_starts = 3))
    expect_true(all(is.finite(mc$loglik_draws)), info = gate_call(g))
    # the stored log-likelihoods are those of the stored draws
    D <- draws_matrix(mc)
    for (i in c(1, 57, nrow(D))) {
      par <- par_unflatten(D[i, ], 2, 2, 3, fit_spec(mc))
      expect_equal(sum(moe_log_density(par, mc$X, mc$Z, mc$y)),
                   as.vector(mc$loglik_draws)[i], tolerance = 1e-8, info = gate_call(g))
    }
    expect_identical(dimnames(mc$draws)[[3]], names(coef(em)))
  }
})

test_that("MCMC: k = K, temperature 1 and one group sample the softmax posterior", {
  # the generic sampler against src/mcmc.c: posterior means of the
  # log-likelihood and of the predictive mean agree within Monte Carlo error
  set.seed(5)
  ref <- moe_mcmc(tuned ~ stretchratio, data = tonedata, K = 2, chains = 2, iter = 1500,
                  seed = 3, progress = FALSE)
  nd <- data.frame(stretchratio = c(1.5, 2.5))
  pm_ref <- predict(ref, nd)
  for (g in list(gate_topk(2), gate_temperature(1), gate_hierarchical(1))) {
    fit <- moe_mcmc(tuned ~ stretchratio, data = tonedata, K = 2, gate = g, chains = 2,
                    iter = 1500, seed = 4, progress = FALSE)
    a <- as.vector(fit$loglik_draws)
    b <- as.vector(ref$loglik_draws)
    se <- sqrt(diag_mcse_mean(fit$loglik_draws)^2 + diag_mcse_mean(ref$loglik_draws)^2)
    expect_lt(abs(mean(a) - mean(b)) / se, 4.5)
    expect_equal(predict(fit, nd), pm_ref, tolerance = 0.05)
  }
})

test_that("a continued variant chain is identical to one long run", {
  d <- sim_topk(200, 2, 3)
  for (g in list(gate_topk(2), gate_temperature(0.7, learn = TRUE),
                 gate_hierarchical(c(1, 1, 2)))) {
    long <- moe_mcmc(y ~ x, data = d, K = 3, gate = g, chains = 2, iter = 300,
                     warmup = 100, seed = 9, progress = FALSE,
                     control = moe_mcmc_control(em_starts = 2))
    short <- moe_mcmc(y ~ x, data = d, K = 3, gate = g, chains = 2, iter = 200,
                      warmup = 100, seed = 9, progress = FALSE,
                      control = moe_mcmc_control(em_starts = 2))
    cont <- moe_mcmc(short, iter = 100)
    expect_identical(cont$draws, long$draws, info = gate_call(g))
    expect_identical(cont$loglik_draws, long$loglik_draws)
    expect_equal(cont$accept, long$accept)
  }
})

test_that("acceptance rates are stored and printed", {
  d <- sim_topk(150, 1, 4)
  fit <- moe_mcmc(y ~ x, data = d, K = 3, gate = gate_topk(1), chains = 2, iter = 300,
                  seed = 1, progress = FALSE, control = moe_mcmc_control(em_starts = 2))
  expect_identical(dim(fit$accept), c(2L, 2L))
  expect_identical(colnames(fit$accept), c("gate1", "gate2"))
  expect_true(all(fit$accept > 0.05 & fit$accept < 0.8))
  expect_output(print(fit), "Metropolis-Hastings acceptance rates after warm-up")
  expect_output(print(summary(fit)), "gate1")
  lt <- moe_mcmc(y ~ x, data = d, K = 2, gate = gate_temperature(1, learn = TRUE),
                 chains = 1, iter = 200, seed = 1, progress = FALSE,
                 control = moe_mcmc_control(em_starts = 2))
  expect_identical(colnames(lt$accept), c("refresh", "log_tau", "scale"))
  expect_true("tau" %in% names(coef(lt)))
})

# ---- simulation-based calibration of the Metropolis blocks ----------------
#
# As in test-mcmc.R: parameters from the prior (internal scale), data from
# the model, one chain from a separate prior draw, ranks of label-invariant
# functionals of the truth among the thinned draws: the predictive mean at
# x0 = z0 = (1, 0.5), the log of the smallest expert variance, the largest
# gating probability at z0 (not for top-1 gating, where it is always 1), the
# log-likelihood, and for a learned temperature log(tau) itself. (Steep
# gates mix slowly from a prior draw: with 2000 replications the largest
# gating probability of the softmax sampler of src/mcmc.c under
# s_w = 3 gives p = 4e-4 after 100 warm-up sweeps, so the full version
# warms up for 300.)

sbc_variant_ranks <- function(spec, K, n, pc, warmup, iter, thin) {
  th <- prior_draw_spec(pc, K, spec)
  x <- rnorm(n)
  X <- cbind(1, x)
  g <- exp(gate_log_prob(spec$gate, X, th))
  k <- apply(g, 1L, function(p) sample.int(K, 1L, prob = p))
  y <- rowSums(X * t(th$alpha[, k])) + sqrt(th$sigma2[k]) * rnorm(n)
  s <- list(y = y, X = X, Z = X, w = rep(1, n))
  init <- prior_draw_spec(pc, K, spec)
  nb <- length(variant_blocks(spec, K, 1L))
  res <- gibbs_chain_c(s, pc, K, init, spec$gate, spec$expert,
                       variant_adapt_init(spec, 2L, K), numeric(),
                       c(warmup, iter, thin, 0, 0, 1, 1, 1, 20, 1, 0), nb)
  S <- length(res$loglik)
  x0 <- rbind(c(1, 0.5))
  fun <- function(par) {
    gz <- exp(gate_log_prob(spec$gate, x0, par))
    c(pm = sum(gz * (x0 %*% par$alpha)), ls = log(min(par$sigma2)),
      if (!identical(spec$gate$k, 1L)) c(gmax = max(gz)),
      if (isTRUE(spec$gate$learn)) c(ltau = log(par$tau)))
  }
  A <- array(res$alpha, c(2, K, S))
  W <- array(res$W, c(2, K, S))
  V <- if (!is.null(res$V)) array(res$V, c(2, spec$gate$G, S))
  f <- t(vapply(seq_len(S), function(i) {
    par <- list(alpha = A[, , i], sigma2 = matrix(res$sigma2, K)[, i], W = W[, , i],
                V = if (!is.null(V)) V[, , i], tau = res$tau[i], spec = spec)
    fun(par)
  }, numeric(length(fun(th)))))
  ft <- fun(th)
  ll_true <- sum(moe_log_density(th, X, X, y))
  c(colSums(f < rep(ft, each = S)), ll = sum(res$loglik < ll_true))
}

# `iter` / `thin` kept draws give ranks 0..L, L = iter %/% thin: L + 1 must
# be a multiple of `bins` so that every bin holds as many rank values.
sbc_variant_pvalues <- function(spec, K, reps, n = 30, warmup = 100, iter = 190,
                                thin = 10, bins = 5) {
  stopifnot((iter %/% thin + 1) %% bins == 0)
  pc <- prior_internal(moe_prior(s_w = 1.5, V_a = 4, c0 = 3, C0 = 1), 2L, 2L)
  r <- t(replicate(reps, sbc_variant_ranks(spec, K, n, pc, warmup, iter, thin)))
  L <- iter %/% thin
  apply(r, 2L, function(v)
    suppressWarnings(chisq.test(table(factor(v %/% ((L + 1) / bins), 0:(bins - 1)))))$p.value)
}

test_that("simulation-based calibration of the variant samplers (fast version)", {
  set.seed(41)
  specs <- list(make_spec(gate_topk(2), NULL),
                make_spec(gate_temperature(1, learn = TRUE, prior = c(0, 0.5)), NULL),
                make_spec(gate_resolve(gate_hierarchical(c(1, 1, 2)), 3), NULL))
  for (spec in specs) {
    p <- sbc_variant_pvalues(spec, K = 3, reps = 150)
    expect_true(all(p > 0.001), info = paste(gate_call(spec$gate),
                                              paste(names(p), format(p), collapse = " ")))
  }
})

test_that("simulation-based calibration of the variant samplers (full version)", {
  skip_if_not(slow_tests(), "set BAYESMOE_SLOW_TESTS=true for the full SBC")
  set.seed(42)
  specs <- list(make_spec(gate_topk(1), NULL), make_spec(gate_topk(2), NULL),
                make_spec(gate_temperature(1, learn = TRUE, prior = c(0, 0.5)), NULL),
                make_spec(gate_temperature(0.5), NULL),
                make_spec(gate_resolve(gate_hierarchical(c(1, 1, 2)), 3), NULL))
  for (spec in specs) {
    p <- sbc_variant_pvalues(spec, K = 3, reps = 1000, bins = 10, warmup = 300)
    expect_true(all(p > 1e-4), info = paste(gate_call(spec$gate),
                                             paste(names(p), format(p), collapse = " ")))
  }
})

# ---- methods ----------------------------------------------------------------

test_that("print, summary, predict, plot and relabelling work with every gate", {
  pdf(NULL)
  on.exit(dev.off())
  d <- sim_moe3(150)
  for (nm in names(gates_of(3))) {
    g <- gates_of(3)[[nm]]
    em <- suppressWarnings(moe_em(y ~ x, data = d, K = 3, seed = 1, gate = g, starts = 3))
    expect_snapshot(print(em), variant = nm)
    expect_output(print(suppressWarnings(summary(em))), "Log-likelihood")
    nd <- data.frame(x = c(-1, 0, 1))
    gp <- predict(em, nd, type = "gating")
    expect_equal(unname(rowSums(gp)), rep(1, 3))
    expect_length(predict(em, nd), 3)
    expect_identical(dim(predict(em, nd, type = "quantile", probs = c(0.1, 0.9))), c(3L, 2L))
    expect_silent(plot(em, "gating"))
    expect_true(all(is.finite(simulate(em, seed = 1)$sim_1)))
    mc <- moe_mcmc(y ~ x, data = d, K = 3, gate = g, chains = 2, iter = 100, seed = 1,
                   progress = FALSE, control = moe_mcmc_control(em_starts = 3))
    expect_output(print(mc), gate_label(mc$gate), fixed = TRUE)
    expect_output(print(summary(mc)), "Total log-likelihood")
    b <- predict(mc, nd, type = "gating", interval = "credible")
    expect_equal(unname(rowSums(b[, , "fit"])), rep(1, 3))
    expect_silent(plot(mc, "gating"))
    expect_silent(plot(mc, "trace", pars = "loglik"))
    rl <- moe_relabel(mc)
    expect_identical(dim(rl$draws), dim(mc$draws))
    expect_equal(dim(log_lik(mc)), c(50L, 2L, 150L))
  }
})

test_that("relabelling a hierarchical fit permutes within groups and whole groups", {
  d <- sim_moe3(200)
  mc <- moe_mcmc(y ~ x, data = d, K = 4, gate = gate_hierarchical(2), chains = 2,
                 iter = 100, seed = 2, progress = FALSE,
                 control = moe_mcmc_control(em_starts = 2))
  # scramble the labels by allowed permutations, then relabel
  spec <- fit_spec(mc)
  allowed <- list(c(2, 1, 3, 4), c(3, 4, 1, 2), c(4, 3, 2, 1))
  fk <- mc
  D <- draws_matrix(mc)
  set.seed(3)
  pick <- sample(0:3, nrow(D), replace = TRUE)
  for (i in which(pick > 0)) {
    D[i, ] <- par_flatten(permute_par(par_unflatten(D[i, ], 2, 2, 4, spec), allowed[[pick[i]]]))
  }
  fk$draws <- array(D, dim(mc$draws), dimnames(mc$draws))
  rl <- moe_relabel(fk)
  perms <- matrix(rl$relabel$permutations, ncol = 4)
  groups <- c(1, 1, 2, 2)
  for (i in seq_len(nrow(perms))) {
    gp <- groups[perms[i, ]]
    expect_true(gp[1] == gp[2] && gp[3] == gp[4])
  }
  # label-invariant predictions are unchanged by the scrambling
  nd <- data.frame(x = c(-1, 1))
  expect_equal(predict(fk, nd), predict(mc, nd))
})
