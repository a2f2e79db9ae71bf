# Marginal likelihood p(y | K) of a fixed-K Bayesian mixture of experts:
# the closed form for K = 1 (conjugate Bayesian linear regression) and
# bridge sampling on the draws of a moe_mcmc() fit (Meng and Wong 1996, with
# the iterative scheme and error approximation of Gronau et al. 2017 and
# Fruehwirth-Schnatter 2004), with an importance density symmetrised over
# the K! relabellings of the experts.
#
# Everything is computed on the internal scale on which the prior is stated
# (moe_prior()): the internal response is y* = (y - my) / sy, so
# log p(y) = log p(y*) - sum(w) log(sy) for the original response.
#
# Parameterisation used for bridge sampling (one row per draw):
#   phi = (alpha_1, ..., alpha_K, log sigma2_1, ..., log sigma2_K,
#          w_1, ..., w_{K-1})
# with alpha_k the p internal expert coefficients, w_k the q internal gating
# coefficients of the non-reference experts; D = (p + 1) K + q (K - 1).

#' Marginal likelihood of a Bayesian mixture of experts
#'
#' Estimates the log marginal likelihood \eqn{\log p(y \mid K)} of a
#' mixture of experts with a fixed number of experts \eqn{K}, under the
#' prior of the fit ([moe_prior()]), with a Monte Carlo standard error. The
#' log marginal likelihoods of fits with different \eqn{K} and the same data
#' give the posterior over the number of experts (see [moe_select()]).
#'
#' **Exact, K = 1.** With one expert the model is conjugate Bayesian linear
#' regression and
#' \deqn{\log p(y) = -\tfrac{n}{2}\log 2\pi + \tfrac12\log|V_1| -
#'   \tfrac12\log|V_a| + c_0\log C_0 - \log\Gamma(c_0) + \log\Gamma(c_1) -
#'   c_1\log C_1,}{log p(y) = -(n/2) log(2 pi) + log|V_1|/2 - log|V_a|/2 +
#'   c0 log C0 - lgamma(c0) + lgamma(c1) - c1 log C1,}
#' with \eqn{V_1 = (X^\top X + V_a^{-1})^{-1}}, \eqn{m_1 = V_1(X^\top y +
#' V_a^{-1} m_a)}, \eqn{c_1 = c_0 + n/2} and \eqn{C_1 = C_0 + \frac12(y^\top
#' y + m_a^\top V_a^{-1} m_a - m_1^\top V_1^{-1} m_1)} (case weights enter as
#' frequencies). `method = "exact"` returns it (standard error 0); it works
#' for K = 1 fits from [moe_mcmc()] and [moe_em()] (the latter with `prior`).
#'
#' **Bridge sampling.** For a [moe_mcmc()] fit, the draws are mapped to
#' the internal scale and the marginal likelihood is estimated by bridge
#' sampling (Meng and Wong 1996) with the iterative scheme of Gronau et al.
#' (2017), iterated to convergence: the second half of every chain against
#' as many draws from an importance density \eqn{g} built from the first
#' halves. The unnormalised posterior is the likelihood times the prior of
#' [moe_prior()], in the parameters \eqn{(a_k, \log\sigma_k^2, w_k)}.
#'
#' *Label switching.* The posterior of a mixture is invariant under the
#' \eqn{K!} relabellings of the experts (each followed by re-referencing the
#' gating), because the gating prior is exchangeable (`moe_prior(exchangeable
#' = TRUE)`, needed for \eqn{K \ge 3}). The importance density used is the
#' symmetrisation \eqn{\bar g(\theta) = \frac{1}{K!}\sum_\pi g(\pi\theta)}
#' (Fruehwirth-Schnatter 2004). Then every quantity in the bridge sampling
#' identity is invariant under relabelling, so the estimate is right
#' whether the chains stay in one of the \eqn{K!} symmetric modes or switch
#' between them. When the modes are well separated, \eqn{\bar g \approx g /
#' K!} on the mode of the chain: this is the rule "estimate on one mode and
#' add \eqn{\log K!}"; when modes overlap (for instance two empty experts
#' drawn from the prior) the symmetrised density stays exact where that rule
#' would overcount. `switching` reports, per chain, the share of draws whose
#' labels differ from the chain's main labelling.
#'
#' *Importance densities.* `proposal = "mixture"` (the default) is the
#' complete-data posterior mixture of Fruehwirth-Schnatter (2004), adapted
#' to the softmax gating: `n_comp` draws from the first halves each give an
#' allocation of the observations (drawn given the draw) and a component
#' that is the product over experts of the exact conjugate normal /
#' inverse-gamma posterior of \eqn{(a_k, \sigma_k^2)} given the allocation
#' and a normal for the centred gating vector \eqn{w_k - \bar w}, from the
#' Laplace approximation of the gating posterior given the allocation (the
#' centred vectors conditioned to sum to zero). Because each component is a
#' product over experts, the sum over the \eqn{K!} relabellings is a
#' permanent, computed in C by dynamic programming over subsets
#' (\eqn{2^K K} terms). This density follows the non-Gaussian shape of
#' over-fitted posteriors (empty experts, experts holding a few
#' observations) and keeps their estimates workable. For \eqn{K = 1} it is
#' the exact posterior, so the estimate is exact. `proposal = "normal"` is a
#' multivariate normal fitted to the relabelled first halves in
#' \eqn{(a_k, \log\sigma_k^2, w_k)} (Gronau et al. 2017; symmetrised by
#' summing over all \eqn{K!} relabellings, \eqn{K \le 7}): cheaper, and a
#' check of the default, but it fails on over-fitted fits.
#'
#' **GLM experts** (`family = binomial()` or `poisson()`;
#' [moe_glm_experts]). The unnormalised posterior is the likelihood of the
#' family times the prior \eqn{a_k \sim N(m_a, V_a)} of [moe_prior()] on the
#' internal scale (covariates centred and scaled, the response untouched, so
#' no Jacobian) and the gating prior, in the parameters \eqn{(a_k, w_k)}.
#' The `"mixture"` density (the default) has, in place of the conjugate
#' posterior of each expert given the allocation, its Laplace approximation
#' (Gaussian at the mode of the expert's posterior given the observations
#' allocated to it, with the inverse negative Hessian there as covariance;
#' the prior itself for an expert with no observation); `"normal"` is the
#' symmetrised normal fitted to the relabelled draws. There is no closed
#' form: `method = "exact"` is refused with an error of class
#' `bayesmoe_error_unavailable`, and K = 1 is bridge sampled. The estimates
#' are checked against quadrature (K = 1) and the tempered sequential Monte
#' Carlo estimator (K = 2) in `tests/testthat/test-marglik-glm.R`.
#'
#' **Student-t experts** (`family = student_t()`). The parameters of an
#' expert are \eqn{(a_k, \log\sigma_k^2, \log\nu_k)} (without
#' \eqn{\log\nu_k} when `df` is fixed), with the normal / inverse-gamma
#' prior of Gaussian experts and the Gamma(`df_shape`, `df_rate`) prior of
#' \eqn{\nu_k} truncated to \eqn{[0.1, 10^4]}, Jacobians included. Only
#' `proposal = "normal"` is available (the default for these fits; the
#' `"mixture"` density is refused): it can fail on over-fitted fits, with
#' the warning of class `bayesmoe_warning_marglik`. Checked against the
#' tempered SMC estimator in `tests/testthat/test-marglik-t.R`.
#'
#' **Error.** `se` is the square root of the approximate relative mean
#' squared error of the estimate of \eqn{p(y)} (Fruehwirth-Schnatter 2004,
#' eq. 15; Gronau et al. 2017), which approximates the standard error of
#' \eqn{\log \hat p(y)}:
#' \deqn{RE^2 = \frac{V_g(f_1)}{N_2 E_g(f_1)^2} + \frac{V_p(f_2)}{N_{\rm eff}
#'   E_p(f_2)^2},}{RE^2 = Var_g(f1) / (N2 E_g(f1)^2) + Var_p(f2) / (Neff
#'   E_p(f2)^2),}
#' with \eqn{f_1 = p/(s_1 p + s_2 g)} at the \eqn{N_2} independent importance
#' draws and \eqn{f_2 = g/(s_1 p + s_2 g)} at the posterior draws (\eqn{p}
#' the normalised posterior). The posterior draws are autocorrelated, so the
#' second term uses \eqn{N_{\rm eff}}{Neff}, the effective sample size of the
#' sequence \eqn{f_2}: autocovariances computed within each chain (never
#' across a chain boundary), pooled with the between-chain variance and
#' summed over Geyer's initial monotone sequence (the multi-chain effective
#' sample size of Vehtari et al. 2021). The same effective size enters the
#' weights of the optimal bridge function, \eqn{s_1 = N_{\rm eff}/(N_{\rm eff}
#' + N_2)}{s1 = Neff / (Neff + N2)} and \eqn{s_2 = 1 - s_1} (the scheme is
#' run once with \eqn{N_1}, the number of posterior draws, in place of
#' \eqn{N_{\rm eff}}{Neff}, then again with the effective size found), as in
#' Fruehwirth-Schnatter (2004) and Gronau et al. (2017): the estimate is
#' consistent for any weights, and these make it somewhat more precise. It is
#' a Monte Carlo error given the chains: it does not see parts of the
#' posterior the chains have not visited, and with short chains of a slowly
#' mixing posterior (for instance a steep gating) it can still be somewhat
#' too small.
#'
#' **Scale.** The prior is stated on the internal (standardised) scale;
#' the returned value is the marginal density of the response on its
#' original scale, \eqn{\log p(y^*) - \sum_i w_i \log s_y}, the same for
#' every K, so that differences between K are unaffected.
#'
#' @param fit A fit from [moe_mcmc()] (or, for `method = "exact"`, from
#'   [moe_em()] with K = 1 and Gaussian experts). Bridge sampling relabels the draws over all
#'   \eqn{K!} permutations of the experts, so it needs \eqn{K \le 8}
#'   (`"mixture"`) or \eqn{K \le 7} (`"normal"`); K = 8 takes about 15
#'   seconds per 1000 draws.
#' @param method `"bridge"` (bridge sampling on the draws) or `"exact"` (the
#'   closed form, K = 1 Gaussian experts only).
#' @param prior For `method = "exact"` on an EM fit: the prior, from
#'   [moe_prior()] (default `moe_prior()`). An MCMC fit always uses the
#'   prior it was sampled with.
#' @param proposal The importance density: `"mixture"` or `"normal"` (see
#'   Details). When not given, `"mixture"`, except for Student-t experts
#'   (`"normal"`).
#' @param n_comp Number of components of the `"mixture"` importance density
#'   (at most the number of draws in the first halves of the chains).
#' @param n_prop Number of draws from the importance density; `NULL` means
#'   as many as the posterior draws used (half of the kept draws). A number
#'   whose draws would not fit in memory is refused (see [moe_em()],
#'   Details).
#' @param seed `NULL` or a whole number seeding the importance draws (the
#'   caller's random number state is then left untouched).
#' @param maxit,tol Maximum number of iterations and convergence tolerance
#'   (on the log scale) of the iterative scheme.
#' @param ... Unused.
#' @return An object of class `moe_marglik`: `logml` (the log marginal
#'   likelihood), `se` (its Monte Carlo standard error), `method`, `K`, `n`
#'   and, for bridge sampling, `proposal`, `n_post` (the number of posterior
#'   draws), `n_eff` (their effective sample size for the error), `n_prop`,
#'   `n_comp`,
#'   `iterations`, `converged`, `re2` (the relative mean squared error) and
#'   `switching` (per chain, the share of draws whose labels differ from the
#'   chain's most common labelling after relabelling: chains that switch
#'   labels are detected, and handled by the symmetrised importance
#'   density). A classed warning (`bayesmoe_warning_marglik`) is given when
#'   the iterative scheme does not converge or the error is not finite.
#' @references
#' Meng, X.-L. and Wong, W. H. (1996). Simulating ratios of normalizing
#' constants via a simple identity: a theoretical exploration.
#' *Statistica Sinica* 6, 831-860.
#'
#' Fruehwirth-Schnatter, S. (2004). Estimating marginal likelihoods for
#' mixture and Markov switching models using bridge sampling techniques.
#' *The Econometrics Journal* 7, 143-167.
#'
#' Gronau, Q. F., Sarafoglou, A., Matzke, D., Ly, A., Boehm, U.,
#' Marsman, M., Leslie, D. S., Forster, J. J., Wagenmakers, E.-J. and
#' Steingroever, H. (2017). A tutorial on bridge sampling. *Journal of
#' Mathematical Psychology* 81, 80-97.
#'
#' Geyer, C. J. (1992). Practical Markov chain Monte Carlo. *Statistical
#' Science* 7, 473-483.
#'
#' Vehtari, A., Gelman, A., Simpson, D., Carpenter, B. and Buerkner, P.-C.
#' (2021). Rank-normalization, folding, and localization: an improved
#' \eqn{\hat R} for assessing convergence of MCMC. *Bayesian Analysis* 16,
#' 667-718.
#' @seealso [moe_select()] for the posterior over the number of experts.
#' @examples
#' fit1 <- moe_mcmc(tuned ~ stretchratio, data = tonedata, K = 1,
#'                  chains = 2, iter = 400, seed = 1)
#' moe_marglik(fit1, method = "exact")
#' moe_marglik(fit1, seed = 1)
#' fit2 <- moe_mcmc(tuned ~ stretchratio, data = tonedata, K = 2,
#'                  chains = 2, iter = 400, seed = 1)
#' moe_marglik(fit2, seed = 1)
#' # Poisson experts
#' set.seed(1)
#' x <- runif(150)
#' y <- rpois(150, exp(ifelse(x < 0.5, 0.2 + 0.5 * x, 2.5 - 0.5 * x)))
#' fitp <- moe_mcmc(y ~ x, data = data.frame(x, y), K = 2, family = poisson(),
#'                  chains = 2, iter = 400, seed = 1)
#' moe_marglik(fitp, seed = 1)
#' @export
moe_marglik <- function(fit, method = c("bridge", "exact"), prior = NULL,
                        proposal = c("mixture", "normal"), n_comp = 100, n_prop = NULL,
                        seed = NULL, maxit = 1000, tol = 1e-10, ...) {
  call <- sys.call()
  method <- check_choice(method, c("bridge", "exact"), "method", call)
  proposal_given <- !missing(proposal)
  proposal <- check_choice(proposal, c("mixture", "normal"), "proposal", call)
  if (!inherits(fit, "moe_fit")) {
    abort(sprintf("`fit` must be a fit from `moe_mcmc()` or `moe_em()`, not %s.",
                  describe(fit)), call = call, arg = "fit")
  }
  validate_moe_fit(fit, "fit", call)
  is_mcmc <- inherits(fit, "moe_mcmc")
  expert <- spec_expert(fit_spec(fit))
  linear <- inherits(expert, "moe_expert_linear")
  if (!ml_supported(expert)) {
    abort(sprintf("`fit` has %s experts: `moe_marglik()` has no likelihood and prior for them.",
                  expert_label(expert)), kind = "unavailable", call = call, arg = "fit")
  }
  if (!linear) {
    if (method == "exact") {
      abort(sprintf("`method = \"exact\"` is the closed form of Gaussian experts; `fit` has %s experts: use `method = \"bridge\"`.",
                    expert_label(expert)), kind = "unavailable", call = call, arg = "method")
    }
    if (!is_glm_expert(expert) && proposal == "mixture") {
      if (proposal_given) {
        abort(sprintf("`proposal = \"mixture\"` needs the complete-data posterior of the experts, available for Gaussian and GLM experts; `fit` has %s experts: use `proposal = \"normal\"`.",
                      expert_label(expert)), kind = "unavailable", call = call, arg = "proposal")
      }
      proposal <- "normal"
    }
  }
  if (!is.null(prior)) {
    if (is_mcmc) {
      abort("`prior` cannot be given for a fit from `moe_mcmc()`: its draws come from the prior it was sampled with.",
            call = call, arg = "prior")
    }
    if (!inherits(prior, "moe_prior")) {
      abort(sprintf("`prior` must be made by `moe_prior()`, not %s.", describe(prior)),
            call = call, arg = "prior")
    }
  }
  if (is.null(prior)) prior <- if (is_mcmc) fit$prior else moe_prior()
  if (method == "exact") {
    if (fit$K != 1L) {
      abort(sprintf("`method = \"exact\"` needs a fit with K = 1 expert, not K = %d; use `method = \"bridge\"`.",
                    fit$K), call = call, arg = "method")
    }
    pc <- prior_internal(prior, ncol(fit$X), ncol(fit$Z), call)
    lml <- marglik_k1(fit$y, fit$X, fit$Z, fit$weights, pc)
    return(new_moe_marglik(list(logml = lml, se = 0, method = "exact", K = 1L,
                                n = sum(fit$weights))))
  }
  if (!is_mcmc) {
    abort("`method = \"bridge\"` needs a fit from `moe_mcmc()`: it works on posterior draws.",
          call = call, arg = "fit")
  }
  kmax <- marglik_kmax(proposal)
  if (fit$K > kmax) {
    abort(sprintf("Bridge sampling with `proposal = \"%s\"` needs K <= %d (the draws are relabelled over the K! label permutations), not K = %d.",
                  proposal, kmax, fit$K), call = call, arg = "fit")
  }
  if (fit$K >= 3L && !isTRUE(fit$prior$exchangeable)) {
    abort("Bridge sampling with K >= 3 needs the exchangeable gating prior (`moe_prior(exchangeable = TRUE)`): the estimator relies on the posterior being invariant under relabelling.",
          call = call, arg = "fit")
  }
  n_comp <- check_number(n_comp, "n_comp", lower = 1, whole = TRUE, call = call)
  if (!is.null(n_prop)) {
    n_prop <- check_number(n_prop, "n_prop", lower = 2, whole = TRUE, call = call)
    # the importance draws, their normal deviates and densities
    np <- if (is.array(fit$draws)) dim(fit$draws)[3L] else 1
    check_size(8 * 3 * n_prop * (np + 1),
               sprintf("%s importance draws x %d values x 8 bytes, three copies",
                       format(n_prop, big.mark = ",", scientific = FALSE), np + 1L), "n_prop", call)
  }
  maxit <- check_number(maxit, "maxit", lower = 1, whole = TRUE, call = call)
  tol <- check_number(tol, "tol", lower = 0, strict_lower = TRUE, call = call)
  seed <- check_seed(seed, call)
  if (dim(fit$draws)[1L] < 8L) {
    abort("`fit` must have at least 8 kept draws per chain for bridge sampling.",
          call = call, arg = "fit")
  }
  res <- with_seed(seed, marglik_bridge(fit, proposal, n_comp, n_prop, maxit, tol))
  if (!res$converged || !is.finite(res$se)) {
    warn(sprintf("Bridge sampling for K = %d is unreliable: %s; the importance density barely overlaps the posterior.%s",
                 fit$K, if (!res$converged) sprintf("the iterative scheme did not converge in %d iterations", maxit)
                 else "the Monte Carlo error is not finite",
                 if (proposal == "normal") " Try `proposal = \"mixture\"`." else ""),
         kind = "marglik", call = call)
  }
  new_moe_marglik(res)
}

