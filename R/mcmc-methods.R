# Methods for Bayesian fits (class c("moe_mcmc", "moe_fit")).
#
# A fit stores its draws as sampled: `draws` (iterations x chains x P, the
# par_names() layout, original scale) and `loglik_draws` (iterations x
# chains). Quantities that do not depend on the expert labels (the
# log-likelihood, predictive means, densities and quantiles, simulations) are
# computed from the draws as stored; per-expert quantities (coefficients,
# gating probabilities, expert means, trace plots) from relabelled draws
# (relabelled_draws(), R/relabel.R): the draws of a fit returned by
# moe_relabel(), otherwise relabelled once per fit and session (the
# relabelling is cached by relabelled_fit()).

# ---------------------------------------------------------------------------
# Small helpers

# Per-observation log density log p(y_i | x_i, z_i) for one parameter set
# (the same as moe_log_density(), with the row maxima taken column-wise).
log_density_rows <- function(par, X, Z, y, offset = NULL, trials = NULL) {
  cm <- moe_components(par, X, Z, offset)
  lk <- cm$log_gate + expert_log_density(spec_expert(par$spec), y, cm, trials)
  mx <- lk[, 1L]
  if (ncol(lk) > 1L) for (k in 2:ncol(lk)) mx <- pmax(mx, lk[, k])
  out <- mx + log(rowSums(exp(lk - mx)))
  out[mx == -Inf] <- -Inf
  out
}

# Quantiles of the mixture with gating probabilities `g`, means `mu` and
# standard deviations `s` (R x K matrices, one mixture per row) at
# probability `prob`, by Newton steps safeguarded by bisection; `df`: NULL
# (Gaussian experts) or the R x K degrees of freedom of Student-t experts.
mixture_quantile_newton <- function(g, mu, s, prob, tol = 1e-11, maxit = 200L, df = NULL) {
  if (is.null(df)) {
    lo <- mu[, 1L] - 12 * s[, 1L]
    hi <- mu[, 1L] + 12 * s[, 1L]
    if (ncol(mu) > 1L) for (k in 2:ncol(mu)) {
      lo <- pmin(lo, mu[, k] - 12 * s[, k])
      hi <- pmax(hi, mu[, k] + 12 * s[, k])
    }
  } else {
    # between the smallest and the largest quantile of the experts
    qk <- noise_quantile(prob, mu, s, df)
    lo <- apply(qk, 1L, min)
    hi <- apply(qk, 1L, max)
  }
  x <- pmin(pmax(rowSums(g * mu), lo), hi)
  # work on the rows not yet converged; the working set is compacted when
  # more than half of it has converged (converged rows stay put meanwhile)
  idx <- seq_along(x)
  xw <- x
  for (it in seq_len(maxit)) {
    Fx <- rowSums(g * noise_cdf(xw, mu, s, df)) - prob
    fx <- rowSums(g * exp(noise_logpdf(xw, mu, s, df)))
    above <- Fx > 0
    hi[above] <- xw[above]
    lo[!above] <- xw[!above]
    xn <- xw - Fx / fx
    bad <- !is.finite(xn) | xn < lo | xn > hi
    xn[bad] <- (lo[bad] + hi[bad]) / 2
    done <- abs(xn - xw) <= tol * pmax(1, abs(xw))
    xw <- xn
    if (all(done)) break
    if (sum(done) > length(done) / 2) {
      x[idx[done]] <- xw[done]
      keep <- !done
      idx <- idx[keep]
      xw <- xw[keep]
      lo <- lo[keep]
      hi <- hi[keep]
      g <- g[keep, , drop = FALSE]
      mu <- mu[keep, , drop = FALSE]
      s <- s[keep, , drop = FALSE]
      if (!is.null(df)) df <- df[keep, , drop = FALSE]
    }
  }
  x[idx] <- xw
  x
}

