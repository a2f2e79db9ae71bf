# Methods of MCMC fits, on fake fits (helper-mcmc.R) whose draws are known:
# switched labels, relabelled truth.

fake_tone <- function(seed = 1, switch = 0.3, iter = 100, chains = 2) {
  fake_mcmc_fit(em_tone(), iter = iter, chains = chains, switch = switch, seed = seed)
}

expect_same <- function(object, expected, ...) {
  expect_equal(object, expected, ignore_attr = TRUE, ...)
}

# Plain-R per-draw values of a predictive quantity: S x n (x m).
per_draw <- function(fit, nd, type, relabel = FALSE, ...) {
  D <- if (relabel) matrix(fit$true_draws, prod(dim(fit$draws)[1:2])) else draws_matrix(fit)
  des <- if (is.null(nd)) list(X = fit$X, Z = fit$Z, y = fit$y) else new_design(fit, nd)
  lapply(seq_len(nrow(D)), function(i)
    predict_par(par_unflatten(D[i, ], ncol(fit$X), ncol(fit$Z), fit$K), des, type, K = fit$K, ...))
}

test_that("coef() is the posterior mean of the relabelled draws", {
  set.seed(1)
  f <- fake_tone()
  truth <- colMeans(matrix(f$true_draws, 200))
  expect_equal(unname(coef(f)), truth)
  expect_equal(names(coef(f)), names(coef(em_tone())))
  expect_equal(coef(moe_relabel(f)), coef(f))
  cm <- coef(f, matrix = TRUE)
  expect_equal(dimnames(cm$alpha), list(c("(Intercept)", "stretchratio"),
                                        c("expert1", "expert2")))
  expect_equal(cm$W[, 2], c(`(Intercept)` = 0, stretchratio = 0))
  # the raw mean mixes the labels and is far from it
  expect_gt(max(abs(colMeans(draws_matrix(f)) - truth)), 0.1)
})

test_that("summary() tabulates relabelled draws and the raw log-likelihood", {
  set.seed(2)
  f <- fake_tone()
  s <- summary(f)
  D <- matrix(f$true_draws, 200)
  tab <- s$coefficients
  expect_equal(rownames(tab), names(coef(f)))
  expect_equal(colnames(tab), c("mean", "sd", "2.5%", "50%", "97.5%", "rhat", "ess_bulk",
                                "ess_tail", "mcse_mean"))
  expect_equal(unname(tab[, "mean"]), colMeans(D))
  expect_equal(unname(tab[, "sd"]), apply(D, 2, sd))
  expect_equal(unname(tab[, "97.5%"]), apply(D, 2, quantile, 0.975, names = FALSE))
  x <- matrix(f$true_draws[, , 4], 100, 2)
  expect_equal(tab[4, "rhat"], diag_rhat(x), ignore_attr = TRUE)
  expect_equal(tab[4, "ess_tail"], diag_ess_tail(x), ignore_attr = TRUE)
  expect_equal(unname(s$loglik["mean"]), mean(f$loglik_draws))
  expect_equal(unname(s$loglik["ess_bulk"]), diag_ess_bulk(f$loglik_draws))
  old <- options(bayesmoe.use_posterior = FALSE)
  on.exit(options(old))
  s2 <- summary(f, probs = 0.1)
  expect_equal(s2$backend, "bayesmoe")
  expect_equal(colnames(s2$coefficients)[3], "10%")
  expect_equal(s2$coefficients[, "rhat"], tab[, "rhat"], tolerance = 1e-10)
})

test_that("print(summary()) of an MCMC fit", {
  set.seed(3)
  f <- fake_tone(seed = 3)
  f$accept <- c(gating = 0.412, temperature = 0.3)
  expect_snapshot(print(summary(f), digits = 3))
  f1 <- fake_mcmc_fit(moe_em(tuned ~ stretchratio, data = tonedata, K = 1), iter = 50,
                      chains = 2, seed = 4)
  expect_snapshot(print(summary(f1), digits = 3))
})

test_that("logLik() is the largest log-likelihood of the draws", {
  set.seed(4)
  f <- fake_tone()
  ll <- logLik(f)
  expect_equal(as.numeric(ll), max(f$loglik_draws))
  expect_equal(attr(ll, "df"), 8)
  expect_equal(attr(ll, "nobs"), 150)
  expect_equal(BIC(f), -2 * max(f$loglik_draws) + 8 * log(150))
  # the draws are around the EM estimate: none beats the maximised likelihood
  expect_lte(as.numeric(ll), as.numeric(logLik(em_tone())) + 1e-6)
  f$loglik_draws[1, 1] <- NA
  expect_equal(as.numeric(logLik(f)), max(f$loglik_draws, na.rm = TRUE))
})