new_moe_marglik <- function(x) structure(x, class = "moe_marglik")

#' @rdname moe_marglik
#' @param x A `moe_marglik` object.
#' @param digits Number of significant digits to print.
#' @export
print.moe_marglik <- function(x, digits = max(3L, getOption("digits") - 3L), ...) {
  digits <- check_digits(digits, call = sys.call())
  how <- if (x$method == "exact") "closed form (conjugate linear regression)" else
    "bridge sampling"
  cat(sprintf("Log marginal likelihood, K = %d (%s):\n  %s (Monte Carlo s.e. %s)\n",
              x$K, how, format(round(x$logml, 3), nsmall = 3),
              format(signif(x$se, 2))))
  if (x$method == "bridge") {
    cat(sprintf("  %d posterior draws (second halves of %d chain%s; effective size %s) and %d importance draws; %d iterations.\n",
                x$n_post, length(x$switching), if (length(x$switching) > 1L) "s" else "",
                if (is.null(x$n_eff) || !is.finite(x$n_eff)) "NA" else format(round(x$n_eff)),
                x$n_prop, x$iterations))
    if (x$K > 1L) {
      cat(sprintf("  Share of draws relabelled away from each chain's main labelling: %s.\n",
                  paste(format(round(x$switching, 3)), collapse = ", ")))
    }
  }
  invisible(x)
}

