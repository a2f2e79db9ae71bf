# Malformed input: every exported entry point either returns a valid result
# or stops with a classed bayesmoe error naming the problem; nothing crashes,
# hangs or returns non-finite values silently. The table-driven part lists
# the cases by hand; the randomised part mutates valid calls from a seed.

base_data <- function(n = 40, seed = 1) {
  set.seed(seed)
  x <- runif(n)
  data.frame(x = x, z = rnorm(n), f = factor(sample(c("a", "b"), n, TRUE)),
             y = ifelse(runif(n) < plogis(4 * (x - 0.5)), 1 + 2 * x, -1 - x) + rnorm(n, sd = 0.2))
}

test_that("table of malformed data for moe_em(): classed error or valid fit", {
  d <- base_data()
  cases <- list(
    na_in_y = within(d, y[3] <- NA),
    nan_in_x = within(d, x[4] <- NaN),
    inf_in_y = within(d, y[2] <- Inf),
    neg_inf_x = within(d, x[1] <- -Inf),
    zero_rows = d[0, ],
    one_row = d[1, ],
    two_rows = d[1:2, ],
    constant_x = within(d, x <- 1),
    constant_y = within(d, y <- 3),
    collinear = within(d, z <- 2 * x),
    duplicated_rows = d[rep(1:5, 8), ],
    huge_scale = within(d, { y <- 1e8 * y; x <- 1e8 * x }),
    tiny_scale = within(d, { y <- 1e-8 * y; x <- 1e-8 * x }),
    factor_response = within(d, y <- factor(y > 0)),
    character_response = within(d, y <- as.character(y)),
    logical_response = within(d, y <- y > 0),
    all_na_x = within(d, x <- NA_real_)
  )
  for (nm in names(cases)) {
    for (K in c(1, 2, 3)) {
      res <- classify_call(function() moe_em(y ~ x + z, data = cases[[nm]], K = K,
                                             starts = 2, seed = 1), valid_fit)
      expect_true(res$kind %in% c("value", "classed_error"),
                  label = sprintf("moe_em on %s with K = %d gave %s: %s", nm, K, res$kind,
                                  res$message %||% ""))
    }
  }
})

test_that("table of malformed arguments for moe_em() and moe_em_control()", {
  d <- base_data()
  args <- c("K", "starts", "seed")
  # huge counts of starts are legitimate (if slow) requests, not malformed input
  big <- vapply(nasty_values, function(v) is.numeric(v) && length(v) == 1 && isTRUE(v > 100), TRUE)
  for (a in args) for (v in nasty_values[!(a == "starts" & big)]) {
    cl <- list(formula = y ~ x, data = d, K = 2, starts = 2, seed = 1)
    cl[a] <- list(v)
    res <- classify_call(function() do.call(moe_em, cl), valid_fit)
    expect_true(res$kind %in% c("value", "classed_error"),
                label = sprintf("moe_em(%s = %s): %s %s", a, deparse1(v), res$kind,
                                res$message %||% ""))
  }
  for (a in names(formals(moe_em_control))) for (v in nasty_values) {
    res <- classify_call(function() do.call(moe_em_control, setNames(list(v), a)),
                         function(x) inherits(x, "moe_em_control"))
    expect_true(res$kind %in% c("value", "classed_error"),
                label = sprintf("moe_em_control(%s = %s): %s %s", a, deparse1(v), res$kind,
                                res$message %||% ""))
  }
  for (v in nasty_values) {
    res <- classify_call(function() moe_em(y ~ x, data = d, K = 2, gating = v, seed = 1),
                         valid_fit)
    expect_true(res$kind %in% c("value", "classed_error"),
                label = sprintf("gating = %s: %s", deparse1(v), res$kind))
    res <- classify_call(function() moe_em(v, data = d, K = 2, seed = 1), valid_fit)
    expect_true(res$kind %in% c("value", "classed_error"),
                label = sprintf("formula = %s: %s", deparse1(v), res$kind))
    res <- classify_call(function() moe_em(y ~ x, data = v, K = 2, seed = 1), valid_fit)
    expect_true(res$kind %in% c("value", "classed_error"),
                label = sprintf("data = %s: %s %s", deparse1(v), res$kind, res$message %||% ""))
  }
})

