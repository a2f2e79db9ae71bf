# Hardening: malformed input, numerical extremes, interrupts and
# reproducibility.
#
# Malformed input: every exported function and method either returns a valid
# result (finite where finiteness is promised) or stops with a classed
# bayesmoe error naming the argument; nothing crashes, hangs or returns
# non-finite values silently. The table-driven part lists the cases by hand
# (run_cases(), helper-hardening.R); the randomised part mutates valid calls
# from a seed (random_malformed_calls()). The entry points exercised are
# recorded and compared with the NAMESPACE at the end of the tables.

# ---- malformed data -------------------------------------------------------------

malformed_data <- function(d) {
  list(
    na_in_y = within(d, y[3] <- NA),
    nan_in_x = within(d, x[4] <- NaN),
    inf_in_y = within(d, y[2] <- Inf),
    neg_inf_x = within(d, x[1] <- -Inf),
    zero_rows = d[0, ],
    one_row = d[1, ],
    two_rows = d[1:2, ],
    three_rows = d[1:3, ],
    constant_x = within(d, x <- 1),
    constant_y = within(d, y <- 3),
    collinear = within(d, z <- 2 * x),
    duplicated_rows = d[rep(1:5, 8), ],
    huge_scale = within(d, { y <- 1e8 * y; x <- 1e8 * x; z <- 1e8 * z }),
    tiny_scale = within(d, { y <- 1e-8 * y; x <- 1e-8 * x; z <- 1e-8 * z }),
    mixed_scale = within(d, { y <- 1e8 * y; x <- 1e-8 * x }),
    beyond_range = within(d, x[5] <- 1e200),
    factor_response = within(d, y <- factor(y > 0)),
    character_response = within(d, y <- as.character(y)),
    logical_response = within(d, y <- y > 0),
    character_covariate = within(d, x <- as.character(round(x, 1))),
    all_na_x = within(d, x <- NA_real_),
    exact_lines = within(d, y <- ifelse(x > 0.5, 1 + 2 * x, -1 - x))
  )
}

test_that("malformed data for moe_em() and moe_mcmc(): classed error or valid fit", {
  set.seed(101)
  cases <- malformed_data(base_data())
  res <- list()
  for (nm in names(cases)) {
    dd <- cases[[nm]]
    res[[nm]] <- rbind(
      run_cases("moe_em", function(K) moe_em(y ~ x + z, data = dd, K = K, starts = 2, seed = 1),
                list(1, 2, 3, 50), valid_fit, label = paste("moe_em on", nm)),
      run_cases("moe_mcmc", function(K) moe_mcmc(y ~ x + z, data = dd, K = K, chains = 1,
                                                 iter = 20, seed = 1, progress = FALSE,
                                                 control = tiny_mcmc_control()),
                list(1, 3, 50), valid_mcmc, label = paste("moe_mcmc, EM start, on", nm)),
      run_cases("moe_mcmc", function(K) moe_mcmc(y ~ x, gating = ~ z, data = dd, K = K,
                                                 chains = 1, iter = 20, init = "random",
                                                 seed = 1, progress = FALSE),
                list(2), valid_mcmc, label = paste("moe_mcmc, random start, on", nm)))
  }
  res <- do.call(rbind, res)
  expect_no_defect(res)
  # each data set either fits or is refused: both outcomes occur
  expect_gt(sum(res$kind == "value"), 30)
  expect_gt(sum(res$kind == "classed_error"), 30)
})

test_that("malformed data for the matrix interfaces moe_em_fit() and moe_mcmc_fit()", {
  set.seed(102)
  d <- base_data()
  X <- cbind("(Intercept)" = 1, x = d$x)
  Z <- cbind("(Intercept)" = 1, z = d$z)
  y <- d$y
  put <- function(M, i, v) { M[i] <- v; M }
  mats <- list(
    ok = list(y, X, Z), na_x = list(y, put(X, 45, NA), Z), inf_z = list(y, X, put(Z, 50, Inf)),
    huge_x = list(y, put(X, 45, 1e200), Z), na_y = list(put(y, 3, NA), X, Z),
    short_y = list(y[1:10], X, Z), vector_x = list(y, d$x, Z), character_x = list(y, X, {
      M <- Z; storage.mode(M) <- "character"; M }),
    data_frame_x = list(y, as.data.frame(X), Z), no_columns = list(y, X[, 0], Z),
    one_row = list(y[1], X[1, , drop = FALSE], Z[1, , drop = FALSE]),
    constant_y = list(rep(1, 40), X, Z), matrix_y = list(cbind(y, y), X, Z),
    factor_y = list(factor(y > 0), X, Z), unnamed = list(y, unname(X), unname(Z)),
    collinear = list(y, cbind(X, x2 = 2 * X[, 2]), Z), tiny_scale = list(1e-8 * y, 1e-8 * X, Z),
    huge_scale = list(1e8 * y, X, 1e8 * Z))
  res <- list()
  for (nm in names(mats)) {
    m <- mats[[nm]]
    res[[nm]] <- rbind(
      run_cases("moe_em_fit", function(K) moe_em_fit(m[[1]], m[[2]], m[[3]], K = K, starts = 2),
                list(1, 2, 60), valid_par, label = paste("moe_em_fit on", nm)),
      run_cases("moe_mcmc_fit", function(K) moe_mcmc_fit(m[[1]], m[[2]], m[[3]], K = K,
                                                         chains = 1, iter = 20, seed = 1,
                                                         control = tiny_mcmc_control()),
                list(2, 60), valid_par, label = paste("moe_mcmc_fit on", nm)))
  }
  weights <- list(NULL, NA, -1, rep(-1, 40), rep(0, 40), c(rep(0, 39), 1), rep(0.5, 40),
                  rep(Inf, 40), 1:3, "a", rep(1e300, 40))
  res$w <- rbind(
    run_cases("moe_em_fit", function(w) moe_em_fit(y, X, Z, w = w, K = 2, starts = 2),
              weights, valid_par),
    run_cases("moe_mcmc_fit", function(w) moe_mcmc_fit(y, X, Z, w = w, K = 2, chains = 1,
                                                       iter = 20, seed = 1,
                                                       control = tiny_mcmc_control()),
              weights, valid_par))
  res <- do.call(rbind, res)
  expect_no_defect(res)
  expect_true(all(res$kind[grepl("on ok with", res$label) & !grepl("= 60", res$label)] == "value"))
})

# ---- malformed arguments of the fitting functions -----------------------------

test_that("malformed arguments of moe_em(), moe_em_control() and moe_em_fit()", {
  set.seed(103)
  d <- base_data()
  res <- arg_tables("moe_em", moe_em, list(formula = y ~ x, data = d, K = 2, starts = 2, seed = 1),
                    c("K", "starts", "seed", "gating", "formula", "data", "control", "weights",
                      "subset", "na.action"),
                    function(a) if (a == "starts") small_values else nasty_values, valid_fit)
  for (a in names(formals(moe_em_control))) {
    vals <- if (a == "maxit") small_values else nasty_values
    res[[paste0("ctl_", a)]] <- run_cases("moe_em_control", function(v) {
      ctl <- do.call(moe_em_control, setNames(list(v), a))
      moe_em(y ~ x, data = d, K = 2, starts = 1, seed = 1, control = ctl)
    }, vals, valid_fit, label = sprintf("moe_em(control = moe_em_control(%s = v))", a))
  }
  X <- cbind("(Intercept)" = 1, x = d$x)
  res$fit_K <- run_cases("moe_em_fit", function(v) moe_em_fit(d$y, X, X, K = v, starts = 2),
                         nasty_values, valid_par)
  res$fit_starts <- run_cases("moe_em_fit", function(v) moe_em_fit(d$y, X, X, K = 2, starts = v),
                              small_values, valid_par)
  res$fit_control <- run_cases("moe_em_fit", function(v) moe_em_fit(d$y, X, X, K = 2, starts = 1,
                                                                    control = v),
                               nasty_values, valid_par)
  expect_no_defect(do.call(rbind, res))
})

test_that("malformed arguments of moe_mcmc(), moe_mcmc_control() and moe_mcmc_fit()", {
  set.seed(104)
  d <- base_data()
  counts <- function(a) if (a %in% c("chains", "iter", "warmup")) small_values else nasty_values
  res <- arg_tables("moe_mcmc", moe_mcmc,
                    list(formula = y ~ x, data = d, K = 2, chains = 1, iter = 20, seed = 1,
                         progress = FALSE, control = tiny_mcmc_control()),
                    c("K", "chains", "iter", "warmup", "thin", "init", "seed", "progress", "prior",
                      "control", "gating", "formula", "data", "weights"), counts, valid_mcmc)
  # iterations, chains and warm-up of 0 or negative, warm-up >= iter
  res$counts <- run_cases("moe_mcmc", function(v) do.call(moe_mcmc, c(list(y ~ x, data = d,
                                                                          K = 2, seed = 1,
                                                                          progress = FALSE), v)),
                          list(list(iter = 0), list(iter = -5), list(chains = 0),
                               list(chains = -1), list(iter = 10, warmup = -1),
                               list(iter = 10, warmup = 10), list(iter = 10, warmup = 11),
                               list(iter = 10, warmup = 5, thin = 0),
                               list(iter = 10, warmup = 5, thin = 6)),
                          valid_mcmc)
  for (a in names(formals(moe_mcmc_control))) {
    vals <- if (a %in% c("em_starts", "refresh")) small_values else nasty_values
    res[[paste0("ctl_", a)]] <- run_cases("moe_mcmc_control", function(v) {
      ctl <- do.call(moe_mcmc_control, c(setNames(list(v), a),
                                         if (a != "em_starts") list(em_starts = 2)))
      moe_mcmc(y ~ x, data = d, K = 2, chains = 1, iter = 10, seed = 1, control = ctl,
               progress = FALSE)
    }, vals, valid_mcmc, label = sprintf("moe_mcmc(control = moe_mcmc_control(%s = v))", a))
  }
  X <- cbind("(Intercept)" = 1, x = d$x)
  res <- c(res, arg_tables("moe_mcmc_fit", moe_mcmc_fit,
                            list(y = d$y, X = X, Z = X, K = 2, chains = 1, iter = 20, seed = 1,
                                 control = tiny_mcmc_control()),
                            c("K", "chains", "iter", "warmup", "thin", "init", "seed", "prior",
                              "control", "progress"), counts, valid_par, prefix = "fit_"))
  expect_no_defect(do.call(rbind, res))
})

test_that("nonsense and extreme priors: classed error from moe_prior() or a valid fit", {
  set.seed(105)
  d <- base_data()
  extremes <- list(1e-300, 1e-200, 1e-101, 1e-100, 1e-20, 1e20, 1e100, 1e101, 1e300,
                   -1e101, .Machine$double.xmax, .Machine$double.xmin, c(1, 1e200))
  res <- list()
  for (a in names(formals(moe_prior))) {
    # random starting values are drawn from the prior itself
    for (init in c("em", "random")) {
      res[[paste(a, init)]] <- run_cases("moe_prior", function(v) {
        pr <- do.call(moe_prior, setNames(list(v), a))
        moe_mcmc(y ~ x, data = d, K = 3, prior = pr, chains = 1, iter = 10, seed = 1,
                 init = init, control = tiny_mcmc_control(), progress = FALSE)
      }, if (init == "em") extremes else c(nasty_values, extremes), valid_mcmc,
      label = sprintf("moe_mcmc(prior = moe_prior(%s = v), init = \"%s\")", a, init))
    }
  }
  # matrices for V_a: not symmetric, singular, nearly singular, wrong size
  res$V <- run_cases("moe_prior", function(v) {
    moe_mcmc(y ~ x, data = d, K = 2, prior = moe_prior(V_a = v), chains = 1, iter = 20,
             seed = 1, control = tiny_mcmc_control(), progress = FALSE)
  }, list(matrix(c(1, 2, 3, 4), 2), matrix(1, 2, 2), diag(c(1, 1e-200)), diag(c(1e-90, 1e-90)),
          matrix(c(1, 1 - 1e-15, 1 - 1e-15, 1), 2), diag(3), matrix(NA_real_, 2, 2),
          matrix("a", 2, 2)), valid_mcmc)
  res <- do.call(rbind, res)
  expect_no_defect(res)
  # printing every prior that could be made works
  for (a in names(formals(moe_prior))) for (v in c(nasty_values, extremes)) {
    pr <- tryCatch(do.call(moe_prior, setNames(list(v), a)), bayesmoe_error = function(e) NULL)
    if (!is.null(pr)) expect_output(print(pr), "Prior of a Bayesian mixture of experts")
  }
  assign("print.moe_prior", TRUE, envir = hardening_coverage)
})

test_that("malformed arguments of rpolyagamma()", {
  set.seed(106)
  res <- rbind(
    run_cases("rpolyagamma", function(v) rpolyagamma(v), small_values,
              function(x) finite_value(x) && all(x > 0)),
    run_cases("rpolyagamma", function(v) rpolyagamma(3, b = v), small_values,
              function(x) finite_value(x) && all(x > 0)),
    run_cases("rpolyagamma", function(v) rpolyagamma(3, z = v), nasty_values,
              function(x) finite_value(x) && all(x > 0)),
    run_cases("rpolyagamma", function(v) rpolyagamma(6, b = v[[1]], z = v[[2]]),
              list(list(1:2, 1:3), list(c(1, NA), 0), list(1, c(1, 2, 3, 4)),
                   list(1, c(1e300, -1e300)), list(1e4, 0), list(1e9, 0),
                   list(.Machine$integer.max, c(0, 1, 1e300)), list(c(20, 21), -40)),
              function(x) finite_value(x) && all(x > 0)))
  expect_no_defect(res)
})

# ---- methods of fits --------------------------------------------------------------

# Two small fits of each kind, shared by the method tables.
hardening_fits <- local({
  cache <- NULL
  function() {
    if (is.null(cache)) {
      d <- base_data()
      cache <<- list(
        d = d,
        em = moe_em(y ~ x + f, gating = ~ z, data = d, K = 2, starts = 2, seed = 1),
        mc = moe_mcmc(y ~ x + f, gating = ~ z, data = d, K = 2, chains = 2, iter = 30,
                      seed = 1, control = tiny_mcmc_control(), progress = FALSE),
        mc1 = moe_mcmc(y ~ x, data = d, K = 1, chains = 1, iter = 20, seed = 1,
                       progress = FALSE))
    }
    cache
  }
})

test_that("malformed arguments of the methods of EM fits", {
  set.seed(107)
  fits <- hardening_fits()
  em <- fits$em
  d <- fits$d
  pdf(NULL)
  on.exit(grDevices::dev.off(), add = TRUE)
  res <- rbind(
    run_cases("predict.moe_fit", function(v) predict(em, newdata = v), nasty_values, finite_value),
    run_cases("predict.moe_fit", function(v) predict(em, type = v), nasty_values, finite_value),
    run_cases("predict.moe_fit", function(v) predict(em, type = "quantile", probs = v),
              nasty_values, finite_value),
    run_cases("predict.moe_fit", function(v) predict(em, type = "density", y = v),
              nasty_values, finite_value),
    run_cases("predict.moe_fit", function(v) predict(em, type = "density", log = v),
              nasty_values, finite_value),
    run_cases("simulate.moe_fit", function(v) simulate(em, nsim = v), small_values, finite_value),
    run_cases("simulate.moe_fit", function(v) simulate(em, seed = v), nasty_values, finite_value),
    run_cases("coef.moe_fit", function(v) coef(em, matrix = v), nasty_values, finite_value),
    run_cases("residuals.moe_fit", function(v) residuals(em, type = v), nasty_values, finite_value),
    run_cases("plot.moe_em", function(v) plot(em, what = v), nasty_values, any_value),
    run_cases("plot.moe_em", function(v) plot(em, covariate = v), nasty_values, any_value),
    run_cases("plot.moe_em", function(v) plot(em, what = "gating", covariate = v), nasty_values,
              any_value),
    run_cases("vcov.moe_em", function(v) vcov(em), list(NULL), function(x)
      all(is.finite(x)) || all(is.na(x))),
    run_cases("summary.moe_em", function(v) summary(em), list(NULL), valid_summary_em),
    run_cases("print.summary.moe_em", function(v) capture.output(print(summary(em), digits = v)),
              list(NULL, 3, 1), any_value),
    run_cases("print.moe_fit", function(v) capture.output(print(em, digits = v)),
              list(3, 10), any_value),
    run_cases("logLik.moe_fit", function(v) logLik(em), list(NULL), finite_value),
    run_cases("nobs.moe_fit", function(v) nobs(em), list(NULL), finite_value),
    run_cases("fitted.moe_fit", function(v) fitted(em), list(NULL), finite_value),
    run_cases("sigma.moe_fit", function(v) sigma(em), list(NULL), finite_value),
    run_cases("model.matrix.moe_fit", function(v) model.matrix(em, which = v), nasty_values,
              finite_value),
    run_cases("df.residual.moe_fit", function(v) df.residual(em), list(NULL), finite_value),
    run_cases("deviance.moe_em", function(v) deviance(em), list(NULL), finite_value),
    run_cases("anova.moe_em", function(v) anova(em, v), c(nasty_values, list(fits$mc, em)),
              any_value),
    run_cases("anova.moe_em", function(v) anova(em), list(NULL), any_value),
    # methods for MCMC fits only, and the relabelling, refuse EM fits
    run_cases("log_lik.default", function(v) log_lik(v), c(nasty_values, list(em)), any_value),
    run_cases("moe_relabel", function(v) moe_relabel(v), c(nasty_values, list(em)), valid_mcmc),
    run_cases("moe_mcmc", function(v) moe_mcmc(v, iter = 10), list(em), valid_mcmc))
  expect_no_defect(res)
})

