# Methods shared by EM and MCMC fits (class "moe_fit") and the EM-specific
# ones (class "moe_em"). Point estimates come from `moe_point()`: the EM
# estimate, or the posterior mean of the relabelled draws for MCMC fits.

moe_point <- function(object) UseMethod("moe_point")

moe_point.moe_fit <- function(object) object$coefficients

#' Coefficients, covariance and fitted values of a mixture-of-experts fit
#'
#' `coef()` returns the parameter vector in the layout used throughout the
#' package: for each expert its coefficients (`expert<k>:<term>`) and its
#' variance (`expert<k>:sigma2`), then the gating coefficients of the
#' non-reference experts (`gate<k>:<term>`). `coef(object, matrix = TRUE)`
#' returns them as a list of matrices. `vcov()` of an EM fit inverts the
#' observed information (Louis' identity, exact). `fitted()` is the
#' predictive mean \eqn{\sum_k g_k(z) x^\top a_k}, `residuals()` the response
#' minus it (`type = "pearson"` divides by the predictive standard deviation).
#'
#' @param object A fit from [moe_em()] or `moe_mcmc()`.
#' @param matrix If `TRUE`, return a list with the `alpha` (expert
#'   coefficients, p x K), `sigma2` and `W` (gating, q x K with a zero
#'   reference column) matrices.
#' @param type For `residuals()`: `"response"` or `"pearson"`.
#' @param ... Unused.
#' @return See Description.
#' @examples
#' fit <- moe_em(tuned ~ stretchratio, data = tonedata, K = 2, seed = 1)
#' coef(fit)
#' sqrt(diag(vcov(fit)))
#' head(fitted(fit))
#' @name moe_coef
NULL

#' @rdname moe_coef
#' @export
coef.moe_fit <- function(object, matrix = FALSE, ...) {
  validate_moe_fit(object, "object")
  par <- moe_point(object)
  if (isTRUE(matrix)) return(par)
  setNames(par_flatten(par), par_names(colnames(object$X), colnames(object$Z), object$K,
                                       fit_spec(object)))
}

#' @rdname moe_coef
#' @export
vcov.moe_em <- function(object, ...) {
  validate_moe_fit(object, "object")
  info <- moe_information(object$coefficients, object$y, object$X, object$Z,
                          object$weights)
  nm <- par_names(colnames(object$X), colnames(object$Z), object$K, fit_spec(object))
  V <- tryCatch(solve(info), error = function(e) NULL)
  if (is.null(V) || any(!is.finite(diag(V))) || any(diag(V) < 0) ||
      rcond(info) < .Machine$double.eps) {
    warn("The observed information is not invertible (a degenerate or weakly identified fit); standard errors are NA.",
         kind = "information")
    V <- matrix(NA_real_, nrow(info), ncol(info))
  }
  dimnames(V) <- list(nm, nm)
  V
}

#' @rdname moe_coef
#' @export
fitted.moe_fit <- function(object, ...) {
  validate_moe_fit(object, "object")
  drop(predict(object, type = "mean"))
}

#' @rdname moe_coef
#' @export
residuals.moe_fit <- function(object, type = c("response", "pearson"), ...) {
  validate_moe_fit(object, "object")
  type <- check_choice(type, c("response", "pearson"), "type")
  # object$y is the response minus the offset; fitted() includes it
  r <- object$y + fit_offset(object) - fitted(object)
  if (type == "pearson") {
    par <- moe_point(object)
    cm <- moe_components(par, object$X, object$Z)
    g <- exp(cm$log_gate)
    m <- rowSums(g * cm$mean)
    v <- rowSums(g * (rep(par$sigma2, each = length(m)) + cm$mean^2)) - m^2
    r <- r / sqrt(v)
  }
  r
}