# Values of a predictive quantity for the draws in the rows of D on the
# design `des`: an S x n x m array (m = 1 for vector-valued types). Density
# values are on the log scale.
draw_values <- function(D, des, type, y, probs, p, q, K, spec = make_spec()) {
  S <- nrow(D)
  n <- nrow(des$X)
  if (type == "quantile") {
    m <- length(probs)
    out <- array(0, c(S, n, m))
    chunk <- max(1L, floor(2e5 / n))
    for (start in seq(1L, S, by = chunk)) {
      s_idx <- start:min(S, start + chunk - 1L)
      cms <- lapply(s_idx, function(s) moe_components(par_unflatten(D[s, ], p, q, K, spec),
                                                      des$X, des$Z, des_offset(des)))
      g <- exp(do.call(rbind, lapply(cms, `[[`, "log_gate")))
      mu <- shift_mean(spec_expert(spec), do.call(rbind, lapply(cms, `[[`, "mean")),
                       des_offset(des))  # offset: R/model.R
      sd <- do.call(rbind, lapply(cms, function(cm) matrix(cm$sd, n, K, byrow = TRUE)))
      df <- if (!is.null(cms[[1L]]$df))
        do.call(rbind, lapply(cms, function(cm) matrix(cm$df, n, K, byrow = TRUE)))
      for (j in seq_len(m)) {
        qj <- if (is_glm_expert(spec_expert(spec))) {
          glm_mixture_quantile(spec_expert(spec), g, mu, probs[j],
                               if (!is.null(des$trials)) rep(des$trials, length(s_idx)))
        } else mixture_quantile_newton(g, mu, sd, probs[j], df = df)
        out[s_idx, , j] <- t(matrix(qj, n, length(s_idx)))
      }
    }
    return(out)
  }
  m <- switch(type, mean = 1L, gating = K, expert = K,
              density = if (is.null(y)) 1L else length(y))
  out <- array(0, c(S, n, m))
  for (s in seq_len(S)) {
    par <- par_unflatten(D[s, ], p, q, K, spec)
    out[s, , ] <- switch(type,
      density = if (is.null(y)) {
        log_density_rows(par, des$X, des$Z, des$y, des_offset(des), des$trials)
      } else {
        vapply(y, function(v) log_density_rows(par, des$X, des$Z,
                                               shift_response(spec_expert(spec), rep_len(v, n),
                                                              rep_len(des_offset(des), n)),
                                               des_offset(des), des$trials),
               numeric(n))
      },
      predict_par(par, des, type, K = K))
  }
  out
}

# ---------------------------------------------------------------------------
# Point estimate, print, logLik, residuals

#' Log-likelihood, fitted values and residuals of a Bayesian fit
#'
#' `logLik()` of an MCMC fit is the largest total log-likelihood among the
#' draws, `max(fit$loglik_draws)` (it does not depend on the expert labels),
#' with the number of parameters as `df` and the sum of the case weights (the
#' number of observations without weights) as `nobs`, so that `AIC()` and
#' `BIC()` work: a frequency weight of 3 counts as three observations in the
#' likelihood and so in the \eqn{\log n} of `BIC()`. When the
#' posterior concentrates near the maximum-likelihood estimate it approaches
#' the maximised log-likelihood from below. For model comparison prefer
#' [log_lik()] with the loo package.
#'
#' `fitted()` is the posterior mean of the predictive mean
#' \eqn{E(y \mid x, z, \theta)} over the draws (the mean of the posterior
#' predictive distribution); `residuals()` the response minus it. Pearson
#' residuals divide by the standard deviation of the posterior predictive
#' distribution, \eqn{\sqrt{E_\theta[Var(y \mid \theta)] +
#' Var_\theta[E(y \mid \theta)]}}.
#'
#' @param object A fit from [moe_mcmc()].
#' @param type For `residuals()`: `"response"` or `"pearson"`.
#' @param ... Unused.
#' @return `logLik()`: an object of class `logLik`. `residuals()`: a
#'   numeric vector.
#' @examples
#' fit <- moe_mcmc(tuned ~ stretchratio, data = tonedata, K = 2,
#'                 chains = 2, iter = 300, seed = 1)
#' logLik(fit)
#' BIC(fit)
#' head(residuals(fit, type = "pearson"))
#' @name moe_mcmc_loglik
NULL

#' @rdname moe_mcmc_loglik
#' @export
logLik.moe_mcmc <- function(object, ...) {
  validate_moe_fit(object, "object")
  ll <- if (all(is.na(object$loglik_draws))) NA_real_ else
    max(object$loglik_draws, na.rm = TRUE)
  structure(ll, df = moe_df(object), nobs = loglik_nobs(object), class = "logLik")
}

