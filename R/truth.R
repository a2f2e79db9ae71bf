# True parameter sets ("truths") of a softmax-gated Gaussian mixture of
# experts in the notation of the convergence-rate literature, and simulation
# from them.
#
# A truth with K experts and d covariates x (in [0, 1]^d by default) is
#
#   p(y | x) = sum_k softmax_k(beta0 + beta1' x) N(y; b_k + a_k' x, sigma_k^2)
#
# stored as beta0 (K), beta1 (d x K), a (d x K), b (K), sigma (K, noise s.d.)
# and sigma2 (K, variances). The last expert is the gating reference:
# beta0[K] = 0 and beta1[, K] = 0. The atoms of the mixing measure are
# (beta1_k, a_k, b_k, sigma2_k) with weights exp(beta0_k) (Nguyen, Nguyen and
# Ho, 2023).

#' A true parameter set of a mixture of experts
#'
#' `moe_truth()` builds the parameter set of a softmax-gated Gaussian mixture
#' of experts with `d >= 1` covariates \eqn{x},
#' \deqn{p(y \mid x) = \sum_{k=1}^K \mathrm{softmax}_k(\beta_{0} + \beta_{1}^\top x)\,
#'   N(y;\, b_k + a_k^\top x,\, \sigma_k^2),}{
#'   p(y | x) = sum_k softmax_k(beta0 + beta1' x) N(y; b_k + a_k' x, sigma_k^2),}
#' in the notation of the convergence-rate literature (Nguyen, Nguyen and Ho,
#' 2023): gating intercepts `beta0` and slopes `beta1`, expert intercepts `b`
#' and slopes `a`, noise standard deviations `sigma`. Truths are what
#' [rmoe()] simulates from and what [voronoi_loss()] and [density_loss()]
#' compare fits with.
#'
#' The last expert is the gating reference: `beta0[K] = 0` and
#' `beta1[, K] = 0`. Gating parameters may be given for the first `K - 1`
#' experts only (a zero reference is appended); when a `K`-th gating vector is
#' given and is not zero, every gating vector has it subtracted
#' (re-referencing, which leaves the model unchanged but changes the weights
#' `exp(beta0)` of the Voronoi losses).
#'
#' `sigma` is the noise **standard deviation**; the truth also stores the
#' variances `sigma2 = sigma^2`, which are what the Voronoi losses compare
#' (as in the published code of the rate experiments).
#'
#' `moe_truth(fit)` extracts the parameter set of a fit from [moe_em()]
#' (its estimate) or `moe_mcmc()` (posterior draw number `draw`, counting
#' iterations within chains: draw `i` is iteration `(i - 1) %% iter + 1` of
#' chain `(i - 1) %/% iter + 1`). The fit must use an intercept and the same
#' covariates for the experts and the gating, as simulated data from
#' [rmoe()] with `y ~ x` do.
#'
#' @param beta0 Gating intercepts: a numeric vector of length `K` or `K - 1`.
#'   Or a fit from [moe_em()] or `moe_mcmc()` (the other arguments must then
#'   be missing).
#' @param beta1 Gating slopes: for one covariate a vector of length `K` or
#'   `K - 1`; for `d` covariates a `d x K` or `d x (K - 1)` matrix.
#' @param a Expert slopes: a vector of length `K` (one covariate) or a
#'   `d x K` matrix.
#' @param b Expert intercepts, a vector of length `K`; it sets `K`.
#' @param sigma Noise standard deviations (not variances), a vector of
#'   length `K` of numbers between 1e-50 and 1e50 (variances between 1e-100
#'   and 1e100, the bounds of the sampler). The other parameters must be at
#'   most 1e100 in absolute value, like the settings of [moe_prior()];
#'   beyond these bounds variances, simulated responses and losses overflow.
#' @param draw For an MCMC fit: the index of the posterior draw.
#' @param expert The experts: [expert_linear()] (the default: means
#'   \eqn{b_k + a_k^\top x}) or [expert_ffn()] (two-layer networks, whose
#'   parameters are given in `eta`; `a` and `b` must then be missing).
#' @param eta For [expert_ffn()] experts: the network parameters, a matrix
#'   with one column per expert (it sets `K`) and the rows of
#'   [expert_ffn()] (`A`, `d`, `c`, `e`; \eqn{H d + 2H + 1} of them).
#' @param sd The noise standard deviation of the regression form
#'   \eqn{y = \sum_k g_k(x) h_k(x) + \varepsilon} (one for all experts),
#'   used by `moe_contraction(method = "ls")`. `NULL` (default): none
#'   stored; the regression form then uses `sigma` when all experts share
#'   it.
#' @param family The distribution of the response given its expert, as in
#'   [moe_em()]: `gaussian()` (default), `binomial()` (logit link: success
#'   probabilities \eqn{\mathrm{plogis}(b_k + a_k^\top x)}), `poisson()` (log
#'   link: means \eqn{\exp(b_k + a_k^\top x)}) or `student_t()` (location
#'   \eqn{b_k + a_k^\top x}, scale `sigma`, degrees of freedom `df`).
#'   Binomial and Poisson truths take no `sigma`.
#' @param trials For binomial truths: the number of trials of each response
#'   (a whole number >= 1, default 1: 0/1 responses); the density losses use
#'   it for the conditional pmfs, [rmoe()] unless given other trials.
#' @param df For `student_t()` truths: the degrees of freedom, one per
#'   expert or one for all (default: the `df` fixed in `student_t(df = )`).
#' @return An object of class `moe_truth`: a list with `K`, `d`, `beta0`,
#'   `beta1` (d x K), `a` (d x K), `b`, `sigma`, `sigma2` and `xnames` (the
#'   covariate names used by [rmoe()]: `"x"` when `d = 1`, `"x1"`, `"x2"`, ...
#'   otherwise); with [expert_ffn()] experts `a` and `b` are `NULL` and
#'   `expert` and `eta` hold the experts; `sd` when given. Truths of other
#'   families hold the family's expert object in `expert`, no `sigma` and
#'   `sigma2` for binomial and Poisson experts (binomial ones hold `trials`),
#'   and `sigma` (scales), `sigma2` and `df` for t experts. `moe_truth(fit)`
#'   of a binomial fit takes the fit's trials when they are all equal, 1
#'   otherwise.
#' @seealso [moe_truth_example()] for the reference truth of the rate
#'   experiments, [rmoe()] to simulate from a truth.
#' @references Nguyen, H., Nguyen, T. and Ho, N. (2023). Demystifying softmax
#'   gating function in Gaussian mixture of experts. *NeurIPS 2023*.
#'   arXiv:2305.03288.
#' @examples
#' tru <- moe_truth(beta0 = -8, beta1 = 25, a = c(-20, 20), b = c(15, -5),
#'                  sigma = c(0.3, 0.4))
#' tru
#' # two covariates, three experts
#' moe_truth(beta0 = c(0.3, 0.5), beta1 = cbind(c(1, -1), c(1, 0.5)),
#'           a = cbind(c(1.5, 0.9), c(0.6, 0.5), c(1.1, -0.3)),
#'           b = c(0.5, 0.5, 0.5), sigma = c(0.9, 0.5, 1.2))
#' # from a fit
#' sim <- rmoe(500, tru)
#' fit <- moe_em(y ~ x, data = sim, K = 2, seed = 1)
#' moe_truth(fit)
#' # two-layer network experts (one hidden unit), for the regression form
#' moe_truth(beta0 = 0.5, beta1 = 3, eta = cbind(c(2, 0.5, 1.5, -0.5), c(-3, 1, 1, 0.5)),
#'           sigma = c(0.1, 0.1), expert = expert_ffn(1))
#' @export
moe_truth <- function(beta0, beta1, a, b, sigma, draw = NULL, expert = expert_linear(),
                      eta = NULL, sd = NULL, family = gaussian(), trials = 1, df = NULL) {
  call <- sys.call()
  if (!missing(beta0)) validate_if_fit(beta0, "beta0", call)
  if (!missing(beta0) && inherits(beta0, "moe_fit")) {
    if (!missing(beta1) || !missing(a) || !missing(b) || !missing(sigma)) {
      abort("`beta1`, `a`, `b` and `sigma` must be missing when `beta0` is a fit.",
            call = call, arg = "beta0")
    }
    return(truth_from_fit(beta0, draw, call))
  }
  if (!is.null(draw)) {
    abort("`draw` can only be used when `beta0` is a fit from `moe_mcmc()`.",
          call = call, arg = "draw")
  }
  check_ls_expert(expert, call)
  ffn <- inherits(expert, "moe_expert_ffn")
  if (is.function(family)) {
    family <- tryCatch(family(), error = function(e) {
      abort(sprintf("`family` must be a family object such as `poisson()` or a family function; calling it failed: %s",
                    conditionMessage(e)), kind = "family", call = call, arg = "family")
    })
  }
  fam <- resolve_family(family, if (missing(expert)) NULL else expert, call)
  if (ffn && !inherits(fam, "moe_expert_ffn")) {
    abort("`expert = expert_ffn()` takes `family = gaussian()` only.", kind = "family",
          call = call, arg = "family")
  }
  if (!is.null(fam) && !inherits(fam, "moe_expert_linear") && !ffn) {
    return(new_moe_truth_family(beta0, beta1, a, b, if (!missing(sigma)) sigma, fam,
                                trials, df, sd, call))
  }
  if (!is_one(trials) || !is.null(df)) {
    abort("`trials` and `df` are for `family = binomial()` and `student_t()` truths.",
          kind = "family", call = call, arg = if (is.null(df)) "trials" else "df")
  }
  if (!is.null(sd)) sd <- check_number(sd, "sd", lower = 0, strict_lower = TRUE, call = call)
  if (!ffn && !is.null(eta)) {
    abort("`eta` can only be used with `expert = expert_ffn()`; linear experts take `a` and `b`.",
          call = call, arg = "eta")
  }
  if (ffn && (!missing(a) || !missing(b))) {
    abort("`a` and `b` must be missing with `expert_ffn()` experts; give the network parameters in `eta`.",
          call = call, arg = if (missing(a)) "b" else "a")
  }
  for (arg in c("beta0", "beta1", if (ffn) "eta" else c("a", "b"), "sigma")) {
    if (arg == "eta" && is.null(eta) || arg != "eta" && eval(call("missing", as.name(arg)))) {
      abort(sprintf("`%s` must be supplied.", arg), call = call, arg = arg)
    }
  }
  if (!ffn) {
    tr <- new_moe_truth(beta0, beta1, a, b, sigma, call)
    tr$sd <- sd
    return(tr)
  }
  new_moe_truth_ffn(beta0, beta1, eta, sigma, expert, sd, call)
}