#' Predictions from a mixture-of-experts fit
#'
#' @param object A fit from [moe_em()] or `moe_mcmc()`.
#' @param newdata A data frame with the covariates; `NULL` uses the data of
#'   the fit.
#' @param type What to predict: `"mean"` the predictive mean
#'   \eqn{E(y \mid x, z)}; `"gating"` the gating probabilities (one column
#'   per expert); `"density"` the conditional density of the response;
#'   `"quantile"` quantiles of the conditional distribution;
#'   `"expert"` the mean of each expert (one column per expert);
#'   `"membership"` the membership probabilities (responsibilities: gating
#'   times expert density at the observed response, normalised; one column
#'   per expert), which need the response in `newdata` (see
#'   [moe_membership()]).
#' @param y For `type = "density"`: `NULL` evaluates the density at the
#'   observed response of each row (a vector); a numeric vector gives a
#'   matrix with one row per observation and one column per value of `y`.
#' @param probs For `type = "quantile"`: the probabilities.
#' @param log For `type = "density"`: return the log density.
#' @param ... Passed to methods (for MCMC fits: `interval`, `level`).
#' @return A vector (`"mean"`, `"density"` at the observed response) or a
#'   matrix with one row per observation.
#' @examples
#' fit <- moe_em(tuned ~ stretchratio, data = tonedata, K = 2, seed = 1)
#' nd <- data.frame(stretchratio = c(1.5, 2, 2.5))
#' predict(fit, nd)
#' predict(fit, nd, type = "gating")
#' predict(fit, nd, type = "quantile", probs = c(0.1, 0.9))
#' predict(fit, nd, type = "density", y = c(1.5, 2, 2.5))
#' @export
predict.moe_fit <- function(object, newdata = NULL,
                            type = c("mean", "gating", "density", "quantile", "expert",
                                     "membership"),
                            y = NULL, probs = c(0.025, 0.5, 0.975), log = FALSE, ...) {
  validate_moe_fit(object, "object")
  type <- check_choice(type, c("mean", "gating", "density", "quantile", "expert",
                               "membership"), "type")
  log <- check_flag(log, "log")
  des <- if (is.null(newdata)) fit_design(object) else new_design(object, newdata)
  if (type == "membership") return(membership_em(object, des)) # R/membership.R
  predict_par(moe_point(object), des, type, y, probs, log, object$K)
}

# Prediction for one parameter set `par` on design `des` (list X, Z, y and
# optionally offset; des$y is the response minus the offset): expert means
# are shifted by the offset, densities at given `y` taken at y - offset.
predict_par <- function(par, des, type, y = NULL, probs = 0.5, log = FALSE, K) {
  cm <- moe_components(par, des$X, des$Z)
  o <- des_offset(des)
  cm$mean <- cm$mean + o
  n <- nrow(des$X)
  ek <- paste0("expert", seq_len(K))
  switch(type,
    mean = rowSums(exp(cm$log_gate) * cm$mean),
    gating = {
      g <- exp(cm$log_gate)
      dimnames(g) <- list(rownames(des$X), ek)
      g
    },
    expert = {
      m <- cm$mean
      dimnames(m) <- list(rownames(des$X), ek)
      m
    },
    density = {
      if (is.null(y)) {
        if (is.null(des$y)) {
          abort("`y` must be given for `type = \"density\"` when `newdata` has no response.",
                kind = "input", arg = "y")
        }
        ld <- moe_log_density(par, des$X, des$Z, des$y)
        if (log) ld else exp(ld)
      } else {
        check_density_y(y)
        out <- vapply(y, function(v) moe_log_density(par, des$X, des$Z, v - rep_len(o, n)),
                      numeric(n))
        out <- matrix(out, n, length(y), dimnames = list(rownames(des$X), format(y)))
        if (log) out else exp(out)
      }
    },
    quantile = {
      if (!is.numeric(probs) || !length(probs) || anyNA(probs) || any(!(probs > 0 & probs < 1))) {
        abort(sprintf("`probs` must be probabilities strictly between 0 and 1, not %s.",
                      describe(probs)), kind = "input", arg = "probs")
      }
      q <- mixture_quantile(cm$log_gate, cm$mean, cm$sd, probs)
      rownames(q) <- rownames(des$X)
      q
    })
}

# `y` of predict(type = "density"): finite numbers at most 1e100 in
# absolute value, the bound of the response of a fit (beyond it the squared
# standardised residual, and so the log density, overflows).
check_density_y <- function(y, call = NULL) {
  if (!is.numeric(y) || !length(y) || any(!is.finite(y)) || any(abs(y) > data_max)) {
    abort(sprintf("`y` must be a vector of finite numbers at most 1e100 in absolute value (the bound of the response of a fit), not %s.",
                  describe(y)), call = call, arg = "y")
  }
  invisible(y)
}