# Closed-form log marginal likelihood of K = 1 (original-scale response).
marglik_k1 <- function(y, X, Z, w, pc) {
  sc <- moe_scaling(y, X, Z)
  s <- scale_data(sc, y, X, Z)
  keep <- w > 0
  Xs <- s$X[keep, , drop = FALSE]
  ys <- s$y[keep]
  w <- w[keep]
  n <- sum(w)
  Va_inv <- pc$Va_inv
  P1 <- crossprod(Xs * w, Xs) + Va_inv
  R1 <- chol(P1)
  b1 <- drop(crossprod(Xs, w * ys)) + drop(Va_inv %*% pc$m_a)
  m1 <- backsolve(R1, forwardsolve(t(R1), b1))
  c1 <- pc$c0 + n / 2
  C1 <- pc$C0 + 0.5 * (sum(w * ys^2) + pc$m_Va_inv_m - sum(m1 * b1))
  logdet_V1 <- -2 * sum(log(diag(R1)))
  logdet_Va <- as.numeric(determinant(pc$V_a, logarithm = TRUE)$modulus)
  lml <- -n / 2 * log(2 * pi) + logdet_V1 / 2 - logdet_Va / 2 + pc$c0 * log(pc$C0) -
    lgamma(pc$c0) + lgamma(c1) - c1 * log(C1)
  lml - n * log(sc$sy)
}

# ---- parameterisation phi -------------------------------------------------

# Draws (p x K x S, K x S, q x K x S) -> S x D matrix phi.
phi_from_par <- function(alpha, sigma2, W) {
  p <- dim(alpha)[1L]
  K <- dim(alpha)[2L]
  S <- dim(alpha)[3L]
  q <- dim(W)[1L]
  out <- cbind(t(matrix(alpha, p * K, S)), t(log(matrix(sigma2, K, S))))
  if (K > 1L) out <- cbind(out, t(matrix(W[, -K, , drop = FALSE], q * (K - 1L), S)))
  out
}

# S x D matrix phi -> list(alpha p x K x S, sigma2 K x S, W q x K x S).
par_from_phi <- function(Phi, p, q, K) {
  S <- nrow(Phi)
  alpha <- array(t(Phi[, seq_len(p * K), drop = FALSE]), c(p, K, S))
  sigma2 <- matrix(exp(t(Phi[, p * K + seq_len(K), drop = FALSE])), K, S)
  W <- array(0, c(q, K, S))
  if (K > 1L) {
    W[, -K, ] <- array(t(Phi[, (p + 1L) * K + seq_len(q * (K - 1L)), drop = FALSE]),
                       c(q, K - 1L, S))
  }
  list(alpha = alpha, sigma2 = sigma2, W = W)
}