#' @rdname moe_mcmc_loglik
#' @export
residuals.moe_mcmc <- function(object, type = c("response", "pearson"), ...) {
  validate_moe_fit(object, "object")
  type <- check_choice(type, c("response", "pearson"), "type", sys.call())
  D <- draws_matrix(object, complete = TRUE)
  p <- ncol(object$X)
  q <- ncol(object$Z)
  n <- length(object$y)
  m1 <- numeric(n)
  m2 <- numeric(n)
  for (s in seq_len(nrow(D))) {
    par <- par_unflatten(D[s, ], p, q, object$K, fit_spec(object))
    cm <- moe_components(par, object$X, object$Z, object$offset)
    g <- exp(cm$log_gate)
    mu <- rowSums(g * cm$mean)
    m1 <- m1 + mu
    m2 <- m2 + rowSums(g * (expert_variance(par$spec$expert, cm$mean, par$sigma2,
                                            object$trials, cm$df) + cm$mean^2))
  }
  m1 <- m1 / nrow(D)
  r <- object$y - m1
  if (type == "pearson") r <- r / sqrt(m2 / nrow(D) - m1^2)
  names(r) <- rownames(object$X)
  r
}

# ---------------------------------------------------------------------------
# Summary

#' Summarise a Bayesian mixture-of-experts fit
#'
#' For every parameter (on relabelled draws, see [moe_relabel()]): posterior
#' mean, standard deviation and quantiles, and the convergence diagnostics of
#' Vehtari et al. (2021): rank-normalised split-\eqn{\hat R}, bulk and tail
#' effective sample sizes and the Monte Carlo standard error of the mean. The
#' same for the total log-likelihood of each draw, computed on the draws as
#' sampled (it does not depend on the labels, so its \eqn{\hat R} shows
#' whether the chains explore the same modes). Then the acceptance rates of
#' Metropolis blocks (when the sampler has any) and the sampler settings.
#'
#' The diagnostics come from the posterior package when it is installed;
#' otherwise (or with `options(bayesmoe.use_posterior = FALSE)`) from a
#' plain-R implementation of the same definitions in this package (split
#' chains, rank normalisation with offset 3/8, folded draws for the tail
#' \eqn{\hat R}, Geyer's initial monotone sequence for the ESS, tail ESS from
#' the 5% and 95% quantile indicators), which gives the same values.
#'
#' @param object A fit from [moe_mcmc()].
#' @param probs Probabilities of the posterior quantiles.
#' @param x A `summary.moe_mcmc` object.
#' @param digits Significant digits to print.
#' @param ... Unused.
#' @return An object of class `summary.moe_mcmc`: a list with the
#'   `coefficients` table (one row per parameter, columns `mean`, `sd`, the
#'   quantiles, `rhat`, `ess_bulk`, `ess_tail`, `mcse_mean`), the `loglik`
#'   row, `accept`, `gating_moves` (per chain: the acceptance of the gating
#'   Metropolis-Hastings moves in warm-up and after, as rates and counts, and
#'   the number of sweeps with a Polya-Gamma draw of the gating; see
#'   [moe_mcmc_control()]), the sampler `settings`, the relabelling record and the
#'   diagnostics `backend` (`"posterior"` or `"bayesmoe"`).
#' @references Vehtari, A., Gelman, A., Simpson, D., Carpenter, B. and
#'   Buerkner, P.-C. (2021). Rank-normalization, folding, and localization:
#'   an improved Rhat for assessing convergence of MCMC. *Bayesian Analysis*
#'   16(2), 667--718.
#' @examples
#' fit <- moe_mcmc(tuned ~ stretchratio, data = tonedata, K = 2,
#'                 chains = 2, iter = 1000, seed = 1)
#' s <- summary(fit)
#' s
#' s$loglik
#' @export
summary.moe_mcmc <- function(object, probs = c(0.025, 0.5, 0.975), ...) {
  validate_moe_fit(object, "object")
  call <- sys.call()
  if (!is.numeric(probs) || !length(probs) || anyNA(probs) || any(probs < 0 | probs > 1)) {
    abort(sprintf("`probs` must be probabilities between 0 and 1, not %s.", describe(probs)),
          call = call, arg = "probs")
  }
  rl <- relabelled_fit(object)
  draws <- rl$draws
  d <- dim(draws)
  ll <- array(object$loglik_draws, c(d[1L], d[2L], 1L),
              list(NULL, dimnames(draws)[[2L]], "loglik"))
  tab <- function(a) {
    M <- matrix(a, d[1L] * d[2L], dim(a)[3L])
    M <- M[stats::complete.cases(M), , drop = FALSE]
    qs <- t(apply(M, 2L, stats::quantile, probs = probs, names = FALSE))
    if (length(probs) == 1L) qs <- t(qs)
    colnames(qs) <- paste0(100 * probs, "%")
    diag <- draws_diagnostics(a)
    out <- cbind(mean = colMeans(M), sd = apply(M, 2L, stats::sd), qs,
                 diag[, c("rhat", "ess_bulk", "ess_tail", "mcse_mean"), drop = FALSE])
    rownames(out) <- dimnames(a)[[3L]]
    list(table = out, backend = attr(diag, "backend"))
  }
  pt <- tab(draws)
  lt <- tab(ll)
  structure(list(
    call = object$call, K = object$K,
    title = sprintf("Mixture of %d %s expert%s with %s: posterior summary",
                    object$K, expert_label(object$expert), if (object$K > 1L) "s" else "",
                    gate_label(object$gate)),
    gate = object$gate,
    coefficients = pt$table, loglik = lt$table[1L, ], accept = object$accept,
    gating_moves = gating_move_table(object$gating_moves),
    settings = list(chains = d[2L], iter = object$iter, warmup = object$warmup,
                    thin = object$thin, draws = d[1L], seed = object$seed,
                    init = if (is.character(object$init)) object$init else "user"),
    relabel = rl$relabel[c("method", "pivot", "switched", "converged")],
    nobs = nobs(object), na.action = object$na.action, backend = pt$backend),
    class = "summary.moe_mcmc")
}

