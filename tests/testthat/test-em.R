test_that("K = 1 equals lm(): coefficients, ML variance, log-likelihood", {
  set.seed(1)
  fit <- moe_em(tuned ~ stretchratio, data = tonedata, K = 1)
  ref <- lm(tuned ~ stretchratio, data = tonedata)
  n <- nrow(tonedata)
  expect_equal(unname(fit$coefficients$alpha[, 1]), unname(coef(ref)), tolerance = 1e-8)
  expect_equal(unname(fit$coefficients$sigma2), sum(residuals(ref)^2) / n, tolerance = 1e-8)
  expect_equal(as.numeric(logLik(fit)), as.numeric(logLik(ref)), tolerance = 1e-8)
  expect_equal(attr(logLik(fit), "df"), attr(logLik(ref), "df"))
})

test_that("K = 1 with weights equals weighted least squares", {
  set.seed(2)
  w <- runif(nrow(tonedata), 0.5, 2)
  fit <- moe_em(tuned ~ stretchratio, data = tonedata, K = 1, weights = w)
  ref <- lm(tuned ~ stretchratio, data = tonedata, weights = w)
  expect_equal(unname(fit$coefficients$alpha[, 1]), unname(coef(ref)), tolerance = 1e-8)
  expect_equal(unname(fit$coefficients$sigma2),
               sum(w * residuals(ref)^2) / sum(w), tolerance = 1e-8)
})

test_that("integer case weights equal duplicated rows", {
  set.seed(3)
  w <- sample(1:3, nrow(tonedata), replace = TRUE)
  dup <- tonedata[rep(seq_len(nrow(tonedata)), w), ]
  f_w <- moe_em(tuned ~ stretchratio, data = tonedata, K = 2, weights = w, seed = 1)
  f_d <- moe_em(tuned ~ stretchratio, data = dup, K = 2, seed = 1)
  expect_equal(as.numeric(logLik(f_w)), as.numeric(logLik(f_d)), tolerance = 1e-6)
})

test_that("the EM log-likelihood never decreases", {
  for (s in 1:3) {
    d <- three_experts(600, seed = s)
    fit <- moe_em(y ~ x, data = d, K = 3, starts = 3, seed = s)
    for (j in seq_len(3)) {
      tr <- fit$trace
      expect_true(all(diff(tr) >= -1e-10 * abs(tr[-1])))
    }
    expect_false("decrease" %in% bayesmoe:::decode_status(fit$status))
  }
  # also for every start, through the matrix interface
  d <- three_experts(400, seed = 9)
  X <- cbind("(Intercept)" = 1, x = d$x)
  set.seed(9)
  res <- moe_em_fit(d$y, X, X, K = 4, starts = 4)
  expect_false(any(grepl("decrease", res$starts$status)))
})

test_that("EM recovers a well-separated 3-expert truth", {
  d <- three_experts(3000, seed = 4)
  fit <- moe_em(y ~ x, data = d, K = 3, seed = 1)
  a <- fit$coefficients$alpha
  truth <- cbind(c(0, 4), c(3, -2), c(-2, 1))
  # match experts to the truth by their intercepts and slopes
  perm <- apply(truth, 2, function(t) which.min(colSums((a - t)^2)))
  expect_equal(sort(perm), 1:3)
  expect_equal(unname(a[, perm]), truth, tolerance = 0.1)
  expect_equal(unname(sqrt(fit$coefficients$sigma2[perm])), rep(0.3, 3), tolerance = 0.1)
})

test_that("EM reaches at least flexmix's log-likelihood", {
  skip_if_not_installed("flexmix")
  d <- three_experts(2000, seed = 5)
  fit <- moe_em(y ~ x, data = d, K = 3, seed = 1)
  set.seed(1)
  fm <- suppressWarnings(flexmix::stepFlexmix(
    y ~ x, data = d, k = 3, nrep = 3, verbose = FALSE,
    concomitant = flexmix::FLXPmultinom(~ x)))
  expect_gte(as.numeric(logLik(fit)), fm@logLik - 1e-3)
})

