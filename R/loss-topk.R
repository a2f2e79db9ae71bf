# Voronoi loss of a top-k gated fit: the D1/D2 structure of the softmax
# losses, restricted to the experts that the top-k selection can activate at
# the given covariates. Plain R; the softmax D1/D2 losses are in R/loss.R.

#' Voronoi loss for top-k sparse gating
#'
#' The parameter loss of a top-k gated mixture of linear experts against a
#' truth: the structure of the over-fitted Voronoi loss D2 (which equals D1
#' when every cell holds one atom), restricted to the fitted experts the
#' top-k selection can activate.
#'
#' Atoms are \eqn{\theta_i = (\beta_{1i}, a_i, b_i, \sigma^2_i)}: the gating
#' coefficients without the intercept, the expert coefficients and the
#' variance; the gating intercept \eqn{\beta_{0i}} gives the weight
#' \eqn{e^{\beta_{0i}}}. `truth` uses the reference parametrisation (its
#' last gating column zero). The fitted gate, identified only up to a common
#' translation of the logits, is first translated so that the fitted
#' experts nearest to the truth's reference (by expert coefficients and
#' variance) have total weight 1 and weighted mean gating slope 0; the loss
#' is then invariant under relabelling and re-referencing of the fit. An expert is *active* if it
#' is among the `k` largest logits at some row of `Z` (ties to the lower
#' index, as in [gate_topk()]); inactive experts have gating probability zero
#' everywhere on `Z`, do not change the density there and are left out.
#' Each active atom goes to the Voronoi cell \eqn{A_j} of its nearest true
#' atom (Euclidean distance, ties to the lower \eqn{j}), and
#' \deqn{L = \sum_j \big|\sum_{i \in A_j} e^{\beta_{0i}} - e^{\beta^*_{0j}}\big|
#'   + \sum_{j: |A_j| = 1} \sum_{i \in A_j} e^{\beta_{0i}} (\|\Delta\beta_1\| +
#'   \|\Delta a\| + |\Delta b| + |\Delta\sigma^2|)
#'   + \sum_{j: |A_j| > 1} \sum_{i \in A_j} e^{\beta_{0i}} (\|\Delta\beta_1\|^{\bar r}
#'   + |\Delta b|^{\bar r} + \|\Delta a\|^{\bar r/2} + |\Delta\sigma^2|^{\bar r/2})}
#' with \eqn{\bar r = \bar r(|A_j|)} from `rbar`. The published top-k
#' analysis (Nguyen et al., ICLR 2024) states that the over-specified loss
#' has this structure over the cells the selection can activate but gives no
#' exact form; this restriction to activatable experts is the package's.
#' Empty cells contribute their full true weight.
#'
#' @param par The fitted parameters: a list with `alpha` (p x K expert
#'   coefficients, intercept first), `sigma2` (K) and `W` (q x K gating
#'   coefficients, intercept first, column K zero), e.g.
#'   `coef(fit, matrix = TRUE)`; or a fit of [moe_em()] with a top-k or
#'   softmax gate, whose coefficients, `k` and gating covariates are used.
#' @param truth The true parameters, a list like `par` with k* columns, or a
#'   [moe_truth()] with linear experts.
#' @param k The number of experts kept at each z (the fitted gate's `k` for
#'   a fit; `K` for a softmax gate).
#' @param Z The gating covariates (rows) at which the selection is
#'   evaluated, a matrix with q columns, intercept first (the fit's own for
#'   a fit).
#' @param rbar The exponents \eqn{\bar r(M)} of cells with M = 1, 2, ...
#'   atoms; a cell with more atoms than `length(rbar)` gives `NA` with a
#'   warning.
#' @return A number, with attributes `active` (the active experts) and
#'   `cells` (the cell of each active expert).
#' @examples
#' truth <- list(alpha = cbind(c(1, 2), c(-1, 1), c(0, -2)), sigma2 = c(0.1, 0.2, 0.15),
#'               W = cbind(c(0.5, -3), c(0, 3), 0))
#' Z <- cbind(1, seq(-2, 2, length.out = 50))
#' topk_loss(truth, truth, k = 2, Z = Z)   # 0
#' par <- truth
#' par$alpha <- par$alpha + 0.1
#' topk_loss(par, truth, k = 2, Z = Z)
#' @export
topk_loss <- function(par, truth, k = NULL, Z = NULL, rbar = c(1, 4, 6)) {
  call <- sys.call()
  validate_if_fit(par, "par", call)
  if (inherits(par, "moe_fit")) {
    gate <- if (is.null(par$gate)) gate_softmax() else par$gate
    if (!gate$type %in% c("softmax", "topk")) {
      abort(sprintf("`par` must be a fit with a softmax or top-k gate, not one with %s.",
                    gate_label(gate)), call = call, arg = "par")
    }
    if (is.null(k)) k <- if (gate$type == "topk") gate$k else par$K
    if (is.null(Z)) Z <- par$Z
    par <- coef(par, matrix = TRUE)
  }
  par <- topk_truth_par(par, "par", call)
  truth <- topk_truth_par(truth, "truth", call)
  check_loss_par(par, "par", call)
  check_loss_par(truth, "truth", call)
  K <- ncol(par$alpha)
  ks <- ncol(truth$alpha)
  if (any(truth$W[, ks] != 0)) {
    abort("`truth` must have its last gating column zero (the reference expert).",
          call = call, arg = "truth")
  }
  if (nrow(par$alpha) != nrow(truth$alpha) || nrow(par$W) != nrow(truth$W)) {
    abort(sprintf("`truth` must have as many expert and gating coefficients as `par` (%d and %d), not %d and %d.",
                  nrow(par$alpha), nrow(par$W), nrow(truth$alpha), nrow(truth$W)),
          call = call, arg = "truth")
  }
  if (is.null(k)) abort("`k` must be supplied when `par` is not a fit.", call = call, arg = "k")
  k <- check_number(k, "k", lower = 1, whole = TRUE, call = call)
  if (k > K) {
    abort(sprintf("`k` must be at most the number of fitted experts (%d), not %d.", K, k),
          call = call, arg = "k")
  }
  if (is.null(Z) || !is.matrix(Z) || !is.numeric(Z) || ncol(Z) != nrow(par$W) ||
      nrow(Z) < 1L || anyNA(Z)) {
    abort(sprintf("`Z` must be a numeric matrix with %d columns (intercept first) and no missing values.",
                  nrow(par$W)), call = call, arg = "Z")
  }
  if (!is.numeric(rbar) || length(rbar) < 1L || any(!is.finite(rbar)) || any(rbar <= 0)) {
    abort(sprintf("`rbar` must be positive finite exponents, not %s.", describe(rbar)),
          call = call, arg = "rbar")
  }
  active <- which(colSums(topk_mask(Z %*% par$W, k)) > 0)
  nearest <- function(A, A0) {
    d2 <- outer(seq_len(ncol(A)), seq_len(ncol(A0)),
                Vectorize(function(i, j) sum((A[, i] - A0[, j])^2)))
    apply(matrix(d2, ncol = ncol(A0)), 1L, which.min)
  }
  # the gate is identified up to a common translation of the logits: put
  # the fitted one on the truth's reference (its last expert), whose cell
  # (by the translation-free expert parameters) gets total weight
  # exp(0) = 1 and weighted mean gating slope 0
  ex <- function(p, idx) rbind(p$alpha[, idx, drop = FALSE], p$sigma2[idx])
  ref <- which(nearest(ex(par, active), ex(truth, seq_len(ks))) == ks)
  if (length(ref)) {
    wr <- exp(par$W[1L, active[ref]])
    shift <- c(log(sum(wr)),
               drop(par$W[-1L, active[ref], drop = FALSE] %*% wr) / sum(wr))
    par$W <- par$W - shift
  }
  atoms <- function(p, idx) {
    rbind(p$W[-1L, idx, drop = FALSE], p$alpha[, idx, drop = FALSE], p$sigma2[idx])
  }
  A <- atoms(par, active)
  A0 <- atoms(truth, seq_len(ks))
  cell <- nearest(A, A0)
  q1 <- nrow(par$W) - 1L
  p <- nrow(par$alpha)
  rows_b1 <- seq_len(q1)
  row_b <- q1 + 1L
  rows_a <- q1 + seq_len(p)[-1L]
  row_s <- q1 + p + 1L
  w <- exp(par$W[1L, active])
  w0 <- exp(truth$W[1L, ])
  loss <- 0
  for (j in seq_len(ks)) {
    in_j <- which(cell == j)
    loss <- loss + abs(sum(w[in_j]) - w0[j])
    M <- length(in_j)
    if (M == 0L) next
    if (M > length(rbar)) {
      warn(sprintf("A Voronoi cell holds %d atoms but `rbar` gives exponents for at most %d; the loss is NA.",
                   M, length(rbar)), kind = "loss")
      loss <- NA_real_
      break
    }
    r <- if (M == 1L) 1 else rbar[M]
    rh <- if (M == 1L) 1 else r / 2
    for (i in in_j) {
      dd <- A[, i] - A0[, j]
      loss <- loss + w[i] * (sqrt(sum(dd[rows_b1]^2))^r + abs(dd[row_b])^r +
                               sqrt(sum(dd[rows_a]^2))^rh + abs(dd[row_s])^rh)
    }
  }
  structure(loss, active = active, cells = stats::setNames(cell, active))
}

