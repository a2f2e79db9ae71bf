# Priors of the Bayesian mixture of experts (moe_mcmc()).
#
# A prior is a list of class "moe_prior" holding the user's settings; the
# dimensions of the model are unknown when it is made, so lengths are checked
# and the C-ready form (prior_internal()) is built when a fit starts. Room is
# left for a prior on the number of experts (a future element `K`).

#' Prior of the Bayesian mixture of experts
#'
#' Sets the prior used by [moe_mcmc()]. It is stated on the **internal
#' scale** on which the sampler works: the response and every non-intercept
#' column of the expert and gating designs are centred and scaled to unit
#' standard deviation (without an intercept they are only scaled). Defaults
#' are therefore weakly informative whatever the units of the data.
#'
#' The model has experts \eqn{k = 1, \dots, K} with coefficients \eqn{a_k},
#' variances \eqn{\sigma_k^2} and gating vectors \eqn{w_k}, expert \eqn{K}
#' being the reference (\eqn{w_K = 0}).
#'
#' * **Gating.** With `exchangeable = TRUE` (the default), un-referenced
#'   vectors \eqn{u_1, \dots, u_K} are i.i.d. \eqn{N(0, S)},
#'   \eqn{S = \mathrm{diag}(s_w^2)}, and \eqn{w_k = u_k - u_K}. This prior
#'   does not depend on which expert is the reference, so it is exchangeable
#'   in the labels: marginally \eqn{w_k \sim N(0, 2S)}, jointly
#'   \eqn{\mathrm{Cov}(w_j, w_k) = S} for \eqn{j \ne k}, and the conditional
#'   prior used by the sampler is
#'   \eqn{w_k \mid w_{-k} \sim N(\frac{1}{K-1}\sum_{j<K, j\ne k} w_j,
#'   \frac{K}{K-1} S)}{w_k | w_-k ~ N(mean of the other free w_j, K/(K-1) S)}
#'   (for \eqn{K = 2}, \eqn{N(0, 2S)}). A common mean of the \eqn{u_k} would
#'   cancel in \eqn{u_k - u_K}, so there is none. With
#'   `exchangeable = FALSE` the \eqn{w_k}, \eqn{k < K}, are i.i.d.
#'   \eqn{N(0, S)} (not invariant under relabelling for \eqn{K \ge 3}).
#' * **Experts.** \eqn{a_k \mid \sigma_k^2 \sim N(m_a, \sigma_k^2 V_a)} and
#'   \eqn{\sigma_k^2 \sim \mathrm{InvGamma}(c_0, C_0)} (shape \eqn{c_0},
#'   scale \eqn{C_0}, density proportional to
#'   \eqn{x^{-c_0-1} e^{-C_0/x}}), conditionally conjugate. The defaults
#'   \eqn{V_a = 100 I} (about 0.01 pseudo-observations per coefficient) and
#'   \eqn{c_0 = 1.5}, \eqn{C_0 = 0.05} (prior mean of \eqn{\sigma_k^2} 0.1,
#'   i.e. a tenth of the variance of the response) follow common practice
#'   for mixtures of regressions.
#' * **Binomial and Poisson experts** (`family = binomial()`, `poisson()`;
#'   [moe_glm_experts]) have no variance: their coefficients have the prior
#'   \eqn{a_k \sim N(m_a, V_a)} on the internal scale (covariates centred
#'   and scaled, the response untouched), i.e. the expert prior above with
#'   \eqn{\sigma_k^2 = 1}; `c0` and `C0` are unused. With the default
#'   \eqn{V_a = 100 I} a coefficient of a standardised covariate has prior
#'   standard deviation 10 on the logit or log scale, weak next to any
#'   informative data set; `V_a` of 1 to 4 is a common weakly informative
#'   choice for logistic regression.
#'
#' @section The internal scale of a fit:
#' Every fit stores the scaling of its data as `fit$scaling`, a list with
#' `my` and `sy` (the response on the internal scale is
#' `(y - my) / sy`) and, for the expert design `x` and the gating design
#' `z`, the column centres `center` and scales `scale` (the design on the
#' internal scale is `scale(X, center, scale)`) and the matrix `T`
#' mapping coefficients back: the coefficients of expert k on the original
#' scale are `sy * T %*% a_k + c(my, 0, ..., 0)` (the intercept first)
#' and its variance `sy^2 * sigma2_k`. So a prior or a closed-form
#' posterior on the internal scale can be mapped to the original one (the
#' validation vignette does so for the conjugate K = 1 model).
#'
#' @param s_w Prior standard deviation of the un-referenced gating
#'   coefficients (internal scale): a positive number, or a vector with one
#'   entry per gating coefficient (column of the gating design, intercept
#'   first).
#' @param m_a Prior mean of the expert coefficients (internal scale): a
#'   number (used for every coefficient) or a vector with one entry per
#'   column of the expert design.
#' @param V_a Prior covariance of the expert coefficients, in units of the
#'   expert variance (internal scale): a positive number (times the
#'   identity), a vector of positive variances (diagonal) or a symmetric
#'   positive-definite matrix, one row per column of the expert design.
#' @param c0,C0 Shape and scale of the inverse-gamma prior of every expert
#'   variance (internal scale: in units of the variance of the response).
#' @param df_shape,df_rate Shape and rate of the Gamma prior of the degrees
#'   of freedom \eqn{\nu_k} of each Student-\eqn{t} expert ([student_t()]
#'   with `df = NULL`), truncated to \eqn{[0.1, 10^4]}; the default
#'   Gamma(2, 0.1) (mean 20) is that of Juárez and Steel (2010). Unused by
#'   other families.
#' @param exchangeable Use the exchangeable gating prior (`TRUE`, see
#'   Details) or i.i.d. priors on the reference-coded gating vectors.
#' @param K `NULL` (the number of experts is fixed, as in [moe_mcmc()]) or a
#'   prior on the number of experts from [prior_K()], used by
#'   [moe_select()] for the posterior over the number of experts.
#' @return A list of class `moe_prior`.
#' @seealso [moe_mcmc()]
#' @examples
#' moe_prior()
#' moe_prior(s_w = 2, V_a = 10, c0 = 3, C0 = 0.5)
#' @export
moe_prior <- function(s_w = 5, m_a = 0, V_a = 100, c0 = 1.5, C0 = 0.05,
                      exchangeable = TRUE, K = NULL, df_shape = 2, df_rate = 0.1) {
  call <- sys.call()
  check_vector <- function(x, arg, positive) {
    ok <- is.numeric(x) && !is.matrix(x) && length(x) >= 1L && all(is.finite(x)) &&
      (!positive || all(x > 0))
    if (!ok) {
      abort(sprintf("`%s` must be a %snumber or a numeric vector, not %s.", arg,
                    if (positive) "positive " else "finite ", describe(x)),
            call = call, arg = arg)
    }
    check_prior_range(x, arg, positive, call)
  }
  s_w <- check_vector(s_w, "s_w", positive = TRUE)
  m_a <- check_vector(m_a, "m_a", positive = FALSE)
  if (is.matrix(V_a)) {
    ok <- is.numeric(V_a) && nrow(V_a) == ncol(V_a) && all(is.finite(V_a)) &&
      isSymmetric(unname(V_a)) &&
      !inherits(tryCatch(chol(V_a), error = function(e) e), "error")
    if (!ok) {
      abort("`V_a` must be a symmetric positive-definite matrix when it is a matrix.",
            call = call, arg = "V_a")
    }
    V_a <- unname(V_a)
    storage.mode(V_a) <- "double"
    check_prior_range(diag(V_a), "V_a", TRUE, call)
  } else {
    if (!(is.numeric(V_a) && length(V_a) >= 1L && all(is.finite(V_a)) && all(V_a > 0))) {
      abort(sprintf("`V_a` must be a positive number, a vector of positive variances or a positive-definite matrix, not %s.",
                    describe(V_a)), call = call, arg = "V_a")
    }
    V_a <- check_prior_range(V_a, "V_a", TRUE, call)
  }
  prior <- list(
    s_w = s_w, m_a = m_a, V_a = V_a,
    c0 = check_prior_range(check_number(c0, "c0", lower = 0, strict_lower = TRUE, call = call),
                           "c0", TRUE, call),
    C0 = check_prior_range(check_number(C0, "C0", lower = 0, strict_lower = TRUE, call = call),
                           "C0", TRUE, call),
    exchangeable = check_flag(exchangeable, "exchangeable", call = call),
    df_shape = check_prior_range(check_number(df_shape, "df_shape", lower = 0, strict_lower = TRUE,
                                              call = call), "df_shape", TRUE, call),
    df_rate = check_prior_range(check_number(df_rate, "df_rate", lower = 0, strict_lower = TRUE,
                                             call = call), "df_rate", TRUE, call)
  )
  if (!is.null(K) && !inherits(K, "moe_prior_K")) {
    abort(sprintf("`K` must be NULL (a fixed number of experts) or made by `prior_K()`, not %s.",
                  describe(K)), call = call, arg = "K")
  }
  prior$K <- K
  structure(prior, class = "moe_prior")
}