# The gating move counts of a fit (chains x gating_move_names) as a printable
# table: acceptance rates in warm-up and after, with the counts, and the
# Polya-Gamma sweeps; NULL when there are none.
gating_move_table <- function(moves) {
  if (is.null(moves) || all(moves[, c("proposed_warmup", "proposed")] == 0L)) return(NULL)
  rate <- function(a, p) ifelse(p > 0, sprintf("%.3f (%d/%d)", a / pmax(p, 1), a, p), "-")
  out <- cbind(warmup = rate(moves[, "accepted_warmup"], moves[, "proposed_warmup"]),
               sampling = rate(moves[, "accepted"], moves[, "proposed"]),
               pg_warmup = moves[, "pg_warmup"], pg_sampling = moves[, "pg"])
  rownames(out) <- rownames(moves)
  out
}

#' @rdname summary.moe_mcmc
#' @export
print.summary.moe_mcmc <- function(x, digits = max(3L, getOption("digits") - 4L), ...) {
  digits <- check_digits(digits, call = sys.call())
  print_summary_header(x)
  fmt <- function(tab) {
    num <- setdiff(colnames(tab), c("rhat", "ess_bulk", "ess_tail"))
    out <- matrix("", nrow(tab), ncol(tab), dimnames = dimnames(tab))
    for (j in num) out[, j] <- vapply(tab[, j], format, "", digits = digits)
    out[, "rhat"] <- formatC(tab[, "rhat"], format = "f", digits = 3)
    for (j in c("ess_bulk", "ess_tail")) out[, j] <- formatC(round(tab[, j]), format = "d")
    out[is.na(tab)] <- "NA"
    heads <- c(rhat = "Rhat", ess_bulk = "Bulk_ESS", ess_tail = "Tail_ESS", mcse_mean = "MCSE")
    hit <- colnames(out) %in% names(heads)
    colnames(out)[hit] <- heads[colnames(out)[hit]]
    out
  }
  groups <- sub(":.*$", "", rownames(x$coefficients))
  for (g in unique(groups)) {
    cat(coef_group_label(g, x$K, x$gate), "\n")
    tab <- x$coefficients[groups == g, , drop = FALSE]
    rownames(tab) <- sub("^[^:]*:", "", rownames(tab))
    print(fmt(tab), quote = FALSE, right = TRUE)
    cat("\n")
  }
  cat("Total log-likelihood (draws as sampled, label invariant):\n")
  print(fmt(matrix(x$loglik, 1L, dimnames = list("loglik", names(x$loglik)))),
        quote = FALSE, right = TRUE)
  cat("\n")
  if (!is.null(x$gating_moves)) {
    cat("Gating moves per chain: Metropolis-Hastings acceptance (accepted/proposed),\n",
        "sweeps with a Polya-Gamma draw:\n", sep = "")
    print(x$gating_moves, quote = FALSE, right = TRUE)
    cat("\n")
  } else if (!is.null(x$accept)) {
    cat("Acceptance rates:\n")
    print(round(x$accept, 3))
    cat("\n")
  }
  s <- x$settings
  wrap80 <- function(text) cat(strwrap(text, width = 80, exdent = 2), sep = "\n")
  wrap80(sprintf("Sampler: %d chain%s, %s iterations (%s warm-up), thin %s: %d draws kept per chain.",
                 s$chains, if (s$chains > 1L) "s" else "", fmt_null(s$iter), fmt_null(s$warmup),
                 fmt_null(s$thin), s$draws))
  wrap80(sprintf("Initial values: %s; seed: %s; n = %d.", fmt_null(s$init), fmt_null(s$seed),
                 x$nobs))
  if (x$K > 1L && length(x$relabel)) {
    wrap80(sprintf("Labels: %s relabelling against the %s pivot; %s of the draws relabelled%s.",
                x$relabel$method,
                switch(x$relabel$pivot, em = "EM", maxlik = "highest log-likelihood draw",
                       user = "user-supplied"),
                paste0(format(round(100 * x$relabel$switched, 1), nsmall = 1), "%"),
                if (isTRUE(x$relabel$converged)) "" else " (not converged)"))
  }
  rh <- c(x$coefficients[, "rhat"], x$loglik[["rhat"]])
  bad <- sum(rh > 1.01, na.rm = TRUE)
  if (bad) {
    wrap80(sprintf("Warning: Rhat > 1.01 for %d of %d quantities; the chains disagree (run longer, or see plot(fit, \"trace\")).",
                   bad, length(rh)))
  }
  invisible(x)
}