test_that("an intercept-only gating gives a mixture of regressions", {
  fit <- moe_em(tuned ~ stretchratio, data = tonedata, K = 2, gating = ~ 1, seed = 1,
                control = moe_em_control(tol = 1e-13))
  expect_identical(rownames(fit$coefficients$W), "(Intercept)")
  g <- predict(fit, type = "gating")
  expect_equal(apply(g, 2, sd), c(expert1 = 0, expert2 = 0), tolerance = 1e-12)
  # the mixing weights equal the mean responsibilities at the optimum
  expect_equal(unname(g[1, ]), unname(colMeans(fit$resp)), tolerance = 1e-5)
})

test_that("fits are equivariant to the scale of the response", {
  f1 <- moe_em(tuned ~ stretchratio, data = tonedata, K = 2, seed = 1)
  d2 <- transform(tonedata, tuned = 1000 * tuned + 5)
  f2 <- moe_em(tuned ~ stretchratio, data = d2, K = 2, seed = 1)
  expect_equal(f2$coefficients$alpha, 1000 * f1$coefficients$alpha +
                 matrix(c(5, 0), 2, 2), tolerance = 1e-5)
  expect_equal(f2$coefficients$sigma2, 1e6 * f1$coefficients$sigma2, tolerance = 1e-5)
  expect_equal(f2$coefficients$W, f1$coefficients$W, tolerance = 1e-5)
  expect_equal(as.numeric(logLik(f2)), as.numeric(logLik(f1)) - 150 * log(1000),
               tolerance = 1e-8)
})

test_that("a seed makes starts reproducible and leaves the global RNG alone", {
  set.seed(42)
  before <- .Random.seed
  f1 <- moe_em(tuned ~ stretchratio, data = tonedata, K = 3, starts = 4, seed = 7)
  expect_identical(.Random.seed, before)
  f2 <- moe_em(tuned ~ stretchratio, data = tonedata, K = 3, starts = 4, seed = 7)
  expect_identical(f1$coefficients, f2$coefficients)
  expect_identical(f1$starts, f2$starts)
})

test_that("degenerate experts are reported, never a crash or NaN", {
  set.seed(1)
  d <- data.frame(x = 1:6, y = c(1, 2, 3, 10, 10.5, 30))
  # 13 parameters on 6 rows: warned of up front, then the degenerate experts
  # (empty or floored, and smaller than their parameter count)
  warned <- character()
  fit <- withCallingHandlers(moe_em(y ~ x, data = d, K = 3, starts = 3, seed = 1),
                             warning = function(w) {
                               warned <<- c(warned, class(w)[1L])
                               invokeRestart("muffleWarning")
                             })
  expect_identical(warned[1L], "bayesmoe_warning_overparameterised")
  expect_true(length(warned) >= 2L)
  expect_true(all(warned[-1L] == "bayesmoe_warning_degenerate"))
  expect_true(is.finite(logLik(fit)))
  expect_true(all(is.finite(unlist(fit$coefficients))))
})

test_that("an expert collapsing onto a line is floored and reported", {
  set.seed(2)
  x <- runif(60)
  y <- c(2 * x[1:3], rnorm(57))
  expect_warning(fit <- moe_em(y ~ x, data = data.frame(x, y), K = 2, starts = 10, seed = 3,
                               control = moe_em_control(min_size = 2)),
                 NA)
  # the best start avoided the collapse (degenerate starts rank last), or it is reported
  expect_true(all(fit$coefficients$sigma2 > 0))
})

test_that("non-convergence is a classed warning", {
  d <- three_experts(500, seed = 6)
  expect_warning(moe_em(y ~ x, data = d, K = 3, starts = 1, seed = 1,
                        control = moe_em_control(maxit = 2)),
                 class = "bayesmoe_warning_convergence")
})

test_that("moe_em_control() validates its arguments", {
  expect_snapshot(error = TRUE, moe_em_control(maxit = 0))
  expect_snapshot(error = TRUE, moe_em_control(tol = -1))
  expect_snapshot(error = TRUE, moe_em_control(var_floor = 0))
  expect_snapshot(error = TRUE, moe_em_control(min_size = NA))
  expect_snapshot(error = TRUE, moe_em_control(gate_steps = 1.5))
  expect_snapshot(error = TRUE, moe_em_control(ridge = c(1, 2)))
  expect_snapshot(error = TRUE, moe_em_control(threads = 0))
  expect_s3_class(moe_em_control(), "moe_em_control")
})

