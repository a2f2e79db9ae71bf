# Methods shared by EM and MCMC fits (class "moe_fit") and the EM-specific
# ones (class "moe_em"). Point estimates come from `moe_point()`: the EM
# estimate, or the posterior mean of the relabelled draws for MCMC fits.

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
#'   reference column) matrices, and `V` (group gating) and `tau` (a learned
#'   temperature) for the gates that have them.
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
  if (isTRUE(matrix)) {
    # experts without a variance (binomial, Poisson) have no sigma2
    if (!expert_dispersion(spec_expert(par$spec))) par$sigma2 <- NULL
    return(user_par(par))
  }
  setNames(par_flatten(par), par_names(colnames(object$X), colnames(object$Z), object$K,
                                       fit_spec(object)))
}

#' @rdname moe_coef
#' @export
vcov.moe_em <- function(object, ...) {
  validate_moe_fit(object, "object")
  nm <- par_names(colnames(object$X), colnames(object$Z), object$K, fit_spec(object))
  # The information is computed and inverted on the internal (centred and
  # scaled) scale, where it is well conditioned whatever the units of the
  # data, and mapped back by the Jacobian of the linear map
  # par_to_original(); on the original scale covariates of 1e17 or 1e-200
  # make it numerically singular.
  sc <- object$scaling
  s <- scale_data(sc, object$y, object$X, object$Z)
  spec <- fit_spec(object)
  p <- ncol(object$X)
  q <- ncol(object$Z)
  K <- object$K
  par_int <- par_to_internal(sc, moe_point(object))
  info <- moe_information(par_int, s$y, s$X, s$Z, object$weights, object$offset,
                          object$trials)
  # parameters estimated on a bound of their range (R/family.R) are held
  # fixed: the information is that of the others, their variances are NA
  fixed <- expert_bound_index(spec_expert(spec), par_int)
  free <- setdiff(seq_len(nrow(info)), fixed)
  Vf <- invert_information(info[free, free, drop = FALSE], "The observed information is not invertible (a degenerate or weakly identified fit); standard errors are NA.")
  V <- NULL
  if (!is.null(Vf)) {
    V <- matrix(0, nrow(info), ncol(info))
    V[free, free] <- Vf
  }
  if (is.null(V)) {
    V <- matrix(NA_real_, nrow(info), ncol(info))
  } else {
    theta <- par_flatten(par_int)
    to_orig <- function(th) par_flatten(par_to_original(sc, par_unflatten(th, p, q, K, spec)))
    base <- to_orig(0 * theta)
    J <- vapply(seq_along(theta), function(j) {
      e <- 0 * theta
      e[j] <- 1
      to_orig(e) - base
    }, numeric(length(base)))
    V <- J %*% V %*% t(J)
    V <- (V + t(V)) / 2
    if (any(!is.finite(V))) {
      warn("Some variances of the estimates overflow double precision on the original scale of the data (covariates of extreme magnitude); those entries are infinite. Rescale the covariates for finite standard errors.",
           kind = "information")
    }
    V[fixed, ] <- NA_real_
    V[, fixed] <- NA_real_
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
  # object$y is the response minus the offset (GLM experts: the response);
  # fitted() includes it
  glm_fam <- is_glm_expert(object$expert)
  r <- object$y + (if (glm_fam) 0 else fit_offset(object)) - fitted(object)
  if (type == "pearson") {
    par <- moe_point(object)
    cm <- moe_components(par, object$X, object$Z, object$offset)
    g <- exp(cm$log_gate)
    m <- rowSums(g * cm$mean)
    v <- rowSums(g * (expert_variance(par$spec$expert, cm$mean, par$sigma2, object$trials,
                                      cm$df) + cm$mean^2)) - m^2
    r <- r / sqrt(v)
  }
  r
}

#' Predictions from a mixture-of-experts fit
#'
#' With `interval = "confidence"` or `se.fit = TRUE` the uncertainty of the
#' estimate is propagated by the delta method: the standard error of a
#' prediction \eqn{f(\hat\theta)} is \eqn{\sqrt{J V J^\top}}, with
#' \eqn{J} the gradient of \eqn{f} in the parameters (analytic for softmax
#' gating with linear experts, central differences for the variants) and
#' \eqn{V} = [vcov()], the inverse observed information. Confidence limits
#' are \eqn{f \pm z_{(1+level)/2}\,\mathrm{se}}, except for the gating
#' probabilities, whose limits are computed on the logit scale and
#' transformed back, so that they stay in \eqn{(0, 1)}. With
#' `interval = "prediction"` (for `type = "mean"`) the limits are the
#' \eqn{(1 - level)/2} and \eqn{(1 + level)/2} quantiles of the fitted
#' predictive distribution (the mixture; `type = "quantile"`), which
#' ignore the estimation error, small beside the noise unless `n` is small.
#' The standard errors are `NA` (with a warning of `vcov()`) when the
#' observed information is not invertible.
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
#' @param interval `"none"`, `"confidence"` (for `type = "mean"`,
#'   `"gating"` and `"expert"`; EM fits) or `"prediction"` (for
#'   `type = "mean"`). For MCMC fits see [predict.moe_mcmc()] (`"credible"`).
#' @param level Probability of the interval.
#' @param se.fit If `TRUE` (for `type = "mean"`, `"gating"` and `"expert"`
#'   of EM fits), return the delta-method standard errors too, as
#'   [predict.lm()] does.
#' @param ... Must be empty: an unknown argument is an error (class
#'   `bayesmoe_error_input`), never ignored.
#' @return With `interval = "none"` and `se.fit = FALSE`, a vector
#'   (`"mean"`, `"density"` at the observed response) or a matrix with one
#'   row per observation. With an interval, as [predict.lm()]: for `"mean"`
#'   a matrix with columns `fit`, `lwr` and `upr`; for `"gating"` and
#'   `"expert"` an observations x experts x 3 array whose third dimension is
#'   `c("fit", "lwr", "upr")` (the layout of [predict.moe_mcmc()]). With
#'   `se.fit = TRUE` a list with `fit` (the above) and `se.fit` (a vector
#'   for `"mean"`, an observations x experts matrix otherwise).
#' @examples
#' fit <- moe_em(tuned ~ stretchratio, data = tonedata, K = 2, seed = 1)
#' nd <- data.frame(stretchratio = c(1.5, 2, 2.5))
#' predict(fit, nd)
#' predict(fit, nd, interval = "confidence")
#' predict(fit, nd, interval = "prediction", level = 0.9)
#' predict(fit, nd, se.fit = TRUE)
#' g <- predict(fit, nd, type = "gating", interval = "confidence")
#' g[, , "lwr"]
#' predict(fit, nd, type = "quantile", probs = c(0.1, 0.9))
#' predict(fit, nd, type = "density", y = c(1.5, 2, 2.5))
#' @export
predict.moe_fit <- function(object, newdata = NULL,
                            type = c("mean", "gating", "density", "quantile", "expert",
                                     "membership"),
                            y = NULL, probs = c(0.025, 0.5, 0.975), log = FALSE,
                            interval = c("none", "confidence", "prediction"), level = 0.95,
                            se.fit = FALSE, ...) {
  validate_moe_fit(object, "object")
  call <- sys.call()
  check_dots_empty(call, ...)
  type <- check_choice(type, c("mean", "gating", "density", "quantile", "expert",
                               "membership"), "type", call)
  log <- check_flag(log, "log", call)
  interval <- check_choice(interval, c("none", "confidence", "prediction"), "interval", call)
  level <- check_level(level, call)  # R/mcmc-methods.R
  se.fit <- check_flag(se.fit, "se.fit", call)
  if (interval == "prediction" && type != "mean") {
    abort(sprintf("`interval = \"prediction\"` needs `type` \"mean\", not \"%s\"; for limits of the predictive distribution use `type = \"quantile\"`.",
                  type), call = call, arg = "interval")
  }
  delta <- interval == "confidence" || se.fit
  if (delta && !(type %in% c("mean", "gating", "expert"))) {
    abort(sprintf("`%s` needs `type` \"mean\", \"gating\" or \"expert\", not \"%s\".",
                  if (se.fit) "se.fit = TRUE" else "interval = \"confidence\"", type),
          call = call, arg = if (se.fit) "se.fit" else "interval")
  }
  if (delta && !inherits(object, "moe_em")) {
    abort(sprintf("`%s` needs a fit from `moe_em()` (standard errors from the observed information), not %s.",
                  if (se.fit) "se.fit = TRUE" else "interval = \"confidence\"",
                  describe_fit(object)), call = call, arg = if (se.fit) "se.fit" else "interval")
  }
  des <- if (is.null(newdata)) fit_design(object) else new_design(object, newdata)
  if (type == "membership") return(membership_em(object, des)) # R/membership.R
  par <- moe_point(object)
  fit <- predict_par(par, des, type, y, probs, log, object$K)
  if (interval == "none" && !se.fit) return(fit)
  se <- NULL
  if (delta) se <- predict_se(object, par, des, type)
  if (interval != "none") {
    z <- stats::qnorm((1 + level) / 2)
    lim <- switch(interval,
      prediction = predict_par(par, des, "quantile", probs = c(1 - level, 1 + level) / 2,
                               K = object$K),
      confidence = if (type == "gating") {
        # on the logit scale: d logit(g) = dg / (g (1 - g))
        s_eta <- se / (fit * (1 - fit))
        l <- stats::plogis(stats::qlogis(fit) - z * s_eta)
        u <- stats::plogis(stats::qlogis(fit) + z * s_eta)
        edge <- !is.na(fit) & (fit <= 0 | fit >= 1)
        l[edge] <- u[edge] <- fit[edge]
        list(l, u)
      } else list(fit - z * se, fit + z * se))
    if (type == "mean") {
      lim <- if (is.list(lim)) cbind(lim[[1L]], lim[[2L]]) else lim
      fit <- matrix(c(fit, lim), length(fit), 3L,
                    dimnames = list(rownames(des$X), c("fit", "lwr", "upr")))
    } else {
      fit <- array(c(fit, lim[[1L]], lim[[2L]]), c(dim(fit), 3L),
                   c(dimnames(fit), list(c("fit", "lwr", "upr"))))
    }
  }
  if (se.fit) list(fit = fit, se.fit = se) else fit
}

# Delta-method standard errors of predict_par(type) at the EM estimate `par`
# (a vector for "mean", an n x K matrix for "gating" and "expert").
predict_se <- function(object, par, des, type) {
  V <- vcov(object)
  J <- predict_jacobian(par, des, type, object$K)
  se <- vapply(J, function(Jk) sqrt(pmax(rowSums((Jk %*% V) * Jk), 0)), numeric(nrow(des$X)))
  se <- matrix(se, nrow(des$X))
  if (type == "mean") return(setNames(se[, 1L], rownames(des$X)))
  dimnames(se) <- list(rownames(des$X), paste0("expert", seq_len(object$K)))
  se
}

# Gradients of predict_par(type) in the parameters (par_flatten() layout):
# a list with one n x P matrix per column of the prediction (one for
# "mean", K for "gating" and "expert"). Analytic for softmax gating with
# linear experts (mean m = sum_k g_k mu_k, dm/da_k = g_k x,
# dm/dw_j = g_j (mu_j - m) z; dg_k/dw_j = g_k (1{k = j} - g_j) z;
# dmu_k/da_k = x), central differences of predict_par() for the variants.
predict_jacobian <- function(par, des, type, K) {
  if (!is_softmax_linear(par$spec)) return(predict_jacobian_numeric(par, des, type, K))
  X <- des$X
  Z <- des$Z
  n <- nrow(X)
  p <- ncol(X)
  q <- ncol(Z)
  P <- (p + 1L) * K + q * (K - 1L)
  ia <- function(k) (k - 1L) * (p + 1L) + seq_len(p)
  iw <- function(j) (p + 1L) * K + (j - 1L) * q + seq_len(q)
  cm <- moe_components(par, X, Z)
  G <- exp(cm$log_gate)
  switch(type,
    mean = {
      m <- rowSums(G * cm$mean)
      J <- matrix(0, n, P)
      for (k in seq_len(K)) J[, ia(k)] <- X * G[, k]
      for (j in seq_len(K - 1L)) J[, iw(j)] <- Z * (G[, j] * (cm$mean[, j] - m))
      list(J)
    },
    gating = lapply(seq_len(K), function(k) {
      J <- matrix(0, n, P)
      for (j in seq_len(K - 1L)) J[, iw(j)] <- Z * (G[, k] * ((k == j) - G[, j]))
      J
    }),
    expert = lapply(seq_len(K), function(k) {
      J <- matrix(0, n, P)
      J[, ia(k)] <- X
      J
    }))
}

predict_jacobian_numeric <- function(par, des, type, K) {
  theta <- par_flatten(par)
  P <- length(theta)
  p <- ncol(des$X)
  q <- ncol(des$Z)
  f <- function(th) matrix(predict_par(par_unflatten(th, p, q, K, par$spec), des, type, K = K),
                           nrow(des$X))
  h <- 1e-5 * pmax(1, abs(theta))
  # variances stay positive
  is_s2 <- seq_len(K) * nrow(as.matrix(par$alpha)) + seq_len(K)
  h[is_s2] <- pmin(h[is_s2], 1e-3 * theta[is_s2])
  D <- lapply(seq_len(P), function(j) {
    e <- replace(numeric(P), j, h[j])
    (f(theta + e) - f(theta - e)) / (2 * h[j])
  })
  m <- ncol(D[[1L]])
  lapply(seq_len(m), function(k) matrix(vapply(D, function(d) d[, k], numeric(nrow(des$X))),
                                        nrow(des$X), P))
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
    cm <- moe_components(par, object$X, object$Z, object$offset)
    cm$mean <- shift_mean(par$spec$expert, cm$mean, fit_offset(object))
    g <- exp(cm$log_gate)
    n <- nrow(g)
    u <- runif(n)
    # cumulative gating probabilities by column (apply() drops K = 1 to a vector)
    cs <- g
    for (j in seq_len(ncol(g))[-1L]) cs[, j] <- cs[, j - 1L] + g[, j]
    k <- 1L + rowSums(u > cs[, -ncol(g), drop = FALSE])
    mk <- cm$mean[cbind(seq_len(n), k)]
    # GLM experts: proportions of the trials (binomial) or counts (Poisson)
    if (is_glm_expert(par$spec$expert)) glm_simulate(par$spec$expert, mk, object$trials) else
      noise_draw(mk, cm$sd[k], cm$df[k])
  }, pars = simulation_pars(object, nsim)))
  names(out) <- paste0("sim_", seq_len(nsim))
  out <- as.data.frame(out)
  rownames(out) <- rownames(object$X)
  out
}