# Largest K of bridge sampling: the draws are relabelled by enumerating the
# K! permutations, whose cost grows by a factor K + 1 from K to K + 1.
marglik_kmax <- function(proposal) if (proposal == "normal") 7L else 8L

# Relabel the rows of Phi: new expert k is old expert perm[k], and the gating
# is re-referenced to the new last expert, w'_k = w_{perm[k]} - w_{perm[K]}.
# `r`: the number of coordinates per expert after its p coefficients
# (ml_extra(): 1 for Gaussian experts, log sigma2; 0 for GLM experts).
permute_phi <- function(Phi, perm, p, q, K, r = 1L) {
  ia <- as.vector(outer(seq_len(p), (perm - 1L) * p, "+"))
  is <- p * K + as.vector(outer(seq_len(r), (perm - 1L) * r, "+"))
  out <- Phi[, c(ia, is), drop = FALSE]
  if (K > 1L) {
    off <- (p + r) * K
    blk <- function(k) if (k == K) NULL else off + (k - 1L) * q + seq_len(q)
    ref <- if (perm[K] == K) 0 else Phi[, blk(perm[K]), drop = FALSE]
    for (k in seq_len(K - 1L)) {
      wk <- if (perm[k] == K) 0 else Phi[, blk(perm[k]), drop = FALSE]
      out <- cbind(out, matrix(wk - ref, nrow(Phi), q))
    }
  }
  out
}

# ---- expert families --------------------------------------------------------

# Bridge sampling and the SMC check work for every expert family with these
# methods (dispatch on the expert object; default: linear Gaussian experts):
#   ml_supported(expert)             TRUE when the family has them all
#   ml_extra(expert)                 r, the coordinates of an expert after
#                                    its coefficients in phi (unconstrained)
#   ml_ncoef(expert, P_e)            the coefficients among its P_e rows
#   ml_extra_from_par(expert, par)   those r coordinates of draws: r x K x S
#   ml_par_from_extra(expert, A, E)  back: list(alpha P_e x K x S, sigma2)
#   ml_log_prior_experts(expert, par, pc)
#                                    log prior of the experts' parameters in
#                                    phi coordinates (Jacobians included): S
#   ml_expert_logdens(expert, par, k, s)
#                                    log p(y_i | expert k of draw j): n x S
#   ml_prior_draw(expert, pc, K)     one prior draw (internal scale)
# In phi (one row per draw) come the p coefficients of every expert, then
# the r further coordinates of every expert, then the gating vectors w_1..
# w_{K-1}: D = (p + r) K + q (K - 1). Student-t experts, for instance, need
# r = 2 (log sigma2, log df) with the Jacobians of both logs.
ml_supported <- function(expert) UseMethod("ml_supported")
ml_supported.default <- function(expert) FALSE
ml_supported.moe_expert_linear <- function(expert) TRUE

ml_extra <- function(expert) UseMethod("ml_extra")
ml_extra.default <- function(expert) 1L

ml_ncoef <- function(expert, P_e) UseMethod("ml_ncoef")
ml_ncoef.default <- function(expert, P_e) P_e

ml_extra_from_par <- function(expert, par) UseMethod("ml_extra_from_par")
ml_extra_from_par.default <- function(expert, par) {
  array(log(par$sigma2), c(1L, dim(par$alpha)[2L], dim(par$alpha)[3L]))
}

ml_par_from_extra <- function(expert, A, E) UseMethod("ml_par_from_extra")
ml_par_from_extra.default <- function(expert, A, E) {
  list(alpha = A, sigma2 = matrix(exp(E[1L, , ]), dim(A)[2L], dim(A)[3L]))
}

# Gaussian experts: the normal / inverse-gamma prior and the Jacobian of
# sigma2 -> log sigma2 (log_prior_phi() without the gating).
ml_log_prior_experts <- function(expert, par, pc) UseMethod("ml_log_prior_experts")
ml_log_prior_experts.default <- function(expert, par, pc) {
  par$W <- par$W[, 1L, , drop = FALSE]
  log_prior_phi(par, pc)
}

ml_expert_logdens <- function(expert, par, k, s) UseMethod("ml_expert_logdens")
ml_expert_logdens.default <- function(expert, par, k, s) {
  p <- dim(par$alpha)[1L]
  S <- dim(par$alpha)[3L]
  mu <- s$X %*% matrix(par$alpha[, k, ], p, S)
  s2 <- rep(par$sigma2[k, ], each = length(s$y))
  -0.5 * log(2 * pi * s2) - (s$y - mu)^2 / (2 * s2)
}

ml_prior_draw <- function(expert, pc, K) UseMethod("ml_prior_draw")
ml_prior_draw.default <- function(expert, pc, K) prior_draw(pc, K)

# Draws (list alpha P_e x K x S, sigma2 K x S, W q x K x S) -> S x D phi.
ml_phi <- function(expert, par) {
  A <- par$alpha
  K <- dim(A)[2L]
  S <- dim(A)[3L]
  q <- dim(par$W)[1L]
  p <- ml_ncoef(expert, dim(A)[1L])
  E <- ml_extra_from_par(expert, par)
  r <- dim(E)[1L]
  out <- t(matrix(A[seq_len(p), , , drop = FALSE], p * K, S))
  if (r > 0L) out <- cbind(out, t(matrix(E, r * K, S)))
  if (K > 1L) out <- cbind(out, t(matrix(par$W[, -K, , drop = FALSE], q * (K - 1L), S)))
  out
}

# S x D phi -> draws (list alpha, sigma2, W), p coefficients per expert.
ml_par <- function(expert, Phi, p, q, K) {
  S <- nrow(Phi)
  r <- ml_extra(expert)
  A <- array(t(Phi[, seq_len(p * K), drop = FALSE]), c(p, K, S))
  E <- array(t(Phi[, p * K + seq_len(r * K), drop = FALSE]), c(r, K, S))
  out <- ml_par_from_extra(expert, A, E)
  W <- array(0, c(q, K, S))
  if (K > 1L) {
    W[, -K, ] <- array(t(Phi[, (p + r) * K + seq_len(q * (K - 1L)), drop = FALSE]),
                       c(q, K - 1L, S))
  }
  list(alpha = out$alpha, sigma2 = out$sigma2, W = W)
}

# Total log-likelihood of every draw (internal data `s`: y, X, Z, w and, for
# GLM experts, the family data `s$family`), vectorised over the draws: an
# S-vector, -Inf where it is not finite.
ml_loglik <- function(expert, par, s) {
  K <- dim(par$alpha)[2L]
  S <- dim(par$alpha)[3L]
  q <- dim(par$W)[1L]
  n <- length(s$y)
  lse <- function(terms) {
    m <- Reduce(pmax, terms)
    m <- ifelse(is.finite(m), m, 0)
    m + log(Reduce(`+`, lapply(terms, function(t) exp(t - m))))
  }
  lg <- lapply(seq_len(K), function(k) {
    if (K > 1L) s$Z %*% matrix(par$W[, k, ], q, S) else matrix(0, n, S)
  })
  lj <- lapply(seq_len(K), function(k) ml_expert_logdens(expert, par, k, s))
  num <- lse(Map(`+`, lg, lj))
  den <- if (K > 1L) lse(lg) else 0
  out <- colSums(s$w * (num - den))
  out[!is.finite(out)] <- -Inf
  out
}

# Log prior (phi coordinates) of draws: experts and gating.
ml_log_prior <- function(expert, par, pc) {
  ml_log_prior_experts(expert, par, pc) + log_prior_gate(par$W, pc)
}