# A truth with FFN experts: the gating as for linear experts, the network
# parameters in `eta` (P_e x K, canonical), `a` and `b` NULL.
new_moe_truth_ffn <- function(beta0, beta1, eta, sigma, expert, sd = NULL, call = NULL) {
  eta <- check_finite_numeric(eta, "eta", call)
  check_truth_range(eta, "eta", call = call)
  eta <- as.matrix(eta)
  K <- ncol(eta)
  d <- if (is.matrix(beta1)) nrow(beta1) else 1L
  tr <- new_moe_truth(beta0, beta1, matrix(0, d, K), numeric(K), sigma, call)
  H <- expert$hidden
  if (nrow(eta) != ffn_npar(H, tr$d)) {
    abort(sprintf("`eta` must have %d rows (the parameters of a network with %d hidden unit%s and %d input%s), not %d.",
                  ffn_npar(H, tr$d), H, if (H > 1L) "s" else "", tr$d, if (tr$d > 1L) "s" else "",
                  nrow(eta)), call = call, arg = "eta")
  }
  eta <- ffn_canonical(unname(eta), expert, tr$d)
  dimnames(eta) <- list(expert_par_names(expert, tr$xnames), paste0("expert", seq_len(K)))
  tr$a <- NULL
  tr$b <- NULL
  tr$expert <- expert
  tr$eta <- eta
  tr$sd <- sd
  tr
}