test_that("malformed arguments of the methods of MCMC fits", {
  set.seed(108)
  fits <- hardening_fits()
  mc <- fits$mc
  pdf(NULL)
  on.exit(grDevices::dev.off(), add = TRUE)
  res <- rbind(
    run_cases("predict.moe_mcmc", function(v) predict(mc, newdata = v), nasty_values,
              finite_value),
    run_cases("predict.moe_mcmc", function(v) predict(mc, type = v), nasty_values, finite_value),
    run_cases("predict.moe_mcmc", function(v) predict(mc, interval = v), nasty_values,
              finite_value),
    run_cases("predict.moe_mcmc", function(v) predict(mc, interval = "credible", level = v),
              nasty_values, finite_value),
    run_cases("predict.moe_mcmc", function(v) predict(mc, ndraws = v), nasty_values, finite_value),
    run_cases("predict.moe_mcmc", function(v) predict(mc, type = "quantile", probs = v,
                                                      ndraws = 5), nasty_values, finite_value),
    run_cases("predict.moe_mcmc", function(v) predict(mc, type = "density", y = v, ndraws = 5),
              nasty_values, finite_value),
    run_cases("predict.moe_mcmc", function(v) predict(mc, type = "density", log = v),
              nasty_values, finite_value),
    run_cases("summary.moe_mcmc", function(v) summary(mc, probs = v), nasty_values,
              valid_summary_mcmc),
    run_cases("summary.moe_mcmc", function(v) summary(v), list(fits$mc1), valid_summary_mcmc),
    run_cases("print.summary.moe_mcmc", function(v) capture.output(print(summary(mc), digits = v)),
              list(NULL, 3, 1), any_value),
    run_cases("print.moe_mcmc", function(v) capture.output(print(v)), list(mc, fits$mc1),
              any_value),
    run_cases("residuals.moe_mcmc", function(v) residuals(mc, type = v), nasty_values,
              finite_value),
    run_cases("log_lik.moe_mcmc", function(v) log_lik(mc, newdata = v), nasty_values,
              finite_value),
    run_cases("simulate.moe_fit", function(v) simulate(mc, nsim = v, seed = 1), small_values,
              finite_value),
    run_cases("coef.moe_fit", function(v) coef(v), list(mc, fits$mc1), finite_value),
    run_cases("logLik.moe_mcmc", function(v) logLik(v), list(mc, fits$mc1), finite_value),
    run_cases("fitted.moe_fit", function(v) fitted(v), list(mc, fits$mc1), finite_value),
    run_cases("nobs.moe_fit", function(v) nobs(v), list(mc), finite_value),
    run_cases("sigma.moe_fit", function(v) sigma(v), list(mc, fits$mc1), finite_value),
    run_cases("model.matrix.moe_fit", function(v) model.matrix(mc, which = v),
              nasty_values, finite_value),
    run_cases("df.residual.moe_fit", function(v) df.residual(v), list(mc, fits$mc1),
              finite_value),
    run_cases("moe_relabel", function(v) moe_relabel(mc, method = v), nasty_values, valid_mcmc),
    run_cases("moe_relabel", function(v) moe_relabel(mc, pivot = v),
              c(nasty_values, list(coef(fits$em, matrix = TRUE), list(alpha = 1, sigma2 = 1, W = 1))),
              valid_mcmc),
    run_cases("moe_relabel", function(v) moe_relabel(mc, maxit = v), small_values, valid_mcmc),
    run_cases("moe_relabel", function(v) moe_relabel(v), list(fits$mc1), valid_mcmc),
    run_cases("moe_mcmc", function(v) moe_mcmc(mc, iter = v), small_values, valid_mcmc,
              label = "moe_mcmc(fit, iter = v) (continuation)"),
    run_cases("moe_mcmc", function(v) moe_mcmc(mc, iter = 5, progress = v), nasty_values,
              valid_mcmc, label = "moe_mcmc(fit, iter = 5, progress = v) (continuation)"),
    run_cases("moe_mcmc", function(v) moe_mcmc(mc, iter = 5, K = v), list(1, 2), valid_mcmc,
              label = "moe_mcmc(fit, iter = 5, K = v) (continuation)"),
    run_cases("plot.moe_mcmc", function(v) plot(mc, what = v), nasty_values, any_value),
    run_cases("plot.moe_mcmc", function(v) plot(mc, "trace", pars = v),
              c(nasty_values, list("loglik", "gate1:z", c("loglik", "nonsense"))), any_value),
    run_cases("plot.moe_mcmc", function(v) plot(mc, "density", pars = v), list("loglik", "x"),
              any_value),
    run_cases("plot.moe_mcmc", function(v) plot(mc, "fit", covariate = v), nasty_values,
              any_value),
    run_cases("plot.moe_mcmc", function(v) plot(mc, "gating", level = v), nasty_values,
              any_value),
    run_cases("plot.moe_mcmc", function(v) plot(v, "gating"), list(fits$mc1), any_value))
  if (requireNamespace("posterior", quietly = TRUE)) {
    res <- rbind(res, run_cases("as_draws_array.moe_mcmc", function(v)
      posterior::as_draws_array(mc, relabel = v), nasty_values,
      function(x) all(is.finite(unclass(x)))))
  }
  if (requireNamespace("coda", quietly = TRUE)) {
    res <- rbind(res, run_cases("as.mcmc.list.moe_mcmc", function(v)
      coda::as.mcmc.list(mc, relabel = v), nasty_values,
      function(x) all(is.finite(unlist(x)))))
  }
  expect_no_defect(res)
})

test_that("new data: NA rows give NA predictions, everything else finite or a classed error", {
  set.seed(109)
  fits <- hardening_fits()
  d <- fits$d
  nds <- list(
    zero = d[0, ], one = d[1, ], na_x = within(d[1:3, ], x[2] <- NA),
    na_z = within(d[1:3, ], z[3] <- NA), na_y = within(d[1:3, ], y[1] <- NA),
    inf_x = within(d[1:3, ], x[2] <- Inf), inf_y = within(d[1:3, ], y[2] <- -Inf),
    new_level = within(d[1:3, ], f <- factor(c("a", "b", "c"))),
    character_factor = within(d[1:3, ], f <- as.character(f)),
    missing_z = d[1:3, c("x", "f", "y")], no_y = d[1:3, c("x", "z", "f")],
    factor_y = within(d[1:3, ], y <- factor(y > 0)), huge = within(d[1:3, ], {
      x <- x * 1e8; z <- z * 1e8 }),
    tiny = within(d[1:3, ], { x <- x * 1e-8; z <- z * 1e-8 }),
    character_x = within(d[1:3, ], x <- as.character(x)), list = as.list(d[1:3, ]),
    duplicated = d[c(1, 1, 1), ], matrix = as.matrix(d[1:3, 1:2]))
  res <- list()
  for (nm in names(nds)) {
    nd <- nds[[nm]]
    for (fit in list(fits$em, fits$mc)) {
      cls <- class(fit)[1L]
      for (type in c("mean", "gating", "density", "quantile", "expert")) {
        needs <- switch(type, gating = "z", expert = c("x", "f"),
                        density = c("x", "z", "f", "y"), c("x", "z", "f"))
        miss <- if (is.data.frame(nd)) {
          !stats::complete.cases(nd[, intersect(needs, names(nd)), drop = FALSE])
        } else FALSE
        valid <- function(x) {
          M <- matrix(as.array(x), dim(as.array(x))[1L])
          rows_finite(x, miss) && all(is.na(M[rep_len(miss, nrow(M)), ]))
        }
        fn <- if (cls == "moe_em") "predict.moe_fit" else "predict.moe_mcmc"
        res[[paste(nm, cls, type)]] <- run_cases(fn, function(v)
          predict(fit, newdata = nd, type = type, interval = v),
          if (cls == "moe_em") list("none") else list("none", "credible"), valid,
          label = sprintf("predict(<%s>, newdata = %s, type = \"%s\")", cls, nm, type))
      }
    }
    miss_ll <- if (is.data.frame(nd)) !stats::complete.cases(nd[, intersect(
      c("x", "z", "f", "y"), names(nd)), drop = FALSE]) else FALSE
    res[[paste(nm, "log_lik")]] <- run_cases("log_lik.moe_mcmc", function(v)
      log_lik(fits$mc, newdata = nd), list(NULL), function(x)
        all(is.finite(x[, , !rep_len(miss_ll, dim(x)[3L])])),
      label = sprintf("log_lik(newdata = %s)", nm))
  }
  res <- do.call(rbind, res)
  expect_no_defect(res)
  # the documented outcomes of a few cases
  expect_true(all(res$kind[grepl("newdata = (inf_x|inf_y|new_level|missing_z|factor_y|character_x),",
                                 res$label) & !grepl("log_lik", res$label)] == "classed_error"))
  expect_true(all(res$kind[grepl("newdata = (na_x|zero|one|huge|tiny|duplicated),", res$label)] ==
                    "value"))
})

# ---- randomised malformed input -------------------------------------------------

test_that("randomised malformed input: >= 300 calls, no crash, no silent non-finite result", {
  n_calls <- if (slow_hardening()) 3000L else 300L
  res <- random_malformed_calls(n_calls, seed = 20261123)
  expect_equal(nrow(res), n_calls)
  res$label <- sprintf("random call %d (%s)", res$call, res$entry)
  expect_no_defect(res)
  # the mutations exercise both outcomes and every entry point
  expect_gt(sum(res$kind == "value"), n_calls / 5)
  expect_gt(sum(res$kind == "classed_error"), n_calls / 5)
  expect_gte(length(unique(res$entry)), 15L)
  for (e in unique(res$entry)) {
    assign(if (e == "moe_mcmc_continue") "moe_mcmc" else e, TRUE, envir = hardening_coverage)
  }
})

# ---- the other entry points: variants, least squares, losses, choice of K,
# contraction studies ----------------------------------------------------------------
#
# Each table function returns the outcomes of its calls (run_cases()).

tables_constructors <- function() {
  d <- base_data()
  fit_gate <- function(g, K = 3) moe_em(y ~ x, gating = ~ x + z, data = d, K = K, gate = g,
                                        starts = 1, seed = 1)
  fit_expert <- function(e) moe_em(y ~ x, data = d, K = 2, expert = e, starts = 1, seed = 1,
                                   control = moe_em_control(maxit = 20))
  tru <- moe_truth_example("p4")
  # hand-built or edited gate and expert objects
  fake_objects <- list(
    structure(list(type = "foo"), class = c("moe_gate_foo", "moe_gate")),
    structure(list(type = "topk"), class = c("moe_gate_topk", "moe_gate")),
    structure(list(type = "topk", k = -1L), class = c("moe_gate_topk", "moe_gate")),
    structure(list(type = "softmax"), class = c("moe_gate_topk", "moe_gate")),
    structure(list(type = "temperature", tau = 0, learn = FALSE, prior = c(0, 1)),
              class = c("moe_gate_temperature", "moe_gate")),
    structure(list(type = 1), class = "moe_gate"),
    structure(list(type = "foo"), class = c("moe_expert_foo", "moe_expert")),
    structure(list(type = "ffn", hidden = 0L), class = c("moe_expert_ffn", "moe_expert")),
    modifyList(expert_ffn(2), list(activation = "relu")),
    structure(list(type = c("linear", "ffn")), class = c("moe_expert_linear", "moe_expert")),
    structure(list(type = "t", df = -1), class = c("moe_expert_t", "moe_expert")),
    structure(list(type = "t", df = "a"), class = c("moe_expert_t", "moe_expert")),
    structure(list(type = "t"), class = c("moe_expert_t", "moe_expert")))
  targs <- list(beta0 = -8, beta1 = 25, a = c(-20, 20), b = c(15, -5), sigma = c(0.3, 0.4))
  res <- list(
    run_cases("gate_softmax", function(v) fit_gate(gate_softmax()), list(NULL), valid_fit),
    run_cases("gate_topk", function(v) fit_gate(gate_topk(v)), nasty_values, valid_fit),
    run_cases("gate_topk", function(v) fit_gate(gate_topk(2), K = v), list(1, 2, 3, 5), valid_fit),
    run_cases("gate_temperature", function(v) fit_gate(gate_temperature(tau = v)), nasty_values,
              valid_fit),
    run_cases("gate_temperature", function(v) fit_gate(gate_temperature(learn = v)),
              nasty_values, valid_fit),
    run_cases("gate_temperature", function(v) fit_gate(gate_temperature(learn = TRUE, prior = v)),
              nasty_values, valid_fit),
    run_cases("gate_hierarchical", function(v) fit_gate(gate_hierarchical(v), K = 4),
              c(nasty_values, list(c(1, 1, 2, 2), c(1, 1, 1, 1), c(1, 2, 3, 4), c(1, 1, 2),
                                   c("a", "a", "b", "b"), c(1, 1, 2, 5))), valid_fit),
    run_cases("moe_em", function(v) fit_gate(v), c(nasty_values, fake_objects), valid_fit,
              label = "moe_em(gate = v)"),
    run_cases("moe_mcmc", function(v) moe_mcmc(y ~ x, data = d, K = 3, gate = v, chains = 1,
                                               iter = 10, seed = 1, progress = FALSE,
                                               control = tiny_mcmc_control()),
              c(nasty_values, list(gate_topk(2), gate_temperature(learn = TRUE),
                                   gate_hierarchical(c(1, 1, 2)))), valid_mcmc,
              label = "moe_mcmc(gate = v)"),
    run_cases("expert_linear", function(v) fit_expert(expert_linear()), list(NULL), valid_fit),
    run_cases("moe_em", function(v) fit_expert(v), c(nasty_values, fake_objects), valid_fit,
              label = "moe_em(expert = v)"),
    run_cases("moe_ls", function(v) moe_ls(y ~ x, data = d, K = 2, expert = v, starts = 1),
              fake_objects, valid_ls, label = "moe_ls(expert = v)"))
  # Student-t experts: df of student_t(), the family object, the df prior
  fit_t <- function(fam) moe_em(y ~ x, data = d, K = 2, family = fam, starts = 1, seed = 1,
                                control = moe_em_control(maxit = 20))
  res$t_df <- run_cases("student_t", function(v) fit_t(student_t(v)),
                        c(nasty_values, list(3, 1e6, 1e-3)), valid_fit,
                        label = "moe_em(family = student_t(df = v))")
  res$t_family <- run_cases("moe_em", function(v) fit_t(v),
                            list(student_t, "student_t", modifyList(student_t(), list(df = -1)),
                                 modifyList(student_t(), list(link = "log"))), valid_fit,
                            label = "moe_em(family = v)")
  res$t_mcmc <- run_cases("student_t", function(v)
    moe_mcmc(y ~ x, data = d, K = 2, family = student_t(v), chains = 1, iter = 10, seed = 1,
             init = "random", control = tiny_mcmc_control(), progress = FALSE),
    c(few_values, list(3)), valid_mcmc, label = "moe_mcmc(family = student_t(df = v))")
  for (a in c("df_shape", "df_rate")) {
    res[[paste0("t_prior_", a)]] <- run_cases("moe_prior", function(v)
      moe_mcmc(y ~ x, data = d, K = 2, family = student_t(), chains = 1, iter = 10, seed = 1,
               init = "random", prior = do.call(moe_prior, setNames(list(v), a)),
               control = tiny_mcmc_control(), progress = FALSE),
      c(few_values, list(1e-100, 1e100, 1e-300, 1e300)), valid_mcmc,
      label = sprintf("moe_mcmc(family = student_t(), prior = moe_prior(%s = v))", a))
  }
  for (a in names(formals(expert_ffn))) {
    res[[paste0("ffn_", a)]] <- run_cases("expert_ffn", function(v)
      fit_expert(do.call(expert_ffn, setNames(list(v), a))),
      if (a %in% c("hidden", "lm_steps", "mh_steps")) small_values else nasty_values,
      valid_fit, label = sprintf("moe_em(expert = expert_ffn(%s = v))", a))
  }
  objs <- list(gate_softmax(), gate_topk(2), gate_temperature(2, learn = TRUE),
               gate_hierarchical(c(1, 1, 2)), expert_linear(), expert_ffn(2, "gelu"))
  res$print_gate <- run_cases("print.moe_gate", function(v) capture.output(print(v)),
                              objs[1:4], any_value)
  res$print_expert <- run_cases("print.moe_expert", function(v) capture.output(print(v)),
                                objs[5:6], any_value)
  # truths: each argument replaced by a malformed value
  for (a in c(names(targs), "draw", "expert", "eta", "sd", "family", "trials", "df")) {
    res[[paste0("truth_", a)]] <- run_cases("moe_truth", function(v) {
      args <- targs
      args[a] <- list(v)
      do.call(moe_truth, args)
    }, nasty_values, is_class("moe_truth"), label = sprintf("moe_truth(%s = v)", a))
  }
  res$truth_fit <- run_cases("moe_truth", function(v) moe_truth(v),
                             c(nasty_values, list(fit_gate(gate_softmax(), K = 2))),
                             is_class("moe_truth"))
  res$example <- run_cases("moe_truth_example", function(v) moe_truth_example(v),
                           c(nasty_values, list("p4", "p1", "P4", c("p4", "p1"))),
                           is_class("moe_truth"))
  res$print_truth <- run_cases("print.moe_truth", function(v) capture.output(print(tru, digits = v)),
                               digits_values, any_value)
  res$rmoe_n <- run_cases("rmoe", function(v) rmoe(v, tru), small_values,
                          function(x) is.data.frame(x) && all(is.finite(x$y)))
  res$rmoe_truth <- run_cases("rmoe", function(v) rmoe(10, v), c(nasty_values, list(unclass(tru))),
                              function(x) is.data.frame(x) && all(is.finite(x$y)))
  res$rmoe_x <- run_cases("rmoe", function(v) rmoe(3, tru, x = v),
                          c(nasty_values, list(matrix(0.5, 3, 1), matrix(0.5, 3, 2), c(0.1, 0.2, 1e300))),
                          function(x) is.data.frame(x) && all(is.finite(x$y)))
  res$rmoe_design <- run_cases("rmoe", function(v) rmoe(10, tru, x_design = v), nasty_values,
                               function(x) is.data.frame(x) && all(is.finite(x$y)))
  # truths of other families: their own arguments malformed
  gargs <- targs[c("beta0", "beta1", "a", "b")]
  for (fam in list(poisson(), binomial())) for (a in c("trials", "df", "sigma")) {
    res[[paste0("truth_", fam$family, "_", a)]] <- run_cases("moe_truth", function(v) {
      args <- c(gargs, list(family = fam))
      args[a] <- list(v)
      do.call(moe_truth, args)
    }, nasty_values, is_class("moe_truth"), label = sprintf("moe_truth(family = %s(), %s = v)",
                                                           fam$family, a))
  }
  trb <- moe_truth(beta0 = 0, beta1 = 1, a = c(1, -1), b = c(0, 1), family = binomial())
  res$rmoe_trials <- run_cases("rmoe", function(v) rmoe(10, trb, trials = v),
                               c(nasty_values, list(1:10, 3)),
                               function(x) is.data.frame(x) && all(is.finite(x$y)))
  do.call(rbind, res)
}

