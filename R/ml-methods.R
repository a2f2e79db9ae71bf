# Likelihood-based methods of the stats generics: sigma(), model.matrix(),
# df.residual(), deviance() and anova() (likelihood-ratio tests between
# nested EM fits), and the expert sizes and mixing weights shown by print()
# and summary().

#' Noise, design, residual degrees of freedom, deviance and likelihood-ratio
#' tests of a mixture-of-experts fit
#'
#' `sigma()` returns the noise standard deviation of each expert (the square
#' root of `sigma2`; for MCMC fits, of its posterior mean, the point estimate
#' `print()` and `coef()` show). `model.matrix()` returns the expert design
#' (`which = "expert"`) or the gating design (`which = "gating"`) of the fit.
#' `df.residual()` is the sample size of the likelihood (the `nobs`
#' attribute of [logLik()], the sum of the case weights) minus the number of
#' parameters (its `df` attribute). `deviance()` of an EM fit is minus twice
#' its maximised log-likelihood.
#'
#' `anova(fit1, fit2, ...)` compares nested EM fits with likelihood-ratio
#' tests: each fit is tested against the one before it, the statistic being
#' twice the difference of their log-likelihoods, referred to a chi-square
#' distribution with the difference of their numbers of parameters as
#' degrees of freedom. Fits are nested when they have the same number of
#' experts `K`, the same kind of gating and experts, the same response and
#' case weights, and the expert and gating designs of the smaller fit span
#' subspaces of those of the larger one (for instance `~ x` within `~ x + z`,
#' or constant gating `~ 1` within any gating with an intercept).
#'
#' Fits with different `K` are refused: under the smaller `K` the extra
#' expert's gating weight is on the boundary of the parameter space (zero)
#' or its parameters are not identified (two equal experts), so the
#' likelihood-ratio statistic does not have its usual chi-square
#' distribution. Choose `K` with [moe_select()] or information criteria
#' ([BIC()]) instead. The test is also only as good as the maxima EM found:
#' a larger fit with a smaller log-likelihood than the fit it contains (a
#' local maximum) gives a warning; more `starts` usually help.
#'
#' @param object A fit from [moe_em()] (for `sigma()`, `model.matrix()` and
#'   `df.residual()` also one from [moe_mcmc()]).
#' @param which For `model.matrix()`: `"expert"` or `"gating"`.
#' @param ... For `anova()`: further fits from [moe_em()]; otherwise unused.
#' @return `sigma()`: a named vector (`expert1`, `expert2`, ...).
#'   `model.matrix()`: the design matrix with its `assign` and `contrasts`
#'   attributes. `df.residual()` and `deviance()`: a number. `anova()`: a
#'   table of class `c("anova", "data.frame")` with one row per fit and the
#'   columns `Resid. Df`, `npar` (number of parameters), `logLik`, `Df`
#'   (difference in the number of parameters from the fit before), `Chisq`
#'   and `Pr(>Chisq)`.
#' @seealso [logLik()], [moe_select()] for the number of experts.
#' @examples
#' fit1 <- moe_em(tuned ~ stretchratio, data = tonedata, K = 2,
#'                gating = ~ 1, seed = 1)
#' fit2 <- moe_em(tuned ~ stretchratio, data = tonedata, K = 2, seed = 1)
#' sigma(fit2)
#' head(model.matrix(fit2))
#' head(model.matrix(fit1, which = "gating"))
#' df.residual(fit2)
#' deviance(fit2)
#' anova(fit1, fit2)
#' @name moe_ml_methods
#' @importFrom stats sigma df.residual deviance anova
NULL

#' @rdname moe_ml_methods
#' @export
sigma.moe_fit <- function(object, ...) {
  validate_moe_fit(object, "object")
  s2 <- moe_point(object)$sigma2
  setNames(sqrt(as.numeric(s2)), paste0("expert", seq_along(s2)))
}

#' @rdname moe_ml_methods
#' @export
model.matrix.moe_fit <- function(object, which = c("expert", "gating"), ...) {
  validate_moe_fit(object, "object")
  which <- check_choice(which, c("expert", "gating"), "which", call = sys.call())
  if (which == "expert") object$X else object$Z
}

