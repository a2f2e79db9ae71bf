# Feed-forward network (FFN) experts: the expert object, its methods of the
# expert generics of R/family.R, canonicalisation, and the EM workhorse
# for FFN experts (src/family_ffn.c).
#
# The mean of expert k is h(x) = sum_h c_h act(A_h' x + d_h) + e, with x the
# non-intercept columns of the expert design X (D of them) and H hidden
# units. Its parameters (one column of `alpha`, P_e = H D + 2 H + 1 rows) are
# A (H x D, column-major: A[h, j] at row h + H (j - 1)), d (H), c (H), e.
# Symmetries: for tanh (odd) the sign flip (A_h, d_h, c_h) -> -(A_h, d_h,
# c_h); for the sigmoid, sigma(-u) = 1 - sigma(u), the same flip with e ->
# e + c_h; any permutation of the hidden units. ffn_canonical() fixes them
# (c_h > 0 for tanh and sigmoid, hidden units sorted by d_h).

#' Two-layer feed-forward network experts
#'
#' `expert_ffn()` makes each expert's mean a two-layer feed-forward network
#' of the expert covariates,
#' \deqn{h(x) = \sum_{h=1}^{H} c_h\, \mathrm{act}(A_h^\top x + d_h) + e,}{
#'   h(x) = sum_h c_h act(A_h' x + d_h) + e,}
#' with Gaussian noise of variance \eqn{\sigma_k^2}; pass it as `expert =` to
#' [moe_em()], [moe_mcmc()] or [moe_ls()]. Here \eqn{x} are the columns of
#' the expert design other than the intercept: the expert formula must keep
#' its intercept (the default), which the network ignores because \eqn{e}
#' plays its part.
#'
#' Networks with tanh, sigmoid or GELU activations are "strongly
#' identifiable" experts: in the least-squares regression form of the
#' mixture of experts their parameters are learned at polynomial rates,
#' unlike linear experts (Nguyen, Ho and Rinaldo, 2024; see
#' `vignette("variants", package = "bayesmoe")`).
#'
#' **Parameters.** Expert \eqn{k} has \eqn{P_e = H D + 2H + 1} parameters,
#' named `A[h,<term>]` (the \eqn{H \times D} input weights), `d[h]` (hidden
#' biases), `c[h]` (output weights) and `e` (output bias), in that order
#' (`A` column-major), followed in `coef()` by `sigma2`.
#'
#' **Symmetries.** The network is unchanged by permuting the hidden units
#' and, for tanh, by the sign flip \eqn{(A_h, d_h, c_h) \to -(A_h, d_h,
#' c_h)} (for the sigmoid the same flip with \eqn{e \to e + c_h}). Fits
#' report canonical parameters: \eqn{c_h > 0} (tanh and sigmoid) and the
#' hidden units sorted by increasing \eqn{d_h}; the Voronoi losses compare
#' canonical parameters. GELU has no sign symmetry; only the order is fixed.
#'
#' **Estimation.** EM ([moe_em()]): given the responsibilities the expert
#' update is a weighted nonlinear least-squares problem; the output layer
#' \eqn{(c, e)} is solved exactly by weighted least squares given the hidden
#' layer, then Levenberg-Marquardt steps (`lm_steps` per M-step) update all
#' parameters, each accepted only when it lowers the weighted residual sum of
#' squares, so the log-likelihood never decreases. Each start draws its own
#' hidden layer \eqn{A, d \sim N(0, 1)} on the internal (standardised)
#' scale. MCMC ([moe_mcmc()]): given the allocations, \eqn{(c, e,
#' \sigma_k^2)} is a conjugate linear regression on the features
#' \eqn{\mathrm{act}(A x + d)} with the expert prior of [moe_prior()] (for
#' the \eqn{H + 1} output coefficients); \eqn{(A, d)} has the prior
#' \eqn{N(0, s^2 I)} on the internal scale (`prior_sd`, default 1) and is
#' updated by `mh_steps` random-walk Metropolis steps with \eqn{(c, e,
#' \sigma_k^2)} integrated out, followed by an exact draw of \eqn{(c, e,
#' \sigma_k^2)}. The random-walk scale of each expert adapts during the
#' warm-up only (towards an acceptance rate of 0.3, within \eqn{[10^{-3},
#' 2s]}) and is frozen afterwards, so a continued chain is identical to one
#' long run; acceptance rates (per Metropolis step, after the warm-up) are
#' in the fit's `accept`.
#'
#' @param hidden Number of hidden units \eqn{H}, a whole number >= 1.
#' @param activation `"tanh"` (the default), `"sigmoid"` or `"gelu"`
#'   (\eqn{u \Phi(u)}).
#' @param lm_steps Levenberg-Marquardt steps per expert and EM iteration.
#' @param mh_steps Random-walk Metropolis steps on each expert's hidden
#'   layer per sweep of [moe_mcmc()] (cheap next to a sweep: each costs one
#'   pass over the expert's observations).
#' @param prior_sd Prior standard deviation of the hidden-layer parameters
#'   \eqn{A, d} under [moe_mcmc()], on the internal scale.
#' @return An object of class `c("moe_expert_ffn", "moe_expert")`.
#' @references Nguyen, H., Ho, N. and Rinaldo, A. (2024). On least squares
#'   estimation in softmax gating mixture of experts. *ICML 2024*.
#'   arXiv:2402.02952.
#' @seealso [moe_experts] for linear experts.
#' @examples
#' expert_ffn(hidden = 2)
#' set.seed(1)
#' x <- runif(300)
#' y <- ifelse(runif(300) < plogis(8 * (x - 0.5)), sin(6 * x), 2 * tanh(4 * x - 2)) +
#'   rnorm(300, sd = 0.1)
#' # the network weights converge slowly: a looser tolerance than the default
#' fit <- moe_em(y ~ x, data = data.frame(x, y), K = 2, expert = expert_ffn(3),
#'               starts = 5, seed = 1, control = moe_em_control(tol = 1e-6))
#' fit
#' @export
expert_ffn <- function(hidden = 3, activation = c("tanh", "sigmoid", "gelu"),
                       lm_steps = 3, mh_steps = 5, prior_sd = 1) {
  call <- sys.call()
  hidden <- check_number(hidden, "hidden", lower = 1, whole = TRUE, call = call)
  activation <- check_choice(activation, c("tanh", "sigmoid", "gelu"), "activation", call)
  lm_steps <- check_number(lm_steps, "lm_steps", lower = 0, whole = TRUE, call = call)
  mh_steps <- check_number(mh_steps, "mh_steps", lower = 1, whole = TRUE, call = call)
  prior_sd <- check_number(prior_sd, "prior_sd", lower = 0, strict_lower = TRUE, call = call)
  structure(list(type = "ffn", hidden = hidden, activation = activation,
                 lm_steps = lm_steps, mh_steps = mh_steps, prior_sd = prior_sd),
            class = c("moe_expert_ffn", "moe_expert"))
}