tables_ls <- function() {
  d <- base_data()
  res <- list()
  for (nm in names(cases <- malformed_data(d))) {
    dd <- cases[[nm]]
    res[[nm]] <- run_cases("moe_ls", function(K) moe_ls(y ~ x + z, data = dd, K = K, starts = 2,
                                                         seed = 1),
                           list(1, 2, 50), valid_ls, label = paste("moe_ls on", nm))
  }
  res <- c(res, arg_tables("moe_ls", moe_ls, list(formula = y ~ x, data = d, K = 2, starts = 2, seed = 1),
                            c("K", "starts", "seed", "gating", "formula", "data", "control",
                              "weights", "subset", "na.action", "expert"),
                            function(a) if (a == "starts") small_values else nasty_values, valid_ls))
  for (a in names(formals(moe_ls_control))) {
    res[[paste0("ctl_", a)]] <- run_cases("moe_ls_control", function(v) {
      moe_ls(y ~ x, data = d, K = 2, starts = 1, seed = 1,
             control = do.call(moe_ls_control, setNames(list(v), a)))
    }, if (a == "maxit") small_values else nasty_values, valid_ls,
    label = sprintf("moe_ls(control = moe_ls_control(%s = v))", a))
  }
  X <- cbind("(Intercept)" = 1, x = d$x)
  valid_lsfit <- function(r) is.list(r) && all(is.finite(unlist(r$par)))
  res <- c(res, arg_tables("moe_ls_fit", moe_ls_fit, list(y = d$y, X = X, Z = X, K = 2, starts = 2),
                            c("y", "X", "Z", "w", "K", "starts", "control", "init", "expert"),
                            function(a) if (a == "starts") small_values else
                              c(nasty_values, list(X, X[1:5, ], cbind(X, X), rep(1, 40))),
                            valid_lsfit, prefix = "fit_"))
  fit <- moe_ls(y ~ x + f, gating = ~ z, data = d, K = 2, starts = 2, seed = 1)
  pdf(NULL)
  on.exit(grDevices::dev.off(), add = TRUE)
  res$methods <- rbind(
    run_cases("predict.moe_ls", function(v) predict(fit, newdata = v),
              c(nasty_values, list(d[0, ], d[1, ], within(d[1:3, ], x[2] <- NA),
                                   within(d[1:3, ], x[2] <- Inf), d[1:3, c("x", "f")])),
              function(x) is.numeric(x)),
    run_cases("predict.moe_ls", function(v) predict(fit, type = v), nasty_values, finite_value),
    run_cases("coef.moe_ls", function(v) coef(fit, matrix = v), nasty_values, finite_value),
    run_cases("logLik.moe_ls", function(v) logLik(fit), list(NULL), finite_value),
    run_cases("residuals.moe_ls", function(v) residuals(fit), list(NULL), finite_value),
    run_cases("vcov.moe_ls", function(v) vcov(fit), list(NULL),
              function(x) all(is.finite(x)) || all(is.na(x))),
    run_cases("summary.moe_ls", function(v) summary(fit), list(NULL), any_value),
    run_cases("print.summary.moe_ls", function(v) capture.output(print(summary(fit), digits = v)),
              digits_values, any_value),
    run_cases("print.moe_ls", function(v) capture.output(print(fit, digits = v)), digits_values,
              any_value),
    run_cases("plot.moe_ls", function(v) plot(fit, what = v), nasty_values, any_value),
    run_cases("plot.moe_ls", function(v) plot(fit, covariate = v), nasty_values, any_value))
  do.call(rbind, res)
}

tables_losses <- function() {
  tru <- moe_truth_example("p4")
  set.seed(1)
  sim <- rmoe(200, tru)
  f2 <- moe_em(y ~ x, data = sim, K = 2, starts = 2, seed = 1)
  # three experts for two: a spike expert, warned of (test-em.R), not tested here
  f3 <- suppressWarnings(moe_em(y ~ x, data = sim, K = 3, starts = 2, seed = 1),
                         classes = "bayesmoe_warning_degenerate")
  fs <- suppressWarnings(moe_em(y ~ x, data = sim, K = 3, gate = gate_topk(2), starts = 2,
                                seed = 1), classes = "bayesmoe_warning_degenerate")
  mc <- moe_mcmc(y ~ x, data = sim, K = 2, chains = 1, iter = 20, seed = 1, progress = FALSE,
                 control = tiny_mcmc_control())
  fits <- list(f2, f3, fs, mc, tru, coef(f2, matrix = TRUE))
  nonneg <- function(x) is.numeric(x) && all(is.finite(unlist(x))) && all(unlist(x) >= 0)
  tk <- list(alpha = cbind(c(1, 2), c(-1, 1), c(0, -2)), sigma2 = c(0.1, 0.2, 0.15),
             W = cbind(c(0.5, -3), c(0, 3), 0))
  Z <- cbind(1, seq(-2, 2, length.out = 20))
  st <- list(alpha = cbind(c(1, 2), c(-1, 0.5)), W = cbind(c(0.5, 3), c(0, 0)))
  res <- list(
    run_cases("density_loss", function(v) density_loss(v, tru), c(nasty_values, fits), nonneg),
    run_cases("density_loss", function(v) density_loss(f2, v), c(nasty_values, fits), nonneg),
    run_cases("density_loss", function(v) density_loss(f2, tru, type = v), nasty_values, nonneg),
    run_cases("density_loss", function(v) density_loss(f2, tru, x = v),
              c(nasty_values, list(c(0.1, 0.5), matrix(0.5, 2, 2), c(1e300, 0.5))), nonneg),
    run_cases("density_loss", function(v) density_loss(f2, tru, min_points = v), small_values,
              nonneg),
    run_cases("voronoi_loss", function(v) voronoi_loss(v, tru), c(nasty_values, fits), nonneg),
    run_cases("voronoi_loss", function(v) voronoi_loss(f2, v), c(nasty_values, fits), nonneg),
    run_cases("voronoi_loss", function(v) voronoi_loss(f3, tru, type = v), nasty_values, nonneg),
    run_cases("voronoi_loss", function(v) voronoi_loss(f3, tru, rbar = v), nasty_values, nonneg),
    run_cases("voronoi_loss", function(v) voronoi_loss(f2, tru, norm = v), nasty_values, nonneg),
    run_cases("voronoi_loss", function(v) voronoi_loss(f2, tru, reference = v), nasty_values,
              nonneg),
    run_cases("voronoi_loss", function(v) voronoi_loss(f2, tru, translation = v), nasty_values,
              nonneg),
    run_cases("voronoi_cells", function(v) voronoi_cells(v, tru), c(nasty_values, fits),
              any_value),
    run_cases("voronoi_cells", function(v) voronoi_cells(f3, tru, type = v), nasty_values,
              any_value),
    run_cases("voronoi_loss_strong", function(v) voronoi_loss_strong(v, st),
              c(nasty_values, list(st, list(alpha = st$alpha, W = st$W * 4000),
                                   list(alpha = st$alpha, W = st$W[, 1, drop = FALSE]))), nonneg),
    run_cases("voronoi_loss_strong", function(v) voronoi_loss_strong(st, v),
              c(nasty_values, list(list(alpha = st$alpha * 1e200, W = st$W))), nonneg),
    run_cases("voronoi_loss_strong", function(v) voronoi_loss_strong(st, st, translate = v),
              c(nasty_values, list("none", "reference", "infimum")), nonneg),
    run_cases("voronoi_loss_strong", function(v) voronoi_loss_strong(st, st, expert = v),
              c(nasty_values, list(expert_linear(), expert_ffn(1))), nonneg),
    run_cases("topk_loss", function(v) topk_loss(v, tk, k = 2, Z = Z),
              c(nasty_values, list(coef(f3, matrix = TRUE), coef(fs, matrix = TRUE))), nonneg),
    run_cases("topk_loss", function(v) topk_loss(tk, v, k = 2, Z = Z), c(nasty_values, fits),
              nonneg),
    run_cases("topk_loss", function(v) topk_loss(tk, tk, k = v, Z = Z), nasty_values, nonneg),
    run_cases("topk_loss", function(v) topk_loss(tk, tk, k = 2, Z = v),
              c(nasty_values, list(Z[, 2, drop = FALSE], Z * 1e300)), nonneg),
    run_cases("topk_loss", function(v) topk_loss(tk, tk, k = 2, Z = Z, rbar = v), nasty_values,
              nonneg),
    run_cases("topk_loss", function(v) topk_loss(v, tru), list(f3, fs, mc), nonneg))
  do.call(rbind, res)
}

tables_choice <- function() {
  d <- base_data(60)
  mc1 <- moe_mcmc(y ~ x, data = d, K = 1, chains = 2, iter = 60, seed = 1, progress = FALSE)
  mc3 <- moe_mcmc(y ~ x, data = d, K = 3, chains = 1, iter = 40, seed = 1, progress = FALSE,
                  control = tiny_mcmc_control())
  em <- moe_em(y ~ x, data = d, K = 2, starts = 1, seed = 1)
  pdf(NULL)
  on.exit(grDevices::dev.off(), add = TRUE)
  res <- list()
  for (a in c("type", "lambda", "K_max")) {
    res[[paste0("pK_", a)]] <- run_cases("prior_K", function(v) do.call(prior_K, setNames(list(v), a)),
                                         if (a == "K_max") small_values else nasty_values,
                                         function(x) inherits(x, "moe_prior_K") &&
                                           all(is.finite(x$probs)) && abs(sum(x$probs) - 1) < 1e-8)
  }
  res$pK_print <- run_cases("print.moe_prior_K", function(v) capture.output(print(prior_K(), digits = v)),
                            digits_values, any_value)
  sel_call <- function(...) moe_select(..., chains = 1, iter = 30,
                                       control = tiny_mcmc_control(), progress = FALSE)
  res <- c(res, arg_tables("moe_select", sel_call,
                            list(formula = y ~ x, data = d, K = 1:2, method = c("posterior", "bic"),
                                 seed = 1),
                            c("formula", "data", "K", "gating", "family", "method", "prior", "seed"),
                            function(a) if (a == "K") c(small_values, list(1:2, c(1, 1), c(2, 0), 1:9, 1:30))
                                        else nasty_values,
                            is_class("moe_select"), prefix = "sel_"))
  res$sel_prior_K <- run_cases("moe_select", function(v) sel_call(y ~ x, data = d, K = 1:2, prior_K = v, seed = 1),
                               c(nasty_values, list(prior_K(K_max = 1), prior_K(K_max = 4))),
                               is_class("moe_select"))
  sel <- sel_call(y ~ x, data = d, K = 1:2, method = c("posterior", "mtm", "bic", "icl"), seed = 1)
  res$sel_methods <- rbind(
    run_cases("summary.moe_select", function(v) summary(sel), list(NULL), any_value),
    run_cases("print.summary.moe_select", function(v) capture.output(print(summary(sel), digits = v)),
              digits_values, any_value),
    run_cases("print.moe_select", function(v) capture.output(print(sel, digits = v)), digits_values,
              any_value),
    run_cases("plot.moe_select", function(v) plot(sel, which = v),
              c(nasty_values, list("probs", "criteria", c("criteria", "probs"), "crit")), any_value))
  res <- c(res, arg_tables("moe_marglik", moe_marglik, list(fit = mc1, seed = 1, n_prop = 50),
                            c("fit", "method", "prior", "proposal", "n_comp", "n_prop", "maxit",
                              "tol", "seed"),
                            function(a) switch(a, fit = c(nasty_values, list(em, mc3)), n_comp = ,
                                               n_prop = , maxit = small_values, nasty_values),
                            function(x) inherits(x, "moe_marglik") && is.finite(x$logml),
                            prefix = "ml_"))
  ml <- moe_marglik(mc1, method = "exact")
  res$ml_print <- run_cases("print.moe_marglik", function(v) capture.output(print(ml, digits = v)),
                            digits_values, any_value)
  sets <- list(
    list(atoms = rbind(c(0, 0), c(0.1, 0), c(5, 5)), weights = c(0.5, 0.3, 0.2)),
    list(atoms = rbind(c(0, 0), c(5, 5), c(9, 9)), weights = c(0.6, 0.3999, 1e-4)))
  bad_set <- function(f) { s <- sets; s[[1]] <- f(s[[1]]); s }
  valid_mtm <- function(x) inherits(x, "moe_mtm") && all(is.finite(x$K))
  res$mtm <- rbind(
    run_cases("moe_mtm.moe_mcmc", function(v) moe_mtm(mc3, omega = v, seed = 1), nasty_values,
              valid_mtm),
    run_cases("moe_mtm.moe_mcmc", function(v) moe_mtm(mc3, c = v, seed = 1), nasty_values,
              valid_mtm),
    run_cases("moe_mtm.moe_mcmc", function(v) moe_mtm(mc3, r = v, seed = 1), nasty_values,
              valid_mtm),
    run_cases("moe_mtm.moe_mcmc", function(v) moe_mtm(mc3, seed = v), nasty_values, valid_mtm),
    run_cases("moe_mtm.moe_mcmc", function(v) moe_mtm(v, seed = 1), list(mc1), valid_mtm),
    run_cases("moe_mtm.default", function(v) moe_mtm(v), c(nasty_values, list(em)), valid_mtm),
    run_cases("moe_mtm.list", function(v) moe_mtm(v, omega = 0.5, seed = 1),
              list(sets, list(), list(1), list(list(atoms = 1)), bad_set(function(s) { s$weights[1] <- NA; s }),
                   bad_set(function(s) { s$weights <- -s$weights; s }),
                   bad_set(function(s) { s$atoms[1] <- Inf; s }),
                   bad_set(function(s) { s$atoms <- s$atoms[, 1, drop = FALSE]; s }),
                   bad_set(function(s) { s$weights <- s$weights[1:2]; s }),
                   bad_set(function(s) { s$atoms <- s$atoms * 1e300; s }),
                   bad_set(function(s) { s$weights <- c(1e-300, 1e-300, 1e-300); s })),
              valid_mtm),
    run_cases("moe_mtm.list", function(v) moe_mtm(sets, omega = 0.5, order = v, seed = 1),
              c(nasty_values, list(2:1, c(1, 1))), valid_mtm))
  mt <- moe_mtm(mc3, seed = 1)
  res$mtm_methods <- rbind(
    run_cases("summary.moe_mtm", function(v) summary(mt), list(NULL), any_value),
    run_cases("print.summary.moe_mtm", function(v) capture.output(print(summary(mt), digits = v)),
              digits_values, any_value),
    run_cases("print.moe_mtm", function(v) capture.output(print(mt, digits = v)), digits_values,
              any_value),
    run_cases("plot.moe_mtm", function(v) plot(mt, which = v),
              c(nasty_values, list("probs", "trace", "tr")), any_value))
  do.call(rbind, res)
}