# Internal-scale data of a fit, rows with positive weight (mcmc_data(),
# with the family data of GLM experts).
ml_data <- function(fit) {
  expert <- spec_expert(fit_spec(fit))
  sc <- moe_scaling(fit$y, fit$X, fit$Z)
  glm_fam <- is_glm_expert(expert)
  if (glm_fam) sc <- glm_scaling(sc)
  s <- mcmc_data(sc, fit$y, fit$X, fit$Z, fit$weights,
                 if (glm_fam) glm_family_data(expert, fit$y, fit$offset, fit$trials))
  list(s = s, sc = sc, expert = expert)
}

# ---- densities ------------------------------------------------------------

# Log prior density (internal scale) of draws, plus the Jacobian of
# sigma2 -> log sigma2. Vectorised over the S draws.
log_prior_phi <- function(par, pc) {
  alpha <- par$alpha
  p <- dim(alpha)[1L]
  K <- dim(alpha)[2L]
  S <- dim(alpha)[3L]
  q <- dim(par$W)[1L]
  s2 <- par$sigma2
  Dm <- matrix(alpha, p, K * S) - pc$m_a
  quad <- matrix(colSums(Dm * (pc$Va_inv %*% Dm)), K, S)
  logdet_Va <- as.numeric(determinant(pc$V_a, logarithm = TRUE)$modulus)
  ex <- -p / 2 * log(2 * pi) - p / 2 * log(s2) - logdet_Va / 2 - quad / (2 * s2) +
    pc$c0 * log(pc$C0) - lgamma(pc$c0) - (pc$c0 + 1) * log(s2) - pc$C0 / s2 +
    log(s2)
  colSums(ex) + log_prior_gate(par$W, pc)
}

# Log prior density of the reference-coded gating vectors of draws (W: q x K
# x S, column K zero), 0 for K = 1: an S-vector.
log_prior_gate <- function(W, pc) {
  q <- dim(W)[1L]
  K <- dim(W)[2L]
  S <- dim(W)[3L]
  if (K == 1L) return(numeric(S))
  s_w2 <- pc$s_w2
  Wf <- W[, -K, , drop = FALSE]
  ss <- apply(Wf^2, c(1L, 3L), sum)
  if (pc$exchangeable) {
    # (w_1j..w_{K-1,j}) ~ N(0, s_j^2 (I + 11')): |I + 11'| = K,
    # (I + 11')^{-1} = I - 11'/K
    sm <- apply(Wf, c(1L, 3L), sum)
    g <- -(K - 1) / 2 * log(2 * pi * s_w2) - log(K) / 2 - (ss - sm^2 / K) / (2 * s_w2)
  } else {
    g <- -(K - 1) / 2 * log(2 * pi * s_w2) - ss / (2 * s_w2)
  }
  colSums(matrix(g, q, S))
}

# Total log-likelihood (internal data `s`) of every draw, by the C pass.
loglik_draws_internal <- function(par, s) {
  K <- dim(par$alpha)[2L]
  S <- dim(par$alpha)[3L]
  p <- dim(par$alpha)[1L]
  q <- dim(par$W)[1L]
  vapply(seq_len(S), function(j) {
    .Call(ffi_loglik, s$y, s$X, s$Z, s$w, as.double(par$alpha[, , j]),
          as.double(par$sigma2[, j]), as.double(par$W[, , j]))
  }, 0)
}

# Multivariate normal log density of the rows of Phi; R = chol(Sigma).
dmvn_log <- function(Phi, mu, R) {
  D <- length(mu)
  Zt <- backsolve(R, t(Phi) - mu, transpose = TRUE)
  -D / 2 * log(2 * pi) - sum(log(diag(R))) - colSums(Zt^2) / 2
}

# Log of the symmetrised density (1/K!) sum_pi g(pi phi).
log_gsym <- function(Phi, mu, R, p, q, K, perms, r = 1L) {
  if (K == 1L) return(dmvn_log(Phi, mu, R))
  L <- vapply(seq_len(nrow(perms)), function(j)
    dmvn_log(permute_phi(Phi, perms[j, ], p, q, K, r), mu, R), numeric(nrow(Phi)))
  L <- matrix(L, nrow(Phi))
  mx <- apply(L, 1L, max)
  mx + log(rowSums(exp(L - mx))) - lgamma(K + 1)
}

# ---- relabelling ----------------------------------------------------------

# Permutation of each row of Phi (S x K integer matrix, new expert k = old
# expert perm[s, k]) that minimises the scaled squared distance of the
# expert features (coefficients and the r further coordinates, e.g. log
# variances) to `ref` (a K x f matrix), over all K! permutations `perms`.
relabel_perms <- function(Phi, ref, scale, p, K, perms, r = 1L) {
  S <- nrow(Phi)
  feat <- function(k) {
    cbind(Phi[, (k - 1L) * p + seq_len(p), drop = FALSE],
          Phi[, p * K + (k - 1L) * r + seq_len(r), drop = FALSE])
  }
  Fk <- lapply(seq_len(K), feat)
  # cost[s, i, j]: distance of old expert j of draw s to reference expert i
  cost <- array(0, c(S, K, K))
  for (i in seq_len(K)) for (j in seq_len(K)) {
    cost[, i, j] <- colSums(((t(Fk[[j]]) - ref[i, ]) / scale)^2)
  }
  tot <- vapply(seq_len(nrow(perms)), function(r) {
    v <- numeric(S)
    for (i in seq_len(K)) v <- v + cost[, i, perms[r, i]]
    v
  }, numeric(S))
  tot <- matrix(tot, S)
  perms[max.col(-tot, ties.method = "first"), , drop = FALSE]
}

apply_perms <- function(Phi, P, p, q, K, r = 1L) {
  key <- apply(P, 1L, paste, collapse = ",")
  out <- Phi
  for (k in unique(key)) {
    rows <- which(key == k)
    out[rows, ] <- permute_phi(Phi[rows, , drop = FALSE], P[rows[1L], ], p, q, K, r)
  }
  out
}

phi_expert_features <- function(Phi, p, K, r = 1L) {
  t(vapply(seq_len(K), function(k)
    c(colMeans(Phi[, (k - 1L) * p + seq_len(p), drop = FALSE]),
      colMeans(Phi[, p * K + (k - 1L) * r + seq_len(r), drop = FALSE])),
    numeric(p + r)))
}

# Relabel Phi (draws) towards the draw `pivot`, then towards the mean of the
# relabelled draws with coordinates scaled by their within-expert sd.
# Returns the relabelled draws, the permutations, and the final reference
# features and scales (to relabel further draws the same way).
relabel_phi <- function(Phi, pivot, p, q, K, perms, r = 1L) {
  if (K == 1L) {
    return(list(Phi = Phi, perm = matrix(1L, nrow(Phi), 1L), ref = NULL, scale = NULL))
  }
  ref <- phi_expert_features(Phi[pivot, , drop = FALSE], p, K, r)
  # first pass: each feature scaled by its sd pooled over draws and experts,
  # so a feature in which the experts hardly differ (e.g. equal variances)
  # does not let its Monte Carlo noise decide the labels
  feature_cols <- function(f) {
    if (f <= p) (seq_len(K) - 1L) * p + f else p * K + (seq_len(K) - 1L) * r + f - p
  }
  sc0 <- vapply(seq_len(p + r), function(f) stats::sd(c(Phi[, feature_cols(f)])), 0)
  sc0[!(sc0 > 0) | !is.finite(sc0)] <- 1
  P <- relabel_perms(Phi, ref, sc0, p, K, perms, r)
  Phi1 <- apply_perms(Phi, P, p, q, K, r)
  ref <- phi_expert_features(Phi1, p, K, r)
  sds <- sqrt(vapply(seq_len(p + r), function(f) {
    mean(apply(Phi1[, feature_cols(f), drop = FALSE], 2L, stats::var))
  }, 0))
  sds[!(sds > 0)] <- 1
  P <- relabel_perms(Phi, ref, sds, p, K, perms, r)
  list(Phi = apply_perms(Phi, P, p, q, K, r), perm = P, ref = ref, scale = sds)
}