fmt_null <- function(v) if (is.null(v) || !length(v)) "NA" else paste(format(v), collapse = ", ")

# ---------------------------------------------------------------------------
# Prediction and simulation

#' Predictions from a Bayesian mixture-of-experts fit
#'
#' Every prediction is a posterior mean over the draws of the quantity
#' computed per draw, with optional equal-tailed credible limits from the
#' quantiles of the per-draw values: `"mean"` the predictive mean
#' \eqn{E(y \mid x, z, \theta)} (its posterior mean is the mean of the
#' posterior predictive distribution); `"density"` the conditional density
#' (its posterior mean is the posterior predictive density; with
#' `log = TRUE` the log of that mean, and limits on the log scale);
#' `"quantile"` the quantiles of the conditional distribution (the posterior
#' mean of the conditional quantile, not a quantile of the posterior
#' predictive distribution: use [simulate()] for predictive intervals);
#' `"gating"` the gating probabilities and `"expert"` the expert means, one
#' column per expert; `"membership"` the membership probabilities (the
#' responsibilities at the observed response, one column per expert; the
#' response must be in `newdata`; see [moe_membership()]). `"mean"`,
#' `"density"` and `"quantile"` do not depend on the expert labels and use
#' the draws as sampled; `"gating"`, `"expert"` and `"membership"` use
#' relabelled draws (see [moe_relabel()]).
#'
#' @param object A fit from [moe_mcmc()].
#' @param newdata A data frame with the covariates; `NULL` uses the data of
#'   the fit.
#' @param type What to predict; see Description.
#' @param interval `"none"` or `"credible"`.
#' @param level Probability of the credible interval.
#' @param ndraws `NULL` (all draws) or the number of draws to use, evenly
#'   spread over the chains and iterations (faster, reproducible).
#' @param y,probs,log As in [predict.moe_fit()].
#' @param ... Must be empty: an unknown argument (such as `se.fit`) is an
#'   error (class `bayesmoe_error_input`), never ignored.
#' @return With `interval = "none"`, the same shape as for EM fits: a vector
#'   for `"mean"` (and `"density"` at the observed response), otherwise a
#'   matrix with one row per observation. With `interval = "credible"` one
#'   more dimension indexes `c("fit", "lwr", "upr")` (the posterior mean and
#'   the lower and upper limits): a matrix with those three columns instead
#'   of a vector, an observations x columns x 3 array instead of a matrix,
#'   so that `out[, , "fit"]` is the point prediction.
#' @examples
#' fit <- moe_mcmc(tuned ~ stretchratio, data = tonedata, K = 2,
#'                 chains = 2, iter = 300, seed = 1)
#' nd <- data.frame(stretchratio = c(1.5, 2, 2.5))
#' predict(fit, nd, interval = "credible")
#' g <- predict(fit, nd, type = "gating", interval = "credible")
#' g[, , "fit"]
#' g[, , "lwr"]
#' predict(fit, nd, type = "quantile", probs = c(0.1, 0.9), ndraws = 100)
#' @export
predict.moe_mcmc <- function(object, newdata = NULL,
                             type = c("mean", "gating", "density", "quantile", "expert",
                                      "membership"),
                             interval = c("none", "credible"), level = 0.95, ndraws = NULL,
                             y = NULL, probs = c(0.025, 0.5, 0.975), log = FALSE, ...) {
  validate_moe_fit(object, "object")
  call <- sys.call()
  check_dots_empty(call, ...)
  type <- check_choice(type, c("mean", "gating", "density", "quantile", "expert",
                               "membership"), "type", call)
  interval <- check_choice(interval, c("none", "credible"), "interval", call)
  level <- check_level(level, call)
  log <- check_flag(log, "log", call)
  des <- if (is.null(newdata)) fit_design(object) else new_design(object, newdata)
  if (type == "membership") { # R/membership.R
    return(membership_mcmc(object, des, interval, level, ndraws, call))
  }
  if (type == "quantile" && (!is.numeric(probs) || !length(probs) || anyNA(probs) ||
                             any(!(probs > 0 & probs < 1)))) {
    abort(sprintf("`probs` must be probabilities strictly between 0 and 1, not %s.",
                  describe(probs)), call = call, arg = "probs")
  }
  if (type == "density") {
    if (is.null(y) && is.null(des$y)) {
      abort("`y` must be given for `type = \"density\"` when `newdata` has no response.",
            call = call, arg = "y")
    }
    if (!is.null(y)) check_density_y(y, call)  # R/methods.R
  }
  D <- draws_matrix(object, relabel = type %in% c("gating", "expert"), complete = TRUE)
  D <- D[draw_index(nrow(D), ndraws, call), , drop = FALSE]
  p <- ncol(object$X)
  q <- ncol(object$Z)
  K <- object$K
  n <- nrow(des$X)
  # rows in blocks so that the draws x rows x columns array stays small
  m <- switch(type, mean = 1L, gating = K, expert = K, quantile = length(probs),
              density = if (is.null(y)) 1L else length(y))
  block <- max(1L, floor(2e7 / (nrow(D) * m)))
  # rows missing a covariate the type needs (or the response, for the
  # density at it) are NA
  good <- which(switch(type, gating = stats::complete.cases(des$Z),
                       expert = stats::complete.cases(des$X),
                       stats::complete.cases(des$X, des$Z,
                                             if (type == "density" && is.null(y)) des$y)))
  fit <- matrix(NA_real_, n, m)
  lwr <- upr <- matrix(NA_real_, n, m)
  for (start in if (length(good)) seq(1L, length(good), by = block) else integer()) {
    rows <- good[start:min(length(good), start + block - 1L)]
    sub <- list(X = des$X[rows, , drop = FALSE], Z = des$Z[rows, , drop = FALSE],
                y = des$y[rows], offset = des$offset[rows])
    V <- matrix(draw_values(D, sub, type, y, probs, p, q, K, fit_spec(object)), nrow(D))
    if (type == "density") {
      mx <- apply(V, 2L, max)
      lm <- mx + log(colMeans(exp(sweep(V, 2L, mx))))
      lm[mx == -Inf] <- -Inf
      fit[rows, ] <- if (log) lm else exp(lm)
      if (!log) V <- exp(V)
    } else {
      fit[rows, ] <- colMeans(V)
    }
    if (interval == "credible") {
      lim <- column_limits(V, level)
      lwr[rows, ] <- lim[1L, ]
      upr[rows, ] <- lim[2L, ]
    }
  }
  rn <- rownames(des$X)
  cn <- switch(type, mean = NULL, gating = , expert = paste0("expert", seq_len(K)),
               quantile = paste0(format(100 * probs, trim = TRUE), "%"),
               density = if (is.null(y)) NULL else format(y))
  vector_type <- type == "mean" || (type == "density" && is.null(y))
  if (interval == "none") {
    if (vector_type) return(setNames(fit[, 1L], rn))
    dimnames(fit) <- list(rn, cn)
    return(fit)
  }
  if (vector_type) {
    return(matrix(c(fit, lwr, upr), n, 3L, dimnames = list(rn, c("fit", "lwr", "upr"))))
  }
  array(c(fit, lwr, upr), c(n, m, 3L), list(rn, cn, c("fit", "lwr", "upr")))
}