tables_contraction <- function() {
  tru <- moe_truth_example("p4")
  args0 <- list(truth = tru, n = c(100, 200), reps = 2, seed = 1, starts = 2)
  res <- arg_tables("moe_contraction", moe_contraction, args0,
                    c("truth", "n", "reps", "K", "method", "losses", "init", "starts", "x_design",
                      "drop_n", "cells", "reference", "translation", "rbar", "probs", "control",
                      "mcmc", "density_draws", "seed"),
                    function(a) few_values, is_class("moe_contraction"))
  st <- do.call(moe_contraction, args0)
  pdf(NULL)
  on.exit(grDevices::dev.off(), add = TRUE)
  res$methods <- rbind(
    run_cases("moe_contraction_slopes", function(v) moe_contraction_slopes(v),
              c(nasty_values, list(st)), any_value),
    run_cases("moe_contraction_slopes", function(v) moe_contraction_slopes(st, drop = v),
              nasty_values, any_value),
    run_cases("moe_contraction_slopes", function(v) moe_contraction_slopes(st, statistic = v),
              nasty_values, any_value),
    run_cases("moe_contraction_slopes", function(v) moe_contraction_slopes(st, cell_size = v),
              nasty_values, any_value),
    run_cases("summary.moe_contraction", function(v) summary(st, drop = v), nasty_values,
              any_value),
    run_cases("print.summary.moe_contraction", function(v) capture.output(print(summary(st), digits = v)),
              digits_values, any_value),
    run_cases("print.moe_contraction", function(v) capture.output(print(st, digits = v)),
              digits_values, any_value),
    run_cases("plot.moe_contraction", function(v) plot(st, what = v), nasty_values, any_value),
    run_cases("plot.moe_contraction", function(v) plot(st, losses = v), nasty_values, any_value),
    run_cases("plot.moe_contraction", function(v) plot(st, drop = v), nasty_values, any_value))
  # a study with a prior on the number of experts
  rk <- moe_contraction(tru, n = c(100, 200), reps = 1, K = prior_K(K_max = 2),
                        method = "mcmc", mcmc = list(chains = 1, iter = 40),
                        density_draws = 3, seed = 1)
  res$random_K <- rbind(
    run_cases("moe_contraction_K", function(v) moe_contraction_K(v),
              c(nasty_values, list(st, rk)), any_value),
    run_cases("moe_contraction_K", function(v) moe_contraction_K(rk, prior = v),
              c(nasty_values, list(prior_K(K_max = 2), prior_K(K_max = 1), prior_K(K_max = 3))),
              any_value),
    run_cases("plot.moe_contraction", function(v) plot(rk, what = v), nasty_values, any_value))
  do.call(rbind, res)
}

test_that("malformed arguments of the gate and expert constructors, truths and rmoe()", {
  set.seed(120)
  res <- tables_constructors()
  expect_no_defect(res)
  expect_gt(sum(res$kind == "value"), 40)
})

test_that("malformed data and arguments of moe_ls(), moe_ls_fit() and their methods", {
  set.seed(121)
  res <- tables_ls()
  expect_no_defect(res)
  expect_gt(sum(res$kind == "value"), 40)
  # too few rows for the parameters: refused, not an infinite log-likelihood
  expect_true(all(res$kind[grepl("moe_ls on (one|two|three)_rows", res$label)] ==
                    "classed_error"))
})

test_that("malformed arguments of the losses", {
  set.seed(122)
  res <- tables_losses()
  expect_no_defect(res)
  expect_gt(sum(res$kind == "value"), 30)
  # an overflowing loss is an error, not Inf
  expect_true(all(res$kind[grepl("W = structure\\(c\\(2000", res$label)] == "classed_error"))
})

test_that("malformed arguments of prior_K(), moe_select(), moe_marglik(), moe_mtm() and methods", {
  set.seed(123)
  res <- tables_choice()
  expect_no_defect(res)
  expect_gt(sum(res$kind == "value"), 40)
  # more experts than bridge sampling can relabel: refused before any fit
  expect_identical(res$kind[res$label == "moe_select(K = v) with v = 1:30"],
                   "classed_error")
})

test_that("malformed arguments of moe_contraction() and its methods", {
  set.seed(124)
  res <- tables_contraction()
  expect_no_defect(res)
  expect_gt(sum(res$kind == "value"), 20)
})

test_that("malformed arguments of the draws conversions, memberships, confint() and vcov()", {
  set.seed(125)
  fits <- hardening_fits()
  mc <- fits$mc
  em <- fits$em
  finite_frame <- function(x) is.data.frame(x) && all(is.finite(as.matrix(x)))
  res <- rbind(
    run_cases("confint.moe_mcmc", function(v) confint(mc, parm = v), nasty_values, finite_value),
    run_cases("confint.moe_mcmc", function(v) confint(mc, level = v), nasty_values,
              finite_value),
    run_cases("confint.moe_mcmc", function(v) confint(v), list(fits$mc1), finite_value),
    run_cases("vcov.moe_mcmc", function(v) vcov(v), list(mc, fits$mc1), finite_value),
    run_cases("as.data.frame.moe_mcmc", function(v) as.data.frame(mc, relabel = v),
              nasty_values, finite_frame),
    run_cases("moe_membership", function(v) moe_membership(v),
              c(nasty_values, list(em, mc, fits$mc1)), finite_value),
    run_cases("moe_membership", function(v) moe_membership(mc, newdata = v), nasty_values,
              finite_value),
    run_cases("moe_membership", function(v) moe_membership(em, newdata = v), nasty_values,
              finite_value),
    run_cases("moe_membership", function(v) moe_membership(mc, type = v), nasty_values,
              finite_value),
    run_cases("moe_membership", function(v) moe_membership(mc, interval = v), nasty_values,
              finite_value),
    run_cases("moe_membership", function(v) moe_membership(mc, interval = "credible", level = v),
              nasty_values, finite_value),
    run_cases("moe_membership", function(v) moe_membership(mc, ndraws = v), nasty_values,
              finite_value),
    run_cases("predict.moe_fit", function(v) predict(em, newdata = v, type = "membership"),
              nasty_values, finite_value),
    run_cases("predict.moe_mcmc", function(v) predict(mc, newdata = v, type = "membership",
                                                      interval = "credible"),
              nasty_values, finite_value))
  if (requireNamespace("posterior", quietly = TRUE)) {
    res <- rbind(res,
      run_cases("as_draws_df.moe_mcmc", function(v) posterior::as_draws_df(mc, relabel = v),
                nasty_values, function(x) all(is.finite(as.matrix(x)))),
      run_cases("as_draws_rvars.moe_mcmc", function(v)
        posterior::as_draws_rvars(mc, relabel = v), nasty_values, any_value))
  }
  if (requireNamespace("coda", quietly = TRUE)) {
    res <- rbind(res, run_cases("as.mcmc.moe_mcmc", function(v)
      coda::as.mcmc(mc, combine_chains = v), nasty_values, function(x) all(is.finite(unlist(x)))))
  }
  if (requireNamespace("rstantools", quietly = TRUE)) {
    res <- rbind(res,
      run_cases("posterior_predict.moe_mcmc", function(v)
        rstantools::posterior_predict(mc, newdata = v, seed = 1), nasty_values, finite_value),
      run_cases("posterior_predict.moe_mcmc", function(v)
        rstantools::posterior_predict(mc, draws = v), nasty_values, finite_value),
      run_cases("posterior_predict.moe_mcmc", function(v)
        rstantools::posterior_predict(mc, seed = v), nasty_values, finite_value),
      run_cases("posterior_epred.moe_mcmc", function(v)
        rstantools::posterior_epred(mc, draws = v), nasty_values, finite_value),
      run_cases("posterior_epred.moe_mcmc", function(v) rstantools::posterior_epred(v),
                list(em, fits$mc1), finite_value))
  }
  if (requireNamespace("loo", quietly = TRUE)) {
    res <- rbind(res,
      run_cases("loo.moe_mcmc", function(v) loo::loo(v), list(em, mc, fits$mc1), any_value),
      run_cases("waic.moe_mcmc", function(v) loo::waic(v), list(em, mc, fits$mc1), any_value))
  }
  expect_no_defect(res)
})

test_that("every exported function and method is covered by the malformed-input tables", {
  covered <- ls(hardening_coverage)
  skip_if(length(covered) < 10L, "run the whole file: the tables above record the coverage")
  ns <- asNamespace("bayesmoe")
  exports <- getNamespaceExports(ns)
  # data sets are exported by lazy loading, not functions
  exports <- exports[vapply(exports, function(e) is.function(get(e, envir = ns)), TRUE)]
  s3 <- getNamespaceInfo(ns, "S3methods")
  methods <- paste(s3[, 1L], s3[, 2L], sep = ".")
  # generics of this package are covered through their methods
  missing <- setdiff(c(exports, methods), c(covered, "log_lik", "moe_mtm"))
  expect(length(missing) == 0L,
         sprintf("not covered by the malformed-input tables: %s", paste(missing, collapse = ", ")))
})

# ---- the error messages added by the hardening ------------------------------------

test_that("error messages of the hardening checks", {
  skip_under_valgrind()
  set.seed(110)
  d <- base_data()
  X <- cbind("(Intercept)" = 1, x = d$x)
  expect_snapshot(moe_prior(s_w = 1e-200), error = TRUE)
  expect_snapshot(moe_prior(m_a = c(0, 1e200)), error = TRUE)
  expect_snapshot(moe_prior(c0 = 1e300), error = TRUE)
  # V_a nearly singular: its inverse and the quadratic form of m_a overflow
  r <- 1 - 1e-15
  expect_snapshot(moe_mcmc(y ~ x, data = d, K = 2,
                           prior = moe_prior(V_a = 1e-100 * matrix(c(1, r, r, 1), 2),
                                             m_a = c(1e100, -1e100))),
                  error = TRUE)
  expect_snapshot(moe_em_fit(d$y[1:5], X, X, K = 2), error = TRUE)
  expect_snapshot(moe_em_fit(d$y, X[, 2], X, K = 2), error = TRUE)
  expect_snapshot(moe_em_fit(d$y, X, X, w = -d$y, K = 2), error = TRUE)
  expect_snapshot(moe_em_fit(d$y, X, X, K = 50), error = TRUE)
  expect_snapshot(moe_em_fit(rep(1, 40), X, X, K = 2), error = TRUE)
  expect_snapshot(moe_em_fit(d$y, X, X, K = 2, control = list()), error = TRUE)
  expect_snapshot(moe_mcmc_fit(d$y, X, X, K = 0), error = TRUE)
  expect_snapshot(moe_em(y ~ x, data = within(d, x[1] <- 1e200), K = 2), error = TRUE)
  expect_snapshot(moe_em(y ~ x, data = within(d, y[1] <- -1e200), K = 2), error = TRUE)
  expect_snapshot(log_lik(moe_em(y ~ x, data = d, K = 1)), error = TRUE)
  fit <- moe_em(y ~ x + f, data = d, K = 1)
  expect_snapshot(predict(fit, within(d[1:3, ], x[1] <- Inf)), error = TRUE)
  expect_snapshot(predict(fit, within(d[1:3, ], x <- as.character(x))), error = TRUE)
  expect_snapshot(predict(fit, within(d[1:3, ], y <- factor(y > 0)), type = "density"),
                  error = TRUE)
  expect_error(moe_em_fit(d$y, X, X, K = 50), class = "bayesmoe_error_input")
  expect_error(moe_em_fit(d$y[1:5], X, X, K = 2), class = "bayesmoe_error_data")
})

# ---- numerical extremes -------------------------------------------------------------

# Data from two experts split by x at 0.5 with a gap around it, so that the
# gating can become arbitrarily steep.
separated_data <- function(n = 200, noise = 0.1, seed = 1) {
  set.seed(seed)
  x <- c(runif(n / 2, 0, 0.4), runif(n / 2, 0.6, 1))
  data.frame(x = x, y = ifelse(x > 0.5, 2 + x, -2 - x) + noise * rnorm(n))
}

# Hard-gating limit: the mixture density when expert `k_i` has weight 1.
hard_density <- function(par, X, y, k) {
  mu <- (X %*% par$alpha)[cbind(seq_along(y), k)]
  dnorm(y, mu, sqrt(par$sigma2[k]))
}

test_that("gating logits of +-1e4: C kernels, EM, predictions and log-likelihoods stay finite", {
  set.seed(201)
  d <- separated_data()
  X <- cbind(1, d$x)
  # logits 1e4 * (2 x - 1): from -1e4 to 1e4 over the data
  par <- list(alpha = cbind(c(2, 1), c(-2, -1)), sigma2 = c(0.01, 0.01),
              W = cbind(c(-1e4, 2e4), 0))
  eta <- X %*% par$W
  expect_gt(max(abs(eta)), 7e3)
  k <- ifelse(d$x > 0.5, 1L, 2L)
  # the C E-step and log-likelihood pass against the hard-gating limit
  es <- .Call(bayesmoe:::ffi_estep, d$y, X, X, rep(1, nrow(d)), par$alpha, par$sigma2, par$W)
  expect_true(all(is.finite(es$loglik_i)) && all(is.finite(es$resp)))
  expect_equal(es$loglik_i, log(hard_density(par, X, d$y, k)), tolerance = 1e-10)
  expect_equal(es$resp[cbind(seq_len(nrow(d)), k)], rep(1, nrow(d)))
  ll <- .Call(bayesmoe:::ffi_loglik, d$y, X, X, rep(1, nrow(d)), par$alpha, par$sigma2, par$W)
  expect_equal(ll, sum(log(hard_density(par, X, d$y, k))), tolerance = 1e-10)
  # an EM fit on separated data, then its gating made +-1e4 steep
  em <- moe_em(y ~ x, data = d, K = 2, seed = 1)
  expect_true(valid_fit(em))
  kk <- ifelse(d$x > 0.5, which.max(em$coefficients$alpha[1, ]),
               which.min(em$coefficients$alpha[1, ]))
  em$coefficients$W[, 1] <- if (kk[d$x > 0.5][1] == 1) c(-1e4, 2e4) else c(1e4, -2e4)
  p <- coef(em, matrix = TRUE)
  nd <- data.frame(x = c(0, 0.2, 0.45, 0.55, 0.8, 1), y = c(-2, -2.2, -2.45, 2.55, 2.8, 3))
  kn <- ifelse(nd$x > 0.5, kk[d$x > 0.5][1], kk[d$x < 0.5][1])
  g <- predict(em, nd, type = "gating")
  expect_equal(unname(g[cbind(seq_len(6), kn)]), rep(1, 6))
  expect_true(all(g >= 0 & g <= 1))
  Xn <- cbind(1, nd$x)
  expect_equal(unname(predict(em, nd, type = "density")),
               hard_density(p, Xn, nd$y, kn), tolerance = 1e-10)
  expect_equal(unname(predict(em, nd)), (Xn %*% p$alpha)[cbind(1:6, kn)], tolerance = 1e-10)
  q <- predict(em, nd, type = "quantile", probs = c(0.1, 0.9))
  expect_equal(unname(q[, 2]), qnorm(0.9, (Xn %*% p$alpha)[cbind(1:6, kn)],
                                     sqrt(p$sigma2[kn])), tolerance = 1e-8)
  expect_true(all(is.finite(predict(em, nd, type = "density", log = TRUE))))
  expect_true(all(is.finite(residuals(em, type = "pearson"))))
  expect_true(all(is.finite(unlist(simulate(em, nsim = 2, seed = 1)))))
})

