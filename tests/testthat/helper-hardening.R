`%||%` <- function(a, b) if (is.null(a)) b else a

# Shared machinery of the malformed-input tests (test-hardening.R) and of
# inst/scripts/validation.R, which sources this file to count the outcomes of
# the slow randomised run.

slow_hardening <- function() identical(Sys.getenv("BAYESMOE_SLOW_TESTS"), "true")

# `make valgrind` sets BAYESMOE_VALGRIND=true. Valgrind computes R's long
# doubles in 64 bits, so numeric literals parse and deparse differently
# (1e100 parses just above the bound 1e100 of the prior checks, 1e-200
# deparses as 1.00000000000000e-200): tests built on such literals are
# skipped there (they run everywhere else, ASan/UBSan included).
skip_under_valgrind <- function() {
  testthat::skip_if(identical(Sys.getenv("BAYESMOE_VALGRIND"), "true"),
                    "valgrind parses numeric literals with 64-bit long doubles")
}

# Run a call and classify the outcome as a valid result ("value"), a classed
# bayesmoe error ("classed_error"), or a defect: any other error
# ("other_error") or a result failing `validate` ("invalid_value": non-finite
# values where finite ones are promised). Warnings are muffled; the classes
# of the bayesmoe warnings raised are returned in `warnings`.
classify_call <- function(expr_fun, validate) {
  warned <- character()
  out <- tryCatch(
    withCallingHandlers({
      # progress messages and printed output are not what is tested
      utils::capture.output(value <- expr_fun())
      list(kind = "value", value = value)
    },
                        warning = function(w) {
                          if (inherits(w, "bayesmoe_warning")) warned <<- c(warned, class(w)[1L])
                          invokeRestart("muffleWarning")
                        }),
    bayesmoe_error = function(e) list(kind = "classed_error", message = conditionMessage(e)),
    error = function(e) list(kind = "other_error", message = conditionMessage(e)))
  if (out$kind == "value") {
    ok <- tryCatch(isTRUE(validate(out$value)), error = function(e) FALSE)
    if (!ok) out$kind <- "invalid_value"
  }
  out$warnings <- unique(warned)
  out
}

# A fit is valid when its log-likelihood and every parameter are finite and
# the variances positive; an MCMC fit also needs finite draws. (The `spec`
# of gating and expert variants is not a parameter.)
valid_fit <- function(fit) {
  par <- fit$coefficients[setdiff(names(fit$coefficients), "spec")]
  inherits(fit, "moe_fit") && is.finite(as.numeric(logLik(fit))) &&
    all(is.finite(unlist(par))) && all(fit$coefficients$sigma2 > 0)
}

valid_mcmc <- function(fit) {
  valid_fit(fit) && inherits(fit, "moe_mcmc") && all(is.finite(fit$draws)) &&
    all(is.finite(fit$loglik_draws))
}

# The result of a matrix interface (moe_em_fit(), moe_mcmc_fit()).
valid_par <- function(res) {
  is.list(res) && all(is.finite(unlist(res$par))) && is.finite(res$loglik) &&
    (is.null(res$draws) || all(is.finite(res$draws)))
}

# Numbers (vector, matrix, array, data frame or list of them), all finite.
finite_value <- function(x) {
  vals <- if (is.list(x)) unlist(x) else x
  (is.numeric(vals) || length(vals) == 0L) && all(is.finite(vals))
}

any_value <- function(x) TRUE


# Predictions (vector, matrix or array with one row per observation): finite
# in every row not flagged in `miss` (rows with missing covariates are NA by
# design).
rows_finite <- function(x, miss = FALSE) {
  x <- as.array(x)
  M <- matrix(x, dim(x)[1L])
  is.numeric(x) && all(is.finite(M[!rep_len(miss, nrow(M)), ]))
}

# A summary of an MCMC fit: finite posterior means and standard deviations
# (Rhat and ESS are NA for constant draws, as documented).
valid_summary_mcmc <- function(s) {
  inherits(s, "summary.moe_mcmc") && all(is.finite(s$coefficients[, c("mean", "sd")]))
}

valid_summary_em <- function(s) {
  inherits(s, "summary.moe_em") && all(is.finite(s$coefficients[, 1L]))
}