# Settings are bounded so that the sampler's arithmetic on them (squares,
# inverses, quadratic forms, prior draws) stays finite: positive settings in
# [1e-100, 1e100], others at most 1e100 in absolute value.
check_prior_range <- function(x, arg, positive, call = NULL) {
  bad <- abs(x) > 1e100 | (positive & abs(x) < 1e-100)
  if (any(bad)) {
    abort(sprintf("`%s` must lie between %s and 1e100 (beyond, the sampler's arithmetic overflows), not %s.",
                  arg, if (positive) "1e-100" else "-1e100", pg_bad_element(x, !bad)),
          call = call, arg = arg)
  }
  as.numeric(x)
}

#' @export
print.moe_prior <- function(x, ...) {
  num <- function(v) {
    s <- format(signif(v, 4), trim = TRUE)
    if (length(s) == 1L) s else paste0("(", paste(s, collapse = ", "), ")")
  }
  sw2 <- x$s_w^2
  cat("Prior of a Bayesian mixture of experts, on the internal scale (response and\n",
      "non-intercept covariates centred and scaled to unit standard deviation):\n", sep = "")
  if (x$exchangeable) {
    cat(sprintf("- gating: u_1, ..., u_K iid N(0, S), S = diag(s_w^2), s_w = %s, and w_k = u_k - u_K,\n",
                num(x$s_w)),
        "  exchangeable in the expert labels; marginally w_k ~ N(0, 2 S),\n",
        "  given the others w_k ~ N(mean of the other w_j (j < K), K/(K-1) S);\n", sep = "")
  } else {
    cat(sprintf("- gating: w_k iid N(0, diag(s_w^2)), s_w = %s, for k < K (w_K = 0),\n",
                num(x$s_w)),
        "  not exchangeable in the expert labels;\n", sep = "")
  }
  va <- if (is.matrix(x$V_a)) "a given matrix" else if (length(x$V_a) == 1L)
    paste(num(x$V_a), "I") else paste0("diag", num(x$V_a))
  cat(sprintf("- expert coefficients: a_k | sigma_k^2 ~ N(m_a, sigma_k^2 V_a), m_a = %s, V_a = %s;\n",
              num(x$m_a), va))
  mean_s2 <- if (x$c0 > 1) sprintf(", prior mean %s", num(x$C0 / (x$c0 - 1))) else ""
  cat(sprintf("- expert variances: sigma_k^2 ~ InvGamma(shape %s, scale %s)%s.\n",
              num(x$c0), num(x$C0), mean_s2))
  if (!is.null(x$K)) {
    cat("- ")
    print(x$K)
  }
  invisible(x)
}