test_that("gating logits beyond 1e4 in the sampler: finite draws, predictions and summaries", {
  set.seed(202)
  d <- separated_data()
  # a nearly flat gating prior lets the gating become as steep as the gap
  # between the experts allows
  fit <- moe_mcmc(y ~ x, data = d, K = 2, chains = 1, iter = 200, seed = 1,
                  prior = moe_prior(s_w = 1e4), progress = FALSE)
  expect_true(valid_mcmc(fit))
  W <- matrix(fit$draws[, , c("gate1:(Intercept)", "gate1:x")], ncol = 2)
  expect_gt(max(abs(cbind(1, d$x) %*% t(W))), 1e4)
  nd <- data.frame(x = c(0, 0.45, 0.55, 1), y = c(-2, -2.45, 2.55, 3))
  for (type in c("mean", "gating", "density", "quantile", "expert")) {
    expect_true(all(is.finite(predict(fit, nd, type = type, interval = "credible"))),
                label = type)
  }
  expect_true(all(is.finite(log_lik(fit))))
  expect_true(all(is.finite(summary(fit)$coefficients[, c("mean", "sd")])))
  # one chain of the C sampler started at logits of +-1e4 (internal scale)
  s <- bayesmoe:::mcmc_data(fit$scaling, fit$y, fit$X, fit$Z, fit$weights)
  pc <- bayesmoe:::prior_internal(moe_prior(), 2L, 2L)
  zx <- range(s$Z[, 2])
  w1 <- c(-1e4 * sum(zx) / diff(zx), 2e4 / diff(zx))
  for (sgn in c(1, -1)) {
    res <- bayesmoe:::gibbs_chain_c(s, pc, 2L, list(alpha = c(0, 1, 0, -1), sigma2 = c(1, 1),
                                                    W = c(sgn * w1, 0, 0)),
                                    gate_softmax(), expert_linear(), numeric(), numeric(),
                                    c(0, 50, 1, 0, 0, 1, 1, 1, 0, 1, 0), 0L)
    expect_equal(res$status, 0L)
    expect_true(all(is.finite(res$alpha)) && all(is.finite(res$W)) &&
                  all(is.finite(res$loglik)) && all(res$sigma2 > 0))
  }
})

test_that("huge frequency weights: Polya-Gamma gating draws cost O(1) per observation", {
  # PG(b, z) with b = 1e6 was a sum of a million PG(1, z) draws, so one sweep
  # cost O(sum of the weights) and these fits did not finish
  set.seed(108)
  d <- base_data(n = 100)
  for (gu in c("pg", "pg+mh")) {
    fit <- moe_mcmc(y ~ x, gating = ~ z, data = d, K = 2, weights = rep(1e6, 100),
                    chains = 1, iter = 60, seed = 1, progress = FALSE,
                    control = moe_mcmc_control(gate_update = gu, em_starts = 2))
    expect_true(valid_mcmc(fit), info = gu)
  }
  fit <- moe_mcmc(y ~ x, data = d[1:50, ], K = 3, gate = gate_hierarchical(c(1, 1, 2)),
                  weights = rep(1e7, 50), chains = 1, iter = 40, seed = 1, progress = FALSE,
                  control = moe_mcmc_control(gate_update = "pg", em_starts = 2))
  expect_true(all(is.finite(fit$draws)))
  fit <- moe_mcmc(y ~ x, data = d[1:50, ], K = 2, expert = expert_ffn(2),
                  weights = rep(1e7, 50), chains = 1, iter = 40, seed = 1, progress = FALSE)
  expect_true(all(is.finite(fit$draws)))
})

test_that("experts without observations are drawn from the prior: finite draws, vague priors too", {
  skip_under_valgrind()
  set.seed(203)
  # one line, 12 observations, 6 experts: most experts are empty in most sweeps
  d <- data.frame(x = seq(0, 1, length.out = 12))
  d$y <- 1 + d$x + rnorm(12, sd = 0.1)
  for (pr in list(moe_prior(), moe_prior(c0 = 0.01, C0 = 0.01), moe_prior(c0 = 0.001, C0 = 1e-3),
                  moe_prior(c0 = 1e-100, C0 = 1e-100, s_w = 1e100))) {
    for (init in c("em", "random")) {
      res <- classify_call(function() moe_mcmc(y ~ x, data = d, K = 6, chains = 1, iter = 300,
                                               seed = 1, init = init, prior = pr,
                                               progress = FALSE), valid_mcmc)
      expect_equal(res$kind, "value", label = paste(format(pr$c0), init, res$message))
      # no numerical trouble reported, except that the flat gating prior
      # (s_w = 1e100) of an empty expert needs a ridge
      if (pr$s_w < 1e10) expect_false("bayesmoe_warning_numerical" %in% res$warnings)
      s2 <- res$value$draws[, , grep("sigma2", dimnames(res$value$draws)[[3L]])]
      expect_true(all(s2 > 0 & s2 <= 1e100 * res$value$scaling$sy^2))
    }
  }
  # with InvGamma(0.01, 0.01) the empty experts' variances reach the
  # astronomically large values of their prior (the chain keeps going: draws
  # beyond 1e100 times the response variance are rejected)
  # (6 experts on 12 rows: more parameters than rows, which warns)
  expect_warning(
    fit <- quiet_stall(moe_mcmc(y ~ x, data = d, K = 6, chains = 1, iter = 300, seed = 2,
                                prior = moe_prior(c0 = 0.01, C0 = 0.01), progress = FALSE)),
    class = "bayesmoe_warning_overparameterised")
  s2 <- fit$draws[, , grep("sigma2", dimnames(fit$draws)[[3L]])] / fit$scaling$sy^2
  expect_gt(max(s2), 1e50)
  expect_true(all(is.finite(predict(fit, d, type = "density", interval = "credible"))))
  expect_true(all(is.finite(log_lik(fit))))
})

test_that("variances near zero (data exactly on lines): classed status or finite fit", {
  set.seed(204)
  d <- data.frame(x = seq(0, 1, length.out = 60))
  d$y <- ifelse(d$x > 0.5, 1 + 2 * d$x, -1 - d$x)
  # EM: the variances hit the floor, reported by a classed warning
  expect_warning(em <- moe_em(y ~ x, data = d, K = 2, seed = 1),
                 class = "bayesmoe_warning_degenerate")
  expect_true(valid_fit(em))
  expect_equal(unname(em$coefficients$sigma2),
               rep(em$control$var_floor * em$scaling$sy^2, 2), tolerance = 1e-6)
  expect_true(all(is.finite(predict(em, type = "density", log = TRUE))))
  # MCMC: the conjugate update keeps the variances positive and finite; with
  # the data exactly on the lines they are of the order of C0 / n
  fit <- moe_mcmc(y ~ x, data = d, K = 2, chains = 1, iter = 200, seed = 1, progress = FALSE)
  expect_true(valid_mcmc(fit))
  s2 <- fit$draws[, , grep("sigma2", dimnames(fit$draws)[[3L]])] / fit$scaling$sy^2
  expect_true(all(s2 > 0))
  expect_lt(median(s2), 0.01)
  expect_true(all(is.finite(log_lik(fit))))
  expect_true(all(is.finite(predict(fit, type = "quantile", interval = "credible"))))
  # one exact line with K = 1: the conjugate posterior is proper (with only
  # 10 observations the prior scale C0 keeps the variance away from 0)
  d1 <- data.frame(x = 1:10, y = 3 + 2 * (1:10))
  f1 <- moe_mcmc(y ~ x, data = d1, K = 1, chains = 1, iter = 100, seed = 1, progress = FALSE)
  expect_true(valid_mcmc(f1))
  expect_equal(unname(coef(f1)[1:2]), c(3, 2), tolerance = 0.05)
})

test_that("huge and tiny scales: fits are equivariant under rescaling of the data", {
  set.seed(205)
  d <- base_data(80)
  em <- moe_em(y ~ x, gating = ~ z, data = d, K = 2, starts = 3, seed = 1)
  for (s in c(1e8, 1e-8)) {
    ds <- transform(d, y = s * y, x = x / s, z = s * z)
    es <- moe_em(y ~ x, gating = ~ z, data = ds, K = 2, starts = 3, seed = 1)
    a <- em$coefficients
    b <- es$coefficients
    # the labels may come out in another order
    b <- bayesmoe:::permute_par(b, order(b$alpha[1L, ])[order(order(a$alpha[1L, ]))])
    expect_equal(b$alpha, a$alpha * c(s, s^2), tolerance = 1e-6, ignore_attr = TRUE)
    expect_equal(b$sigma2, a$sigma2 * s^2, tolerance = 1e-6, ignore_attr = TRUE)
    expect_equal(b$W, a$W * c(1, 1 / s), tolerance = 1e-6, ignore_attr = TRUE)
    expect_equal(as.numeric(logLik(es)), as.numeric(logLik(em)) - nrow(d) * log(s),
                 tolerance = 1e-8)
    ms <- moe_mcmc(y ~ x, gating = ~ z, data = ds, K = 2, chains = 1, iter = 50, seed = 1,
                   progress = FALSE)
    expect_true(valid_mcmc(ms))
  }
})

test_that("n = 1e6: EM and a short MCMC run give finite results (slow)", {
  skip_if_not(slow_hardening(), "set BAYESMOE_SLOW_TESTS=true for the n = 1e6 fits")
  set.seed(206)
  n <- 1e6
  d <- data.frame(x = runif(n), z = rnorm(n))
  d$y <- ifelse(runif(n) < plogis(4 * (d$x - 0.5)), 1 + 2 * d$x, -1 - d$x) + rnorm(n, sd = 0.2)
  em <- moe_em(y ~ x, gating = ~ x + z, data = d, K = 2, starts = 2, seed = 1)
  expect_true(valid_fit(em))
  expect_equal(unname(em$coefficients$alpha[2, order(em$coefficients$alpha[1, ])]),
               c(-1, 2), tolerance = 0.01)
  fit <- moe_mcmc(y ~ x, gating = ~ x + z, data = d, K = 2, chains = 1, iter = 20, seed = 1,
                  control = moe_mcmc_control(em_starts = 1), progress = FALSE)
  expect_true(valid_mcmc(fit))
  expect_true(all(is.finite(predict(fit, d[1:100, ], interval = "credible"))))
})

# ---- interrupts -----------------------------------------------------------------------
#
# A long run in a child R process (base R only: system2(wait = FALSE)) is
# interrupted with SIGINT, as Ctrl-C does. The child catches the interrupt
# with tryCatch(interrupt = ), then refits a small model and compares it with
# the same fit made before the interrupt (R stays usable and correct), and
# exits; a shell wrapper records its exit status.

# The R code of the child: `long` is the expression interrupted.
interrupt_child_code <- function(long) {
  c('args <- commandArgs(TRUE)',
    'dir <- args[1L]',
    'if (args[2L] == "dev") {',
    '  pkgload::load_all(args[3L], compile = FALSE, quiet = TRUE, export_all = FALSE)',
    '} else {',
    '  library(bayesmoe, lib.loc = args[3L])',
    '}',
    'set.seed(1)',
    'd <- data.frame(x = runif(200))',
    'd$y <- ifelse(d$x > 0.5, 1 + d$x, -d$x) + rnorm(200, sd = 0.1)',
    'small <- function() moe_mcmc(y ~ x, data = d, K = 2, chains = 1, iter = 30, seed = 3,',
    '                             progress = FALSE)',
    'ref <- small()',
    'writeLines(as.character(Sys.getpid()), file.path(dir, "pid"))',
    'outcomes <- character()',
    'for (round in 1:2) {',
    '  outcomes <- c(outcomes, tryCatch({',
    '    writeLines("started", file.path(dir, paste0("started", round)))',
    paste0('    ', long),
    '    "finished"',
    '  }, interrupt = function(e) {',
    '    writeLines(format(as.numeric(Sys.time()), digits = 15),',
    '               file.path(dir, paste0("caught", round)))',
    '    "interrupted"',
    '  },',
    '  error = function(e) paste("error:", conditionMessage(e))))',
    '  again <- small()',
    '  outcomes <- c(outcomes, identical(again$draws, ref$draws) &&',
    '                  identical(again$state, ref$state))',
    '}',
    'writeLines(outcomes, file.path(dir, "result"))')
}

# Start the child, interrupt it `delay` seconds after each "started" marker,
# and return what it wrote and its exit status.
run_interrupted_child <- function(long, delay = 1, timeout = 120) {
  dir <- tempfile("bayesmoe-interrupt")
  dir.create(dir)
  on.exit(unlink(dir, recursive = TRUE), add = TRUE)
  script <- file.path(dir, "child.R")
  writeLines(interrupt_child_code(long), script)
  dev <- requireNamespace("pkgload", quietly = TRUE) && pkgload::is_dev_package("bayesmoe")
  where <- if (dev) pkgload::pkg_path(getNamespaceInfo("bayesmoe", "path")) else
    dirname(getNamespaceInfo("bayesmoe", "path"))
  rscript <- file.path(R.home("bin"), "Rscript")
  cmd <- sprintf("%s --vanilla %s %s %s %s > %s 2>&1; echo $? > %s", shQuote(rscript),
                 shQuote(script), shQuote(dir), if (dev) "dev" else "installed", shQuote(where),
                 shQuote(file.path(dir, "log")), shQuote(file.path(dir, "status")))
  withr_env <- Sys.getenv("R_LIBS", unset = NA)
  Sys.setenv(R_LIBS = paste(.libPaths(), collapse = .Platform$path.sep))
  on.exit(if (is.na(withr_env)) Sys.unsetenv("R_LIBS") else Sys.setenv(R_LIBS = withr_env),
          add = TRUE)
  system2("sh", c("-c", shQuote(cmd)), wait = FALSE)
  wait_for <- function(file) {
    t0 <- Sys.time()
    while (!file.exists(file.path(dir, file))) {
      if (difftime(Sys.time(), t0, units = "secs") > timeout) return(FALSE)
      Sys.sleep(0.1)
    }
    TRUE
  }
  pid <- NA_integer_
  sent <- c(NA_real_, NA_real_)
  for (round in 1:2) {
    if (!wait_for(paste0("started", round))) break
    if (is.na(pid)) pid <- as.integer(readLines(file.path(dir, "pid")))
    Sys.sleep(delay)
    sent[round] <- as.numeric(Sys.time())
    tools::pskill(pid, tools::SIGINT)
  }
  finished <- wait_for("status")
  if (!finished && !is.na(pid)) tools::pskill(pid, tools::SIGKILL)
  Sys.sleep(0.2)
  list(result = if (file.exists(file.path(dir, "result"))) readLines(file.path(dir, "result")),
       status = if (finished) as.integer(readLines(file.path(dir, "status"))),
       # seconds from the signal to the interrupt condition in the child
       latency = vapply(1:2, function(r) {
         f <- file.path(dir, paste0("caught", r))
         if (file.exists(f)) as.numeric(readLines(f)) - sent[r] else NA_real_
       }, 0),
       log = if (file.exists(file.path(dir, "log"))) readLines(file.path(dir, "log")))
}