# A pool of values that do not belong where a scalar number, a flag, a choice
# or a formula is expected.
nasty_values <- list(NULL, NA, NA_real_, NA_integer_, NA_character_, NaN, Inf, -Inf, 0, -1,
                     -0.5, 1.5, 1e8, 1e-8, -1e-8, 1e300, -1e300, 1e-300,
                     "a", TRUE, FALSE, list(), list(1), 1:3, c(2, 3), c(1, NA),
                     character(0), numeric(0), factor("a"), mean, data.frame(),
                     matrix(1, 2, 2), 2L, .Machine$integer.max + 1)

# Huge counts are legitimate (if slow) requests, not malformed input.
is_big_count <- function(v) is.numeric(v) && length(v) == 1L && isTRUE(v > 100)
small_values <- nasty_values[!vapply(nasty_values, is_big_count, TRUE)]

# A least-squares fit with finite parameters and log-likelihood.
valid_ls <- function(fit) {
  inherits(fit, "moe_ls") && all(is.finite(unlist(coef(fit)))) && is.finite(as.numeric(logLik(fit)))
}

# An object of class `cls`.
is_class <- function(cls) function(x) inherits(x, cls)

# `digits` of print methods: the nasty values and two valid ones.
digits_values <- c(nasty_values, list(3, 10))

# A smaller pool for arguments whose valid values start expensive runs.
few_values <- list(NULL, NA, NaN, Inf, -1, 0, 1.5, "a", TRUE, list(), c(1, NA), mean,
                   data.frame(), numeric(0))

base_data <- function(n = 40, seed = 1) {
  set.seed(seed)
  x <- runif(n)
  data.frame(x = x, z = rnorm(n), f = factor(sample(c("a", "b"), n, TRUE)),
             y = ifelse(runif(n) < plogis(4 * (x - 0.5)), 1 + 2 * x, -1 - x) +
               rnorm(n, sd = 0.2))
}

# Settings that keep a sampler call tiny.
tiny_mcmc_control <- function() moe_mcmc_control(em_starts = 2)

# Entry points exercised by the malformed-input tests, recorded by run_cases()
# for the coverage check against the NAMESPACE.
hardening_coverage <- new.env()

# Run `f(v)` for every v in `values`; `fn` names the exported function or S3
# method exercised. Returns a data frame: fn, label, kind, message.
run_cases <- function(fn, f, values, validate, label = deparse1(body(f))) {
  assign(fn, TRUE, envir = hardening_coverage)
  rows <- lapply(values, function(v) {
    res <- classify_call(function() f(v), validate)
    data.frame(fn = fn, label = sprintf("%s with v = %s", label, deparse1(v, nlines = 1L)),
               kind = res$kind, message = res$message %||% "", stringsAsFactors = FALSE)
  })
  do.call(rbind, rows)
}

# One table per argument: `fn` (named `name`) called with the arguments
# `base`, argument `a` replaced by each value of `values(a)`, for every `a`
# in `args`. Returns the tables in a list named paste0(prefix, args).
arg_tables <- function(name, fn, base, args, values, validate, prefix = "") {
  res <- lapply(args, function(a) run_cases(name, function(v) {
    cl <- base
    cl[a] <- list(v)
    do.call(fn, cl)
  }, values(a), validate, label = sprintf("%s(%s = v)", name, a)))
  setNames(res, paste0(prefix, args))
}

# One expectation per table: every case a value or a classed error; the
# failures are listed.
expect_no_defect <- function(res) {
  bad <- res[!res$kind %in% c("value", "classed_error"), , drop = FALSE]
  expect(nrow(bad) == 0L,
         sprintf("%d of %d calls failed:\n%s", nrow(bad), nrow(res),
                 paste(sprintf("%s: %s %s", bad$label, bad$kind, bad$message),
                       collapse = "\n")))
  invisible(res)
}

# ---- randomised malformed input ------------------------------------------------