# The prior in the form the C sampler takes, for p expert and q gating
# coefficients; checks the lengths of the vector settings.
prior_internal <- function(prior, p, q, call = NULL) {
  len_ok <- function(x, m) length(x) == 1L || length(x) == m
  if (!len_ok(prior$s_w, q)) {
    abort(sprintf("`s_w` of `prior` must have length 1 or %d (the number of gating coefficients), not %d.",
                  q, length(prior$s_w)), call = call, arg = "prior")
  }
  if (!len_ok(prior$m_a, p)) {
    abort(sprintf("`m_a` of `prior` must have length 1 or %d (the number of expert coefficients), not %d.",
                  p, length(prior$m_a)), call = call, arg = "prior")
  }
  V <- prior$V_a
  if (is.matrix(V)) {
    if (nrow(V) != p) {
      abort(sprintf("`V_a` of `prior` must be a %d x %d matrix (the number of expert coefficients), not %d x %d.",
                    p, p, nrow(V), ncol(V)), call = call, arg = "prior")
    }
  } else {
    if (!len_ok(V, p)) {
      abort(sprintf("`V_a` of `prior` must have length 1 or %d (the number of expert coefficients), not %d.",
                    p, length(V)), call = call, arg = "prior")
    }
    V <- diag(rep_len(V, p), p)
  }
  m_a <- rep_len(prior$m_a, p)
  Va_inv <- chol2inv(chol(V))
  Va_inv <- (Va_inv + t(Va_inv)) / 2
  if (!all(is.finite(Va_inv)) || !is.finite(sum(m_a * (Va_inv %*% m_a)))) {
    abort("`prior` cannot be used: `V_a` is too close to singular for its inverse (or the quadratic form of `m_a`) to be finite.",
          call = call, arg = "prior")
  }
  list(m_a = m_a, V_a = V, Va_inv = Va_inv, Va_inv_m = drop(Va_inv %*% m_a),
       m_Va_inv_m = sum(m_a * (Va_inv %*% m_a)), c0 = prior$c0, C0 = prior$C0,
       s_w2 = rep_len(prior$s_w, q)^2, exchangeable = prior$exchangeable,
       df_shape = if (is.null(prior$df_shape)) 2 else prior$df_shape,
       df_rate = if (is.null(prior$df_rate)) 0.1 else prior$df_rate)
}