# Posterior predictive simulation: one posterior draw (chosen at random, as
# sampled) per simulated response vector.
simulation_pars.moe_mcmc <- function(object, nsim) {
  D <- draws_matrix(object, complete = TRUE)
  idx <- sample.int(nrow(D), nsim, replace = nsim > nrow(D))
  lapply(idx, function(i) par_unflatten(D[i, ], ncol(object$X), ncol(object$Z), object$K,
                                        fit_spec(object)))
}

# ---------------------------------------------------------------------------
# Plots

#' Plot a Bayesian mixture-of-experts fit
#'
#' `what = "trace"` draws the draws of the chosen parameters against the
#' iteration, one colour per chain (named in a legend); `"density"` their
#' kernel density per chain. Parameters are relabelled (see [moe_relabel()]); the total
#' log-likelihood (`"loglik"`) is label invariant and shown as sampled.
#' `"fit"` draws the data, the posterior mean of every expert's mean and of
#' the predictive mean, with a credible band of the predictive mean;
#' `"gating"` the posterior mean gating probabilities with their credible
#' bands. The bands are named in the legends, and point colours and line
#' opacities are as in [plot.moe_em()] (the most probable expert; the
#' gating probability).
#'
#' @param x A fit from [moe_mcmc()].
#' @param what Which plot.
#' @param pars For `"trace"` and `"density"`: names of parameters (as in
#'   `names(coef(x))`) and/or `"loglik"`; `NULL` shows the log-likelihood and
#'   every parameter.
#' @param covariate For `"fit"` and `"gating"`: the covariate for the
#'   horizontal axis (by default the first numeric one).
#' @param level Probability of the credible bands.
#' @param ... Further graphical parameters.
#' @return `x`, invisibly.
#' @examples
#' fit <- moe_mcmc(tuned ~ stretchratio, data = tonedata, K = 2,
#'                 chains = 2, iter = 300, seed = 1)
#' plot(fit, "trace", pars = c("loglik", "expert1:stretchratio"))
#' plot(fit, "density", pars = "gate1:stretchratio")
#' plot(fit, "fit")
#' plot(fit, "gating")
#' @export
plot.moe_mcmc <- function(x, what = c("trace", "density", "fit", "gating"), pars = NULL,
                          covariate = NULL, level = 0.95, ...) {
  validate_moe_fit(x, "x")
  call <- sys.call()
  what <- check_choice(what, c("trace", "density", "fit", "gating"), "what", call)
  level <- check_level(level, call)
  fit <- x
  x <- relabelled_fit(x)
  if (what %in% c("trace", "density")) {
    plot_draws(x, what, pars, call, ...)
    return(invisible(fit))
  }
  covariate <- plot_covariate(x, covariate)
  grid <- covariate_grid(x, covariate)
  if (what == "fit") {
    b <- predict(x, grid, type = "mean", interval = "credible", level = level)
    plot_fit(x, covariate, bands = b[, c("lwr", "upr")],
             band_label = sprintf("%s%% credible band of the mean", format(100 * level)), ...)
  } else {
    b <- predict(x, grid, type = "gating", interval = "credible", level = level)
    plot_gating(x, covariate, bands = list(lower = matrix(b[, , "lwr"], nrow(grid)),
                                           upper = matrix(b[, , "upr"], nrow(grid))),
                band_label = sprintf("%s%% credible bands", format(100 * level)), ...)
  }
  invisible(fit)
}