# A moe_truth() given to topk_loss() as `par` or `truth`: its parameter
# list (linear experts only); anything else is returned as it is.
topk_truth_par <- function(p, arg, call) {
  if (!inherits(p, "moe_truth")) return(p)
  if (truth_is_ffn(p)) {
    abort(sprintf("`%s` must have linear experts for `topk_loss()`, not %s.", arg,
                  expert_label(p$expert)), kind = "expert", call = call, arg = arg)
  }
  truth_par(p)
}

check_loss_par <- function(p, arg, call) {
  ok <- is.list(p) && is.matrix(p$alpha) && is.numeric(p$alpha) && is.matrix(p$W) &&
    is.numeric(p$W) && is.numeric(p$sigma2) && ncol(p$alpha) == ncol(p$W) &&
    length(p$sigma2) == ncol(p$alpha) && nrow(p$alpha) >= 1L && nrow(p$W) >= 1L &&
    all(is.finite(p$alpha)) && all(is.finite(p$W)) && all(is.finite(p$sigma2))
  if (!ok) {
    abort(sprintf("`%s` must be a list of finite `alpha` (p x K), `sigma2` (K) and `W` (q x K), e.g. coef(fit, matrix = TRUE).",
                  arg), call = call, arg = arg)
  }
  invisible(p)
}