# Range of every expert variance on the internal scale: the sampler rejects
# variance draws outside it (an exact Metropolis-Hastings step for the prior
# truncated to this range), so that nothing overflows. Keep in sync with
# MOE_S2_MIN and MOE_S2_MAX in src/moe.h.
s2_bounds <- c(1e-100, 1e100)

# One draw of the parameters from the prior (internal scale), using the
# session RNG; list(alpha = p x K, sigma2 = K, W = q x K).
prior_draw <- function(pc, K) {
  p <- length(pc$m_a)
  q <- length(pc$s_w2)
  sw <- sqrt(pc$s_w2)
  # clamped to the range the sampler allows (see s2_bounds)
  sigma2 <- pmin(pmax(1 / stats::rgamma(K, shape = pc$c0, rate = pc$C0), s2_bounds[1L]),
                 s2_bounds[2L])
  R <- chol(pc$V_a)
  alpha <- vapply(seq_len(K), function(k)
    pc$m_a + sqrt(sigma2[k]) * drop(crossprod(R, rnorm(p))), numeric(p))
  alpha <- matrix(alpha, p, K)
  W <- matrix(0, q, K)
  if (K > 1L) {
    if (pc$exchangeable) {
      U <- matrix(rnorm(q * K, sd = sw), q, K)
      W <- U - U[, K]
    } else {
      W[, -K] <- rnorm(q * (K - 1L), sd = sw)
    }
  }
  list(alpha = alpha, sigma2 = sigma2, W = W)
}