# A truth with experts of another family than the Gaussian (`fam`, an
# expert object of resolve_family()): linear predictors b_k + a_k'x, the
# family's noise fields (truth_noise(), R/truth-family.R: none for GLM
# experts, `trials` for binomial ones, scale and df for t experts) and
# `expert`.
new_moe_truth_family <- function(beta0, beta1, a, b, sigma, fam, trials, df, sd, call = NULL) {
  if (!is.null(sd)) {
    abort("`sd` is for Gaussian truths of the regression form only.", call = call, arg = "sd")
  }
  for (arg in c("beta0", "beta1", "a", "b")) {
    if (eval(call("missing", as.name(arg)))) {
      abort(sprintf("`%s` must be supplied.", arg), call = call, arg = arg)
    }
  }
  K <- length(b)
  noise <- truth_noise(fam, sigma, df, trials, K, call)
  tr <- new_moe_truth(beta0, beta1, a, b, if (is.null(noise$sigma)) rep(1, K) else noise$sigma,
                      call)
  tr$sigma <- tr$sigma2 <- NULL
  ek <- names(tr$b)
  for (nm in names(noise)) {
    tr[[nm]] <- if (nm == "trials") noise[[nm]] else setNames(noise[[nm]], ek)
  }
  tr$expert <- fam
  tr
}