test_that("bad input gives classed errors naming the argument", {
  td <- tonedata
  expect_snapshot(error = TRUE, moe_em(tuned ~ stretchratio, data = td))
  expect_snapshot(error = TRUE, moe_em(tuned ~ stretchratio, data = td, K = 1.5))
  expect_snapshot(error = TRUE, moe_em(tuned ~ stretchratio, data = td, K = 0))
  expect_snapshot(error = TRUE, moe_em(tuned ~ stretchratio, data = td, K = "2"))
  expect_snapshot(error = TRUE, moe_em(tuned ~ stretchratio, data = td[1:3, ], K = 4))
  expect_snapshot(error = TRUE, moe_em(tuned ~ nosuchvar, data = td, K = 2))
  expect_snapshot(error = TRUE, moe_em(~ stretchratio, data = td, K = 2))
  expect_snapshot(error = TRUE, moe_em("tuned ~ stretchratio", data = td, K = 2))
  expect_snapshot(error = TRUE, moe_em(tuned ~ stretchratio, data = td, K = 2,
                                       gating = y ~ stretchratio))
  expect_snapshot(error = TRUE, moe_em(tuned ~ stretchratio, data = td, K = 2,
                                       gating = "x"))
  expect_snapshot(error = TRUE, moe_em(tuned ~ stretchratio, data = 1:3, K = 2))
  fac <- transform(td, tuned = factor(tuned > 2))
  expect_snapshot(error = TRUE, moe_em(tuned ~ stretchratio, data = fac, K = 2))
  chr <- transform(td, tuned = as.character(tuned))
  expect_snapshot(error = TRUE, moe_em(tuned ~ stretchratio, data = chr, K = 2))
  inf <- td
  inf$tuned[2] <- Inf
  expect_snapshot(error = TRUE, moe_em(tuned ~ stretchratio, data = inf, K = 2))
  infx <- td
  infx$stretchratio[5] <- -Inf
  expect_snapshot(error = TRUE, moe_em(tuned ~ stretchratio, data = infx, K = 2))
  empty <- td
  empty$tuned <- NA_real_
  expect_snapshot(error = TRUE, moe_em(tuned ~ stretchratio, data = empty, K = 2))
  expect_snapshot(error = TRUE, moe_em(tuned ~ stretchratio, data = td[0, ], K = 2))
  expect_snapshot(error = TRUE, moe_em(tuned ~ stretchratio, data = td, K = 2,
                                       subset = stretchratio > 100))
  const <- transform(td, tuned = 1)
  expect_snapshot(error = TRUE, moe_em(tuned ~ stretchratio, data = const, K = 2))
  coll <- transform(td, s2 = 2 * stretchratio)
  expect_snapshot(error = TRUE, moe_em(tuned ~ stretchratio + s2, data = coll, K = 2))
  expect_snapshot(error = TRUE, moe_em(tuned ~ stretchratio, data = td, K = 2,
                                       weights = rep(-1, nrow(td))))
  expect_snapshot(error = TRUE, moe_em(tuned ~ stretchratio, data = td, K = 2, starts = 0))
  expect_snapshot(error = TRUE, moe_em(tuned ~ stretchratio, data = td, K = 2, seed = "a"))
  expect_snapshot(error = TRUE, moe_em(tuned ~ stretchratio, data = td, K = 2,
                                       control = list(maxit = 10)))
  expect_snapshot(error = TRUE, moe_em(tuned ~ 0, data = td, K = 2))
})

test_that("errors carry the bayesmoe classes", {
  expect_error(moe_em(tuned ~ stretchratio, data = tonedata, K = 0),
               class = "bayesmoe_error_input")
  expect_error(moe_em(tuned ~ nosuch, data = tonedata, K = 2), class = "bayesmoe_error_data")
  expect_error(moe_em(tuned ~ stretchratio, data = tonedata, K = 2, gating = y ~ x),
               class = "bayesmoe_error_formula")
  coll <- transform(tonedata, s2 = 2 * stretchratio)
  expect_error(moe_em(tuned ~ stretchratio + s2, data = coll, K = 2),
               class = "bayesmoe_error_collinear")
  expect_error(moe_em(tuned ~ stretchratio, data = tonedata, K = 0), class = "bayesmoe_error")
})

