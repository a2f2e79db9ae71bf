#' Voronoi loss for strongly identifiable experts
#'
#' The parameter loss of the least-squares theory of softmax-gated mixtures
#' of experts with strongly identifiable experts (such as the two-layer
#' networks of [expert_ffn()]; Nguyen, Ho and Rinaldo, 2024). With true atoms
#' \eqn{(\beta^*_{0j}, \beta^*_{1j}, \eta^*_j)}, \eqn{j = 1..k^*} (gating
#' intercept, gating slopes, expert parameters) and fitted atoms
#' \eqn{(\beta_{0i}, \beta_{1i}, \eta_i)}, \eqn{i = 1..K}, the Voronoi cell
#' \eqn{A_j} holds the fitted atoms whose \eqn{(\beta_1, \eta)} is nearest
#' (Euclidean) to the true atom \eqn{j}, and
#' \deqn{D = \sum_j \Bigl|\sum_{i \in A_j} e^{\beta_{0i}} - e^{\beta^*_{0j}}\Bigr|
#'   + \sum_{j: |A_j| > 1} \sum_{i \in A_j} e^{\beta_{0i}}
#'     (\|\Delta\beta_{1ij}\|^2 + \|\Delta\eta_{ij}\|^2)
#'   + \sum_{j: |A_j| = 1} \sum_{i \in A_j} e^{\beta_{0i}}
#'     (\|\Delta\beta_{1ij}\| + \|\Delta\eta_{ij}\|).}{
#'   D = sum_j |sum_{i in A_j} exp(beta0_i) - exp(beta0*_j)| + (squared
#'   distances in cells with several atoms) + (distances in one-atom cells).}
#' An empty cell contributes its true weight. The loss is permutation
#' invariant, so no relabelling is needed.
#'
#' The softmax gating is identified only up to a common translation of all
#' gating vectors. `translate = "infimum"` (the default) takes the smallest
#' loss over translations (exact in the intercept, over candidate slopes that
#' put a fitted gating slope on a true one, then refined by Nelder-Mead);
#' `"reference"` the smallest over the \eqn{K} choices of the fitted
#' reference expert; `"none"` the fit as given (reference expert \eqn{K}).
#'
#' FFN parameters are canonicalised before the comparison (positive output
#' weights, hidden units sorted by their bias: see [expert_ffn()]); for
#' [expert_linear()] experts \eqn{\eta} is the coefficient vector. Parameters
#' are compared on the original scale of the data.
#'
#' @param fit A fit of [moe_ls()], [moe_em()] or [moe_mcmc()] (softmax
#'   gating), or a list with `alpha` (expert parameters, one column per
#'   expert) and `W` (gating coefficients, one column per expert).
#' @param truth The true parameters: a list with `alpha` and `W` as for
#'   `fit` (any number of columns \eqn{k^*}), in the same layout, or a
#'   [moe_truth()] with experts of the fit's kind.
#' @param translate How the gating translation is fixed: `"infimum"`,
#'   `"reference"` or `"none"`.
#' @param expert The expert object, needed only when `fit` is a list:
#'   [expert_linear()] (the default) or [expert_ffn()].
#' @return The loss: a number for point fits, a vector (one per retained
#'   draw, chains stacked) for [moe_mcmc()] fits. The attribute `max_cell`
#'   gives the number of fitted atoms in the largest cell.
#' @references Nguyen, H., Ho, N. and Rinaldo, A. (2024). On least squares
#'   estimation in softmax gating mixture of experts. *ICML 2024*.
#'   arXiv:2402.02952.
#' @examples
#' truth <- list(alpha = cbind(c(1, 2), c(-1, 0.5)), W = cbind(c(0.5, 3), c(0, 0)))
#' fit <- list(alpha = truth$alpha + 0.01, W = truth$W + 0.02)
#' voronoi_loss_strong(fit, truth)
#' voronoi_loss_strong(fit, truth, translate = "none")
#' @export
voronoi_loss_strong <- function(fit, truth, translate = c("infimum", "reference", "none"),
                                expert = expert_linear()) {
  call <- sys.call()
  validate_if_fit(fit, "fit", call)
  translate <- check_choice(translate, c("infimum", "reference", "none"), "translate", call)
  sets <- strong_param_sets(fit, expert, call)
  expert <- sets$expert
  if (inherits(truth, "moe_truth")) truth <- strong_truth_par(truth, expert, call)
  if (!is.list(truth) || is.null(truth$alpha) || is.null(truth$W)) {
    abort(sprintf("`truth` must be a `moe_truth()` or a list with `alpha` and `W`, not %s.",
                  if (inherits(truth, "moe_fit")) "a fit" else describe(truth)),
          call = call, arg = "truth")
  }
  tru <- strong_atoms(truth$alpha, truth$W, expert, "truth", call)
  L <- nrow(sets$atoms)
  if (nrow(tru) != L) {
    abort(sprintf("`truth` must have %d parameters per expert (gating and expert), not %d.",
                  L, nrow(tru)), call = call, arg = "truth")
  }
  d <- nrow(as.matrix(truth$W)) - 1L
  loss <- strong_loss_atoms(sets$atoms, sets$K, tru, d, translate)
  if (!all(is.finite(loss))) {
    abort("The loss overflows: the gating intercepts of `fit` or `truth` are too large for their exponentials (or the parameters too far apart) to be finite.",
          kind = "numerical", call = call, arg = "fit")
  }
  loss
}