test_that("fitted() and residuals() average over the draws", {
  set.seed(5)
  f <- fake_tone()
  pm <- Reduce(`+`, per_draw(f, NULL, "mean")) / 200
  expect_equal(unname(fitted(f)), unname(pm))
  expect_equal(unname(residuals(f)), f$y - unname(pm))
  # Pearson: predictive variance = mean conditional variance + variance of means
  D <- draws_matrix(f)
  v <- vapply(seq_len(nrow(D)), function(i) {
    par <- par_unflatten(D[i, ], 2, 2, 2)
    cm <- moe_components(par, f$X, f$Z)
    g <- exp(cm$log_gate)
    m <- rowSums(g * cm$mean)
    rowSums(g * (rep(par$sigma2, each = 150) + cm$mean^2)) - m^2
  }, numeric(150))
  M <- vapply(per_draw(f, NULL, "mean"), identity, numeric(150))
  pv <- rowMeans(v) + apply(M, 1, function(r) mean((r - mean(r))^2))
  expect_equal(unname(residuals(f, type = "pearson")), unname((f$y - pm) / sqrt(pv)))
})

test_that("predict() gives posterior means and credible limits of every type", {
  set.seed(6)
  f <- fake_tone()
  nd <- data.frame(stretchratio = c(1.5, 2, 2.8), tuned = c(2, 2, 2.8))
  lim <- function(V, level = 0.95) apply(V, 1, quantile, c((1 - level) / 2, (1 + level) / 2),
                                         names = FALSE)
  # mean
  M <- vapply(per_draw(f, nd, "mean"), identity, numeric(3))
  p <- predict(f, nd, interval = "credible", level = 0.9)
  expect_equal(dimnames(p), list(c("1", "2", "3"), c("fit", "lwr", "upr")))
  expect_same(unname(p[, "fit"]), rowMeans(M))
  expect_same(unname(t(p[, c("lwr", "upr")])), lim(M, 0.9))
  expect_equal(predict(f, nd), p[, "fit"])
  # gating: relabelled draws, i.e. the true labels
  G <- simplify2array(per_draw(f, nd, "gating", relabel = TRUE))
  g <- predict(f, nd, type = "gating", interval = "credible")
  expect_equal(dim(g), c(3, 2, 3))
  expect_equal(dimnames(g)[[3]], c("fit", "lwr", "upr"))
  expect_same(unname(g[, , "fit"]), apply(G, 1:2, mean))
  expect_same(unname(g[, 1, "lwr"]), unname(apply(G[, 1, ], 1, quantile, 0.025)))
  expect_equal(predict(f, nd, type = "gating"), g[, , "fit"])
  expect_same(unname(rowSums(g[, , "fit"])), rep(1, 3))
  # expert means
  E <- simplify2array(per_draw(f, nd, "expert", relabel = TRUE))
  expect_same(unname(predict(f, nd, type = "expert")), apply(E, 1:2, mean))
  # density at the observed response: posterior predictive density
  Dn <- vapply(per_draw(f, nd, "density"), identity, numeric(3))
  d <- predict(f, nd, type = "density", interval = "credible")
  expect_same(unname(d[, "fit"]), rowMeans(Dn))
  expect_same(unname(t(d[, c("lwr", "upr")])), lim(Dn))
  dl <- predict(f, nd, type = "density", log = TRUE, interval = "credible")
  expect_equal(dl[, "fit"], log(d[, "fit"]))
  expect_same(unname(t(dl[, c("lwr", "upr")])), lim(log(Dn)))
  # density on a grid of y
  dg <- predict(f, nd, type = "density", y = c(1.9, 2.1))
  expect_equal(colnames(dg), c("1.9", "2.1"))
  DG <- simplify2array(per_draw(f, nd, "density", y = c(1.9, 2.1)))
  expect_same(unname(dg), apply(DG, 1:2, mean))
  # quantiles: posterior mean of the conditional quantiles
  Q <- simplify2array(per_draw(f, nd, "quantile", probs = c(0.1, 0.5)))
  qq <- predict(f, nd, type = "quantile", probs = c(0.1, 0.5), interval = "credible")
  expect_equal(dimnames(qq)[[2]], c("10%", "50%"))
  expect_same(unname(qq[, , "fit"]), apply(Q, 1:2, mean), tolerance = 1e-9)
  expect_same(unname(qq[, 2, "upr"]), unname(apply(Q[, 2, ], 1, quantile, 0.975)),
               tolerance = 1e-9)
  # newdata = NULL uses the data of the fit
  expect_equal(predict(f), fitted(f))
  expect_length(predict(f, type = "density"), 150)
})