#' Simulate responses from a fitted mixture of experts
#'
#' Draws new responses at the covariates of the fit from the fitted
#' conditional distribution (for MCMC fits, from the posterior predictive:
#' each simulation uses a different posterior draw).
#'
#' @param object A fit from [moe_em()] or `moe_mcmc()`.
#' @param nsim Number of simulated response vectors; a number whose results
#'   would not fit in memory is refused (see [moe_em()], Details).
#' @param seed `NULL` or a seed; with a seed the caller's RNG state is left
#'   untouched.
#' @param ... Unused.
#' @return A data frame with `nsim` columns `sim_1`, `sim_2`, ...
#' @examples
#' fit <- moe_em(tuned ~ stretchratio, data = tonedata, K = 2, seed = 1)
#' sims <- simulate(fit, nsim = 3, seed = 2)
#' head(sims)
#' @export
simulate.moe_fit <- function(object, nsim = 1, seed = NULL, ...) {
  validate_moe_fit(object, "object")
  nsim <- check_number(nsim, "nsim", lower = 1, whole = TRUE)
  # the simulated vectors, then their data frame: two copies
  n <- nrow(object$X)
  check_size(2 * nsim * (8 * n + 64),
             sprintf("%s simulations of %d responses, 8 bytes each, twice (list and data frame)",
                     format(nsim, big.mark = ",", scientific = FALSE), n), "nsim")
  seed <- check_seed(seed)
  # parameters are chosen under the seed too (posterior draws for MCMC fits)
  out <- with_seed(seed, lapply(seq_len(nsim), function(s, pars) {
    par <- pars[[s]]
    cm <- moe_components(par, object$X, object$Z)
    cm$mean <- cm$mean + fit_offset(object)
    g <- exp(cm$log_gate)
    n <- nrow(g)
    u <- runif(n)
    # cumulative gating probabilities by column (apply() drops K = 1 to a vector)
    cs <- g
    for (j in seq_len(ncol(g))[-1L]) cs[, j] <- cs[, j - 1L] + g[, j]
    k <- 1L + rowSums(u > cs[, -ncol(g), drop = FALSE])
    cm$mean[cbind(seq_len(n), k)] + cm$sd[k] * rnorm(n)
  }, pars = simulation_pars(object, nsim)))
  names(out) <- paste0("sim_", seq_len(nsim))
  out <- as.data.frame(out)
  rownames(out) <- rownames(object$X)
  out
}

simulation_pars <- function(object, nsim) UseMethod("simulation_pars")

simulation_pars.moe_em <- function(object, nsim) rep(list(object$coefficients), nsim)

#' @export
print.moe_fit <- function(x, digits = max(3L, getOption("digits") - 3L), ...) {
  validate_moe_fit(x, "x")
  digits <- check_digits(digits, call = sys.call())
  cat(fit_title(x), "\n\n", sep = "")
  cat("Call:\n", paste(deparse(x$call), collapse = "\n"), "\n\n", sep = "")
  par <- moe_point(x)
  print_experts(x, par, digits, "Experts (columns) -- coefficients, variance sigma2 and sd sigma:")
  if (!is.null(fit_spec(x))) {
    print_gating(x$gate, par, x$K, digits)
  } else if (x$K > 1L) {
    cat("\nGating coefficients (expert ", x$K, " is the reference):\n", sep = "")
    print(par$W[, -x$K, drop = FALSE], digits = digits)
  }
  cat("\n", fit_footer(x), "\n", sep = "")
  invisible(x)
}

fit_title <- function(x) UseMethod("fit_title")

fit_title.moe_em <- function(x) {
  sprintf("Mixture of %d %s expert%s with %s (EM)", x$K, expert_label(x$expert),
          if (x$K > 1L) "s" else "", gate_label(x$gate))
}

fit_footer <- function(x) {
  na <- if (length(x$na.action)) sprintf(" (%d observation%s deleted due to missingness)",
                                         length(x$na.action),
                                         if (length(x$na.action) > 1) "s" else "") else ""
  ll <- logLik(x)
  sprintf("n = %d%s, log-likelihood = %s, df = %d, BIC = %s",
          nobs(x), na, format(signif(as.numeric(ll), 7)), attr(ll, "df"),
          format(signif(BIC(x), 7)))
}