#' @rdname moe_ml_methods
#' @export
df.residual.moe_fit <- function(object, ...) {
  validate_moe_fit(object, "object")
  ll <- logLik(object)
  attr(ll, "nobs") - attr(ll, "df")
}

#' @rdname moe_ml_methods
#' @export
deviance.moe_em <- function(object, ...) -2 * as.numeric(logLik(object))

#' @rdname moe_ml_methods
#' @export
anova.moe_em <- function(object, ...) {
  call <- sys.call()
  fits <- c(list(object), list(...))
  labels <- c("object", if (length(fits) > 1L) paste0("..", seq_len(length(fits) - 1L)))
  for (i in seq_along(fits)) {
    if (!inherits(fits[[i]], "moe_em")) {
      abort(sprintf("`%s` must be a fit from `moe_em()`, not %s.", labels[i],
                    describe_fit(fits[[i]])), kind = "input", call = call, arg = labels[i])
    }
    validate_moe_fit(fits[[i]], labels[i], call)
  }
  if (length(fits) < 2L) {
    abort("`anova()` needs at least two fits from `moe_em()` to compare: likelihood-ratio tests are between nested fits.",
          kind = "input", call = call, arg = "...")
  }
  for (i in seq_along(fits)[-1L]) anova_check_pair(fits[[1L]], fits[[i]], i, call)
  ll <- vapply(fits, function(f) as.numeric(logLik(f)), 0)
  df <- vapply(fits, function(f) attr(logLik(f), "df"), 0L)
  ddf <- c(NA, diff(df))
  stat <- c(NA, 2 * diff(ll) * sign(ddf[-1L]))
  pval <- ifelse(!is.na(ddf) & ddf != 0,
                 stats::pchisq(pmax(stat, 0), abs(ddf), lower.tail = FALSE), NA_real_)
  worse <- which(!is.na(stat) & ddf != 0 & stat < -1e-6 * pmax(1, abs(ll)))
  if (length(worse)) {
    big <- ifelse(ddf[worse] > 0, worse, worse - 1L)
    small <- ifelse(ddf[worse] > 0, worse - 1L, worse)
    warn(sprintf("%s (a local maximum of EM); refit with more `starts`.",
                 paste(sprintf("Model %d has a smaller log-likelihood than model %d, which it contains",
                               big, small), collapse = "; ")),
         kind = "anova", call = call)
  }
  tab <- data.frame(`Resid. Df` = vapply(fits, df.residual, 0), npar = df, logLik = ll,
                    Df = ddf, Chisq = stat, `Pr(>Chisq)` = pval,
                    check.names = FALSE, row.names = paste("Model", seq_along(fits)))
  models <- vapply(seq_along(fits), function(i) {
    f <- fits[[i]]
    sprintf("Model %d: %s, gating %s, K = %d", i, deparse1(f$formula),
            deparse1(f$gating), f$K)
  }, "")
  structure(tab, heading = c("Likelihood-ratio tests of nested mixture-of-experts fits (EM)\n",
                             paste0(models, collapse = "\n")),
            class = c("anova", "data.frame"))
}

# Refuse a pair of fits the likelihood-ratio test cannot compare: `a` is the
# first fit, `b` the i-th. Nesting is checked on the column spaces of the
# designs, in either direction.
anova_check_pair <- function(a, b, i, call) {
  lab <- sprintf("Model %d", i)
  if (a$K != b$K) {
    abort(sprintf("Fits with different numbers of experts cannot be compared by a likelihood-ratio test (model 1 has K = %d, model %d has K = %d): under the smaller K the extra expert is on the boundary or not identified, so the statistic has no chi-square reference. Use `moe_select()` or BIC to choose K.",
                  a$K, i, b$K),
          kind = "anova", call = call, arg = "...")
  }
  if (gate_label(a$gate) != gate_label(b$gate) ||
      expert_label(a$expert) != expert_label(b$expert)) {
    abort(sprintf("The fits are not nested: model 1 has %s experts with %s and model %d %s experts with %s.",
                  expert_label(a$expert), gate_label(a$gate), i, expert_label(b$expert),
                  gate_label(b$gate)),
          kind = "anova", call = call, arg = "...")
  }
  if (length(a$y) != length(b$y) || !isTRUE(all.equal(a$weights, b$weights))) {
    abort(sprintf("The fits are not nested: they were fitted to different data (model 1 has %s observations, model %d has %s; compare fits to the same rows and weights).",
                  format(loglik_nobs(a)), i, format(loglik_nobs(b))),
          kind = "anova", call = call, arg = "...")
  }
  if (!isTRUE(all.equal(a$y, b$y))) {
    abort(sprintf("The fits are not nested: model 1 and model %d have different responses (%s and %s).",
                  i, deparse1(a$formula[[2L]]), deparse1(b$formula[[2L]])),
          kind = "anova", call = call, arg = "...")
  }
  small_in_big <- function(s, l) spans(l$X, s$X) && spans(l$Z, s$Z)
  if (!small_in_big(a, b) && !small_in_big(b, a)) {
    abort(sprintf("The fits are not nested: the expert and gating designs of neither model 1 nor model %d contain those of the other.",
                  i),
          kind = "anova", call = call, arg = "...")
  }
  invisible(lab)
}