test_that("moe_em_fit() checks init_par like the front ends check their arguments", {
  set.seed(9)
  d <- data.frame(x = runif(40))
  d$y <- d$x + rnorm(40)
  X <- cbind("(Intercept)" = 1, x = d$x)
  expect_snapshot(moe_em_fit(d$y, X, X, K = 2, init_par = list(list())), error = TRUE)
  expect_snapshot(moe_em_fit(d$y, X, X, K = 2, init_par = list()), error = TRUE)
  expect_snapshot(moe_em_fit(d$y, X, X, K = 2, init_par = list(list(alpha = 1, sigma2 = 1,
                                                                     W = 1))), error = TRUE)
  fit <- moe_em(y ~ x, data = d, K = 2, starts = 2, seed = 1)
  par <- coef(fit, matrix = TRUE)
  expect_snapshot(moe_em_fit(d$y, X, X, K = 2, init_par = list(par), expert = expert_ffn(1)),
                  error = TRUE)
  bad <- par
  bad$sigma2[1] <- 0
  expect_error(moe_em_fit(d$y, X, X, K = 2, init_par = list(par, bad)),
               class = "bayesmoe_error_input")
  # a valid set restarts at the estimate
  r <- moe_em_fit(d$y, X, X, K = 2, init_par = list(par))
  expect_equal(r$loglik, as.numeric(logLik(fit)), tolerance = 1e-6)
})

test_that("a spike expert (variance near zero above the floor) is a classed warning", {
  set.seed(1)
  expect_snapshot(fit <- moe_em(tuned ~ stretchratio, data = tonedata, K = 3, seed = 1))
  expect_warning(moe_em(tuned ~ stretchratio, data = tonedata, K = 3, seed = 1),
                 class = "bayesmoe_warning_degenerate")
  ref <- mean(residuals(lm(tuned ~ stretchratio, data = tonedata))^2)
  expect_true(min(fit$coefficients$sigma2) < 1e-3 * ref)
  # K = 2 has no spike and no warning
  expect_no_warning(moe_em(tuned ~ stretchratio, data = tonedata, K = 2, seed = 1))
})

test_that("degenerate_experts() flags spikes and experts smaller than their parameter count", {
  fit <- list(y = c(1, 3, 2, 5, 4, 6), X = cbind(1, 1:6), Z = cbind(1, 1:6), weights = rep(1, 6),
              expert = expert_linear())
  ref <- mean(qr.resid(qr(fit$X), fit$y)^2)
  d <- bayesmoe:::degenerate_experts(c(ref, 0.5e-3 * ref, 2e-3 * ref), c(1, 4.9, 5), fit)
  expect_equal(d$ref, ref)
  expect_equal(d$npar, 2L + 1L + 2L)
  expect_equal(d$spike, c(FALSE, TRUE, FALSE))
  expect_equal(d$small, c(TRUE, TRUE, FALSE))
  # weights enter the reference variance
  fit$weights <- c(2, 1, 1, 1, 1, 0)
  w <- fit$weights
  lmw <- lm(fit$y ~ fit$X[, 2], weights = w)
  d <- bayesmoe:::degenerate_experts(1, 10, fit)
  expect_equal(d$ref, sum(w * residuals(lmw)^2) / sum(w))
  expect_equal(d$small, FALSE)
})

# A step gate: y follows one line when x1 > 0.5 and another otherwise.
step_gate_data <- function(n, seed = 1) {
  set.seed(seed)
  x1 <- runif(n)
  x2 <- runif(n)
  y <- ifelse(x1 > 0.5, 2 + x1 - x2, -1 - 2 * x1 + x2) + rnorm(n, sd = 0.3)
  data.frame(y = y, x1 = x1, x2 = x2)
}