plot_draws <- function(x, what, pars, call, ...) {
  draws <- x$draws
  d <- dim(draws)
  avail <- c("loglik", dimnames(draws)[[3L]])
  if (is.null(pars)) pars <- avail
  if (!is.character(pars) || !length(pars) || anyNA(pars) || !all(pars %in% avail)) {
    bad <- if (is.character(pars)) setdiff(pars, avail) else pars
    abort(sprintf("`pars` must name parameters of the fit (such as \"%s\") or \"loglik\"; unknown: %s.",
                  avail[2L], describe(bad)), call = call, arg = "pars")
  }
  pars <- unique(pars)
  it <- x$warmup + seq_len(d[1L]) * x$thin
  cols <- grDevices::hcl.colors(max(d[2L], 2L), palette = "Dark 3")[seq_len(d[2L])]
  if (length(pars) > 1L) {
    op <- graphics::par(mfrow = grDevices::n2mfrow(length(pars)), mar = c(4, 4, 2, 1))
    on.exit(graphics::par(op))
  }
  chain_names <- paste("chain", seq_len(d[2L]))
  for (v in pars) {
    y <- if (v == "loglik") matrix(x$loglik_draws, d[1L], d[2L]) else
      matrix(draws[, , v], d[1L], d[2L])
    if (what == "trace") {
      graphics::matplot(it, y, type = "l", lty = 1, col = cols, xlab = "iteration",
                        ylab = v, main = v, ...)
      occupied <- cbind(rep(it, d[2L]), as.vector(y), as.vector(y))
    } else {
      dens <- lapply(seq_len(d[2L]), function(j) stats::density(y[, j], na.rm = TRUE))
      graphics::plot(NULL, xlim = range(vapply(dens, function(e) range(e$x), numeric(2L))),
                     ylim = c(0, max(vapply(dens, function(e) max(e$y), 0))),
                     xlab = v, ylab = "density", main = v, ...)
      for (j in seq_along(dens)) graphics::lines(dens[[j]], col = cols[j], lwd = 1.5)
      occupied <- do.call(rbind, lapply(dens, function(e) cbind(e$x, e$y, e$y)))
    }
    # a legend of the chains in every panel, where it covers the least
    args <- list(legend = chain_names, col = cols, lty = 1, lwd = 1.5, bty = "o",
                 bg = grDevices::adjustcolor("white", 0.8), box.col = NA, cex = 0.7,
                 inset = 0.01, horiz = d[2L] <= 4L)
    do.call(graphics::legend, c(list(legend_spot(args, occupied)), args)) # R/plot.R
  }
}