# Truth parameters are bounded as the prior settings are (R/prior.R), so
# that the variances, means and densities computed from them stay finite:
# noise standard deviations in [1e-50, 1e50] (variances in [1e-100, 1e100],
# the sampler's bounds), other parameters at most 1e100 in absolute value.
check_truth_range <- function(x, arg, positive = FALSE, call = NULL) {
  # non-finite values are reported by check_finite_numeric()
  if (!is.numeric(x) || !length(x) || any(!is.finite(x))) return(invisible(x))
  bad <- if (positive) x > 1e50 | x < 1e-50 else abs(x) > 1e100
  if (any(bad)) {
    abort(sprintf("`%s` must lie between %s (beyond, the variances, means and densities derived from the truth overflow), not %s.",
                  arg, if (positive) "1e-50 and 1e50" else "-1e100 and 1e100",
                  format(x[which(bad)[1L]], digits = 7)),
          kind = "input", call = call, arg = arg)
  }
  invisible(x)
}

truth_is_ffn <- function(truth) inherits(truth$expert, "moe_expert_ffn")

# Whether the truth's experts are of a family other than the Gaussian
# (binomial, Poisson, Student-t): linear predictors, R/truth-family.R.
truth_is_family <- function(truth) {
  !is.null(truth$expert) && !inherits(truth$expert, c("moe_expert_ffn", "moe_expert_linear"))
}

check_finite_numeric <- function(x, arg, call, allow_empty = FALSE) {
  if (!is.numeric(x) || (!allow_empty && !length(x)) || any(!is.finite(x))) {
    abort(sprintf("`%s` must be a numeric vector or matrix of finite values, not %s.",
                  arg, describe(x)), call = call, arg = arg)
  }
  x
}

# Coerce a slope argument (vector for d = 1, or d x K matrix) to a d x K
# matrix. `K_ok` lists the acceptable numbers of columns.
as_slope_matrix <- function(x, arg, K_ok, call) {
  check_finite_numeric(x, arg, call, allow_empty = 0L %in% K_ok)
  if (is.matrix(x)) {
    if (!ncol(x) %in% K_ok) {
      abort(sprintf("`%s` must have %s column%s (one per expert), not %d.", arg,
                    paste(unique(K_ok), collapse = " or "),
                    if (max(K_ok) == 1L) "" else "s", ncol(x)),
            call = call, arg = arg)
    }
    return(unname(x))
  }
  if (!length(x) %in% K_ok) {
    abort(sprintf("`%s` must have length %s (one value per expert, one covariate), not %d.",
                  arg, paste(unique(K_ok), collapse = " or "), length(x)),
          call = call, arg = arg)
  }
  if (!length(x)) return(matrix(0, 0L, 0L))
  matrix(as.numeric(x), 1L, length(x))
}