# Mutate a valid data frame: missing/infinite values, few rows, constant,
# rescaled, duplicated, collinear, factor or character columns.
mutate_data <- function(d) {
  ops <- sample(1:9, sample(1:3, 1))
  for (op in ops) {
    i <- sample.int(max(nrow(d), 1), 1)
    col <- sample(c("x", "z", "y"), 1)
    d <- switch(op,
      { if (nrow(d)) d[[col]][i] <- sample(list(NA, NaN, Inf, -Inf), 1)[[1]]; d },
      d[seq_len(sample(0:3, 1)), , drop = FALSE],
      { if (nrow(d)) d[[col]] <- d[[col]][1]; d },
      { if (is.numeric(d[[col]])) d[[col]] <- d[[col]] * sample(c(1e8, 1e-8, -1, 0), 1); d },
      d[sample.int(nrow(d), nrow(d), replace = TRUE), , drop = FALSE],
      { d$z <- d$x; d },
      { if (is.numeric(d[[col]])) d[[col]] <- factor(round(d[[col]])); d },
      { d[[col]] <- as.character(d[[col]]); d },
      d)
  }
  d
}

# A random scalar: usually valid, sometimes one of the nasty values.
maybe_nasty <- function(valid, p = 0.3, pool = small_values) {
  if (runif(1) < p) sample(pool, 1)[[1]] else sample(valid, 1)[[1]]
}