test_that("a step gate is reported as separation and its starts stop early", {
  d <- step_gate_data(1500)
  expect_warning(fit <- moe_em(y ~ x1 + x2, data = d, K = 2, starts = 3, seed = 1),
                 class = "bayesmoe_warning_separation")
  expect_true("separation" %in% bayesmoe:::decode_status(fit$status))
  # the run stopped long before the iteration cap, with the step in place
  expect_lt(fit$iter, 200)
  expect_gt(mean(apply(fit$resp, 1, max) > 0.99), 0.9)
  lab <- max.col(fit$resp)
  expect_gt(mean(lab == ifelse(d$x1 > 0.5, lab[which.max(d$x1)], lab[which.min(d$x1)])), 0.99)
  cnd <- tryCatch(moe_em(y ~ x1 + x2, data = d, K = 2, starts = 3, seed = 1),
                  bayesmoe_warning_separation = function(w) w)
  expect_match(conditionMessage(cnd), "numerically 0 or 1")
  expect_match(conditionMessage(cnd), "moe_mcmc()", fixed = TRUE)
  expect_output(print(suppressWarnings(summary(fit))), "EM: stopped by separation after")
  # without the bound the starts run on, and the gate stays a step
  fit_inf <- suppressWarnings(moe_em(y ~ x1 + x2, data = d, K = 2, starts = 3, seed = 1,
                                     control = moe_em_control(sep_bound = Inf)))
  expect_false("separation" %in% bayesmoe:::decode_status(fit_inf$status))
  expect_gt(fit_inf$iter, fit$iter)
  expect_gte(as.numeric(logLik(fit_inf)), as.numeric(logLik(fit)) - 1e-8)
})

test_that("a ridge on the gate or a smooth gate gives no separation warning", {
  d <- step_gate_data(1500)
  expect_no_warning(moe_em(y ~ x1 + x2, data = d, K = 2, starts = 3, seed = 1,
                           control = moe_em_control(ridge = 1)),
                    class = "bayesmoe_warning_separation")
  for (s in 1:2) {
    expect_no_warning(fit <- moe_em(y ~ x, data = three_experts(1500, seed = s), K = 3,
                                    seed = s),
                      class = "bayesmoe_warning_separation")
    expect_false("separation" %in% unlist(strsplit(fit$starts$status, ", ")))
  }
  expect_no_warning(moe_em(tuned ~ stretchratio, data = tonedata, K = 2, seed = 1),
                    class = "bayesmoe_warning_separation")
})

test_that("short runs on a subsample reach the best log-likelihood of all starts run in full", {
  # a few simulated problems, each much larger than the subsample
  probs <- list(
    list(d = three_experts(4000, seed = 11), K = 3, f = y ~ x),
    list(d = three_experts(4000, seed = 12), K = 2, f = y ~ x),
    list(d = sim_moe(4000, alpha = cbind(c(0, 2), c(1, -1)), sigma = c(0.4, 0.6),
                     W = cbind(c(1, -2), c(0, 0)), seed = 13), K = 2, f = y ~ x)
  )
  for (pr in probs) {
    short <- moe_em(pr$f, data = pr$d, K = pr$K, seed = 1,
                    control = moe_em_control(short_n = 400))
    full <- moe_em(pr$f, data = pr$d, K = pr$K, seed = 1,
                   control = moe_em_control(strategy = "full"))
    ll_full <- max(full$starts$loglik)
    expect_gte(as.numeric(logLik(short)), ll_full - 1e-6 * abs(ll_full))
    # at most short_keep starts ran on all the data, from the short runs
    st <- short$starts
    expect_lte(sum(st$iter > 0), 2L)
    expect_true(all(is.na(st$loglik[st$iter == 0])))
    expect_true(all(st$short_iter <= 20L))
    expect_true(st$iter[short$best] > 0)
    expect_identical(names(full$starts), c("start", "type", "loglik", "iter", "status"))
    expect_output(print(summary(short)),
                  sprintf("of %d run on all the data", sum(st$iter > 0)))
  }
})