simulation_pars <- function(object, nsim) UseMethod("simulation_pars")

simulation_pars.moe_em <- function(object, nsim) rep(list(moe_point(object)), nsim)

#' @export
print.moe_fit <- function(x, digits = max(3L, getOption("digits") - 3L), ...) {
  validate_moe_fit(x, "x")
  digits <- check_digits(digits, call = sys.call())
  cat(fit_title(x), "\n\n", sep = "")
  cat("Call:\n", paste(deparse(x$call), collapse = "\n"), "\n\n", sep = "")
  par <- moe_point(x)
  print_experts(x, par, digits, sprintf("Experts (columns) -- coefficients, %s:",
                                        expert_noise_label(fit_spec(x)$expert)))
  print_gating(x$gate, par, x$K, digits)
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
  # (experts without a variance, binomial and Poisson, have no sigma)
  sig <- if (any(is_s2)) sigma(object)
  if (any(is_s2)) sig <- cbind(Estimate = sig, `Std. Error` = se[is_s2] / (2 * sig))
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
  print_summary_header(x)
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
  sep <- grepl("separation", x$status)
  cat(sprintf("EM: %s after %d iterations%s; best of %d starts.\n",
              if (sep) "stopped by separation" else
                if (x$converged) "converged" else "NOT converged", x$iter,
              if (x$status == "separation") "" else sprintf(" (status: %s)", x$status),
              nrow(x$starts)))
  lls <- x$starts$loglik
  # with short runs, only the starts continued on all the data have one
  full <- if (is.null(x$starts$short_loglik)) length(lls) else sum(!is.na(lls))
  cat(sprintf("Starts reaching the best log-likelihood (within 1e-4): %d of %d%s.\n",
              sum(abs(lls - max(lls, na.rm = TRUE)) < 1e-4, na.rm = TRUE), full,
              if (full < length(lls)) " run on all the data (the others: short runs on a subsample)" else ""))
  invisible(x)
}

# Integrated completed likelihood (smaller is better, like BIC): BIC minus
# twice the log responsibility of each observation's most likely expert.
moe_icl <- function(object) {
  R <- object$resp
  map_logr <- log(R[cbind(seq_len(nrow(R)), max.col(R, ties.method = "first"))])
  BIC(object) - 2 * sum(object$weights * map_logr)
}