# Losses of S stacked atom sets (L x K x S) against the truth (L x kstar).
strong_loss_atoms <- function(atoms, K, tru, d, translate) {
  mode <- switch(translate, none = 0L, reference = 1L, infimum = 2L)
  r <- .Call(ffi_voronoi_strong, as.double(atoms), as.integer(K), tru, as.integer(d), mode,
             NULL)
  loss <- r$loss
  if (translate == "infimum" && d >= 1L) {
    # local refinement of the gating slope translation (exact intercept)
    for (s in seq_along(loss)) {
      if (!is.finite(loss[s])) next
      at <- atoms[seq_len(nrow(tru) * K) + (s - 1L) * nrow(tru) * K]
      f <- function(t1) .Call(ffi_voronoi_strong, at, as.integer(K), tru, as.integer(d), 3L,
                              as.double(t1))$loss
      o <- stats::optim(r$shift[-1L, s], f, method = if (d == 1L) "BFGS" else "Nelder-Mead",
                        control = list(maxit = 200))
      if (is.finite(o$value) && o$value < loss[s]) loss[s] <- o$value
    }
  }
  structure(loss, max_cell = r$max_cell)
}

# Atoms (L x K, L = q + P_e): per expert its gating column and its
# (canonical) expert parameters.
strong_atoms <- function(alpha, W, expert, arg = "fit", call = NULL) {
  alpha <- as.matrix(alpha)
  W <- as.matrix(W)
  if (!is.numeric(alpha) || !is.numeric(W) || ncol(alpha) != ncol(W) || !length(W) ||
      !all(is.finite(alpha)) || !all(is.finite(W))) {
    abort(sprintf("`%s` must have finite numeric `alpha` and `W` with one column per expert each (%s and %s columns given).",
                  arg, ncol(alpha), ncol(W)), call = call, arg = arg)
  }
  if (inherits(expert, "moe_expert_ffn")) {
    H <- expert$hidden
    D <- (nrow(alpha) - 2L * H - 1L) / H
    if (D < 1 || D != round(D)) {
      abort(sprintf("`%s` must have %d * D + %d rows of expert parameters for `expert_ffn(%d)` experts with D inputs, not %d.",
                    arg, H, 2L * H + 1L, H, nrow(alpha)), call = call, arg = arg)
    }
    alpha <- ffn_canonical(alpha, expert)
  }
  m <- rbind(W, alpha)
  storage.mode(m) <- "double"
  unname(m)
}