new_moe_truth <- function(beta0, beta1, a, b, sigma, call = NULL) {
  b <- check_finite_numeric(b, "b", call)
  if (is.matrix(b) && min(dim(b)) > 1L) {
    abort(sprintf("`b` must be a vector (one intercept per expert), not a %d x %d matrix.",
                  nrow(b), ncol(b)), call = call, arg = "b")
  }
  b <- as.numeric(b)
  K <- length(b)
  sigma <- check_finite_numeric(sigma, "sigma", call)
  if (length(sigma) != K || any(sigma <= 0)) {
    abort(sprintf("`sigma` must be %d positive noise standard deviation%s (one per expert), not %s.",
                  K, if (K > 1L) "s" else "", describe(as.numeric(sigma))),
          call = call, arg = "sigma")
  }
  check_truth_range(sigma, "sigma", positive = TRUE, call = call)
  check_truth_range(b, "b", call = call)
  a <- as_slope_matrix(a, "a", K, call)
  check_truth_range(a, "a", call = call)
  d <- nrow(a)
  beta0 <- check_finite_numeric(beta0, "beta0", call, allow_empty = K == 1L)
  if (is.matrix(beta0) && min(dim(beta0)) > 1L || !length(beta0) %in% c(K - 1L, K)) {
    abort(sprintf("`beta0` must have length %s (one gating intercept per expert), not %s.",
                  paste(unique(c(K - 1L, K)), collapse = " or "), describe(beta0)),
          call = call, arg = "beta0")
  }
  check_truth_range(beta0, "beta0", call = call)
  beta1 <- as_slope_matrix(beta1, "beta1", c(K - 1L, K), call)
  check_truth_range(beta1, "beta1", call = call)
  if (!length(beta1)) beta1 <- matrix(0, d, 0L)
  if (nrow(beta1) != d) {
    abort(sprintf("`beta1` must have %d row%s (one per covariate, as `a`), not %d.",
                  d, if (d > 1L) "s" else "", nrow(beta1)), call = call, arg = "beta1")
  }
  beta0 <- as.numeric(beta0)
  if (length(beta0) == K - 1L) beta0 <- c(beta0, 0)
  if (ncol(beta1) == K - 1L) beta1 <- cbind(beta1, 0)
  if (ncol(beta1) != K) {
    abort("`beta0` and `beta1` must give gating parameters for the same experts.",
          call = call, arg = "beta1")
  }
  # re-reference: the last expert's gating vector becomes zero
  beta0 <- beta0 - beta0[K]
  beta1 <- beta1 - beta1[, K]
  xnames <- if (d == 1L) "x" else paste0("x", seq_len(d))
  ek <- paste0("expert", seq_len(K))
  dn <- list(xnames, ek)
  structure(list(K = K, d = d,
                 beta0 = setNames(beta0, ek),
                 beta1 = matrix(beta1, d, K, dimnames = dn),
                 a = matrix(a, d, K, dimnames = dn),
                 b = setNames(b, ek),
                 sigma = setNames(as.numeric(sigma), ek),
                 sigma2 = setNames(as.numeric(sigma)^2, ek),
                 xnames = xnames),
            class = "moe_truth")
}

#' @export
print.moe_truth <- function(x, digits = max(3L, getOption("digits") - 3L), ...) {
  digits <- check_digits(digits, call = sys.call())
  cat(sprintf("Mixture-of-experts truth: K = %d expert%s, d = %d covariate%s%s\n",
              x$K, if (x$K > 1L) "s" else "", x$d, if (x$d > 1L) "s" else "",
              if (x$K > 1L) sprintf(" (expert %d is the gating reference)", x$K) else ""))
  if (truth_is_family(x)) {
    cat(sprintf("Experts: %s%s\n", expert_label(x$expert),
                if (!is.null(x$trials)) sprintf(", %g trial%s", x$trials,
                                                if (x$trials > 1) "s" else "") else ""))
    tab <- rbind(beta0 = x$beta0, x$beta1, b = x$b, x$a)
    rn <- c("gating intercept beta0", paste0("gating slope beta1:", x$xnames),
            "expert intercept b", paste0("expert slope a:", x$xnames))
    if (!is.null(x$sigma)) {
      tab <- rbind(tab, x$sigma, x$df)
      rn <- c(rn, "scale sigma", "degrees of freedom df")
    }
    rownames(tab) <- rn
  } else if (truth_is_ffn(x)) {
    cat(sprintf("Experts: %s\n", expert_label(x$expert)))
    tab <- rbind(x$beta0, x$beta1, x$eta, x$sigma, x$sigma2)
    rownames(tab) <- c("gating intercept beta0", paste0("gating slope beta1:", x$xnames),
                       paste0("expert ", rownames(x$eta)), "noise sd sigma", "variance sigma^2")
  } else {
    tab <- rbind(beta0 = x$beta0, x$beta1, b = x$b, x$a, sigma = x$sigma, sigma2 = x$sigma2)
    rownames(tab) <- c("gating intercept beta0", paste0("gating slope beta1:", x$xnames),
                       "expert intercept b", paste0("expert slope a:", x$xnames),
                       "noise sd sigma", "variance sigma^2")
  }
  print(tab, digits = digits)
  if (!is.null(x$sd)) {
    cat(sprintf("Noise sd of the regression form: %s\n", format(signif(x$sd, digits))))
  }
  invisible(x)
}