#' Prior on the number of experts
#'
#' A prior on the number of experts \eqn{K}, for the posterior over \eqn{K}
#' of [moe_select()] (a mixture of finite mixtures, Miller and Harrison
#' 2018). Pass it as `moe_prior(K = prior_K(...))`.
#'
#' * `"poisson"`: \eqn{K - 1 \sim \mathrm{Poisson}(\lambda)}, truncated to
#'   \eqn{K \le K_{max}};
#' * `"geometric"`: \eqn{P(K - 1 = j) \propto (1 - \rho)^j} with
#'   \eqn{\rho = 1 / (1 + \lambda)}, so that \eqn{\lambda} is again the
#'   (untruncated) mean of \eqn{K - 1}, truncated to \eqn{K \le K_{max}};
#' * `"uniform"`: uniform on \eqn{1, \dots, K_{max}} (`lambda` unused);
#' * `"custom"`: the probabilities `probs` of \eqn{K = 1, \dots,
#'   \code{length(probs)}} (normalised to sum to one; zeros allowed, so a
#'   point mass \code{probs = c(0, 1)} fixes \eqn{K = 2}), for sensitivity
#'   studies. `K_max` is `length(probs)`.
#'
#' The theory of posterior contraction with a prior on the number of
#' components asks for \eqn{p(k) > 0} for every \eqn{k} and an
#' exponential-type tail, which the Poisson and geometric priors have; the
#' truncation at `K_max` only limits the experts that are fitted.
#'
#' @param type `"poisson"`, `"geometric"`, `"uniform"` or `"custom"`.
#' @param lambda Mean of \eqn{K - 1} before truncation, a number > 0.
#' @param K_max Largest number of experts, a whole number >= 1 (for
#'   `"custom"`: `length(probs)`, or leave it out).
#' @param probs For `type = "custom"`: non-negative prior weights of
#'   \eqn{K = 1, 2, \dots}, at least one positive (normalised to sum to
#'   one).
#' @param ... Must be empty.
#' @return An object of class `moe_prior_K` with `type`, `lambda`, `K_max`
#'   and `probs`, the prior probabilities of \eqn{K = 1, \dots, K_{max}}.
#' @references
#' Miller, J. W. and Harrison, M. T. (2018). Mixture models with a prior on
#' the number of components. *Journal of the American Statistical
#' Association* 113, 340-356.
#' @seealso [moe_select()], [moe_prior()]
#' @examples
#' prior_K()
#' prior_K("geometric", lambda = 0.5, K_max = 8)
#' prior_K("uniform", K_max = 4)$probs
#' prior_K("custom", probs = c(0, 1, 0))
#' @export
prior_K <- function(type = c("poisson", "geometric", "uniform", "custom"), lambda = 1,
                    K_max = 6, probs = NULL, ...) {
  call <- sys.call()
  check_dots_empty(call, ...)
  type <- check_choice(type, c("poisson", "geometric", "uniform", "custom"), "type", call)
  if (type == "custom") {
    if (is.null(probs)) {
      abort("`probs` must be given with `type = \"custom\"`: the prior weights of K = 1, 2, ...",
            call = call, arg = "probs")
    }
    probs <- check_K_probs(probs, "probs", call)
    if (!missing(K_max)) {
      K_max <- check_number(K_max, "K_max", lower = 1, upper = 100, whole = TRUE, call = call)
      if (K_max != length(probs)) {
        abort(sprintf("`K_max` must be `length(probs)` (%d) with `type = \"custom\"`, not %d.",
                      length(probs), K_max), call = call, arg = "K_max")
      }
    }
    return(new_prior_K(type, NA_real_, length(probs), probs))
  }
  if (!is.null(probs)) {
    abort(sprintf("`probs` must be NULL unless `type = \"custom\"` (the %s prior sets its own probabilities).",
                  type), call = call, arg = "probs")
  }
  lambda <- check_number(lambda, "lambda", lower = 0, strict_lower = TRUE, call = call)
  K_max <- check_number(K_max, "K_max", lower = 1, upper = 100, whole = TRUE, call = call)
  j <- seq_len(K_max) - 1L
  lp <- switch(type,
               poisson = stats::dpois(j, lambda, log = TRUE),
               geometric = stats::dgeom(j, 1 / (1 + lambda), log = TRUE),
               uniform = rep(0, K_max))
  probs <- exp(lp - max(lp))
  new_prior_K(type, lambda, K_max, probs / sum(probs))
}