test_that("ndraws uses evenly spread draws", {
  set.seed(7)
  f <- fake_tone()
  nd <- data.frame(stretchratio = c(1.5, 2.5))
  idx <- unique(round(seq(1, 200, length.out = 10)))
  M <- vapply(per_draw(f, nd, "mean")[idx], identity, numeric(2))
  expect_same(unname(predict(f, nd, ndraws = 10)), rowMeans(M))
  expect_equal(predict(f, nd, ndraws = 200), predict(f, nd))
  expect_equal(draw_index(200, 1), 1)
})

test_that("the Newton mixture quantile matches bisection", {
  set.seed(8)
  n <- 60
  K <- 3
  g <- matrix(rexp(n * K), n)
  g <- g / rowSums(g)
  mu <- matrix(rnorm(n * K, sd = 5), n)
  sd <- c(0.01, 1, 20)
  for (pr in c(1e-4, 0.025, 0.5, 0.9, 0.9999)) {
    expect_equal(mixture_quantile_newton(g, mu, matrix(sd, n, K, byrow = TRUE), pr),
                 unname(drop(mixture_quantile(log(g), mu, sd, pr))), tolerance = 1e-9)
  }
})

test_that("simulate() draws from the posterior predictive, reproducibly", {
  set.seed(9)
  f <- fake_tone()
  s1 <- simulate(f, nsim = 3, seed = 11)
  s2 <- simulate(f, nsim = 3, seed = 11)
  expect_identical(s1, s2)
  expect_equal(dim(s1), c(150, 3))
  expect_false(identical(s1, simulate(f, nsim = 3, seed = 12)))
  # every simulation uses one posterior draw as sampled
  pars <- simulation_pars(f, 5)
  D <- draws_matrix(f)
  for (par in pars) {
    expect_true(any(apply(D, 1, function(r) isTRUE(all.equal(r, par_flatten(par),
                                                              check.attributes = FALSE)))))
  }
  # the seed leaves the caller's RNG state alone
  set.seed(13)
  before <- .Random.seed
  simulate(f, nsim = 1, seed = 1)
  expect_identical(.Random.seed, before)
})

test_that("log_lik() gives the pointwise log-likelihood for loo", {
  set.seed(10)
  f <- fake_tone()
  ll <- log_lik(f)
  expect_equal(dim(ll), c(100, 2, 150))
  expect_equal(dimnames(ll)[[2]], c("chain1", "chain2"))
  expect_same(apply(ll, 1:2, sum), f$loglik_draws)
  D <- draws_matrix(f)
  expect_equal(ll[7, 2, ], moe_log_density(par_unflatten(D[107, ], 2, 2, 2), f$X, f$Z, f$y),
               ignore_attr = TRUE)
  # new data with the response
  nd <- tonedata[1:5, ]
  expect_equal(log_lik(f, newdata = nd)[, , 1:5, drop = FALSE], ll[, , 1:5, drop = FALSE],
               ignore_attr = TRUE)
  skip_if_not_installed("loo")
  lo <- suppressWarnings(loo::loo(ll, r_eff = loo::relative_eff(exp(ll))))
  expect_s3_class(lo, "psis_loo")
  lpd <- sum(log(colMeans(matrix(exp(ll), 200))))
  est <- lo$estimates
  expect_equal(est["elpd_loo", "Estimate"] + est["p_loo", "Estimate"], lpd)
  w <- suppressWarnings(loo::waic(ll))
  expect_equal(w$estimates["elpd_waic", "Estimate"] + w$estimates["p_waic", "Estimate"], lpd)
})

test_that("log_lik() weights observations and drops zero weights", {
  set.seed(11)
  em <- moe_em(tuned ~ stretchratio, data = tonedata, K = 2, seed = 1,
               weights = rep(c(0, 1, 2), 50))
  f <- fake_mcmc_fit(em, iter = 20, chains = 2)
  ll <- log_lik(f)
  expect_equal(dim(ll), c(20, 2, 100))
  expect_same(apply(ll, 1:2, sum), f$loglik_draws)
})