# `n_calls` random calls over every entry point: the fitting functions on
# mutated data with random settings, the methods of two small fits with
# random arguments (sometimes nasty), priors, controls and Polya-Gamma draws.
# MCMC calls are tiny (one chain, about 20 iterations). Returns a data frame
# with the entry point, the outcome and the message of every call.
random_malformed_calls <- function(n_calls, seed) {
  set.seed(seed)
  d0 <- base_data(40, seed = seed)
  em <- suppressWarnings(moe_em(y ~ x, gating = ~ x + z, data = d0, K = 2, starts = 2, seed = 1))
  mc <- suppressWarnings(moe_mcmc(y ~ x, gating = ~ x + z, data = d0, K = 2, chains = 2,
                                  iter = 20, seed = 1, control = tiny_mcmc_control(),
                                  progress = FALSE))
  nd <- base_data(5, seed = seed + 1)
  forms <- list(y ~ x, y ~ x + z, y ~ x * f, y ~ poly(x, 2), y ~ 1, y ~ x + I(x^2))
  gats <- list(NULL, ~ 1, ~ z, ~ x + f)
  entries <- c("moe_em", "moe_mcmc", "moe_em_fit", "moe_mcmc_fit", "moe_prior",
               "moe_em_control", "moe_mcmc_control", "rpolyagamma", "predict.moe_fit",
               "predict.moe_mcmc", "simulate.moe_fit", "summary.moe_mcmc",
               "residuals.moe_fit", "residuals.moe_mcmc", "log_lik.moe_mcmc",
               "moe_relabel", "moe_mcmc_continue", "coef.moe_fit")
  weights <- c(6, 5, 2, 2, 2, 1, 1, 2, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1)
  out <- vector("list", n_calls)
  for (i in seq_len(n_calls)) {
    entry <- sample(entries, 1, prob = weights)
    d <- suppressWarnings(mutate_data(base_data(sample(5:60, 1), seed = seed + i)))
    K <- maybe_nasty(list(1, 2, 3, 5), p = 0.25, pool = list(0, 1.5, -1, NA, 100, "2", NULL))
    form <- sample(forms, 1)[[1]]
    gat <- sample(gats, 1)[[1]]
    f <- switch(entry,
      moe_em = {
        ctl <- tryCatch(moe_em_control(maxit = sample(c(1, 5, 200), 1),
                                       var_floor = sample(c(1e-12, 1e-6, 0.5), 1),
                                       ridge = sample(c(0, 0, 1e-3), 1)),
                        error = function(e) moe_em_control())
        list(function() moe_em(form, data = d, K = K, gating = gat,
                               starts = maybe_nasty(list(1, 2, 3), 0.1), seed = i,
                               control = ctl), valid_fit)
      },
      moe_mcmc = {
        pr <- tryCatch(moe_prior(s_w = sample(c(0.5, 5, 1e4), 1),
                                 c0 = sample(c(0.01, 1.5, 10), 1),
                                 C0 = sample(c(1e-4, 0.05, 10), 1)),
                       error = function(e) moe_prior())
        ctl <- tryCatch(moe_mcmc_control(em_starts = 2,
                                         gate_update = sample(c("pg+mh", "pg", "mh"), 1)),
                        error = function(e) tiny_mcmc_control())
        iter <- maybe_nasty(list(10, 20, 25), 0.15, pool = list(0, -5, 1.5, NA, "20"))
        list(function() moe_mcmc(form, data = d, K = K, gating = gat, prior = pr,
                                 chains = maybe_nasty(list(1), 0.1), iter = iter,
                                 warmup = maybe_nasty(list(5, 0), 0.1),
                                 thin = maybe_nasty(list(1, 2), 0.1),
                                 init = sample(c("em", "random"), 1), seed = i,
                                 control = ctl, progress = FALSE), valid_mcmc)
      },
      moe_em_fit = , moe_mcmc_fit = {
        X <- suppressWarnings(tryCatch(model.matrix(form, d), error = function(e) as.matrix(d)))
        y <- if (runif(1) < 0.8) d$y[seq_len(nrow(X))] else sample(small_values, 1)[[1]]
        if (length(X) && runif(1) < 0.2) X[sample.int(length(X), 1)] <- sample(c(NA, Inf, 1e300), 1)
        w <- if (runif(1) < 0.8) rep(1, length(y)) else sample(small_values, 1)[[1]]
        if (entry == "moe_em_fit") {
          list(function() moe_em_fit(y, X, X, w = w, K = K, starts = 2), valid_par)
        } else {
          list(function() moe_mcmc_fit(y, X, X, w = w, K = K, chains = 1, iter = 20, seed = i,
                                       control = tiny_mcmc_control()), valid_par)
        }
      },
      moe_prior = {
        a <- sample(c("s_w", "m_a", "V_a", "c0", "C0", "exchangeable"), 1)
        v <- sample(c(nasty_values, list(c(1, 2), 1e-200, 1e200)), 1)[[1]]
        list(function() {
          pr <- do.call(moe_prior, setNames(list(v), a))
          moe_mcmc(y ~ x, data = d0, K = 2, prior = pr, chains = 1, iter = 10, seed = i,
                   init = sample(c("em", "random"), 1), control = tiny_mcmc_control(),
                   progress = FALSE)
        }, valid_mcmc)
      },
      moe_em_control = {
        a <- sample(names(formals(moe_em_control)), 1)
        v <- sample(nasty_values, 1)[[1]]
        list(function() moe_em(y ~ x, data = d0, K = 2, starts = 1, seed = i,
                               control = do.call(moe_em_control, setNames(list(v), a))),
             valid_fit)
      },
      moe_mcmc_control = {
        a <- sample(setdiff(names(formals(moe_mcmc_control)), "em_starts"), 1)
        v <- sample(nasty_values, 1)[[1]]
        list(function() do.call(moe_mcmc_control, setNames(list(v), a)),
             function(x) inherits(x, "moe_mcmc_control"))
      },
      rpolyagamma = {
        n <- maybe_nasty(list(0, 1, 10), 0.3)
        b <- maybe_nasty(list(1, 2, c(1, 3)), 0.3)
        z <- maybe_nasty(list(0, -3, 1e4, c(-1e4, 2)), 0.3)
        list(function() rpolyagamma(n, b, z), function(x) finite_value(x) && all(x > 0))
      },
      predict.moe_fit = , predict.moe_mcmc = {
        fit <- if (entry == "predict.moe_fit") em else mc
        type <- maybe_nasty(list("mean", "gating", "density", "quantile", "expert"), 0.15)
        newdata <- if (runif(1) < 0.5) NULL else
          suppressWarnings(mutate_data(nd))[, sample(c(TRUE, TRUE, TRUE, runif(1) < 0.8))]
        args <- list(fit, newdata = newdata, type = type)
        if (runif(1) < 0.3) args$y <- maybe_nasty(list(0, c(-1, 1)), 0.5)
        if (runif(1) < 0.3) args$probs <- maybe_nasty(list(0.5, c(0.1, 0.9)), 0.5)
        if (entry == "predict.moe_mcmc") {
          args$interval <- maybe_nasty(list("none", "credible"), 0.1)
          args$level <- maybe_nasty(list(0.5, 0.9), 0.1)
          args$ndraws <- maybe_nasty(list(NULL, 5), 0.1)
        }
        # rows with missing covariates are NA by design: check the others
        list(function() do.call(predict, args), function(x) {
          cols <- c("x", "z", "f", if (identical(type, "density") && is.null(args$y)) "y")
          miss <- if (is.null(newdata)) FALSE else
            !stats::complete.cases(newdata[, intersect(cols, names(newdata)), drop = FALSE])
          rows_finite(x, miss)
        })
      },
      simulate.moe_fit = {
        fit <- sample(list(em, mc), 1)[[1]]
        list(function() simulate(fit, nsim = maybe_nasty(list(1, 3), 0.3),
                                 seed = maybe_nasty(list(NULL, 1), 0.3)), finite_value)
      },
      summary.moe_mcmc = list(function() summary(mc, probs = maybe_nasty(list(0.5, c(0.1, 0.9)))),
                              valid_summary_mcmc),
      residuals.moe_fit = list(function() residuals(em, type = maybe_nasty(list("response", "pearson"))),
                               finite_value),
      residuals.moe_mcmc = list(function() residuals(mc, type = maybe_nasty(list("response", "pearson"))),
                                finite_value),
      log_lik.moe_mcmc = {
        newdata <- if (runif(1) < 0.3) NULL else suppressWarnings(mutate_data(nd))
        list(function() log_lik(mc, newdata = newdata), function(x) {
          keep <- if (is.null(newdata)) TRUE else
            stats::complete.cases(newdata[, intersect(c("x", "z", "y"), names(newdata)), drop = FALSE])
          all(is.finite(x[, , keep]))
        })
      },
      moe_relabel = list(function() moe_relabel(mc, method = maybe_nasty(list("kmeans", "pivot")),
                                                pivot = maybe_nasty(list("auto", "em", "maxlik")),
                                                maxit = maybe_nasty(list(1, 10))),
                         valid_mcmc),
      moe_mcmc_continue = list(function() moe_mcmc(mc, iter = maybe_nasty(list(1, 5))),
                               valid_mcmc),
      coef.moe_fit = list(function() coef(sample(list(em, mc), 1)[[1]],
                                          matrix = maybe_nasty(list(TRUE, FALSE))),
                          finite_value))
    res <- classify_call(f[[1L]], f[[2L]])
    out[[i]] <- data.frame(call = i, entry = entry, kind = res$kind,
                           message = res$message %||% "", stringsAsFactors = FALSE)
  }
  do.call(rbind, out)
}