# ---- bridge sampling ------------------------------------------------------

log_add_exp <- function(a, b) pmax(a, b) + log1p(exp(-abs(a - b)))
log_mean_exp <- function(x) {
  m <- max(x)
  m + log(mean(exp(x - m)))
}

# Monte Carlo variance of the mean of a sequence `x` drawn by several Markov
# chains (`chain` labels the chain of each element; within a chain the
# elements are in sampling order). The autocovariances are computed within
# each chain (never across a chain boundary) and pooled with the
# between-chain variance, and the integrated autocorrelation time is summed
# over Geyer's (1992) initial monotone sequence (the multi-chain effective
# sample size of Gelman et al. 2013, sec. 11.5, and Vehtari et al. 2021):
#   var+  = (n - 1) / n W + B / n        (W: mean within-chain variance,
#                                          B / n: variance of chain means)
#   rho_t = 1 - (W - mean_c acov_c(t)) / var+
#   tau   = -1 + 2 sum_{k < m} (rho_2k + rho_2k+1),  m the first pair sum
#           <= 0, the pair sums made non-increasing; tau >= 1 / log10(N)
# Returns the variance of the mean var+ tau / N, tau and ess = N / tau
# (N = length(x)). Chains of unequal length are cut to the shortest one for
# the autocovariances at lag >= 1.
mcmc_var_mean <- function(x, chain) {
  N <- length(x)
  xs <- split(x, chain)
  xs <- xs[lengths(xs) >= 2L]
  if (N < 2L || !length(xs)) return(list(var_mean = stats::var(x) / N, tau = 1, ess = N))
  n <- min(lengths(xs))
  M <- length(xs)
  acov <- vapply(xs, function(v) autocov_fft(v)[seq_len(n)], numeric(n))
  acov <- matrix(acov, n, M)
  nc <- lengths(xs)
  W <- mean(acov[1L, ] * nc / (nc - 1))
  cm <- vapply(xs, mean, 0)
  vplus <- (n - 1) / n * W + if (M > 1L) stats::var(cm) else 0
  if (!(vplus > 0) || !is.finite(vplus)) return(list(var_mean = 0, tau = 1, ess = N))
  rho <- 1 - (W - rowMeans(acov)) / vplus
  rho[1L] <- 1
  npair <- n %/% 2L
  if (npair < 1L) return(list(var_mean = vplus / N, tau = 1, ess = N))
  G <- rho[2L * seq_len(npair) - 1L] + rho[2L * seq_len(npair)]
  stop_at <- match(TRUE, !(G > 0))
  if (!is.na(stop_at)) G <- G[seq_len(stop_at - 1L)]
  tau <- if (length(G)) -1 + 2 * sum(cummin(G)) else 1
  tau <- max(tau, 1 / log10(max(N, 10)))
  list(var_mean = vplus * tau / N, tau = tau, ess = N / tau)
}

# Autocovariances of v at lags 0 .. n - 1 (divisor n), by FFT.
autocov_fft <- function(v) {
  n <- length(v)
  v <- v - mean(v)
  m <- stats::nextn(2L * n)
  f <- stats::fft(c(v, numeric(m - n)))
  Re(stats::fft(Mod(f)^2, inverse = TRUE))[seq_len(n)] / m / n
}

# ---- complete-data mixture importance density ("mixture") --------------

# Per-expert features of draws for ffi_mix_logdens(): coefficients, variances
# and centred gating vectors d_k = w_k - mean_j w_j (which permute with the
# experts under relabelling followed by re-referencing).
mix_features <- function(par) {
  W <- par$W
  wbar <- apply(W, c(1L, 3L), mean)
  list(a = par$alpha, s2 = par$sigma2, d = sweep(W, c(1L, 3L), wbar))
}

# Sample one allocation per observation from the n x K probabilities R.
sample_alloc <- function(R) {
  cs <- R
  K <- ncol(R)
  if (K > 1L) for (k in 2:K) cs[, k] <- cs[, k - 1L] + R[, k]
  cs[, K] <- 1
  1L + rowSums(cs < stats::runif(nrow(R)))
}

# Posterior mode and covariance of the un-referenced gating vectors v (q x
# K) of a multinomial logit of the allocations on Z with prior v_k ~ N(0,
# diag(s_w2)), by Newton's method with step halving from v0.
gate_laplace <- function(Z, w, alloc, K, s_w2, v0) {
  q <- ncol(Z)
  Y <- outer(alloc, seq_len(K), "==") * 1
  lpost <- function(v) {
    eta <- Z %*% v
    lse <- log_softmax_rows(eta)
    sum(w * rowSums(Y * lse)) - sum(v^2 / s_w2) / 2
  }
  v <- v0
  cur <- lpost(v)
  H <- NULL
  for (it in 1:100) {
    P <- exp(log_softmax_rows(Z %*% v))
    G <- crossprod(Z, w * (Y - P)) - v / s_w2
    H <- matrix(0, q * K, q * K)
    for (k in seq_len(K)) for (l in k:K) {
      B <- -crossprod(Z * (w * P[, k] * ((k == l) - P[, l])), Z)
      if (k == l) B <- B - diag(1 / s_w2, q)
      H[(k - 1L) * q + seq_len(q), (l - 1L) * q + seq_len(q)] <- B
      H[(l - 1L) * q + seq_len(q), (k - 1L) * q + seq_len(q)] <- t(B)
    }
    step <- matrix(solve(-H, as.vector(G)), q, K)
    t <- 1
    repeat {
      cand <- v + t * step
      new <- lpost(cand)
      if (is.finite(new) && new >= cur - 1e-10 || t < 1e-8) break
      t <- t / 2
    }
    v <- cand
    conv <- abs(new - cur) < 1e-10 * (1 + abs(cur)) || max(abs(t * step)) < 1e-9
    cur <- new
    if (conv) break
  }
  list(v = v, cov = solve(-H))
}