test_that("posterior and coda conversions include the log-likelihood", {
  set.seed(12)
  f <- fake_tone()
  skip_if_not_installed("posterior")
  a <- posterior::as_draws_array(f)
  expect_s3_class(a, "draws_array")
  expect_equal(posterior::variables(a), c(names(coef(f)), "loglik"))
  expect_equal(posterior::nchains(a), 2)
  expect_equal(unclass(a)[, , 1:8], unclass(f$true_draws), ignore_attr = TRUE)
  expect_equal(unclass(a)[, , "loglik"], f$loglik_draws, ignore_attr = TRUE)
  raw <- posterior::as_draws_array(f, relabel = FALSE)
  expect_equal(unclass(raw)[, , 1:8], unclass(f$draws), ignore_attr = TRUE)
  sm <- posterior::summarise_draws(a, "rhat", "ess_bulk")
  s <- summary(f)
  expect_same(as.numeric(sm$rhat), c(s$coefficients[, "rhat"], s$loglik["rhat"]))
  skip_if_not_installed("coda")
  m <- coda::as.mcmc.list(f)
  expect_s3_class(m, "mcmc.list")
  expect_equal(coda::nchain(m), 2)
  expect_equal(coda::varnames(m), c(names(coef(f)), "loglik"))
  expect_equal(stats::start(m), 101)
  expect_equal(unclass(m[[2]])[, 3], f$true_draws[, 2, 3], ignore_attr = TRUE)
  expect_equal(unclass(coda::as.mcmc.list(f, relabel = FALSE)[[1]])[, 1], f$draws[, 1, 1],
               ignore_attr = TRUE)
})

test_that("s3_register() registers methods when the generic's package loads", {
  expect_silent(s3_register("stats::nobs", "bayesmoe_test_class", method = function(object, ...) 42))
  expect_equal(nobs(structure(list(), class = "bayesmoe_test_class")), 42)
})

test_that("plot() draws every kind of plot", {
  set.seed(13)
  f <- fake_tone()
  pdf(NULL)
  on.exit(dev.off())
  expect_identical(plot(f), f)
  expect_identical(plot(moe_relabel(f), "trace", pars = "loglik")$relabel$pivot, "em")
  expect_identical(plot(f, "density", pars = c("loglik", "gate1:stretchratio")), f)
  expect_identical(plot(f, "trace", pars = "expert2:sigma2"), f)
  expect_identical(plot(f, "fit", level = 0.8), f)
  expect_identical(plot(f, "gating"), f)
})

test_that("MCMC methods report bad arguments", {
  set.seed(14)
  f <- fake_tone()
  nd <- data.frame(stretchratio = 2)
  pdf(NULL)
  on.exit(dev.off())
  expect_snapshot(error = TRUE, {
    predict(f, type = "median")
    predict(f, interval = "confidence")
    predict(f, level = 1)
    predict(f, ndraws = 0)
    predict(f, ndraws = 1000)
    predict(f, type = "quantile", probs = 1)
    predict(f, type = "quantile", probs = c(0.5, NA))
    predict(f, nd, type = "density")
    predict(f, type = "density", y = "a")
    predict(f, log = NA)
    predict(f, newdata = 1)
    summary(f, probs = 2)
    residuals(f, type = "deviance")
    plot(f, what = "pairs")
    plot(f, pars = "beta")
    plot(f, "fit", level = 0)
    plot(f, "gating", covariate = "tuned")
    log_lik(f, newdata = nd)
    simulate(f, nsim = 0)
  })
  expect_error(predict(f, type = "median"), class = "bayesmoe_error_input")
  skip_if_not_installed("posterior")
  expect_snapshot(error = TRUE, posterior::as_draws_array(f, relabel = NA))
})

test_that("methods skip the draws a stopped chain left NA", {
  set.seed(15)
  f <- fake_tone()
  f$draws[91:100, 2, ] <- NA
  f$loglik_draws[91:100, 2] <- NA
  keep <- matrix(TRUE, 100, 2)
  keep[91:100, 2] <- FALSE
  truth <- matrix(f$true_draws, 200)[as.vector(keep), ]
  expect_same(coef(f), colMeans(truth))
  s <- summary(f)
  expect_same(s$coefficients[, "mean"], colMeans(truth))
  expect_true(all(is.na(s$coefficients[, "rhat"])))
  expect_equal(unname(s$loglik["mean"]), mean(f$loglik_draws, na.rm = TRUE))
  nd <- data.frame(stretchratio = c(1.5, 2.5))
  M <- vapply(per_draw(f, nd, "mean")[as.vector(keep)], identity, numeric(2))
  expect_same(predict(f, nd), rowMeans(M))
  expect_false(anyNA(residuals(f, type = "pearson")))
  expect_false(anyNA(simulate(f, nsim = 20, seed = 1)))
  expect_true(all(is.na(log_lik(f)[91:100, 2, ])))
  pdf(NULL)
  on.exit(dev.off())
  expect_identical(plot(f, "density", pars = "loglik"), f)
})

