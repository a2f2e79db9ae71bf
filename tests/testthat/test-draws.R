# Draws of MCMC fits for posterior, coda, bayesplot and data frames;
# posterior_predict(), posterior_epred(), loo(), waic(), confint(), vcov().

test_that("every posterior draws format holds the relabelled draws and the log-likelihood", {
  skip_if_not_installed("posterior")
  set.seed(101)
  f <- fake_draws_fit()
  vars <- c(names(coef(f)), "loglik")
  a <- posterior::as_draws_array(f)
  expect_s3_class(a, "draws_array")
  expect_equal(posterior::variables(a), vars)
  expect_equal(unclass(a)[, , 1:8], unclass(f$true_draws), ignore_attr = TRUE)
  expect_equal(unclass(a)[, , "loglik"], f$loglik_draws, ignore_attr = TRUE)
  expect_identical(posterior::as_draws(f), a)
  forms <- list(df = posterior::as_draws_df(f), matrix = posterior::as_draws_matrix(f),
                list = posterior::as_draws_list(f), rvars = posterior::as_draws_rvars(f))
  for (nm in names(forms)) {
    x <- forms[[nm]]
    expect_s3_class(x, paste0("draws_", nm))
    expect_equal(posterior::variables(x), vars)
    expect_equal(posterior::nchains(x), 2)
    expect_equal(posterior::niterations(x), 100)
    # back to an array: the same draws
    expect_equal(unclass(posterior::as_draws_array(x)), unclass(a), ignore_attr = TRUE)
  }
  # the draws as sampled
  raw <- posterior::as_draws_df(f, relabel = FALSE)
  expect_equal(as.vector(raw[["expert1:sigma2"]]), as.vector(f$draws[, , 3]))
  expect_identical(posterior::as_draws(f, relabel = FALSE),
                   posterior::as_draws_array(f, relabel = FALSE))
  s <- posterior::summarise_draws(posterior::as_draws_df(f), "mean")
  expect_equal(s$mean, c(coef(f), mean(f$loglik_draws)), ignore_attr = TRUE)
})

test_that("as.data.frame() has one row per draw and posterior's index columns", {
  set.seed(102)
  f <- fake_draws_fit()
  d <- as.data.frame(f)
  expect_s3_class(d, "data.frame")
  expect_equal(names(d), c(names(coef(f)), "loglik", ".chain", ".iteration", ".draw"))
  expect_equal(nrow(d), 200)
  expect_equal(d$.chain, rep(1:2, each = 100))
  expect_equal(d$.iteration, rep(1:100, 2))
  expect_equal(d$.draw, 1:200)
  expect_equal(as.matrix(d[, 1:8]), true_draws_matrix(f), ignore_attr = TRUE)
  expect_equal(d$loglik, as.vector(f$loglik_draws))
  expect_equal(as.matrix(as.data.frame(f, relabel = FALSE)[, 1:8]),
               matrix(f$draws, 200), ignore_attr = TRUE)
  skip_if_not_installed("posterior")
  expect_equal(d, as.data.frame(posterior::as_draws_df(f)), ignore_attr = TRUE)
})

test_that("coda::as.mcmc() and as.mcmc.list() give chains, not the fit object", {
  skip_if_not_installed("coda")
  set.seed(103)
  f <- fake_draws_fit()
  m <- coda::as.mcmc(f)
  expect_s3_class(m, "mcmc.list")
  expect_identical(m, coda::as.mcmc.list(f))
  expect_equal(coda::varnames(m), c(names(coef(f)), "loglik"))
  expect_equal(stats::start(m), 101)
  expect_equal(unclass(m[[2]])[, 1:8], f$true_draws[, 2, ], ignore_attr = TRUE)
  st <- coda::as.mcmc(f, combine_chains = TRUE)
  expect_s3_class(st, "mcmc")
  expect_equal(dim(st), c(200L, 9L))
  expect_equal(unclass(st)[, 1:8], true_draws_matrix(f), ignore_attr = TRUE)
  one <- fake_draws_fit(chains = 1)
  m1 <- coda::as.mcmc(one)
  expect_s3_class(m1, "mcmc")
  expect_equal(dim(m1), c(100L, 9L))
  expect_equal(unclass(coda::as.mcmc(f, relabel = FALSE)[[1]])[, 1:8], f$draws[, 1, ],
               ignore_attr = TRUE)
  # coda's diagnostics work on it
  expect_true(all(is.finite(coda::effectiveSize(m))))
})