# One mixture component from a posterior draw `par` (internal scale): an
# allocation drawn given the draw, the conjugate posterior of every expert
# given it, and a Gaussian for the centred gating vectors (Laplace
# approximation of the gating given the allocation, per expert slot).
mix_component <- function(par, s, pc, K, expert = spec_expert(make_spec())) {
  p <- ncol(s$X)
  q <- ncol(s$Z)
  alloc <- rep(1L, length(s$y))
  glm <- is_glm_expert(expert)
  if (K > 1L) {
    if (glm) {
      p3 <- list(alpha = array(par$alpha, c(p, K, 1L)), sigma2 = matrix(1, K, 1L))
      lk <- s$Z %*% par$W + vapply(seq_len(K), function(k) {
        drop(ml_expert_logdens(expert, p3, k, s))
      }, numeric(length(s$y)))
    } else {
      cm <- moe_components(par, s$X, s$Z)
      lk <- cm$log_gate - 0.5 * log(2 * pi) - rep(log(cm$sd), each = length(s$y)) -
        0.5 * ((s$y - cm$mean) / rep(cm$sd, each = length(s$y)))^2
    }
    alloc <- sample_alloc(exp(log_softmax_rows(lk)))
  }
  ex <- lapply(seq_len(K), function(k) {
    if (glm) return(glm_laplace(expert, s, alloc == k, pc, par$alpha[, k]))
    id <- alloc == k
    wk <- s$w[id]
    Xk <- s$X[id, , drop = FALSE]
    yk <- s$y[id]
    R1 <- chol(crossprod(Xk * wk, Xk) + pc$Va_inv)
    b1 <- drop(crossprod(Xk, wk * yk)) + pc$Va_inv_m
    m1 <- backsolve(R1, forwardsolve(t(R1), b1))
    c1 <- pc$c0 + sum(wk) / 2
    C1 <- pc$C0 + 0.5 * max(sum(wk * yk^2) + pc$m_Va_inv_m - sum(m1 * b1), 0)
    list(m = m1, E = R1, c = c1, C = C1,
         cst = -p / 2 * log(2 * pi) + sum(log(diag(R1))) + c1 * log(C1) - lgamma(c1))
  })
  comp <- list(ex = ex, ga = NULL, cst = 0, K = K, glm = glm)
  if (K == 1L) return(comp)
  v0 <- par$W - rowMeans(par$W)
  lap <- gate_laplace(s$Z, s$w, alloc, K, pc$s_w2, v0)
  Cm <- kronecker(diag(K) - 1 / K, diag(q))
  mu <- matrix(Cm %*% as.vector(lap$v), q, K)
  Sd <- Cm %*% lap$cov %*% t(Cm)
  ga <- lapply(seq_len(K), function(k) {
    ix <- (k - 1L) * q + seq_len(q)
    Sk <- (Sd[ix, ix, drop = FALSE] + t(Sd[ix, ix, drop = FALSE])) / 2
    R <- chol(Sk + diag(1e-12 * max(diag(Sk)), q))
    G <- t(backsolve(R, diag(q)))   # G'G = Sk^{-1}
    list(mu = mu[, k], S = Sk, R = R, G = G,
         cst = -q / 2 * log(2 * pi) - sum(log(diag(R))))
  })
  Ssum <- Reduce(`+`, lapply(ga, `[[`, "S"))
  Rs <- chol(Ssum)
  # density of the sum of the slots at 0 (the slots' means sum to 0), and the
  # Jacobian K^q of (d_1..d_{K-1}) -> (w_1..w_{K-1})
  lz <- -q / 2 * log(2 * pi) - sum(log(diag(Rs)))
  comp$ga <- ga
  comp$Ssum <- Ssum
  comp$cst <- -lz - q * log(K)
  comp
}

# The expert factor of a mixture component for GLM experts: the Laplace
# approximation N(m, H^{-1}) of the posterior of a_k given the observations
# `id` allocated to it (prior N(m_a, V_a); m the mode by Newton's method
# with step halving from `a0`, H the negative Hessian there), in the form
# the C kernel takes for Gaussian experts at sigma2 = 1: E = chol(H), c = 1,
# C = 0 (the inverse-gamma factor is then exp(-C) = 1 at sigma2 = 1). An
# expert with no observations gets its prior, exactly.
glm_laplace <- function(expert, s, id, pc, a0) {
  X <- s$X[id, , drop = FALSE]
  w <- s$w[id]
  fd <- glm_family_rows(s$family, id)
  p <- ncol(s$X)
  o <- if (is.null(fd$offset)) 0 else fd$offset
  binom <- expert$type == "binomial"
  lpost <- function(a) {
    eta <- drop(X %*% a) + o
    b <- if (binom) fd$trials * (pmax(eta, 0) + log1p(exp(-abs(eta)))) else exp(eta)
    d <- a - pc$m_a
    sum(w * (fd$y * eta - b)) - sum(d * (pc$Va_inv %*% d)) / 2
  }
  a <- if (all(is.finite(a0))) a0 else pc$m_a
  cur <- lpost(a)
  H <- pc$Va_inv
  for (it in 1:100) {
    eta <- drop(X %*% a) + o
    mu <- if (binom) fd$trials * stats::plogis(eta) else exp(eta)
    v <- if (binom) mu * (1 - stats::plogis(eta)) else mu
    g <- drop(crossprod(X, w * (fd$y - mu))) - drop(pc$Va_inv %*% (a - pc$m_a))
    H <- crossprod(X * (w * v), X) + pc$Va_inv
    step <- solve(H, g)
    t <- 1
    repeat {
      cand <- a + t * step
      new <- lpost(cand)
      if (is.finite(new) && new >= cur - 1e-10 || t < 1e-8) break
      t <- t / 2
    }
    a <- cand
    conv <- abs(new - cur) < 1e-10 * (1 + abs(cur)) || max(abs(t * step)) < 1e-9
    cur <- new
    if (conv) break
  }
  eta <- drop(X %*% a) + o
  mu <- if (binom) fd$trials * stats::plogis(eta) else exp(eta)
  v <- if (binom) mu * (1 - stats::plogis(eta)) else mu
  E <- chol(crossprod(X * (w * v), X) + pc$Va_inv)
  list(m = a, E = E, c = 1, C = 0, cst = -p / 2 * log(2 * pi) + sum(log(diag(E))))
}

# Log density of the symmetrised mixture at draws `par` (C kernel).
mix_logdens_par <- function(par, comps) {
  K <- dim(par$alpha)[2L]
  p <- dim(par$alpha)[1L]
  q <- if (K > 1L) dim(par$W)[1L] else 0L
  N <- dim(par$alpha)[3L]
  M <- length(comps)
  ft <- mix_features(par)
  ex <- function(field) unlist(lapply(comps, function(cm) lapply(cm$ex, `[[`, field)))
  ga <- function(field) if (q > 0L) unlist(lapply(comps, function(cm) lapply(cm$ga, `[[`, field))) else 0
  .Call(ffi_mix_logdens, as.double(ft$a), as.double(ft$s2),
        if (q > 0L) as.double(ft$d) else 0,
        as.double(ex("m")), as.double(ex("E")), as.double(ex("c")), as.double(ex("C")),
        as.double(ex("cst")), as.double(ga("mu")), as.double(ga("G")), as.double(ga("cst")),
        as.double(vapply(comps, `[[`, 0, "cst")),
        as.integer(c(N, K, p, q, M)))
}

# n draws from the (unsymmetrised) mixture: a uniformly chosen component,
# then every expert slot from its factor, the centred gating vectors
# conditioned to sum to zero.
mix_draw <- function(n, comps, p, q) {
  K <- comps[[1L]]$K
  M <- length(comps)
  out <- list(alpha = array(0, c(p, K, n)), sigma2 = matrix(0, K, n), W = array(0, c(q, K, n)))
  mi <- sample.int(M, n, replace = TRUE)
  for (m in sort(unique(mi))) {
    id <- which(mi == m)
    nm <- length(id)
    cm <- comps[[m]]
    D <- array(0, c(q, K, nm))
    for (k in seq_len(K)) {
      e <- cm$ex[[k]]
      s2 <- if (isTRUE(cm$glm)) rep(1, nm) else 1 / stats::rgamma(nm, shape = e$c, rate = e$C)
      out$sigma2[k, id] <- s2
      out$alpha[, k, id] <- e$m + backsolve(e$E, matrix(stats::rnorm(p * nm), p)) *
        rep(sqrt(s2), each = p)
      if (K > 1L) {
        g <- cm$ga[[k]]
        D[, k, ] <- g$mu + crossprod(g$R, matrix(stats::rnorm(q * nm), q))
      }
    }
    if (K > 1L) {
      adj <- solve(cm$Ssum, matrix(apply(D, c(1L, 3L), sum), q))
      for (k in seq_len(K)) D[, k, ] <- D[, k, ] - cm$ga[[k]]$S %*% adj
      out$W[, , id] <- sweep(D, c(1L, 3L), matrix(D[, K, ], q))
    }
  }
  out
}

subset_par <- function(par, idx) {
  list(alpha = par$alpha[, , idx, drop = FALSE], sigma2 = par$sigma2[, idx, drop = FALSE],
       W = par$W[, , idx, drop = FALSE])
}