test_that("malformed arguments of methods and rpolyagamma()", {
  d <- base_data()
  fit <- moe_em(y ~ x, data = d, K = 2, seed = 1)
  # counts: huge values are legitimate (if slow) requests, not malformed input
  small <- nasty_values[!vapply(nasty_values, function(v)
    is.numeric(v) && length(v) == 1 && isTRUE(v > 100), TRUE)]
  counts <- list(
    function(v) simulate(fit, nsim = v),
    function(v) rpolyagamma(v),
    function(v) rpolyagamma(3, b = v)
  )
  calls <- list(
    function(v) predict(fit, newdata = v),
    function(v) predict(fit, type = v),
    function(v) predict(fit, type = "quantile", probs = v),
    function(v) predict(fit, type = "density", y = v),
    function(v) simulate(fit, nsim = 1, seed = v),
    function(v) rpolyagamma(3, z = v)
  )
  finite_value <- function(x) {
    vals <- if (is.data.frame(x)) unlist(x) else x
    is.numeric(vals) && all(is.finite(vals))
  }
  runs <- c(lapply(calls, function(f) list(f = f, values = nasty_values)),
            lapply(counts, function(f) list(f = f, values = small)))
  for (r in runs) for (v in r$values) {
    f <- r$f
    res <- classify_call(function() f(v), finite_value)
    expect_true(res$kind %in% c("value", "classed_error"),
                label = sprintf("%s with %s: %s %s", deparse1(body(f)), deparse1(v),
                                res$kind, res$message %||% ""))
  }
})

test_that("randomised malformed inputs: >= 300 calls, no crash, no silent non-finite result", {
  set.seed(20261123)
  n_calls <- if (identical(Sys.getenv("BAYESMOE_SLOW_TESTS"), "true")) 3000L else 300L
  mutate_data <- function(d) {
    ops <- sample(1:9, sample(1:3, 1))
    for (op in ops) {
      i <- sample.int(max(nrow(d), 1), 1)
      col <- sample(c("x", "z", "y"), 1)
      d <- switch(op,
        { if (nrow(d)) d[[col]][i] <- sample(list(NA, NaN, Inf, -Inf), 1)[[1]]; d },
        d[seq_len(sample(0:3, 1)), , drop = FALSE],
        { d[[col]] <- d[[col]][1]; d },
        { if (is.numeric(d[[col]])) d[[col]] <- d[[col]] * sample(c(1e8, 1e-8, -1, 0), 1); d },
        d[sample.int(nrow(d), nrow(d), replace = TRUE), , drop = FALSE],
        { d$z <- d$x; d },
        { if (is.numeric(d[[col]])) d[[col]] <- factor(round(d[[col]])); d },
        { d[[col]] <- as.character(d[[col]]); d },
        d)
    }
    d
  }
  kinds <- character(n_calls)
  for (i in seq_len(n_calls)) {
    d <- suppressWarnings(mutate_data(base_data(sample(5:60, 1), seed = i)))
    K <- sample(list(1, 2, 3, 5, 0, 1.5, -1, NA, 100), 1)[[1]]
    form <- sample(list(y ~ x, y ~ x + z, y ~ x * f, y ~ poly(x, 2), y ~ 1), 1)[[1]]
    gat <- sample(list(NULL, ~ 1, ~ z, ~ x + f), 1)[[1]]
    ctl <- tryCatch(moe_em_control(maxit = sample(c(1, 5, 200), 1),
                                   var_floor = sample(c(1e-12, 1e-6, 0.5), 1)),
                    error = function(e) moe_em_control())
    res <- classify_call(function() moe_em(form, data = d, K = K, gating = gat,
                                           starts = 2, seed = i, control = ctl), valid_fit)
    kinds[i] <- res$kind
    expect_true(res$kind %in% c("value", "classed_error"),
                label = sprintf("random call %d: %s %s", i, res$kind, res$message %||% ""))
  }
  # the mutations must exercise both outcomes
  expect_gt(sum(kinds == "value"), 20)
  expect_gt(sum(kinds == "classed_error"), 20)
})