# The parameter sets of a fit: list(atoms (L x K x S), K, expert).
strong_param_sets <- function(fit, expert, call) {
  if (inherits(fit, "moe_mcmc")) {
    spec <- fit_spec(fit)
    if (!inherits(spec_gate(spec), "moe_gate_softmax")) {
      abort("`fit` must have softmax gating.", call = call, arg = "fit")
    }
    expert <- spec_expert(spec)
    th <- matrix(fit$draws, ncol = dim(fit$draws)[3L])
    sets <- lapply(seq_len(nrow(th)), function(s) {
      par <- par_unflatten(th[s, ], ncol(fit$X), ncol(fit$Z), fit$K, spec)
      strong_atoms(par$alpha, par$W, expert)
    })
    return(list(atoms = simplify2array(sets), K = fit$K, expert = expert))
  }
  if (inherits(fit, "moe_fit")) {
    par <- fit$coefficients
    spec <- fit_spec(fit)
    if (!inherits(spec_gate(spec), "moe_gate_softmax")) {
      abort("`fit` must have softmax gating.", call = call, arg = "fit")
    }
    expert <- spec_expert(spec)
  } else if (is.list(fit) && !is.null(fit$alpha) && !is.null(fit$W)) {
    par <- fit
    if (!inherits(expert, "moe_expert")) {
      abort(sprintf("`expert` must be an expert object such as `expert_ffn()`, not %s.",
                    describe(expert)), call = call, arg = "expert")
    }
  } else {
    abort(sprintf("`fit` must be a moe_ls, moe_em or moe_mcmc fit or a list with `alpha` and `W`, not %s.",
                  describe(fit)), call = call, arg = "fit")
  }
  at <- strong_atoms(par$alpha, par$W, expert, "fit", call)
  list(atoms = array(at, c(dim(at), 1L)), K = ncol(at), expert = expert)
}

# ---------------------------------------------------------------------------
# Least-squares contraction study (method = "ls" of the harness)

# Data from the regression form y = sum_k g_k(z) h(x; eta_k) + sd * noise
# with z = x = (1, x), x ~ Uniform(-1, 1). truth: list(alpha, W, sd, expert).
ls_simulate <- function(truth, n) {
  x <- stats::runif(n, -1, 1)
  X <- cbind("(Intercept)" = 1, x = x)
  G <- exp(log_softmax_rows(X %*% truth$W))
  M <- expert_mean(truth$expert, X, truth$alpha)
  list(y = rowSums(G * M) + truth$sd * stats::rnorm(n), X = X)
}

# L2(mu) distance of the fitted and true regression functions (grid over x).
ls_l2 <- function(par, truth) {
  X <- cbind("(Intercept)" = 1, x = seq(-1, 1, length.out = 401))
  f <- function(p, ex) rowSums(exp(log_softmax_rows(X %*% p$W)) * expert_mean(ex, X, p$alpha))
  sqrt(mean((f(par, truth$expert) - f(truth, truth$expert))^2))
}

# The truth with K experts (K >= k*): the first true expert repeated
# K - k* + 1 times, its gating weight split equally (reference column kept
# last and zero).
ls_split_truth <- function(truth, K) {
  ks <- ncol(truth$W)
  if (K < ks) return(NULL)
  m <- K - ks + 1L
  idx <- c(rep(1L, m), seq_len(ks)[-1L])
  W <- truth$W[, idx, drop = FALSE]
  W[1L, seq_len(m)] <- W[1L, seq_len(m)] - log(m)
  list(alpha = truth$alpha[, idx, drop = FALSE], W = W - W[, K])
}

# The parameters (alpha, W) of a moe_truth() for the strong loss, whose
# experts must be of the fit's kind.
strong_truth_par <- function(truth, expert, call) {
  te <- truth_expert(truth)
  if (!identical(class(expert)[1L], class(te)[1L])) {
    abort(sprintf("`truth` must have experts of the fit's kind (%s), not %s.",
                  expert_label(expert), expert_label(te)),
          kind = "expert", call = call, arg = "truth")
  }
  truth_par(truth)[c("alpha", "W")]
}
