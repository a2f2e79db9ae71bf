# Binomial experts (logistic regression experts), reached through
# `family = binomial()`; the C side is src/family_binomial.c. Shared GLM
# machinery: R/family-glm.R.

#' Binomial and Poisson experts
#'
#' `family = binomial()` and `family = poisson()` in [moe_em()] and
#' [moe_mcmc()] give generalised linear experts with the canonical link:
#' expert \eqn{k} models \eqn{\mathrm{logit}\, P(y = 1) = x^\top a_k + o}
#' (binomial) or \eqn{\log E(y) = x^\top a_k + o} (Poisson), \eqn{o} the
#' `offset()` of the formula (0 without one), gated by the softmax as for
#' Gaussian experts. The experts have no variance: `coef()`, `vcov()`, the
#' draws and printed output hold the expert coefficients and the gating only.
#'
#' **Responses** as [glm()] takes them. Binomial: a numeric vector of 0s and
#' 1s, a logical vector, a factor with two levels (the first level is a
#' failure, the second a success), or a two-column matrix
#' `cbind(successes, failures)` of whole numbers (trials = successes +
#' failures, at least one per row); a fit stores the proportion of successes
#' as `$y` and the trials as `$trials`. Poisson: non-negative whole numbers.
#' Offsets (`offset(log(exposure))` in the formula) enter the linear
#' predictor of every expert, as in [glm()]. `weights` are case weights, as
#' for Gaussian experts. Other responses are refused with errors of class
#' `bayesmoe_error_data` naming `formula`.
#'
#' **EM.** The M-step of each expert is a step of weighted IRLS (Newton) on
#' its GLM with weights (case weight times responsibility), from the
#' previous estimate, halved until the weighted log-likelihood does not
#' decrease: a generalised EM whose log-likelihood is monotone (a full IRLS
#' fit per M-step costs more and gains little, as the M-steps start from
#' the last estimate). With `K = 1` the fit is [glm()]'s. As for [glm()],
#' an expert whose observations are separated (all its successes on one
#' side of a hyperplane) has no finite maximum-likelihood estimate: its
#' coefficients grow until the log-likelihood stops changing and `vcov()`
#' warns that the information is not invertible; the Bayesian fit
#' [moe_mcmc()] keeps them finite through the prior.
#'
#' **MCMC.** The prior of each expert's coefficients on the internal scale
#' (covariates centred and scaled, the response untouched) is
#' \eqn{a_k \sim N(m_a, V_a)}, `m_a` and `V_a` of [moe_prior()] (the
#' variance factor \eqn{\sigma_k^2} of the Gaussian prior is 1; `c0` and
#' `C0` are unused). Binomial experts are drawn exactly by Polya-Gamma
#' augmentation (Polson, Scott and Windle, 2013), the sampler the gating
#' uses: \eqn{\omega_i \sim PG(m_i, \eta_i)} for the observations allocated
#' to the expert, then a conjugate Gaussian draw of \eqn{a_k}. Poisson
#' experts are updated by an independence Metropolis-Hastings step whose
#' proposal is a multivariate t (4 degrees of freedom) centred at the mode
#' of the expert's conditional posterior, with the inverse curvature there
#' as scale, recomputed every sweep from the allocations (not from the
#' current value): it follows the conditional wherever it moves and its
#' tails dominate the target's, so it cannot freeze; acceptance rates are in
#' the fit's `accept`. Their calibration is checked by simulation-based
#' calibration (`inst/scripts/sbc-glm.R`).
#'
#' @references Polson, N. G., Scott, J. G. and Windle, J. (2013). Bayesian
#'   inference for logistic models using Polya-Gamma latent variables.
#'   *Journal of the American Statistical Association* 108, 1339-1349.
#' @examples
#' set.seed(1)
#' x <- runif(400)
#' k <- rbinom(400, 1, plogis(6 * (x - 0.5)))
#' y <- rbinom(400, 1, plogis(ifelse(k == 1, 3 - 6 * x, -2 + 4 * x)))
#' fit <- moe_em(y ~ x, data = data.frame(x, y), K = 2, family = binomial(), seed = 1)
#' fit
#' @name moe_glm_experts
NULL

# The registry entry of binomial() (registered in R/variants-check.R).
make_expert_binomial <- function(family, expert, call) new_expert_glm("binomial", "logit")

expert_label.moe_expert_binomial <- function(expert) "binomial (logit)"

# The response of a binomial model frame as glm() takes it: list(y = the
# proportion of successes, trials).
glm_response.moe_expert_binomial <- function(expert, y, call) {
  bad <- function(msg) {
    abort(sprintf("The response of `formula` must be %s for `family = binomial()`; %s.",
                  "0/1 numbers, logical, a two-level factor or `cbind(successes, failures)`",
                  msg), kind = "data", call = call, arg = "formula")
  }
  if (is.matrix(y) && ncol(y) == 1L) y <- drop(y)
  if (is.logical(y)) y <- as.numeric(y)
  if (is.factor(y)) {
    if (nlevels(y) != 2L) {
      bad(sprintf("it is a factor with %d levels (the first level is a failure, the second a success)",
                  nlevels(y)))
    }
    return(list(y = as.numeric(as.integer(y) == 2L), trials = rep(1, length(y))))
  }
  if (is.matrix(y)) {
    if (ncol(y) != 2L || !is.numeric(y)) {
      bad(sprintf("it is a %s matrix with %d columns", typeof(y), ncol(y)))
    }
    if (any(!is.finite(y)) || any(y < 0) || any(abs(y - round(y)) > 1e-8)) {
      bad("the counts of `cbind(successes, failures)` must be non-negative whole numbers")
    }
    tr <- round(y[, 1L]) + round(y[, 2L])
    if (any(tr < 1)) bad("every row of `cbind(successes, failures)` needs at least one trial")
    if (any(tr > .Machine$integer.max)) bad("the trials must be at most 2^31 - 1")
    return(list(y = round(y[, 1L]) / tr, trials = as.double(tr)))
  }
  if (!is.numeric(y)) bad(sprintf("it is %s", describe(y)))
  if (any(!is.finite(y))) bad("it has missing or infinite values")
  if (any(y < 0 | y > 1)) bad("it has values outside [0, 1]")
  if (any(y != 0 & y != 1)) {
    bad("proportions need their trials: give `cbind(successes, failures)`")
  }
  list(y = as.numeric(y), trials = rep(1, length(y)))
}