test_that("the short-runs strategy is reproducible and equals the full one on small data", {
  d <- three_experts(3000, seed = 21)
  ctl <- moe_em_control(short_n = 300)
  set.seed(5)
  f1 <- moe_em(y ~ x, data = d, K = 3, seed = 7, control = ctl)
  r1 <- runif(1)
  set.seed(5)
  f2 <- moe_em(y ~ x, data = d, K = 3, seed = 7, control = ctl)
  expect_identical(runif(1), r1)  # a seeded fit leaves the caller's stream alone
  expect_identical(coef(f1), coef(f2))
  expect_identical(f1$starts, f2$starts)
  expect_identical(f1$start_par, f2$start_par)
  # with at most short_n observations, or no more starts than short_keep,
  # the short strategy is the full one
  small <- d[1:300, ]
  expect_identical(moe_em(y ~ x, data = small, K = 3, seed = 3, control = ctl)[c("coefficients", "starts")],
                   moe_em(y ~ x, data = small, K = 3, seed = 3,
                          control = moe_em_control(strategy = "full"))[c("coefficients", "starts")])
  expect_identical(moe_em(y ~ x, data = d, K = 3, starts = 2, seed = 3, control = ctl)$coefficients,
                   moe_em(y ~ x, data = d, K = 3, starts = 2, seed = 3,
                          control = moe_em_control(strategy = "full"))$coefficients)
})

test_that("moe_em_control() checks the start and separation settings", {
  expect_error(moe_em_control(strategy = "fast"), class = "bayesmoe_error")
  expect_error(moe_em_control(short_n = 5), class = "bayesmoe_error_input")
  expect_error(moe_em_control(short_maxit = 0), class = "bayesmoe_error_input")
  expect_error(moe_em_control(short_keep = 1.5), class = "bayesmoe_error_input")
  expect_error(moe_em_control(sep_bound = 0), class = "bayesmoe_error_input")
  expect_identical(moe_em_control(sep_bound = Inf)$sep_bound, Inf)
  expect_identical(moe_em_control()$strategy, "short")
  for (v in list(0, 1.5, NA, "2", c(1, 2))) {
    expect_error(moe_em_control(threads = v), class = "bayesmoe_error_input", regexp = "threads")
  }
  expect_equal(moe_em_control()$threads, 1)
})

test_that("the EM fit does not depend on the number of threads", {
  # three chunks of the fused passes (EM_CHUNK = 8192 in src/em_fused.c):
  # their sums are added in chunk order, whatever the threads
  set.seed(81)
  n <- 20000
  d <- data.frame(x = rnorm(n), z = runif(n))
  k <- 1L + (runif(n) > plogis(2 * d$x - d$z))
  d$y <- ifelse(k == 1L, 1 + d$x, -1 - 0.5 * d$x) + rnorm(n, sd = 0.4)
  fit <- function(threads, ...) {
    moe_em(y ~ x, gating = ~ x + z, data = d, K = 2, starts = 3, seed = 2,
           control = moe_em_control(threads = threads, ...))
  }
  f1 <- fit(1)
  f2 <- fit(2)
  expect_identical(f1$coefficients, f2$coefficients)
  expect_identical(f1$loglik, f2$loglik)
  expect_identical(f1$trace, f2$trace)
  expect_identical(f1$starts, f2$starts)
  # the chunked sums are the sums: the fit's log-likelihood is that of its
  # coefficients computed in plain R, and the trace never decreases
  cf <- f1$coefficients
  X <- cbind(1, d$x)
  eta <- cbind(1, d$x, d$z) %*% cf$W
  g <- exp(eta - apply(eta, 1L, max))
  g <- g / rowSums(g)
  dens <- sapply(1:2, function(k) dnorm(d$y, X %*% cf$alpha[, k], sqrt(cf$sigma2[k])))
  expect_equal(f1$loglik, sum(log(rowSums(g * dens))), tolerance = 1e-7)
  expect_true(all(diff(f1$trace) >= -1e-9 * abs(f1$trace[-1L])))
  # a saved control without `threads` runs with one thread
  old <- moe_em_control()
  old$threads <- NULL
  expect_identical(unname(bayesmoe:::em_control_c(old, 3)[["threads"]]), 1)
  # moe_mcmc() runs its warm start on the chains' threads: the same start
  m1 <- moe_mcmc(y ~ x, data = d, K = 2, chains = 1, iter = 4, warmup = 2, seed = 3,
                 control = moe_mcmc_control(em_starts = 2, threads = 1), progress = FALSE)
  m2 <- moe_mcmc(y ~ x, data = d, K = 2, chains = 1, iter = 4, warmup = 2, seed = 3,
                 control = moe_mcmc_control(em_starts = 2, threads = 2), progress = FALSE)
  expect_identical(m1$em$par, m2$em$par)
  expect_identical(m1$draws, m2$draws)
})