expert_label.moe_expert_ffn <- function(expert) {
  sprintf("feed-forward network (%d %s hidden unit%s)", expert$hidden, expert$activation,
          if (expert$hidden > 1L) "s" else "")
}

# The activation code of src/family_ffn.c.
ffn_act_code <- function(expert) {
  match(expert$activation, ffn_activations) - 1L
}

# The activations in the order of their codes (ffn_activation in src/moe.h).
ffn_activations <- c("tanh", "sigmoid", "gelu")

# The network inputs: the non-intercept columns of an expert design, as a
# double matrix. The front ends check the design (check_expert_design()).
ffn_inputs <- function(X) {
  if (!"(Intercept)" %in% colnames(X) || ncol(X) < 2L) {
    abort("FFN experts need an expert design with an intercept column and at least one covariate.",
          kind = "formula", arg = "formula")
  }
  Xf <- X[, colnames(X) != "(Intercept)", drop = FALSE]
  storage.mode(Xf) <- "double"
  Xf
}

ffn_npar <- function(H, D) H * D + 2L * H + 1L

expert_npar.moe_expert_ffn <- function(expert, p) ffn_npar(expert$hidden, p - 1L)

expert_par_names.moe_expert_ffn <- function(expert, xnames) {
  H <- expert$hidden
  terms <- setdiff(xnames, "(Intercept)")
  c(sprintf("A[%d,%s]", rep(seq_len(H), length(terms)), rep(terms, each = H)),
    sprintf("d[%d]", seq_len(H)), sprintf("c[%d]", seq_len(H)), "e")
}