skip_if_cannot_signal <- function() {
  skip_on_os("windows")
  skip_on_cran()
  skip_if(is.na(tools::SIGINT) || !nzchar(Sys.which("sh")), "the platform cannot send SIGINT")
  skip_if(!requireNamespace("pkgload", quietly = TRUE) && is.null(getNamespaceInfo("bayesmoe", "path")))
}

test_that("an interrupted moe_mcmc() run leaves R usable and correct (child process)", {
  skip_if_cannot_signal()
  # 1e7 sweeps would take hours: only the interrupt can end them
  out <- run_interrupted_child(paste(
    "moe_mcmc(y ~ x, data = d, K = 3, chains = 1, iter = 1e7, init = \"random\",",
    "seed = 1, progress = FALSE)"), delay = 1)
  info <- paste(out$log, collapse = "\n")
  expect_identical(out$status, 0L, info = info)
  # twice: interrupted, then a small fit identical to the one made before
  expect_identical(out$result, c("interrupted", "TRUE", "interrupted", "TRUE"), info = info)
  # the interrupt is honoured within a sweep (a hang detector, not a timing)
  expect_true(all(out$latency < 30), info = paste(out$latency, collapse = " "))
})

test_that("an interrupted moe_em() run leaves R usable and correct (child process)", {
  skip_if_cannot_signal()
  # maxit = 1e9 with a tolerance that is never met and a million starts:
  # only the interrupt can end it (and maxit no longer sizes the trace)
  out <- run_interrupted_child(paste(
    "moe_em(y ~ x, data = d[rep(1:200, 50), ], K = 3, starts = 1e6, seed = 1,",
    "control = moe_em_control(maxit = 1e9, tol = 1e-300))"), delay = 1)
  info <- paste(out$log, collapse = "\n")
  expect_identical(out$status, 0L, info = info)
  expect_identical(out$result, c("interrupted", "TRUE", "interrupted", "TRUE"), info = info)
  expect_true(all(out$latency < 30), info = paste(out$latency, collapse = " "))
})

test_that("interrupts at several moments of a long run, EM starts included (slow)", {
  skip_if_not(slow_hardening(), "set BAYESMOE_SLOW_TESTS=true for more interrupt timings")
  skip_if_cannot_signal()
  for (delay in c(0.05, 0.3, 3)) {
    out <- run_interrupted_child(paste(
      "moe_mcmc(y ~ x, data = d[rep(1:200, 50), ], K = 3, chains = 2, iter = 1e7,",
      "seed = 1, control = moe_mcmc_control(em_starts = 50), progress = FALSE)"), delay = delay)
    info <- paste(c(delay, out$log), collapse = "\n")
    expect_identical(out$status, 0L, info = info)
    expect_identical(out$result, c("interrupted", "TRUE", "interrupted", "TRUE"), info = info)
  }
  out <- run_interrupted_child("rpolyagamma(1, b = 2e9, z = 1)", delay = 1)
  expect_identical(out$result, c("interrupted", "TRUE", "interrupted", "TRUE"),
                   info = paste(out$log, collapse = "\n"))
})

# ---- reproducibility --------------------------------------------------------------------
#
# test-mcmc.R checks that moe_mcmc() with a seed gives identical draws and
# leaves .Random.seed alone, and that plan(multisession) gives the same draws
# as plan(sequential) (two chains, and a continuation). Here: every exported
# function with a `seed` argument, under non-default RNG kinds of the user,
# without a .Random.seed, and more chains than workers.

seeded_calls <- function() {
  d <- base_data(60)
  X <- cbind("(Intercept)" = 1, x = d$x)
  em <- moe_em(y ~ x, data = d, K = 2, starts = 2, seed = 1)
  mc <- moe_mcmc(y ~ x, data = d, K = 2, chains = 1, iter = 20, seed = 1, progress = FALSE)
  draws <- function(f) f[c("draws", "loglik_draws", "state", "seed")]
  # an over-fitted fit and random atom sets, whose merges depend on the
  # visiting order
  mc4 <- moe_mcmc(y ~ x, data = d, K = 4, chains = 1, iter = 40, seed = 1, progress = FALSE,
                  control = tiny_mcmc_control())
  atom_sets <- lapply(1:10, function(i) list(atoms = matrix(stats::runif(6), 6),
                                             weights = rep(1 / 6, 6)))
  list(
    # two EM iterations: converged starts all reach the same optimum (to the
    # last bit), so only unconverged ones show the seed
    moe_em = function(seed) {
      fit <- withCallingHandlers(
        moe_em(y ~ x, data = d, K = 2, starts = 3, seed = seed,
               control = moe_em_control(maxit = 2)),
        bayesmoe_warning_convergence = function(w) invokeRestart("muffleWarning"))
      list(coef(fit), fit$starts)
    },
    moe_mcmc = function(seed) draws(quiet_stall(moe_mcmc(y ~ x, data = d, K = 2, chains = 2,
                                                         iter = 20, seed = seed,
                                                         control = tiny_mcmc_control(),
                                                         progress = FALSE))),
    moe_mcmc_fit = function(seed) draws(quiet_stall(moe_mcmc_fit(d$y, X, X, K = 2, chains = 2,
                                                                 iter = 20, seed = seed,
                                                                 init = "random"))),
    simulate.moe_fit = function(seed) list(simulate(em, nsim = 2, seed = seed),
                                           simulate(mc, nsim = 2, seed = seed)),
    # two least-squares steps: the random starts show the seed
    moe_ls = function(seed) {
      fit <- withCallingHandlers(
        moe_ls(y ~ x, data = d, K = 2, starts = 3, seed = seed,
               control = moe_ls_control(maxit = 2)),
        bayesmoe_warning_convergence = function(w) invokeRestart("muffleWarning"))
      list(coef(fit), fit$starts)
    },
    moe_select = function(seed) {
      sel <- suppressWarnings(moe_select(y ~ x, data = d, K = 1:2, method = c("posterior", "mtm"),
                                         seed = seed, chains = 1, iter = 20,
                                         control = tiny_mcmc_control(), progress = FALSE))
      sel[c("probs", "table", "marglik", "mtm")]
    },
    moe_contraction = function(seed) {
      st <- suppressWarnings(moe_contraction(moe_truth_example("p4"), n = c(50, 100), reps = 2,
                                             starts = 1, seed = seed))
      st$results
    },
    moe_marglik = function(seed) unclass(moe_marglik(mc, seed = seed, n_prop = 20)),
    moe_mtm.moe_mcmc = function(seed) lapply(c(0.5, 1, 2, 3), function(om)
      unclass(moe_mtm(mc4, omega = om, seed = seed))),
    moe_mtm.list = function(seed) unclass(moe_mtm(atom_sets, omega = 0.15, seed = seed)))
}

test_that("every function with a seed: same seed, same result, whatever the user's RNG", {
  set.seed(301)
  calls <- seeded_calls()
  # every exported function or method with a `seed` argument is listed
  ns <- asNamespace("bayesmoe")
  s3 <- getNamespaceInfo(ns, "S3methods")
  fns <- c(getNamespaceExports(ns), paste(s3[, 1L], s3[, 2L], sep = "."))
  with_seed_arg <- fns[vapply(fns, function(f) {
    fun <- get0(f, envir = ns)
    is.function(fun) && "seed" %in% names(formals(fun))
  }, TRUE)]
  expect_setequal(names(calls), with_seed_arg)
  old_kind <- RNGkind()
  on.exit(RNGkind(old_kind[1L], old_kind[2L], old_kind[3L]), add = TRUE)
  kinds <- list(c("Mersenne-Twister", "Inversion", "Rejection"),
                c("L'Ecuyer-CMRG", "Box-Muller", "Rejection"),
                c("Knuth-TAOCP-2002", "Kinderman-Ramage", "Rejection"),
                c("Wichmann-Hill", "Ahrens-Dieter", "Rejection"))
  for (nm in names(calls)) {
    f <- calls[[nm]]
    RNGkind("default", "default", "default")
    ref <- f(7)
    expect_identical(f(7), ref, label = nm)
    expect_false(identical(f(8), ref), label = nm)
    for (k in kinds) {
      RNGkind(k[1L], k[2L], k[3L])
      set.seed(99)
      before <- .Random.seed
      got <- f(7)
      # the result does not depend on the user's RNG, which is left as it was
      expect_identical(got, ref, label = paste(nm, k[1L]))
      expect_identical(.Random.seed, before, label = paste(nm, k[1L]))
      expect_identical(RNGkind(), k, label = paste(nm, k[1L]))
    }
    # no .Random.seed is created when there was none
    RNGkind("default", "default", "default")
    if (exists(".Random.seed", envir = globalenv())) rm(".Random.seed", envir = globalenv())
    got <- f(7)
    expect_false(exists(".Random.seed", envir = globalenv()), label = nm)
    expect_identical(got, ref, label = nm)
  }
})

test_that("seeded fits are identical under plan(multisession) with more chains than workers", {
  skip_if_not_installed("future.apply")
  skip_on_cran()
  set.seed(302)
  calls <- seeded_calls()
  old_kind <- RNGkind()
  on.exit(RNGkind(old_kind[1L], old_kind[2L], old_kind[3L]), add = TRUE)
  oplan <- future::plan(future::sequential)
  on.exit(future::plan(oplan), add = TRUE)
  d <- base_data(60)
  three <- function(seed) moe_mcmc(y ~ x, data = d, K = 2, chains = 3, iter = 30, seed = seed,
                                   control = tiny_mcmc_control(), progress = FALSE)
  seq_fit <- three(5)
  seq_calls <- lapply(calls[c("moe_mcmc", "moe_mcmc_fit")], function(f) f(11))
  seq_cont <- moe_mcmc(seq_fit, iter = 10)
  # the session RNG picks the seed when none is given
  set.seed(12)
  seq_null <- three(NULL)
  future::plan(future::multisession, workers = 2)
  RNGkind("Knuth-TAOCP-2002", "Kinderman-Ramage", "Rejection")
  set.seed(99)
  before <- .Random.seed
  par_fit <- three(5)
  expect_identical(.Random.seed, before)
  expect_identical(par_fit$draws, seq_fit$draws)
  expect_identical(par_fit$loglik_draws, seq_fit$loglik_draws)
  expect_identical(par_fit$state, seq_fit$state)
  expect_identical(lapply(calls[c("moe_mcmc", "moe_mcmc_fit")], function(f) f(11)), seq_calls)
  expect_identical(moe_mcmc(par_fit, iter = 10)$draws, seq_cont$draws)
  RNGkind("default", "default", "default")
  set.seed(12)
  par_null <- three(NULL)
  expect_identical(par_null$seed, seq_null$seed)
  expect_identical(par_null$draws, seq_null$draws)
})

test_that("error messages of the checks added for the remaining entry points", {
  skip_under_valgrind()
  d <- base_data()
  X <- cbind("(Intercept)" = 1, x = d$x)
  st <- list(alpha = cbind(c(1, 2), c(-1, 0.5)), W = cbind(c(0.5, 3), c(0, 0)))
  sets <- list(list(atoms = rbind(c(0, 0), c(5, 5)), weights = c(0.5, 0.5)))
  expect_snapshot(print(prior_K(), digits = 0), error = TRUE)
  expect_snapshot(moe_ls_fit(d$y[1:4], X[1:4, ], X[1:4, ], K = 2), error = TRUE)
  expect_snapshot(moe_ls_fit(d$y, cbind(X, X), X, K = 2), error = TRUE)
  expect_snapshot(moe_mtm(sets, omega = 1e-300), error = TRUE)
  expect_snapshot(voronoi_loss_strong(list(alpha = st$alpha, W = 4000 * st$W), st,
                                      translate = "none"), error = TRUE)
  expect_snapshot(moe_select(y ~ x, data = d, K = 1:9), error = TRUE)
  expect_snapshot(moe_em(y ~ x, data = d, K = 3,
                         gate = structure(list(type = "topk"), class = c("moe_gate_topk", "moe_gate"))),
                  error = TRUE)
})

# ---- second round of hardening -------------------------------------------------------------
#
# Each case is a row: the call, its validator and the expected outcome
# ("value" or "classed_error"); hardening_rows() runs them and lists any
# mismatch.

hardening_rows <- function(cases) {
  res <- do.call(rbind, lapply(cases, function(cs) {
    out <- run_cases(cs$fn, function(v) cs$call(), list(NULL), cs$validate, label = cs$label)
    out$expected <- cs$expected
    if (!is.null(cs$class) && out$kind == "classed_error") {
      got <- tryCatch({ suppressWarnings(cs$call()); "none" },
                      error = function(e) paste(class(e), collapse = " "))
      if (!grepl(cs$class, got, fixed = TRUE)) out$kind <- paste("wrong class:", got)
    }
    out
  }))
  bad <- res[res$kind != res$expected, , drop = FALSE]
  expect(nrow(bad) == 0L,
         sprintf("%d of %d cases not as expected:\n%s", nrow(bad), nrow(res),
                 paste(sprintf("%s: %s (expected %s) %s", bad$label, bad$kind, bad$expected,
                               bad$message), collapse = "\n")))
  invisible(res)
}

row_case <- function(fn, label, call, expected, validate = any_value, class = NULL) {
  list(fn = fn, label = label, call = call, expected = expected, validate = validate,
       class = class)
}

test_that("offsets are fitted, predicted with, or refused", {
  set.seed(171)
  d <- base_data()
  d$o <- 10 * d$x
  fit <- moe_em(y ~ x + offset(o), data = d, K = 2, starts = 1, seed = 1)
  nd <- data.frame(x = c(0.2, 0.7), z = 0, o = c(10, -5), y = c(3, -6))
  hardening_rows(list(
    row_case("moe_em", "moe_em(y ~ x + offset(10 * x))", function()
      moe_em(y ~ x + offset(10 * x), data = d, K = 2, starts = 1, seed = 1), "value",
      function(f) valid_fit(f) && !isTRUE(all.equal(coef(f), coef(moe_em(y ~ x, data = d, K = 2,
                                                                             starts = 1, seed = 1))))),
    row_case("moe_em", "moe_em(y ~ x + offset(o), K = 1) equals lm()", function()
      moe_em(y ~ x + offset(o), data = d, K = 1), "value",
      function(f) isTRUE(all.equal(unname(coef(f)[1:2]),
                                   unname(coef(lm(y ~ x + offset(o), data = d))), tolerance = 1e-8))),
    row_case("moe_mcmc", "moe_mcmc(y ~ x + offset(o))", function()
      moe_mcmc(y ~ x + offset(o), data = d, K = 1, chains = 1, iter = 20, seed = 1,
               progress = FALSE), "value", valid_mcmc),
    row_case("moe_ls", "moe_ls(y ~ x + offset(o))", function()
      moe_ls(y ~ x + offset(o), data = d, K = 1), "value",
      function(f) valid_ls(f) && isTRUE(all.equal(unname(coef(f)[1:2]),
                                   unname(coef(lm(y ~ x + offset(o), data = d))), tolerance = 1e-6))),
    row_case("moe_em", "moe_em(gating = ~ x + offset(x))", function()
      moe_em(y ~ x, gating = ~ x + offset(x), data = d, K = 2), "classed_error",
      class = "bayesmoe_error_formula"),
    row_case("moe_mcmc", "moe_mcmc(gating = ~ x + offset(x))", function()
      moe_mcmc(y ~ x, gating = ~ x + offset(x), data = d, K = 2), "classed_error",
      class = "bayesmoe_error_formula"),
    row_case("moe_ls", "moe_ls(gating = ~ offset(x))", function()
      moe_ls(y ~ x, gating = ~ offset(x), data = d, K = 2), "classed_error",
      class = "bayesmoe_error_formula"),
    row_case("moe_em", "moe_em(y ~ x + offset(o * Inf))", function()
      moe_em(y ~ x + offset(o * Inf), data = d, K = 1), "classed_error",
      class = "bayesmoe_error_data"),
    row_case("predict.moe_fit", "predict(offset fit, newdata) carries the offset", function()
      predict(fit, nd), "value",
      function(p) isTRUE(all.equal(unname(p - predict(fit, transform(nd, o = 0))), nd$o))),
    row_case("predict.moe_fit", "predict(offset fit, newdata with an infinite offset)", function()
      predict(fit, transform(nd, o = Inf)), "classed_error", class = "bayesmoe_error_data"),
    row_case("log_lik.moe_mcmc", "log_lik(offset fit, newdata) at y - offset", function() {
      m <- moe_mcmc(y ~ x + offset(o), data = d, K = 1, chains = 1, iter = 20, seed = 1,
                    progress = FALSE)
      log_lik(m, newdata = nd) - log_lik(m, newdata = transform(nd, o = 0, y = y - o))
    }, "value", function(x) all(abs(x) < 1e-10)),
    row_case("simulate.moe_fit", "simulate(offset fit)", function()
      rowMeans(simulate(fit, nsim = 50, seed = 1)) - fitted(fit), "value",
      function(x) all(abs(x) < 2)),
    row_case("density_loss", "density_loss(offset fit, truth)", function()
      density_loss(fit, moe_truth_example("p4")), "classed_error",
      class = "bayesmoe_error_design")))
})