# Does the column space of M contain every column of N (same rows)?
spans <- function(M, N) {
  if (!ncol(N)) return(TRUE)
  if (!ncol(M)) return(FALSE)
  res <- qr.resid(qr(M), N)
  all(abs(res) <= 1e-7 * pmax(1, abs(N)))
}

# The experts table of print(): coefficients, sigma2 and sigma, then the
# expert sizes and mean gating weights. `title` heads the table.
print_experts <- function(x, par, digits, title) {
  disp <- expert_dispersion(spec_expert(par$spec))
  # experts without a variance (binomial, Poisson): the coefficients only
  if (!disp) title <- sub(", variance sigma2 and sd sigma:", " (link scale):", title, fixed = TRUE)
  cat(title, "\n", sep = "")
  ex <- if (disp) rbind(par$alpha, sigma2 = par$sigma2, sigma = sqrt(par$sigma2)) else
    par$alpha
  print(ex, digits = digits)
  sz <- expert_sizes(x)
  cat("\n")
  print_sizes(sz)
  invisible(sz)
}

# The inverse of an information matrix (vcov() of EM and least-squares
# fits), or NULL after a warning of class bayesmoe_warning_information with
# `message` when it is singular, ill-conditioned or gives a negative or
# non-finite variance.
invert_information <- function(info, message) {
  V <- tryCatch(solve(info), error = function(e) NULL)
  if (is.null(V) || any(!is.finite(diag(V))) || any(diag(V) < 0) ||
      rcond(info) < .Machine$double.eps) {
    warn(message, kind = "information")
    return(NULL)
  }
  V
}

# The head of print(summary()): the title, the call and the count of rows
# dropped for missing values.
print_summary_header <- function(x) {
  cat(x$title, "\n\n", sep = "")
  cat("Call:\n", paste(deparse(x$call), collapse = "\n"), "\n\n", sep = "")
  if (length(x$na.action)) {
    cat(sprintf("(%d observation%s deleted due to missingness)\n\n", length(x$na.action),
                if (length(x$na.action) > 1) "s" else ""))
  }
  invisible(x)
}

print_sizes <- function(sz) {
  cat("Expert sizes (sum of membership probabilities) and mean gating weights:\n")
  print(rbind(size = format(round(sz["size", ], 1), nsmall = 1),
              weight = format(round(sz["weight", ], 3), nsmall = 3)), quote = FALSE,
        right = TRUE)
  invisible(sz)
}

#' @export
nobs.moe_fit <- function(object, ...) {
  validate_moe_fit(object, "object")
  sum(object$weights > 0)
}

# The sample size of the likelihood, the `nobs` of logLik() and so the
# log(n) of BIC(): observation i enters sum_i w_i log p(y_i | ...) with its
# weight, so a weighted fit has sum(w) observations' worth of information
# (nobs() counts the rows with positive weight).
loglik_nobs <- function(object) {
  n <- sum(object$weights)
  if (n <= .Machine$integer.max && all(object$weights == round(object$weights))) {
    as.integer(n)
  } else n
}

#' @export
logLik.moe_fit <- function(object, ...) {
  validate_moe_fit(object, "object")
  structure(object$loglik, df = moe_df(object), nobs = loglik_nobs(object), class = "logLik")
}