test_that("posterior_epred() gives the predictive mean of every draw", {
  skip_if_not_installed("rstantools")
  set.seed(104)
  f <- fake_draws_fit()
  nd <- data.frame(stretchratio = c(1.5, NA, 2.5))
  mu <- rstantools::posterior_epred(f, nd)
  expect_equal(dim(mu), c(200L, 3L))
  expect_equal(colnames(mu), c("1", "2", "3"))
  D <- draws_matrix(f)
  des <- new_design(f, nd)
  ref <- t(vapply(1:200, function(i) {
    cm <- draw_components(D[i, ], des)
    rowSums(cm$g * cm$mu)
  }, numeric(3)))
  expect_equal(mu, ref, ignore_attr = TRUE)
  expect_true(all(is.na(mu[, 2])))
  expect_equal(colMeans(mu), predict(f, nd), ignore_attr = TRUE)
  # `draws` keeps evenly spread draws
  expect_equal(rstantools::posterior_epred(f, nd, draws = 5),
               mu[round(seq(1, 200, length.out = 5)), ])
  expect_equal(dim(rstantools::posterior_epred(f)), c(200L, 150L))
})

test_that("posterior_predict() draws from the posterior predictive distribution", {
  skip_if_not_installed("rstantools")
  set.seed(105)
  f <- fake_draws_fit(iter = 1000)
  nd <- data.frame(stretchratio = c(1.5, NA, 2.5))
  yrep <- rstantools::posterior_predict(f, nd, seed = 3)
  expect_equal(dim(yrep), c(2000L, 3L))
  expect_true(all(is.na(yrep[, 2])))
  # same seed, same draws; the caller's RNG state is untouched
  r <- .Random.seed
  expect_identical(rstantools::posterior_predict(f, nd, seed = 3), yrep)
  expect_identical(.Random.seed, r)
  # mean and variance of the posterior predictive distribution
  mu <- rstantools::posterior_epred(f, nd)
  D <- draws_matrix(f)
  des <- new_design(f, nd)
  m2 <- rowMeans(vapply(1:2000, function(i) {
    cm <- draw_components(D[i, ], des)
    rowSums(cm$g * (rep(cm$sigma2, each = 3) + cm$mu^2))
  }, numeric(3)))
  v <- m2 - colMeans(mu)^2
  z <- (colMeans(yrep) - colMeans(mu)) / sqrt(v / 2000)
  expect_true(all(abs(z[-2]) < 4))
  expect_equal(apply(yrep[, -2], 2, var), v[-2], tolerance = 0.15, ignore_attr = TRUE)
  expect_equal(dim(rstantools::posterior_predict(f, draws = 10, seed = 1)), c(10L, 150L))
})

test_that("the expert of a simulated response is drawn from the gating probabilities", {
  set.seed(106)
  g <- matrix(c(0.2, 0.5, 0.3), 30000, 3, byrow = TRUE)
  k <- draw_expert(g, runif(30000))
  expect_equal(as.vector(table(k)) / 30000, c(0.2, 0.5, 0.3), tolerance = 0.03)
  expect_identical(draw_expert(matrix(1, 3, 1), runif(3)), rep(1L, 3))
  expect_identical(draw_expert(rbind(c(NA, NA), c(0, 1)), c(0.5, 0.5)), c(NA, 2L))
})

test_that("log_lik() is the method of rstantools::log_lik() too", {
  skip_if_not_installed("rstantools")
  set.seed(107)
  f <- fake_draws_fit()
  expect_identical(rstantools::log_lik(f), log_lik(f))
  expect_identical(bayesmoe::log_lik(f), log_lik(f))
})

test_that("loo() and waic() use the pointwise log-likelihood with per-chain efficiencies", {
  skip_if_not_installed("loo")
  set.seed(108)
  f <- fake_draws_fit()
  ll <- log_lik(f)
  M <- matrix(ll, 200)
  r_eff <- loo::relative_eff(exp(M), chain_id = rep(1:2, each = 100))
  lo <- suppressWarnings(loo::loo(f))
  expect_s3_class(lo, "psis_loo")
  ref <- suppressWarnings(loo::loo(M, r_eff = r_eff))
  expect_equal(lo$estimates, ref$estimates)
  # the same efficiencies as loo's array interface
  expect_equal(r_eff, loo::relative_eff(exp(ll)), ignore_attr = TRUE)
  w <- suppressWarnings(loo::waic(f))
  expect_s3_class(w, "waic")
  expect_equal(w$estimates, suppressWarnings(loo::waic(M))$estimates)
  # loo_compare() accepts the results
  f1 <- fake_mcmc_fit(moe_em(tuned ~ stretchratio, data = tonedata, K = 1), iter = 100,
                      chains = 2)
  cmp <- suppressWarnings(loo::loo_compare(loo::loo(f1), lo))
  expect_equal(dim(cmp)[1], 2L)
  expect_true(is.finite(cmp[2, "elpd_diff"]))
  # draws a stopped chain left NA are dropped
  f$draws[91:100, 2, ] <- NA
  f$loglik_draws[91:100, 2] <- NA
  expect_equal(dim(suppressWarnings(loo::loo(f))$pointwise)[1], 150L)
  expect_equal(attr(suppressWarnings(loo::loo(f)), "dims"), c(190L, 150L))
  M <- M[-(191:200), ]
  r_short <- loo::relative_eff(exp(M[c(1:90, 101:190), ]), chain_id = rep(1:2, each = 90))
  expect_equal(suppressWarnings(loo::loo(f))$estimates,
               suppressWarnings(loo::loo(M, r_eff = r_short))$estimates)
})