par_slice <- function(par, j) {
  list(alpha = matrix(par$alpha[, , j], dim(par$alpha)[1L]), sigma2 = par$sigma2[, j],
       W = matrix(par$W[, , j], dim(par$W)[1L]))
}

# ---- bridge sampling ------------------------------------------------------

# Iterative scheme of Meng and Wong (1996) for the optimal bridge function
# with weights s1, s2: l1 = log q - log g at the posterior draws, l2 at the
# importance draws; returns log r, the log of the normalising constant of q.
bridge_iterate <- function(l1, l2, s1, s2, lr, maxit, tol) {
  it <- 0L
  repeat {
    it <- it + 1L
    num <- l2 - log_add_exp(log(s1) + l2, log(s2) + lr)
    num[l2 == -Inf] <- -Inf
    den <- -log_add_exp(log(s1) + l1, log(s2) + lr)
    lr_new <- log_mean_exp(num) - log_mean_exp(den)
    done <- isTRUE(abs(lr_new - lr) < tol)
    lr <- lr_new
    if (done || it >= maxit || !is.finite(lr)) break
  }
  list(lr = lr, iterations = it, converged = done)
}

# Approximate relative mean squared error of the bridge estimate exp(lr)
# (Fruehwirth-Schnatter 2004, eq. 15; Gronau et al. 2017):
#   re2 = Var_g(f1) / (N2 E_g(f1)^2) + Var(mean f2) / E_p(f2)^2
# with f1 = p / (s1 p + s2 g) at the N2 independent importance draws and f2 =
# g / (s1 p + s2 g) at the N1 posterior draws (p = q / exp(lr)). The
# variance of the mean of f2 is that of an autocorrelated multi-chain
# sequence (mcmc_var_mean(); `chain` gives the chain of each posterior
# draw), so the posterior term is Var_p(f2) / (ess E_p(f2)^2). Returns re2
# and ess, the effective sample size of f2.
bridge_re2 <- function(l1, l2, lr, s1, s2, chain) {
  f1 <- exp(-log_add_exp(log(s1), log(s2) - (l2 - lr)))
  f2 <- exp(-log_add_exp(log(s1) + l1 - lr, log(s2)))
  if (!(mean(f1) > 0 && mean(f2) > 0)) return(list(re2 = Inf, ess = NA_real_))
  vm <- mcmc_var_mean(f2, chain)
  list(re2 = stats::var(f1) / mean(f1)^2 / length(f1) + vm$var_mean / mean(f2)^2,
       ess = vm$ess)
}

marglik_bridge <- function(fit, proposal, n_comp, n_prop, maxit, tol) {
  K <- fit$K
  expert <- spec_expert(fit_spec(fit))
  linear <- inherits(expert, "moe_expert_linear")
  r <- ml_extra(expert)
  pe <- expert_npar(expert, ncol(fit$X))
  p <- ml_ncoef(expert, pe)
  q <- ncol(fit$Z)
  pc <- prior_internal(fit$prior, expert_prior_npar(expert, ncol(fit$X)), q)
  sc <- fit$scaling
  s <- mcmc_data(sc, fit$y, fit$X, fit$Z, fit$weights,
                 if (is_glm_expert(expert)) glm_family_data(expert, fit$y, fit$offset, fit$trials))
  dr <- draws_internal(fit)
  Phi <- ml_phi(expert, dr)
  ok <- rowSums(!is.finite(Phi)) == 0
  S0 <- dim(fit$draws)[1L]
  chain <- dr$draw$chain
  iter <- dr$draw$iteration
  first <- which(ok & iter <= S0 %/% 2L)
  second <- which(ok & iter > S0 %/% 2L)
  perms <- if (K > 1L) all_permutations(K) else matrix(1L, 1L, 1L)
  log_q <- function(par) {
    out <- if (linear) loglik_draws_internal(par, s) + log_prior_phi(par, pc) else
      ml_loglik(expert, par, s) + ml_log_prior(expert, par, pc)
    out[!is.finite(out)] <- -Inf
    out
  }

  # relabelling of the first halves (the "normal" proposal is fitted to
  # them; the switching diagnostic uses their labelling as reference)
  Phi1 <- Phi[first, , drop = FALSE]
  lq1 <- log_q(subset_par(dr, first))
  rl <- relabel_phi(Phi1, which.max(lq1), p, q, K, perms, r)
  cho <- chain[ok]
  switching <- vapply(sort(unique(cho)), function(ch) {
    if (K == 1L) return(0)
    P <- relabel_perms(Phi[ok, , drop = FALSE][cho == ch, , drop = FALSE], rl$ref,
                       rl$scale, p, K, perms, r)
    key <- apply(P, 1L, paste, collapse = ",")
    1 - max(table(key)) / length(key)
  }, 0)

  post <- subset_par(dr, second)
  N1 <- length(second)
  N2 <- if (is.null(n_prop)) N1 else n_prop
  if (proposal == "normal") {
    mu <- colMeans(rl$Phi)
    Sig <- stats::cov(rl$Phi)
    Sig <- (Sig + t(Sig)) / 2
    diag(Sig) <- diag(Sig) + 1e-8 * pmax(diag(Sig), 1e-8)
    R <- chol(Sig)
    Phig <- sweep(matrix(stats::rnorm(N2 * length(mu)), N2) %*% R, 2L, mu, "+")
    prop <- ml_par(expert, Phig, p, q, K)
    g_post <- log_gsym(Phi[second, , drop = FALSE], mu, R, p, q, K, perms, r)
    g_prop <- log_gsym(Phig, mu, R, p, q, K, perms, r)
    M <- NA_integer_
  } else {
    M <- min(n_comp, length(first))
    pick <- first[unique(round(seq(1, length(first), length.out = M)))]
    M <- length(pick)
    comps <- lapply(pick, function(j) mix_component(par_slice(dr, j), s, pc, K, expert))
    prop <- mix_draw(N2, comps, p, q)
    g_post <- mix_logdens_par(post, comps)
    g_prop <- mix_logdens_par(prop, comps)
  }
  l1 <- log_q(post) - g_post
  l2 <- log_q(prop) - g_prop
  l2[is.nan(l2)] <- -Inf

  ch2 <- chain[second]
  # the iterative scheme for the optimal bridge function with weights s1 =
  # n1 / (n1 + N2), s2 = N2 / (n1 + N2), n1 the effective number of posterior
  # draws (as in Fruehwirth-Schnatter 2004 and Gronau et al. 2017): first
  # with n1 = N1, then once more with n1 the effective sample size of f2
  # under those weights (any weights give a consistent estimate)
  it <- 0L
  lr <- stats::median(l1)
  n1 <- N1
  for (pass in 1:2) {
    s1 <- n1 / (n1 + N2)
    s2 <- N2 / (n1 + N2)
    sch <- bridge_iterate(l1, l2, s1, s2, lr, maxit, tol)
    lr <- sch$lr
    it <- it + sch$iterations
    if (!is.finite(lr)) break
    err <- bridge_re2(l1, l2, lr, s1, s2, ch2)
    if (pass == 1L) n1 <- min(N1, max(err$ess, 1))
  }
  if (!is.finite(lr)) err <- list(re2 = Inf, ess = NA_real_)

  jac <- -sum(fit$weights) * log(sc$sy)
  list(logml = lr + jac, se = sqrt(err$re2), method = "bridge", proposal = proposal, K = K,
       n = sum(fit$weights), n_post = N1, n_eff = err$ess, n_prop = N2, n_comp = M,
       iterations = it, converged = sch$converged, re2 = err$re2,
       switching = setNames(switching, paste0("chain", sort(unique(cho)))))
}