# ---------------------------------------------------------------------------
# Pointwise log-likelihood (conversions to posterior / coda objects: R/draws.R)

#' Pointwise log-likelihood of a Bayesian fit
#'
#' `log_lik()` returns the log-likelihood of every observation under every
#' draw, as the iterations x chains x observations array that
#' [loo::loo()] and [loo::waic()] take (with
#' `r_eff = loo::relative_eff(exp(ll))`). It does not depend on the expert
#' labels. Observations with zero weight are left out; with case weights
#' each entry is the weight times the log density, so that the entries of a
#' draw add up to its total log-likelihood (`fit$loglik_draws`).
#'
#' @section Draws for posterior and coda:
#' The draws in every format of posterior and coda and as a data frame: see
#' [moe_draws]. `log_lik()` is also registered as the method of
#' `rstantools::log_lik()` (when rstantools is loaded), so it works whichever
#' of the two generics is found first; [loo.moe_mcmc()] calls it for
#' `loo::loo(fit)` and `loo::waic(fit)`.
#'
#' @param object A fit from [moe_mcmc()].
#' @param newdata `NULL` (the data of the fit) or a data frame with the
#'   covariates and the response.
#' @param ... Unused.
#' @return An array with dimensions iterations x chains x observations.
#' @examples
#' set.seed(1)
#' sim <- rmoe(300, moe_truth_example("p4"))
#' fit <- moe_mcmc(y ~ x, data = sim, K = 2, chains = 2, iter = 600, seed = 1)
#' ll <- log_lik(fit)
#' dim(ll)
#' if (requireNamespace("loo", quietly = TRUE)) {
#'   print(loo::loo(ll, r_eff = loo::relative_eff(exp(ll))))
#' }
#' if (requireNamespace("posterior", quietly = TRUE)) {
#'   posterior::summarise_draws(posterior::as_draws_array(fit))
#' }
#' @export
log_lik <- function(object, ...) UseMethod("log_lik")

#' @rdname log_lik
#' @export
log_lik.default <- function(object, ...) {
  abort(sprintf("`object` must be a fit from `moe_mcmc()`, not %s.", describe_fit(object)),
        call = sys.call(), arg = "object")
}

#' @rdname log_lik
#' @export
log_lik.moe_mcmc <- function(object, newdata = NULL, ...) {
  validate_moe_fit(object, "object")
  call <- sys.call()
  if (is.null(newdata)) {
    des <- fit_design(object)
    w <- object$weights
  } else {
    des <- new_design(object, newdata)
    if (is.null(des$y)) {
      abort("`newdata` must contain the response for `log_lik()`.", call = call,
            arg = "newdata")
    }
    w <- rep(1, length(des$y))
  }
  keep <- which(w > 0)
  X <- des$X[keep, , drop = FALSE]
  Z <- des$Z[keep, , drop = FALSE]
  y <- des$y[keep]
  o <- if (is_glm_expert(object$expert) && !is.null(des$offset)) rep_len(des$offset, length(w))[keep]
  tr <- if (!is.null(des$trials)) rep_len(des$trials, length(w))[keep]
  D <- draws_matrix(object)
  p <- ncol(object$X)
  q <- ncol(object$Z)
  out <- matrix(0, nrow(D), length(keep))
  for (s in seq_len(nrow(D))) {
    out[s, ] <- w[keep] * log_density_rows(par_unflatten(D[s, ], p, q, object$K,
                                                         fit_spec(object)), X, Z, y, o, tr)
  }
  d <- dim(object$draws)
  array(out, c(d[1L], d[2L], length(keep)),
        list(NULL, dimnames(object$draws)[[2L]], rownames(X)))
}