# ---------------------------------------------------------------------------
# Real fits from the sampler (run once moe_mcmc() is part of the package)

has_sampler <- function() exists("moe_mcmc", mode = "function")

test_that("methods work on a real moe_mcmc() fit", {
  skip_if_not(has_sampler(), "moe_mcmc() is not available")
  set.seed(20)
  fit <- moe_mcmc(tuned ~ stretchratio, data = tonedata, K = 2, chains = 2, iter = 400,
                  seed = 1, progress = FALSE)
  S <- prod(dim(fit$draws)[1:2])
  s <- summary(fit)
  expect_equal(rownames(s$coefficients), names(coef(fit)))
  expect_true(all(is.finite(s$coefficients)))
  expect_equal(unname(s$loglik["mean"]), mean(fit$loglik_draws))
  expect_output(print(s), "Total log-likelihood")
  # label-invariant quantities agree between raw and relabelled draws
  r <- moe_relabel(fit)
  D <- draws_matrix(r)
  ll <- vapply(seq_len(S), function(i) sum(fit$weights *
    moe_log_density(par_unflatten(D[i, ], 2, 2, 2), fit$X, fit$Z, fit$y)), 0)
  expect_equal(ll, as.vector(fit$loglik_draws), tolerance = 1e-8)
  expect_same(coef(fit), colMeans(D))
  lp <- log_lik(fit)
  expect_equal(dim(lp), c(dim(fit$draws)[1:2], 150))
  expect_equal(apply(lp, 1:2, sum), fit$loglik_draws, tolerance = 1e-8, ignore_attr = TRUE)
  nd <- data.frame(stretchratio = c(1.5, 2.5))
  p <- predict(fit, nd, interval = "credible")
  expect_true(all(p[, "lwr"] <= p[, "fit"] & p[, "fit"] <= p[, "upr"]))
  g <- predict(fit, nd, type = "gating", interval = "credible", ndraws = 100)
  expect_equal(unname(rowSums(g[, , "fit"])), c(1, 1))
  expect_length(residuals(fit), 150)
  expect_equal(dim(simulate(fit, nsim = 2, seed = 1)), c(150, 2))
  pdf(NULL)
  on.exit(dev.off())
  for (w in c("trace", "density", "fit", "gating")) expect_identical(plot(fit, w), fit)
  skip_if_not_installed("loo")
  lo <- suppressWarnings(loo::loo(lp, r_eff = loo::relative_eff(exp(lp))))
  expect_true(is.finite(lo$estimates["elpd_loo", "Estimate"]))
  skip_if_not_installed("posterior")
  expect_equal(posterior::ndraws(posterior::as_draws_array(fit)), S)
})

test_that("relabelling makes the chains of a real 3-expert fit agree", {
  skip_if_not(has_sampler(), "moe_mcmc() is not available")
  set.seed(21)
  d <- sim_moe3(n = 300, seed = 2)
  # EM starts: chains started from the prior ("random") mostly stay in a
  # local mode for 400 iterations on this problem (in about 3 of 32 seeds
  # both chains found the true experts), which is about mixing, not about
  # the relabelling (switched labels are recovered exactly in
  # test-relabel.R)
  fit <- moe_mcmc(y ~ x, data = d, K = 3, chains = 2, iter = 400, seed = 3,
                  progress = FALSE)
  r <- moe_relabel(fit)
  ex <- grepl("^expert", dimnames(r$draws)[[3]])
  m <- apply(r$draws[, , ex], 2:3, mean)
  sdv <- apply(r$draws[, , ex], 3, sd)
  # the chains agree on every expert parameter after relabelling
  expect_true(all(abs(m[1, ] - m[2, ]) < 4 * sdv + 1e-8))
  # and the relabelled experts are the true ones (x = 0 intercepts 4, 0, -4)
  expect_equal(sort(unname(coef(r)[grep(":\\(Intercept\\)$", names(coef(r)))][1:3])),
               c(-4, 0, 4), tolerance = 0.1)
})

test_that("predict() of an MCMC fit refuses unknown arguments, as for EM fits", {
  set.seed(15)
  f <- fake_tone()
  expect_error(predict(f, se.fit = TRUE), class = "bayesmoe_error_input")
  expect_snapshot(error = TRUE, {
    predict(f, se.fit = TRUE)
    predict(f, interval = "credible", levels = 0.9)
  })
})