#' Reference truths of the convergence-rate experiments
#'
#' `moe_truth_example("p4")` is the two-expert truth with one covariate used
#' by the simulation studies of Nguyen, Nguyen and Ho (2023), and reused by
#' later work on softmax-gated mixtures of experts: gating
#' \eqn{\beta_0 = (-8, 0)}, \eqn{\beta_1 = (25, 0)}, expert intercepts
#' \eqn{b = (15, -5)}, slopes \eqn{a = (-20, 20)}, noise standard deviations
#' \eqn{(0.3, 0.4)} (variances 0.09 and 0.16), covariate on \[0, 1\].
#' It is the truth of the posterior-contraction vignette,
#' `vignette("contraction", package = "bayesmoe")`.
#'
#' @param name Which truth; only `"p4"` for now.
#' @return A [moe_truth()] object.
#' @references Nguyen, H., Nguyen, T. and Ho, N. (2023). Demystifying softmax
#'   gating function in Gaussian mixture of experts. *NeurIPS 2023*.
#'   arXiv:2305.03288.
#' @examples
#' moe_truth_example("p4")
#' @export
moe_truth_example <- function(name = "p4") {
  choices <- "p4"
  if (!is.character(name) || length(name) != 1L || !name %in% choices) {
    abort(sprintf("`name` must be one of %s, not %s.",
                  paste0("\"", choices, "\"", collapse = ", "), describe(name)),
          call = sys.call(), arg = "name")
  }
  switch(name,
    p4 = new_moe_truth(beta0 = c(-8, 0), beta1 = c(25, 0), a = c(-20, 20),
                       b = c(15, -5), sigma = c(0.3, 0.4)))
}

# Which columns of a fit's designs hold the intercept and the covariates;
# the experts and the gating must use an intercept and the same covariates.
fit_layout <- function(fit, call = NULL) {
  if (!is.null(fit$offset)) {
    abort("`fit` must not have an `offset()` in its formula: truths and losses compare the expert coefficients of models without offsets.",
          kind = "design", call = call, arg = "fit")
  }
  xn <- colnames(fit$X)
  zn <- colnames(fit$Z)
  if (!"(Intercept)" %in% xn || !identical(sort(xn), sort(zn))) {
    abort(sprintf("`fit` must use an intercept and the same covariates for the experts and the gating; its experts use %s and its gating %s.",
                  paste0("`", xn, "`", collapse = ", "), paste0("`", zn, "`", collapse = ", ")),
          kind = "design", call = call, arg = "fit")
  }
  cov <- setdiff(xn, "(Intercept)")
  if (!length(cov)) {
    abort("`fit` must have at least one covariate besides the intercept.",
          kind = "design", call = call, arg = "fit")
  }
  list(p = length(xn), q = length(zn), d = length(cov), covariates = cov,
       x_int = match("(Intercept)", xn), x_cov = match(cov, xn),
       z_int = match("(Intercept)", zn), z_cov = match(cov, zn))
}

# A truth from one parameter list (alpha p x K, sigma2, W q x K) of a fit.
truth_from_par <- function(par, lay, expert = NULL, trials = NULL) {
  K <- length(par$sigma2)
  tr <- new_moe_truth(beta0 = par$W[lay$z_int, ],
                      beta1 = matrix(par$W[lay$z_cov, ], lay$d, K),
                      a = matrix(par$alpha[lay$x_cov, ], lay$d, K),
                      b = par$alpha[lay$x_int, ], sigma = sqrt(par$sigma2))
  if (!is.null(expert) && !inherits(expert, "moe_expert_linear")) {
    tr$sigma <- tr$sigma2 <- NULL
    noise <- truth_noise_from_par(expert, par, trials)
    for (nm in names(noise)) {
      tr[[nm]] <- if (nm == "trials") noise[[nm]] else setNames(noise[[nm]], names(tr$b))
    }
    tr$expert <- expert
  }
  tr$xnames <- lay$covariates
  rownames(tr$beta1) <- rownames(tr$a) <- lay$covariates
  tr
}

truth_from_fit <- function(fit, draw, call) {
  lay <- fit_layout(fit, call)
  if (inherits(fit, "moe_ls") || inherits(fit_spec(fit)$expert, "moe_expert_ffn")) {
    abort("`fit` must have linear experts and be a mixture-density fit (`moe_em()` or `moe_mcmc()`); for least-squares fits and `expert_ffn()` experts compare parameters with `voronoi_loss_strong()`.",
          kind = "expert", call = call, arg = "fit")
  }
  g <- loss_gate(fit, call)
  if (inherits(fit, "moe_mcmc")) {
    S <- prod(dim(fit$draws)[1:2])
    if (is.null(draw)) {
      abort("`draw` must be given for an MCMC fit: the index of one posterior draw.",
            call = call, arg = "draw")
    }
    draw <- check_number(draw, "draw", lower = 1, upper = S, whole = TRUE, call = call)
    th <- matrix(fit$draws, S)[draw, ]
    par <- par_unflatten(th, lay$p, lay$q, fit$K, fit_spec(fit))
    return(truth_from_par(softmax_par(par, g), lay, fit_spec(fit)$expert, fit$trials))
  }
  if (!is.null(draw)) {
    abort("`draw` can only be used when `beta0` is a fit from `moe_mcmc()`.",
          call = call, arg = "draw")
  }
  truth_from_par(softmax_par(fit$coefficients, g), lay, fit_spec(fit)$expert, fit$trials)
}