expert_mean.moe_expert_ffn <- function(expert, X, alpha) {
  Xf <- ffn_inputs(X)
  alpha <- as.matrix(alpha)
  storage.mode(alpha) <- "double"
  .Call(ffi_ffn_eval, Xf, alpha, as.integer(expert$hidden), ffn_act_code(expert),
        FALSE)$mean
}

# Indices of the blocks of one expert's parameter vector.
ffn_index <- function(H, D) {
  list(A = seq_len(H * D), d = H * D + seq_len(H), c = H * D + H + seq_len(H),
       e = H * D + 2L * H + 1L)
}

# Centre and scale of the network inputs in a moe_scaling() object.
ffn_input_scaling <- function(sc) {
  idx <- setdiff(seq_along(sc$x$center), sc$x$intercept)
  list(center = sc$x$center[idx], scale = sc$x$scale[idx])
}

# Internal scale: x_int = (x - center) / scale, y_int = (y - my) / sy. Then
# A_orig = A_int / scale (by column), d_orig = d_int - A_int (center / scale),
# c_orig = sy c_int, e_orig = sy e_int + my.
expert_to_original.moe_expert_ffn <- function(expert, sc, alpha) {
  alpha <- ffn_rescale(expert, sc, alpha, to_original = TRUE)
  ffn_canonical(alpha, expert, length(ffn_input_scaling(sc)$center))
}

expert_to_internal.moe_expert_ffn <- function(expert, sc, alpha) {
  ffn_rescale(expert, sc, alpha, to_original = FALSE)
}

# The network parameters of every expert (the columns of `alpha`) mapped
# from the internal to the original scale (`to_original`) or back, by the
# formulas above.
ffn_rescale <- function(expert, sc, alpha, to_original) {
  alpha <- as.matrix(alpha)
  H <- expert$hidden
  s <- ffn_input_scaling(sc)
  D <- length(s$center)
  ix <- ffn_index(H, D)
  for (k in seq_len(ncol(alpha))) {
    A <- matrix(alpha[ix$A, k], H, D)
    if (to_original) {
      alpha[ix$d, k] <- alpha[ix$d, k] - drop(A %*% (s$center / s$scale))
      alpha[ix$A, k] <- A %*% diag(1 / s$scale, D)
      alpha[ix$c, k] <- sc$sy * alpha[ix$c, k]
      alpha[ix$e, k] <- sc$sy * alpha[ix$e, k] + sc$my
    } else {
      alpha[ix$d, k] <- alpha[ix$d, k] + drop(A %*% s$center)
      alpha[ix$A, k] <- A %*% diag(s$scale, D)
      alpha[ix$c, k] <- alpha[ix$c, k] / sc$sy
      alpha[ix$e, k] <- (alpha[ix$e, k] - sc$my) / sc$sy
    }
  }
  alpha
}

# Relabelling features: the canonical parameters on the internal scale.
expert_features.moe_expert_ffn <- function(expert, sc, A) {
  t(ffn_canonical(expert_to_internal(expert, sc, t(A)), expert))
}

#' Canonical parameters of FFN experts
#'
#' Fixes the symmetries of each column of `alpha` (one expert per column):
#' for tanh and sigmoid the sign of every hidden unit is flipped where
#' \eqn{c_h < 0} (for the sigmoid \eqn{e} absorbs \eqn{c_h}), then the
#' hidden units are sorted by increasing \eqn{d_h}. The network function is
#' unchanged.
#' @noRd
ffn_canonical <- function(alpha, expert, D = NULL) {
  alpha <- as.matrix(alpha)
  H <- expert$hidden
  if (is.null(D)) D <- (nrow(alpha) - 2L * H - 1L) / H
  ix <- ffn_index(H, D)
  for (k in seq_len(ncol(alpha))) {
    th <- alpha[, k]
    A <- matrix(th[ix$A], H, D)
    d <- th[ix$d]
    cc <- th[ix$c]
    e <- th[ix$e]
    if (expert$activation != "gelu") {
      flip <- cc < 0
      if (expert$activation == "sigmoid") e <- e + sum(cc[flip])
      A[flip, ] <- -A[flip, ]
      d[flip] <- -d[flip]
      cc[flip] <- -cc[flip]
    }
    o <- order(d)
    alpha[, k] <- c(A[o, , drop = FALSE], d[o], cc[o], e)
  }
  alpha
}