test_that("arguments of moe_mcmc() in moe_contraction(mcmc = ) are checked first", {
  set.seed(172)
  tr <- moe_truth_example("p4")
  run <- function(m, method = "mcmc") function() moe_contraction(tr, n = c(20, 30), reps = 2,
                                                                 method = method, mcmc = m)
  bad <- list(list(iter = -1), list(bogus = 1), list(chains = 0), list(iter = 10, warmup = 10),
              list(thin = 0), list(init = "foo"), list(prior = 1), list(control = list()),
              list(gate = 3), list(seed = 1), list(K = 3), list(iter = 20, iter = 30),
              list(progress = NA))
  hardening_rows(c(
    lapply(bad, function(m) row_case("moe_contraction", sprintf("mcmc = %s", deparse1(m)),
                                      run(m), "classed_error", class = "bayesmoe_error")),
    list(row_case("moe_contraction", "mcmc = list(iter = 20) with method = \"em\"",
                  run(list(iter = 20), "em"), "classed_error", class = "bayesmoe_error_input"),
         row_case("moe_contraction", "mcmc = list(iter = 30, chains = 1)",
                  function() moe_contraction(tr, n = c(20, 30), reps = 1, method = "mcmc",
                                             mcmc = list(iter = 30, chains = 1), seed = 1),
                  "value", function(st) inherits(st, "moe_contraction") &&
                    all(is.finite(st$results$value))))))
})

test_that("exact least-squares fits warn instead of returning Inf silently", {
  set.seed(173)
  # the value is valid when it is finite, or warned of as an exact fit
  warned_exact <- function(expr) function() {
    w <- NULL
    val <- withCallingHandlers(expr(), bayesmoe_warning_exact_fit = function(c) {
      w <<- c
      invokeRestart("muffleWarning")
    })
    list(val = val, warned = !is.null(w))
  }
  ok <- function(r) r$warned && isTRUE(r$val$exact) && identical(as.numeric(logLik(r$val)), Inf)
  hardening_rows(list(
    row_case("moe_ls", "moe_ls on y = 2x", warned_exact(function()
      moe_ls(y ~ x, data = data.frame(x = 1:100, y = 2 * (1:100)), K = 1)), "value", ok),
    row_case("moe_ls", "moe_ls on two y-values at two x-values", warned_exact(function()
      moe_ls(y ~ x, data = data.frame(x = c(1, 1, 2, 2), y = c(1, 1, 3, 3)), K = 1)), "value", ok),
    row_case("moe_ls", "moe_ls on y = 2x, K = 2", warned_exact(function()
      moe_ls(y ~ x, data = data.frame(x = 1:100, y = 2 * (1:100)), K = 2, seed = 1)), "value", ok),
    row_case("summary.moe_ls", "summary of an exact fit", warned_exact(function()
      summary(moe_ls(y ~ x, data = data.frame(x = 1:100, y = 2 * (1:100)), K = 1))), "value",
      function(r) r$warned && isTRUE(r$val$exact)),
    row_case("moe_ls", "moe_ls with noise: finite", function()
      moe_ls(y ~ x, data = data.frame(x = 1:100, y = 2 * (1:100) + sin(1:100)), K = 1),
      "value", function(f) valid_ls(f) && !f$exact)))
})

test_that("densities far out and covariates beyond range", {
  set.seed(174)
  d <- base_data()
  fit <- moe_em(y ~ x, data = d, K = 2, starts = 1, seed = 1)
  mc <- moe_mcmc(y ~ x, data = d, K = 2, chains = 1, iter = 20, seed = 1, progress = FALSE,
                 control = tiny_mcmc_control())
  nd <- data.frame(x = 0.5)
  very_negative <- function(x) all(is.finite(x)) && all(x < -1e100)
  hardening_rows(list(
    row_case("predict.moe_fit", "predict(type = \"density\", y = 1e100, log = TRUE)", function()
      predict(fit, newdata = nd, type = "density", y = 1e100, log = TRUE), "value", very_negative),
    row_case("predict.moe_mcmc", "predict(mcmc, type = \"density\", y = -1e100, log = TRUE)",
             function() predict(mc, newdata = nd, type = "density", y = -1e100, log = TRUE),
             "value", very_negative),
    row_case("log_lik.moe_mcmc", "log_lik(newdata = data.frame(x = 0.5, y = 1e100))", function()
      log_lik(mc, newdata = data.frame(x = 0.5, y = 1e100)), "value", very_negative),
    row_case("predict.moe_fit", "predict(type = \"density\", y = 1e300, log = TRUE)", function()
      predict(fit, newdata = nd, type = "density", y = 1e300, log = TRUE), "classed_error",
      class = "bayesmoe_error_input"),
    row_case("predict.moe_mcmc", "predict(mcmc, type = \"density\", y = 1e300)", function()
      predict(mc, newdata = nd, type = "density", y = 1e300, log = TRUE), "classed_error",
      class = "bayesmoe_error_input"),
    row_case("predict.moe_fit", "predict(newdata = data.frame(x = 0.5, y = 1e300), type = \"density\")",
             function() predict(fit, newdata = data.frame(x = 0.5, y = 1e300), type = "density",
                                log = TRUE), "classed_error", class = "bayesmoe_error_data"),
    row_case("log_lik.moe_mcmc", "log_lik(newdata = data.frame(x = 0.5, y = 1e300))", function()
      log_lik(mc, newdata = data.frame(x = 0.5, y = 1e300)), "classed_error",
      class = "bayesmoe_error_data"),
    row_case("predict.moe_fit", "predict(newdata = data.frame(x = c(1e307, -1e307)))", function()
      predict(fit, newdata = data.frame(x = c(1e307, -1e307))), "classed_error",
      class = "bayesmoe_error_data"),
    row_case("predict.moe_mcmc", "predict(mcmc, newdata = data.frame(x = c(1e307, -1e307)))",
             function() predict(mc, newdata = data.frame(x = c(1e307, -1e307))), "classed_error",
             class = "bayesmoe_error_data"),
    row_case("predict.moe_fit", "predict(newdata = data.frame(x = c(1e99, -1e99)))", function()
      predict(fit, newdata = data.frame(x = c(1e99, -1e99))), "value", finite_value),
    row_case("predict.moe_fit", "predict(type = \"quantile\", newdata = x = 1e99)", function()
      predict(fit, newdata = data.frame(x = 1e99), type = "quantile"), "value", finite_value)))
})

test_that("truths with extreme values are refused or give finite results", {
  set.seed(175)
  targs <- list(beta0 = -8, beta1 = 25, a = c(-20, 20), b = c(15, -5), sigma = c(0.3, 0.4))
  tr <- function(...) do.call(moe_truth, utils::modifyList(targs, list(...)))
  p4 <- moe_truth_example("p4")
  nonneg <- function(x) is.numeric(x) && all(is.finite(x)) && all(x >= 0)
  err <- function(label, f, cls = "bayesmoe_error_input")
    row_case("moe_truth", label, f, "classed_error", class = cls)
  hardening_rows(list(
    err("moe_truth(sigma = c(1e300, 1))", function() tr(sigma = c(1e300, 1))),
    err("moe_truth(sigma = c(1e-300, 1))", function() tr(sigma = c(1e-300, 1))),
    err("moe_truth(b = c(1e200, 1))", function() tr(b = c(1e200, 1))),
    err("moe_truth(a = c(1e200, 1))", function() tr(a = c(1e200, 1))),
    err("moe_truth(beta1 = -1e200)", function() tr(beta1 = -1e200)),
    err("moe_truth(beta0 = 1e200)", function() tr(beta0 = 1e200)),
    row_case("density_loss", "density_loss(p4, list with sigma2 = 1e300)", function()
      density_loss(p4, list(beta0 = c(-8, 0), beta1 = c(25, 0), a = c(-20, 20), b = c(15, -5),
                            sigma2 = c(1e300, 1))), "classed_error", class = "bayesmoe_error"),
    row_case("rmoe", "rmoe() from a truth at the bounds", function()
      rmoe(100, tr(sigma = c(1e50, 1), a = c(1e100, 1))), "value",
      function(x) all(is.finite(x$y))),
    row_case("density_loss", "density_loss() against a truth at the bounds", function()
      density_loss(p4, tr(sigma = c(1e50, 1e-50), a = c(1e100, 1))), "value", nonneg),
    row_case("voronoi_loss", "voronoi_loss() against a truth at the bounds", function()
      voronoi_loss(p4, tr(sigma = c(1e50, 1e-50), b = c(1e100, 1))), "value", nonneg),
    row_case("voronoi_loss", "voronoi_loss() with beta0 = 1e5", function()
      voronoi_loss(p4, tr(beta0 = 1e5)), "classed_error", class = "bayesmoe_error_numerical")))
})

test_that("the messages say what is wrong", {
  set.seed(176)
  d <- base_data()
  fit <- moe_em(y ~ x + f, data = d, K = 1)
  tru <- moe_truth_example("p4")
  st <- list(alpha = cbind(c(1, 2), c(-1, 0.5)), W = cbind(c(0.5, 3), c(0, 0)))
  tk <- list(alpha = cbind(c(1, 2), c(-1, 1), c(0, -2)), sigma2 = c(0.1, 0.2, 0.15),
             W = cbind(c(0.5, -3), c(0, 3), 0))
  Z <- cbind(1, seq(-2, 2, length.out = 20))
  msg <- function(pattern) function() NULL
  rows <- hardening_rows(list(
    row_case("moe_em", "na.pass with an NA response", function()
      moe_em(y ~ x, data = within(d, y[3] <- NA), K = 1, na.action = na.pass),
      "classed_error", class = "bayesmoe_error_data"),
    row_case("predict.moe_fit", "a new factor level in newdata", function()
      predict(fit, data.frame(x = 0.5, f = "c")), "classed_error",
      class = "bayesmoe_error_data"),
    row_case("voronoi_loss_strong", "voronoi_loss_strong(list, moe_truth)", function()
      voronoi_loss_strong(st, tru), "value", function(x) all(is.finite(x))),
    row_case("voronoi_loss_strong", "voronoi_loss_strong(list, ffn truth)", function()
      voronoi_loss_strong(st, moe_truth(beta0 = 0, beta1 = 1, eta = matrix(0.1, 4, 2),
                                        sigma = c(1, 1), expert = expert_ffn(1))),
      "classed_error", class = "bayesmoe_error_expert"),
    row_case("topk_loss", "topk_loss(list, moe_truth)", function()
      topk_loss(tk, tru, k = 2, Z = Z), "value", function(x) all(is.finite(x))),
    row_case("topk_loss", "topk_loss(moe_truth, list)", function()
      topk_loss(tru, tk, k = 2, Z = Z), "value", function(x) all(is.finite(x)))))
  expect_match(rows$message[1], "1 missing value", fixed = TRUE)
  expect_match(rows$message[2], "level of factor `f`", fixed = TRUE)
})

test_that("sizes beyond memory are refused before allocating", {
  set.seed(177)
  old <- options(bayesmoe.max_bytes = 4 * 2^30)
  on.exit(options(old), add = TRUE)
  d <- base_data()
  fit <- moe_em(y ~ x, data = d, K = 1)
  m <- moe_mcmc(y ~ x, data = d, K = 1, chains = 1, iter = 40, seed = 1, progress = FALSE)
  X <- cbind("(Intercept)" = 1, x = d$x)
  size_err <- function(fn, label, f) row_case(fn, label, f, "classed_error",
                                              class = "bayesmoe_error_size")
  hardening_rows(list(
    size_err("moe_em", "moe_em(starts = 1e8)", function()
      moe_em(y ~ x, data = d, K = 2, starts = 1e8)),
    size_err("moe_em_fit", "moe_em_fit(starts = 2e8)", function()
      moe_em_fit(d$y, X, X, K = 2, starts = 2e8)),
    size_err("simulate.moe_fit", "simulate(nsim = 1e7)", function() simulate(fit, nsim = 1e7)),
    size_err("moe_marglik", "moe_marglik(n_prop = 1e9)", function()
      moe_marglik(m, n_prop = 1e9)),
    size_err("moe_mcmc", "check_mcmc_size(chains = 1e9)", function()
      check_mcmc_size(1e9, 2000, 1000, 1)),
    size_err("moe_mcmc", "check_mcmc_size(chains = 1e6, iter = 3e6)", function()
      check_mcmc_size(1e6, 3e6, 1.5e6, 1)),
    size_err("moe_mcmc", "check_mcmc_size(iter = 1e9)", function()
      check_mcmc_size(4, 1e9, 5e8, 1)),
    row_case("density_loss", "density_loss(min_points = 2^31 - 1)", function()
      density_loss(fit, moe_truth_example("p4"), min_points = 2^31 - 1), "classed_error",
      class = "bayesmoe_error_input"),
    row_case("simulate.moe_fit", "simulate(nsim = 10)", function() simulate(fit, nsim = 10),
             "value", finite_value),
    row_case("moe_marglik", "moe_marglik(n_prop = 100)", function()
      moe_marglik(m, n_prop = 100, seed = 1), "value", function(x) is.finite(x$logml)),
    row_case("moe_mcmc", "check_mcmc_size(4 chains, 2000 iterations, 100 parameters)",
             function() check_mcmc_size(4, 2000, 1000, 1, npar = 100), "value")))
})

test_that("more parameters than observations is refused or warned of up front", {
  set.seed(178)
  d <- data.frame(x = runif(100))
  d$y <- d$x + rnorm(100)
  fr <- list(X = cbind("(Intercept)" = 1, x = d$x), Z = cbind("(Intercept)" = 1, x = d$x),
             weights = rep(1, 100))
  warned <- function(f) function() {
    w <- NULL
    val <- withCallingHandlers(f(), bayesmoe_warning_overparameterised = function(c) {
      w <<- c
      invokeRestart("muffleWarning")
    })
    list(val = val, warned = !is.null(w))
  }
  hardening_rows(list(
    row_case("moe_em", "moe_em(K = 50) on n = 100", warned(function()
      moe_em(y ~ x, data = d, K = 50, starts = 1, seed = 1)), "value",
      function(r) r$warned && valid_fit(r$val)),
    row_case("moe_em", "moe_em(expert = expert_ffn(hidden = 500)) on n = 100", function()
      moe_em(y ~ x, data = d, K = 2, expert = expert_ffn(hidden = 500), starts = 1),
      "classed_error", class = "bayesmoe_error_input"),
    row_case("moe_mcmc", "check_npar(K = 50, mcmc) on n = 100 (moe_mcmc's check)",
             warned(function() check_npar(gate_softmax(), expert_linear(), 50, fr, "mcmc")),
             "value", function(r) r$warned && r$val == 248L),
    row_case("moe_mcmc", "check_npar(expert_ffn(hidden = 500), mcmc) on n = 100", function()
      check_npar(gate_softmax(), expert_ffn(hidden = 500), 2, fr, "mcmc"), "classed_error",
      class = "bayesmoe_error_input"),
    row_case("moe_em", "moe_em(K = 20) on n = 100 (98 parameters)", function()
      moe_em(y ~ x, data = d, K = 20, starts = 1, seed = 1), "value", valid_fit)))
})