# ---- GLM expert families: malformed responses ---------------------------------

# Responses of `formula` that binomial() and poisson() experts refuse (each
# must give a classed error naming `formula`), on data of n rows.
glm_bad_responses <- function(n) {
  list(
    binomial = list(
      "values outside [0, 1]" = rep(c(0, 2), length.out = n),
      "negative values" = rep(c(0, -1), length.out = n),
      "proportions without trials" = rep(c(0, 0.5, 1), length.out = n),
      "three-level factor" = factor(rep(c("a", "b", "c"), length.out = n)),
      "character" = rep(c("a", "b"), length.out = n),
      "negative successes" = cbind(rep(c(-1, 2), length.out = n), 3),
      "non-integer successes" = cbind(rep(c(0.5, 2), length.out = n), 3),
      "rows without trials" = cbind(rep(c(0, 2), length.out = n), rep(c(0, 1), length.out = n)),
      "three columns" = cbind(1, 1, rep(c(0, 1), length.out = n))),
    poisson = list(
      "negative counts" = rep(c(3, -1), length.out = n),
      "non-integer counts" = rep(c(0.5, 2), length.out = n),
      "a factor" = factor(rep(c("a", "b"), length.out = n)),
      "logical" = rep(c(TRUE, FALSE), length.out = n),
      "a matrix" = cbind(rep(c(0, 1), length.out = n), 1)))
}

# Run moe_em() and moe_mcmc() with `family` on each malformed response;
# returns the run_cases() table.
glm_response_cases <- function(family) {
  d <- base_data()
  bad <- glm_bad_responses(nrow(d))[[family]]
  fam <- get(family, mode = "function")
  rbind(
    run_cases("moe_em", function(v) {
      d$r <- v
      moe_em(r ~ x, data = d, K = 2, family = fam(), starts = 1, seed = 1)
    }, bad, valid_fit, label = sprintf("moe_em(family = %s(), response = v)", family)),
    run_cases("moe_mcmc", function(v) {
      d$r <- v
      moe_mcmc(r ~ x, data = d, K = 2, family = fam(), chains = 1, iter = 20, seed = 1,
               control = tiny_mcmc_control())
    }, bad, valid_mcmc, label = sprintf("moe_mcmc(family = %s(), response = v)", family)))
}