test_that("confint() gives credible intervals in the layout of confint.lm()", {
  set.seed(109)
  f <- fake_draws_fit()
  D <- true_draws_matrix(f)
  ci <- confint(f)
  expect_equal(dimnames(ci), list(names(coef(f)), c("2.5 %", "97.5 %")))
  expect_equal(unname(ci), unname(t(apply(D, 2, quantile, c(0.025, 0.975)))))
  ci90 <- confint(f, c("expert2:sigma2", "gate1:(Intercept)"), level = 0.9)
  expect_equal(dimnames(ci90), list(c("expert2:sigma2", "gate1:(Intercept)"), c("5 %", "95 %")))
  expect_equal(unname(ci90[2, ]), quantile(D[, 7], c(0.05, 0.95), names = FALSE))
  expect_equal(confint(f, 2:3), ci[2:3, ])
  # same shape as for an lm fit
  lmci <- confint(lm(tuned ~ stretchratio, data = tonedata), level = 0.999)
  expect_equal(colnames(confint(f, level = 0.999)), colnames(lmci))
  V <- vcov(f)
  expect_equal(V, cov(D), ignore_attr = TRUE)
  expect_equal(dimnames(V), list(names(coef(f)), names(coef(f))))
})

test_that("bayesplot plots the draws and posterior predictive checks without warnings", {
  skip_if_not_installed("bayesplot")
  skip_if_not_installed("posterior")
  skip_if_not_installed("rstantools")
  set.seed(110)
  fit <- real_tone_fit()
  pdf(NULL)
  on.exit(dev.off(), add = TRUE)
  a <- posterior::as_draws_array(fit)
  expect_no_warning(print(bayesplot::mcmc_trace(a)))
  expect_no_warning(print(bayesplot::mcmc_areas(a, pars = c("expert1:stretchratio",
                                                            "expert2:stretchratio"))))
  expect_no_warning(print(bayesplot::mcmc_dens_overlay(posterior::as_draws_df(fit),
                                                       pars = "loglik")))
  yrep <- rstantools::posterior_predict(fit, draws = 30, seed = 1)
  expect_no_warning(print(bayesplot::ppc_dens_overlay(tonedata$tuned, yrep)))
  sims <- t(as.matrix(simulate(fit, nsim = 20, seed = 1)))
  expect_no_warning(print(bayesplot::ppc_dens_overlay(tonedata$tuned, sims)))
  mu <- rstantools::posterior_epred(fit, draws = 30)
  expect_no_warning(print(bayesplot::ppc_intervals(tonedata$tuned, mu, x = tonedata$stretchratio)))
})

test_that("the conversions work on a real fit and on variants", {
  skip_if_not_installed("posterior")
  set.seed(111)
  fit <- real_tone_fit()
  S <- prod(dim(fit$draws)[1:2])
  expect_equal(posterior::ndraws(posterior::as_draws_df(fit)), S)
  expect_equal(nrow(as.data.frame(fit)), S)
  expect_equal(rownames(confint(fit)), names(coef(fit)))
  expect_equal(unname(colMeans(as.data.frame(fit)[, 1:8])), unname(coef(fit)))
})

test_that("draws methods report bad arguments", {
  set.seed(112)
  f <- fake_draws_fit()
  expect_snapshot(error = TRUE, {
    as.data.frame(f, relabel = "yes")
    confint(f, "beta")
    confint(f, 99)
    confint(f, level = 95)
  })
  expect_error(confint(f, NA), class = "bayesmoe_error_input")
  skip_if_not_installed("posterior")
  skip_if_not_installed("coda")
  skip_if_not_installed("rstantools")
  skip_if_not_installed("loo")
  em <- em_tone()
  expect_snapshot(error = TRUE, {
    posterior::as_draws_df(f, relabel = NA)
    posterior::as_draws_rvars(f, relabel = 1)
    coda::as.mcmc(f, combine_chains = NA)
    rstantools::posterior_predict(f, draws = 0)
    rstantools::posterior_predict(f, seed = "a")
    rstantools::posterior_epred(f, draws = 1000)
    rstantools::posterior_epred(f, newdata = 1)
    rstantools::posterior_predict(em)
    rstantools::posterior_epred(em)
    rstantools::log_lik(em)
    loo::loo(em)
    loo::waic(em)
  })
  expect_error(loo::loo(em), class = "bayesmoe_error_input")
})