# The truth as a parameter list in the package layout (alpha (d+1) x K with
# the intercept first, sigma2, W (d+1) x K), for designs cbind(1, x).
truth_par <- function(truth) {
  nm <- c("(Intercept)", truth$xnames)
  ek <- paste0("expert", seq_len(truth$K))
  list(alpha = if (truth_is_ffn(truth)) truth$eta else
         matrix(rbind(truth$b, truth$a), truth$d + 1L, truth$K, dimnames = list(nm, ek)),
       sigma2 = if (is.null(truth$sigma2)) rep(1, truth$K) else truth$sigma2,
       W = matrix(rbind(truth$beta0, truth$beta1), truth$d + 1L, truth$K,
                  dimnames = list(nm, ek)))
}

#' Simulate data from a mixture-of-experts truth
#'
#' Draws covariates (unless given), then for each observation an expert from
#' the softmax gating probabilities and a response from that expert
#' (Gaussian, or of the truth's family: binomial, Poisson, Student-t).
#' Reproducible with [set.seed()].
#'
#' @param n Number of observations (a whole number >= 1). May be omitted
#'   when `x` is given.
#' @param truth A truth from [moe_truth()].
#' @param x Covariates: `NULL` to draw them, or a numeric vector (one
#'   covariate) or a matrix with `truth$d` columns.
#' @param x_design How covariates are drawn when `x` is `NULL`: `"uniform"`
#'   draws them independently and uniformly on \[0, 1\]; `"grid"` (one
#'   covariate only) uses the equally spaced grid `seq(0, 1, length.out = n)`
#'   of the published simulation code of Nguyen, Nguyen and Ho (2023).
#' @param trials For truths of binomial experts: the trials of each
#'   observation (one number or one per observation); `NULL` (default) uses
#'   the truth's `trials`.
#' @return A data frame with the covariates (named `truth$xnames`: `x` for one
#'   covariate, `x1`, `x2`, ... otherwise) and the response `y` (for binomial
#'   truths the number of successes, with a column `trials` when some
#'   observation has more than one trial, fitted by
#'   `moe_em(cbind(y, trials - y) ~ x, family = binomial())`; counts for
#'   Poisson truths); its attribute
#'   `"expert"` holds the expert that generated each observation.
#' @examples
#' tru <- moe_truth_example("p4")
#' set.seed(1)
#' sim <- rmoe(300, tru)
#' head(sim)
#' table(attr(sim, "expert"))
#' plot(y ~ x, data = sim, col = attr(sim, "expert"))
#' @export
rmoe <- function(n, truth, x = NULL, x_design = c("uniform", "grid"), trials = NULL) {
  call <- sys.call()
  if (!inherits(truth, "moe_truth")) {
    abort(sprintf("`truth` must be made by `moe_truth()`, not %s.", describe(truth)),
          call = call, arg = "truth")
  }
  x_design <- check_choice(x_design, c("uniform", "grid"), "x_design", call)
  d <- truth$d
  if (!is.null(x)) {
    x <- check_truth_x(x, d, call)
    if (!missing(n)) {
      n <- check_number(n, "n", lower = 1, whole = TRUE, call = call)
      if (n != nrow(x)) {
        abort(sprintf("`n` must equal the number of rows of `x` (%d), not %d.", nrow(x), n),
              call = call, arg = "n")
      }
    }
    n <- nrow(x)
  } else {
    if (missing(n)) abort("`n` must be supplied when `x` is NULL.", call = call, arg = "n")
    n <- check_number(n, "n", lower = 1, whole = TRUE, call = call)
    if (x_design == "grid") {
      if (d != 1L) {
        abort(sprintf("`x_design = \"grid\"` needs one covariate; `truth` has %d.", d),
              call = call, arg = "x_design")
      }
      x <- matrix(seq(0, 1, length.out = n), ncol = 1L)
    } else {
      x <- matrix(runif(n * d), n, d)
    }
  }
  storage.mode(x) <- "double"
  fam <- truth_is_family(truth)
  if (!is.null(trials)) {
    if (!fam || is.null(truth$trials)) {
      abort("`trials` is for truths of binomial experts only.", kind = "family", call = call,
            arg = "trials")
    }
    if (!is.numeric(trials) || !length(trials) %in% c(1L, n) || any(!is.finite(trials)) ||
        any(trials < 1) || any(abs(trials - round(trials)) > 1e-8) || any(trials > 1e7)) {
      abort(sprintf("`trials` must be whole numbers between 1 and 1e7, one or one per observation (%d), not %s.",
                    n, describe(trials)), call = call, arg = "trials")
    }
    trials <- rep_len(round(as.numeric(trials)), n)
  }
  par <- truth_par(truth)
  D <- cbind(1, x)
  cm <- if (fam) {
    list(log_gate = log_softmax_rows(D %*% par$W),
         mean = truth_mean(truth$expert, D %*% par$alpha))
  } else if (truth_is_ffn(truth)) {
    colnames(D) <- c("(Intercept)", truth$xnames)
    list(log_gate = log_softmax_rows(D %*% par$W),
         mean = expert_mean(truth$expert, D, par$alpha), sd = truth$sigma)
  } else moe_components(par, D, D)
  g <- exp(cm$log_gate)
  u <- runif(n)
  cg <- g
  if (truth$K > 1L) for (k in 2:truth$K) cg[, k] <- cg[, k - 1L] + g[, k]
  k <- pmin(1L + rowSums(u > cg[, -truth$K, drop = FALSE]), truth$K)
  mu <- cm$mean[cbind(seq_len(n), k)]
  y <- if (fam) truth_draw(truth$expert, mu, k, truth, trials) else mu + cm$sd[k] * rnorm(n)
  colnames(x) <- truth$xnames
  out <- data.frame(x, y = y)
  if (!is.null(truth$trials)) {
    m <- if (is.null(trials)) rep(truth$trials, n) else trials
    if (any(m != 1)) out$trials <- m
  }
  attr(out, "expert") <- as.integer(k)
  out
}