#' Summarise a mixture-of-experts fit
#'
#' For EM fits: estimates with standard errors from the observed
#' information, z statistics and p-values, the log-likelihood, AIC, BIC and
#' ICL, and the convergence record of every start.
#'
#' @param object A fit.
#' @param x A summary object.
#' @param digits Significant digits to print.
#' @param ... Unused.
#' @return An object of class `summary.moe_em` (or `summary.moe_mcmc`).
#' @examples
#' fit <- moe_em(tuned ~ stretchratio, data = tonedata, K = 2, seed = 1)
#' summary(fit)
#' @export
summary.moe_em <- function(object, ...) {
  validate_moe_fit(object, "object")
  est <- coef(object)
  V <- suppressWarnings(vcov(object))
  se <- sqrt(diag(V))
  z <- est / se
  tab <- cbind(Estimate = est, `Std. Error` = se, `z value` = z,
               `Pr(>|z|)` = 2 * pnorm(-abs(z)))
  is_s2 <- grepl(":sigma2$", names(est))
  tab[is_s2, 3:4] <- NA
  # sigma beside sigma2, its standard error by the delta method
  sig <- sigma(object)
  sig <- cbind(Estimate = sig, `Std. Error` = se[is_s2] / (2 * sig))
  ll <- logLik(object)
  structure(list(call = object$call, K = object$K, coefficients = tab,
                 sigma = sig, sizes = expert_sizes(object),
                 loglik = as.numeric(ll), df = attr(ll, "df"), nobs = nobs(object),
                 AIC = AIC(object), BIC = BIC(object), ICL = moe_icl(object),
                 iter = object$iter, converged = !("maxit" %in% decode_status(object$status)),
                 status = status_text(object$status), starts = object$starts,
                 na.action = object$na.action, se_available = all(is.finite(se)),
                 title = fit_title(object), gate = object$gate),
            class = "summary.moe_em")
}

#' @rdname summary.moe_em
#' @export
print.summary.moe_em <- function(x, digits = max(3L, getOption("digits") - 3L), ...) {
  digits <- check_digits(digits, call = sys.call())
  cat(x$title, "\n\n", sep = "")
  cat("Call:\n", paste(deparse(x$call), collapse = "\n"), "\n\n", sep = "")
  if (length(x$na.action)) {
    cat(sprintf("(%d observation%s deleted due to missingness)\n\n", length(x$na.action),
                if (length(x$na.action) > 1) "s" else ""))
  }
  groups <- sub(":.*$", "", rownames(x$coefficients))
  for (g in unique(groups)) {
    cat(coef_group_label(g, x$K, x$gate), "\n")
    tab <- x$coefficients[groups == g, , drop = FALSE]
    rownames(tab) <- sub("^[^:]*:", "", rownames(tab))
    k <- match(g, rownames(x$sigma))
    if (!is.na(k)) {
      tab <- rbind(tab, sigma = c(x$sigma[k, ], NA, NA))
    }
    printCoefmat(tab, digits = digits, na.print = "", has.Pvalue = TRUE,
                 P.values = TRUE, signif.stars = FALSE)
    cat("\n")
  }
  print_sizes(x$sizes)
  cat("\n")
  if (!x$se_available) cat("Standard errors are NA: the observed information is not invertible.\n\n")
  cat(sprintf("Log-likelihood: %s on %d df, n = %d\n", format(signif(x$loglik, 7)), x$df, x$nobs))
  cat(sprintf("AIC: %s   BIC: %s   ICL: %s\n", format(signif(x$AIC, 7)),
              format(signif(x$BIC, 7)), format(signif(x$ICL, 7))))
  cat(sprintf("EM: %s after %d iterations (status: %s); best of %d starts.\n",
              if (x$converged) "converged" else "NOT converged", x$iter, x$status,
              nrow(x$starts)))
  lls <- x$starts$loglik
  cat(sprintf("Starts reaching the best log-likelihood (within 1e-4): %d of %d.\n",
              sum(abs(lls - max(lls, na.rm = TRUE)) < 1e-4, na.rm = TRUE), length(lls)))
  invisible(x)
}

# Integrated completed likelihood (smaller is better, like BIC): BIC minus
# twice the log responsibility of each observation's most likely expert.
moe_icl <- function(object) {
  R <- object$resp
  map_logr <- log(R[cbind(seq_len(nrow(R)), max.col(R, ties.method = "first"))])
  BIC(object) - 2 * sum(object$weights * map_logr)
}