# ---------------------------------------------------------------------------
# EM with FFN experts (softmax gating)

# Starting hidden layers: P_e x K with A, d ~ N(0, 1) (internal scale) and a
# zero output layer (the first M-step solves it).
ffn_start_theta <- function(expert, D, K) {
  H <- expert$hidden
  P <- ffn_npar(H, D)
  th <- matrix(0, P, K)
  ix <- ffn_index(H, D)
  th[c(ix$A, ix$d), ] <- rnorm(H * (D + 1L) * K)
  th
}

# Softmax gating with FFN experts: the one gate FFN experts are offered
# with (the C engine takes any gate; prior draws, starting values and
# relabelling of FFN experts are written for the softmax only).
is_ffn_softmax <- function(spec) {
  inherits(spec_expert(spec), "moe_expert_ffn") && inherits(spec_gate(spec), "moe_gate_softmax")
}

# Number of coefficients of each expert's conjugate prior (moe_prior()'s
# m_a and V_a): the p columns of the expert design for linear experts, the
# H + 1 output-layer coefficients for FFN experts.
expert_prior_npar <- function(expert, p) UseMethod("expert_prior_npar")
expert_prior_npar.default <- function(expert, p) p
expert_prior_npar.moe_expert_ffn <- function(expert, p) expert$hidden + 1L

# ---------------------------------------------------------------------------
# MCMC with FFN experts (softmax gating)

# A draw from the prior (internal scale): list(alpha (P_e x K), sigma2, W).
ffn_prior_draw <- function(pc, expert, D, K) {
  H <- expert$hidden
  ix <- ffn_index(H, D)
  base <- prior_draw(pc, K)
  alpha <- matrix(0, ffn_npar(H, D), K)
  alpha[c(ix$A, ix$d), ] <- rnorm(H * (D + 1L) * K, sd = expert$prior_sd)
  alpha[c(ix$c, ix$e), ] <- base$alpha
  list(alpha = alpha, sigma2 = base$sigma2, W = base$W)
}

# Starting state of the Metropolis blocks of an expert family (moe.h): for
# FFN experts the K log random-walk scales (log 0.1: a tenth of the prior
# standard deviation of the standardised hidden layer) and the K numbers of
# adaptation steps done.
expert_state_init <- function(expert, K) UseMethod("expert_state_init")
expert_state_init.default <- function(expert, K) numeric()
expert_state_init.moe_expert_ffn <- function(expert, K) c(rep(log(0.1), K), rep(0, K))

# The family in the form the C engine takes (make_family() in src/ffi.c).
expert_c.moe_expert_ffn <- function(expert) {
  list(type = family_codes[["ffn"]], H = as.integer(expert$hidden), act = ffn_act_code(expert),
       lm_steps = as.integer(expert$lm_steps), mh_steps = as.integer(expert$mh_steps),
       s_hid2 = expert$prior_sd^2)
}

# The family's design: the network inputs.
expert_design.moe_expert_ffn <- function(expert, X) ffn_inputs(X)

# Starting parameters of an EM run: random hidden layers, zero output layers.
expert_start.moe_expert_ffn <- function(expert, D, K) ffn_start_theta(expert, D, K)

# The Metropolis blocks of the family: one per expert; rates per step.
expert_accept_names.moe_expert_ffn <- function(expert, K) paste0("expert", seq_len(K))
expert_accept_scale.moe_expert_ffn <- function(expert) expert$mh_steps

# FFN experts need an intercept column in the expert design (which the
# network ignores) and at least one other column.
check_expert_design <- function(expert, X, call) {
  if (!inherits(expert, "moe_expert_ffn")) return(invisible())
  if (!"(Intercept)" %in% colnames(X)) {
    abort("`formula` must keep its intercept with `expert_ffn()` experts (the network's output bias takes its place).",
          kind = "formula", call = call, arg = "formula")
  }
  if (ncol(X) < 2L) {
    abort("`formula` must have at least one covariate besides the intercept with `expert_ffn()` experts.",
          kind = "formula", call = call, arg = "formula")
  }
  invisible()
}