test_that("malformed init_par of moe_em_fit() is a classed error", {
  set.seed(179)
  d <- base_data()
  X <- cbind("(Intercept)" = 1, x = d$x)
  par <- coef(moe_em(y ~ x, data = d, K = 2, starts = 1, seed = 1), matrix = TRUE)
  bad <- list(list(list()), list(), list(1), list(NULL), list(list(alpha = 1, sigma2 = 1, W = 1)),
              list(within(par, alpha[1] <- NA)), list(within(par, sigma2[1] <- -1)),
              list(within(par, W <- W[, 1])), list(within(par, alpha <- alpha[, 1])),
              list(within(par, sigma2 <- c(sigma2, 1))), list(within(par, W[1] <- 1e300)),
              list(par, "a"))
  hardening_rows(c(
    lapply(bad, function(v) row_case("moe_em_fit", sprintf("init_par = %s", deparse1(v, nlines = 1L)),
                                      function() moe_em_fit(d$y, X, X, K = 2, init_par = v),
                                      "classed_error", class = "bayesmoe_error_input")),
    list(row_case("moe_em_fit", "init_par = list(coef(fit, matrix = TRUE))", function()
      moe_em_fit(d$y, X, X, K = 2, init_par = list(par)), "value", valid_par))))
})

test_that("scaling: covariates from 1e-200 to 1e100 fit as at scale 1", {
  skip_under_valgrind()
  set.seed(1710)
  d <- base_data(80)
  d$z <- d$z / max(abs(d$z)) # |z| <= 1, so 1e100 * z is in range
  em <- moe_em(y ~ x, gating = ~ z, data = d, K = 2, starts = 3, seed = 1)
  mc <- moe_mcmc(y ~ x, gating = ~ z, data = d, K = 2, chains = 1, iter = 200, seed = 1,
                 progress = FALSE)
  a <- em$coefficients
  for (s in c(1e-200, 1e17, 1e50, 1e100)) {
    ds <- transform(d, x = s * x, z = s * z)
    es <- moe_em(y ~ x, gating = ~ z, data = ds, K = 2, starts = 3, seed = 1)
    b <- es$coefficients
    # the labels may come out in another order
    b <- bayesmoe:::permute_par(b, order(b$alpha[1L, ])[order(order(a$alpha[1L, ]))])
    expect_equal(b$alpha, a$alpha * c(1, 1 / s), tolerance = 1e-6, ignore_attr = TRUE)
    expect_equal(b$sigma2, a$sigma2, tolerance = 1e-6, ignore_attr = TRUE)
    expect_equal(b$W, a$W * c(1, 1 / s), tolerance = 1e-6, ignore_attr = TRUE)
    expect_equal(as.numeric(logLik(es)), as.numeric(logLik(em)), tolerance = 1e-8)
    expect_equal(fitted(es), fitted(em), tolerance = 1e-6)
    ms <- moe_mcmc(y ~ x, gating = ~ z, data = ds, K = 2, chains = 1, iter = 200, seed = 1,
                   progress = FALSE)
    expect_true(valid_mcmc(ms))
    # the same posterior: the chain may start from the EM solution with its
    # experts in another order (then it is another chain), so posterior means
    # of the experts are compared loosely, sorted by intercept, and
    # predictive means agree
    pa <- coef(mc, matrix = TRUE)
    pb <- coef(ms, matrix = TRUE)
    pb <- bayesmoe:::permute_par(pb, order(pb$alpha[1L, ])[order(order(pa$alpha[1L, ]))])
    expect_equal(pb$alpha, pa$alpha * c(1, 1 / s), tolerance = 0.1, ignore_attr = TRUE)
    expect_equal(pb$sigma2, pa$sigma2, tolerance = 0.2, ignore_attr = TRUE)
    expect_equal(fitted(ms), fitted(mc), tolerance = 0.15)
    expect_true(all(is.finite(predict(ms, ds[1:5, ], interval = "credible"))))
  }
  # the matrix interfaces
  X <- cbind("(Intercept)" = 1, x = d$x)
  r1 <- moe_em_fit(d$y, X, X, K = 2, starts = 3)
  r2 <- moe_em_fit(d$y, X * c(1, 1e17)[col(X)], X * c(1, 1e17)[col(X)], K = 2, starts = 3)
  expect_equal(r2$loglik, r1$loglik, tolerance = 1e-8)
  r3 <- moe_mcmc_fit(d$y, X * c(1, 1e-200)[col(X)], X, K = 2, chains = 1, iter = 50,
                     seed = 1, control = tiny_mcmc_control())
  expect_true(valid_par(r3))
})

test_that("scaling: denormal covariates and responses are refused by name", {
  skip_under_valgrind()
  set.seed(1711)
  d <- base_data()
  X <- cbind("(Intercept)" = 1, x = d$x)
  Xt <- X
  Xt[, 2] <- 1e-310 * Xt[, 2]
  Xn <- X
  Xn[, 2] <- 1e-299 * (1 + 1e-3 * Xn[, 2])
  tiny <- within(d, x <- 1e-310 * x)
  rows <- hardening_rows(list(
    row_case("moe_em", "moe_em(x = 1e-310 * x)", function()
      moe_em(y ~ x, data = tiny, K = 2, starts = 1, seed = 1), "classed_error",
      class = "bayesmoe_error_data"),
    row_case("moe_mcmc", "moe_mcmc(x = 1e-310 * x)", function()
      moe_mcmc(y ~ x, data = tiny, K = 2, chains = 1, iter = 20, seed = 1, progress = FALSE),
      "classed_error", class = "bayesmoe_error_data"),
    row_case("moe_em", "moe_em(gating = ~ z, z = 1e-305 * z)", function()
      moe_em(y ~ x, gating = ~ z, data = within(d, z <- 1e-305 * z), K = 2), "classed_error",
      class = "bayesmoe_error_data"),
    row_case("moe_em", "moe_em(x = 1e-299 * (1 + 1e-3 * x)): spread below 1e-300", function()
      moe_em(y ~ x, data = within(d, x <- 1e-299 * (1 + 1e-3 * x)), K = 2), "classed_error",
      class = "bayesmoe_error_data"),
    row_case("moe_em", "moe_em(y = 1e-310 * y)", function()
      moe_em(y ~ x, data = within(d, y <- 1e-310 * y), K = 2), "classed_error",
      class = "bayesmoe_error_data"),
    row_case("moe_mcmc", "moe_mcmc(y = 1e-200 * y): the variance underflows", function()
      moe_mcmc(y ~ x, data = within(d, y <- 1e-200 * y), K = 2, chains = 1, iter = 20,
               seed = 1, progress = FALSE), "classed_error", class = "bayesmoe_error_data"),
    row_case("moe_em_fit", "moe_em_fit(X[, 2] * 1e-310)", function()
      moe_em_fit(d$y, Xt, X, K = 2), "classed_error", class = "bayesmoe_error_data"),
    row_case("moe_mcmc_fit", "moe_mcmc_fit(Z[, 2] * 1e-310)", function()
      moe_mcmc_fit(d$y, X, Xt, K = 2, chains = 1, iter = 20, seed = 1), "classed_error",
      class = "bayesmoe_error_data"),
    row_case("moe_em_fit", "moe_em_fit(X[, 2] spread below 1e-300)", function()
      moe_em_fit(d$y, Xn, X, K = 2), "classed_error", class = "bayesmoe_error_data"),
    row_case("moe_mcmc_fit", "moe_mcmc_fit(y = 1e-310 * y)", function()
      moe_mcmc_fit(1e-310 * d$y, X, X, K = 2, chains = 1, iter = 20, seed = 1),
      "classed_error", class = "bayesmoe_error_data"),
    row_case("moe_em", "moe_em(x = 1e-250 * x)", function()
      moe_em(y ~ x, data = within(d, x <- 1e-250 * x), K = 2, starts = 1, seed = 1), "value",
      valid_fit),
    row_case("moe_em", "moe_em(y = 1e-100 * y, x = 1e100 * x)", function()
      moe_em(y ~ x, data = within(d, { y <- 1e-100 * y; x <- 1e100 * x }), K = 2, starts = 1,
             seed = 1), "value", valid_fit)))
  expect_match(rows$message[1], "column `x` has smaller nonzero values", fixed = TRUE)
  expect_snapshot(moe_em(y ~ x, data = tiny, K = 2), error = TRUE)
  expect_snapshot(moe_em(y ~ x, data = within(d, x <- 1e-299 * (1 + 1e-3 * x)), K = 2),
                  error = TRUE)
  expect_snapshot(moe_em(y ~ x, data = within(d, y <- 1e-200 * y), K = 2), error = TRUE)
  expect_snapshot(moe_em_fit(d$y, Xt, X, K = 2), error = TRUE)
})

# Fits whose fields were changed by hand: every method ends in one classed
# error (validate_moe_fit(), class bayesmoe_error_fit), never in an unclassed
# error from indexing, matrix products or the C entry points.
tampered_fits <- function(em, mc) {
  set <- function(fit, ...) {
    v <- list(...)
    for (f in names(v)) fit[f] <- list(v[[f]])
    fit
  }
  st <- function(fit, ch, field, value) {
    fit$state[[ch]][field] <- list(value)
    fit
  }
  S <- dim(mc$draws)[1L]
  list(
    em = list(
      em_as_mcmc = structure(em, class = class(mc)),
      em_alpha_short = set(em, coefficients = within(em$coefficients, alpha <- alpha[, 1L])),
      em_alpha_wide = set(em, coefficients = within(em$coefficients, alpha <- cbind(alpha, 1))),
      em_sigma2_long = set(em, coefficients = within(em$coefficients, sigma2 <- c(sigma2, 1))),
      em_W_rows = set(em, coefficients = within(em$coefficients, W <- W[1L, , drop = FALSE])),
      em_no_coefficients = set(em, coefficients = NULL),
      em_K_changed = set(em, K = 3),
      em_K_fraction = set(em, K = 1.5),
      em_X_rows = set(em, X = em$X[-1L, , drop = FALSE]),
      em_y_short = set(em, y = em$y[-1L]),
      em_weights_short = set(em, weights = em$weights[-1L]),
      em_resp_wide = set(em, resp = cbind(em$resp, 0)),
      em_no_status = set(em, status = NULL),
      em_two_classes = structure(em, class = c("moe_em", "moe_mcmc", "moe_fit")),
      em_gate_list = set(em, gate = list(type = "softmax"))),
    mcmc = list(
      mcmc_as_em = structure(mc, class = class(em)),
      draws_chains = set(mc, draws = mc$draws[, c(1L, 2L, 2L), ]),
      draws_params = set(mc, draws = mc$draws[, , -1L]),
      draws_short = set(mc, draws = mc$draws[-1L, , ]),
      draws_matrix = set(mc, draws = mc$draws[, 1L, ]),
      draws_renamed = set(mc, draws = {
        D <- mc$draws
        dimnames(D)[[3L]] <- rev(dimnames(D)[[3L]])
        D
      }),
      chains_changed = set(mc, chains = 3L),
      chains_fewer = set(mc, chains = 1L),
      iter_changed = set(mc, iter = mc$iter + 10L),
      warmup_changed = set(mc, warmup = mc$warmup - 4L),
      warmup_beyond_iter = set(mc, warmup = mc$iter + 1L),
      thin_zero = set(mc, thin = 0L),
      loglik_draws_short = set(mc, loglik_draws = mc$loglik_draws[-1L, ]),
      no_draws = set(mc, draws = NULL),
      state_short = set(mc, state = mc$state[1L]),
      state_alpha = st(mc, 2L, "alpha", mc$state[[2L]]$alpha[, 1L]),
      state_sigma2 = st(mc, 1L, "sigma2", 1),
      state_W = st(mc, 1L, "W", mc$state[[1L]]$W[-1L, , drop = FALSE]),
      state_rng_short = st(mc, 1L, "rng", mc$state[[1L]]$rng[1:3]),
      state_rng_double = st(mc, 1L, "rng", as.double(mc$state[[1L]]$rng)),
      state_iterations = st(mc, 2L, "iterations_done", mc$iter + 5),
      gating_moves_rows = set(mc, gating_moves = mc$gating_moves[1L, , drop = FALSE]),
      mcmc_coefficients = set(mc, coefficients = within(mc$coefficients, W <- W[, 1L])),
      mcmc_K_changed = set(mc, K = 3L),
      mcmc_X_columns = set(mc, X = mc$X[, 1L, drop = FALSE])))
}

test_that("tampered fits: every method gives one classed error", {
  set.seed(1712)
  d <- base_data()
  em <- moe_em(y ~ x, gating = ~ z, data = d, K = 2, starts = 1, seed = 1)
  mc <- moe_mcmc(y ~ x, gating = ~ z, data = d, K = 2, chains = 2, iter = 40, seed = 1,
                 progress = FALSE, control = tiny_mcmc_control())
  tru <- moe_truth_example("p4")
  nd <- d[1:3, ]
  shared <- list(
    print = function(f) print(f), summary = function(f) summary(f),
    print_summary = function(f) print(summary(f)), coef = function(f) coef(f),
    vcov = function(f) vcov(f), predict = function(f) predict(f),
    predict_newdata = function(f) predict(f, nd, type = "density"),
    fitted = function(f) fitted(f), residuals = function(f) residuals(f),
    simulate = function(f) simulate(f, seed = 1), logLik = function(f) logLik(f),
    nobs = function(f) nobs(f), sigma = function(f) sigma(f),
    model.matrix = function(f) model.matrix(f), df.residual = function(f) df.residual(f),
    plot = function(f) {
      grDevices::pdf(NULL)
      on.exit(grDevices::dev.off())
      plot(f)
    },
    moe_membership = function(f) moe_membership(f),
    voronoi_loss = function(f) voronoi_loss(f, tru),
    density_loss = function(f) density_loss(f, tru),
    moe_truth = function(f) moe_truth(f, draw = 1),
    moe_marglik = function(f) moe_marglik(f))
  em_methods <- c(shared, list(deviance = function(f) deviance(f),
                               anova = function(f) anova(f, f)))
  mcmc_methods <- c(shared, list(
    log_lik = function(f) log_lik(f), moe_relabel = function(f) moe_relabel(f),
    continue = function(f) moe_mcmc(f, iter = 2, progress = FALSE),
    as.data.frame = function(f) as.data.frame(f), confint = function(f) confint(f),
    moe_mtm = function(f) moe_mtm(f)))
  # the methods work on the valid fits (or refuse with a classed error)
  ok <- rbind(
    do.call(rbind, lapply(names(em_methods), function(m)
      run_cases(m, function(v) em_methods[[m]](em), list(NULL), any_value,
                label = paste(m, "of em")))),
    do.call(rbind, lapply(names(mcmc_methods), function(m)
      run_cases(m, function(v) mcmc_methods[[m]](mc), list(NULL), any_value,
                label = paste(m, "of mcmc")))))
  expect_no_defect(ok)
  fits <- tampered_fits(em, mc)
  fits <- c(fits$em, fits$mcmc)
  expect_gte(length(fits), 25L)
  res <- list()
  for (nm in names(fits)) {
    f <- fits[[nm]]
    methods <- if (inherits(f, "moe_em")) em_methods else mcmc_methods
    for (m in names(methods)) {
      cls <- tryCatch({
        suppressWarnings(utils::capture.output(methods[[m]](f)))
        "no error"
      }, error = function(e) paste(class(e), collapse = " "))
      res[[length(res) + 1L]] <- data.frame(fit = nm, method = m, class = cls,
                                            stringsAsFactors = FALSE)
    }
  }
  res <- do.call(rbind, res)
  # every call on a tampered fit ends in the structure check's classed error
  bad <- res[!grepl("^bayesmoe_error_fit bayesmoe_error", res$class), ]
  expect(nrow(bad) == 0L, sprintf("%d of %d calls did not end in bayesmoe_error_fit:\n%s",
                                  nrow(bad), nrow(res),
                                  paste(sprintf("%s / %s: %s", bad$fit, bad$method, bad$class),
                                        collapse = "\n")))
  expect_snapshot(print(fits$draws_chains), error = TRUE)
  expect_snapshot(coef(fits$em_as_mcmc), error = TRUE)
  expect_snapshot(predict(fits$mcmc_as_em), error = TRUE)
  expect_snapshot(summary(fits$iter_changed), error = TRUE)
  expect_snapshot(moe_mcmc(fits$state_rng_short, iter = 2), error = TRUE)
  expect_snapshot(vcov(fits$em_alpha_short), error = TRUE)
  expect_snapshot(log_lik(fits$draws_params), error = TRUE)
  expect_snapshot(moe_relabel(fits$state_short), error = TRUE)
})

test_that("malformed responses of binomial() and poisson() experts get classed errors", {
  for (family in c("binomial", "poisson")) {
    res <- glm_response_cases(family)
    expect_no_defect(res)
    expect_true(all(res$kind == "classed_error"), info = family)
    expect_true(all(grepl("response of `formula`", res$message)), info = family)
  }
})