# The Voronoi and density losses compare gates that are softmaxes of
# logits linear in the covariates: the softmax, the temperature gate (logits
# W / tau), top-k with k = K and the hierarchical gate with one group. Other
# gates are refused (their losses would be computed for the wrong model).
loss_gate <- function(fit, call = NULL) {
  g <- fit$gate
  ok <- is.null(g) || inherits(g, "moe_gate_softmax") || inherits(g, "moe_gate_temperature") ||
    (inherits(g, "moe_gate_topk") && g$k >= fit$K) ||
    (inherits(g, "moe_gate_hierarchical") && g$G == 1L)
  if (!ok) {
    abort(sprintf("`fit` must have softmax gating (logits linear in the covariates) for the Voronoi and density losses and `moe_truth()`, not %s; use `topk_loss()` for top-k gates, and densities from `predict(type = \"density\")` otherwise.",
                  gate_label(g)), kind = "gate", call = call, arg = "fit")
  }
  g
}

# A parameter list (alpha, sigma2, W, maybe tau) of a fit with gate `g` as
# the equivalent softmax parameters: W / tau for a temperature gate.
softmax_par <- function(par, g) {
  if (inherits(g, "moe_gate_temperature")) {
    tau <- if (isTRUE(g$learn)) par$tau else g$tau
    par$W <- par$W / tau
  }
  par
}

truth_expert <- function(truth) if (is.null(truth$expert)) expert_linear() else truth$expert

# `x`, covariate values for a truth with `d` covariates: a finite numeric
# vector (one covariate) or a matrix with `d` columns, returned as a matrix;
# `empty = FALSE` refuses an empty one.
check_truth_x <- function(x, d, call = NULL, empty = TRUE) {
  if (!is.numeric(x) || (!empty && !length(x)) || any(!is.finite(x))) {
    abort(sprintf("`x` must be a finite numeric vector or matrix, not %s.", describe(x)),
          call = call, arg = "x")
  }
  x <- if (is.matrix(x)) x else matrix(x, ncol = 1L)
  if (ncol(x) != d) {
    abort(sprintf("`x` must have %d column%s (the covariates of `truth`), not %d.",
                  d, if (d > 1L) "s" else "", ncol(x)), call = call, arg = "x")
  }
  x
}