new_prior_K <- function(type, lambda, K_max, probs) {
  structure(list(type = type, lambda = lambda, K_max = as.integer(K_max),
                 probs = setNames(as.numeric(probs), seq_len(K_max))),
            class = "moe_prior_K")
}

# Prior weights of K = 1..length(x): finite, non-negative, at most 100 of
# them, some positive; normalised to sum to one.
check_K_probs <- function(x, arg, call = NULL) {
  ok <- is.numeric(x) && !is.matrix(x) && length(x) >= 1L && length(x) <= 100L &&
    !anyNA(x) && all(is.finite(x)) && all(x >= 0) && sum(x) > 0
  if (!ok) {
    abort(sprintf("`%s` must be 1 to 100 finite non-negative prior weights of K = 1, 2, ..., not all zero, not %s.",
                  arg, describe(x)), call = call, arg = arg)
  }
  x / sum(x)
}

# Check that `x` is a prior on the number of experts as prior_K() makes it
# (a list of class moe_prior_K whose `probs` are the probabilities of K =
# 1..K_max, summing to one), with K_max at most `K_max`; returns it.
check_prior_K <- function(x, arg, call = NULL, K_max = 100L, why = NULL) {
  if (!inherits(x, "moe_prior_K")) {
    abort(sprintf("`%s` must be made by `prior_K()`, not %s.", arg, describe(x)),
          call = call, arg = arg)
  }
  p <- x$probs
  ok <- is.list(x) && is.numeric(x$K_max) && length(x$K_max) == 1L && !is.na(x$K_max) &&
    x$K_max >= 1 && is.numeric(p) && length(p) == x$K_max && !anyNA(p) &&
    all(is.finite(p)) && all(p >= 0) && abs(sum(p) - 1) < 1e-8
  if (!ok) {
    abort(sprintf("`%s` is a malformed `prior_K()` object: its `probs` must be %s probabilities of K = 1, ..., K_max summing to one; make it with `prior_K()`.",
                  arg, if (is.numeric(x$K_max) && length(x$K_max) == 1L) format(x$K_max) else "K_max"),
          call = call, arg = arg)
  }
  if (x$K_max > K_max) {
    abort(sprintf("`%s` must have `K_max` <= %d%s, not %d.", arg, K_max,
                  if (is.null(why)) "" else paste0(" (", why, ")"), x$K_max),
          call = call, arg = arg)
  }
  x
}

#' @export
print.moe_prior_K <- function(x, digits = max(3L, getOption("digits") - 3L), ...) {
  digits <- check_digits(digits, call = sys.call())
  desc <- switch(x$type,
                 poisson = sprintf("K - 1 ~ Poisson(%s), truncated to K <= %d", format(x$lambda), x$K_max),
                 geometric = sprintf("K - 1 ~ Geometric(mean %s), truncated to K <= %d",
                                     format(x$lambda), x$K_max),
                 uniform = sprintf("K uniform on 1, ..., %d", x$K_max),
                 custom = sprintf("given probabilities of K = 1, ..., %d", x$K_max))
  cat("Prior on the number of experts: ", desc, "\n", sep = "")
  print(signif(x$probs, digits))
  invisible(x)
}
