# Voronoi losses (D1, D2) and covariate-averaged density distances between
# fitted and true mixtures of experts (Nguyen, Nguyen and Ho, 2023).
#
# Every loss works on "atoms": for each parameter set (an EM estimate, a
# truth, a parameter list, or every posterior draw of an MCMC fit) the
# (2d + 3) x K matrix with columns [beta0, beta1 (d), a (d), b, sigma2]
# (src/loss.c). `loss_atoms()` extracts them; the C kernels in src/loss.c
# compute the losses of every parameter set.

# Atoms of every parameter set in `x`: a list with `atoms` (array
# (2d + 3) x K x S), `d`, `K`, `S` and `draw_dim` (c(iterations, chains) for
# MCMC fits, NULL otherwise).
loss_atoms <- function(x, arg = "fit", call = NULL) UseMethod("loss_atoms")

loss_atoms.default <- function(x, arg = "fit", call = NULL) {
  abort(sprintf("`%s` must be a fit from `moe_em()` or `moe_mcmc()`, a truth from `moe_truth()` or a parameter list, not %s.",
                arg, describe(x)), call = call, arg = arg)
}

loss_atoms.moe_truth <- function(x, arg = "fit", call = NULL) {
  if (truth_is_ffn(x)) {
    abort(sprintf("`%s` must have linear experts; for `expert_ffn()` experts use `voronoi_loss_strong()`.",
                  arg), kind = "expert", call = call, arg = arg)
  }
  fam <- truth_is_family(x)
  atoms <- rbind(x$beta0, x$beta1, x$a, x$b, if (fam) atom_scale(x$expert, x) else x$sigma2)
  list(atoms = array(atoms, c(nrow(atoms), x$K, 1L)), d = x$d, K = x$K, S = 1L,
       draw_dim = NULL, expert = if (fam) x$expert,
       df = if (!is.null(x$df)) matrix(x$df, x$K, 1L), trials = x$trials)
}

# The family of atoms (NULL for Gaussian experts), by its class.
atoms_family <- function(at) if (is.null(at$expert)) "gaussian" else class(at$expert)[1L]

# The fit and the truth must have experts of one family.
check_same_family <- function(at, truth, call) {
  tf <- if (truth_is_family(truth)) class(truth$expert)[1L] else "gaussian"
  if (atoms_family(at) != tf) {
    lab <- function(e) if (is.null(e)) "Gaussian" else expert_label(e)
    abort(sprintf("`fit` has %s experts but `truth` %s experts: losses compare mixtures of one family.",
                  lab(at$expert), lab(truth$expert)),
          kind = "family", call = call, arg = "truth")
  }
}

loss_atoms.list <- function(x, arg = "fit", call = NULL) {
  loss_atoms(truth_from_list(x, arg, call))
}

# A truth from a plain parameter list (beta0, beta1, a, b, sigma or sigma2).
truth_from_list <- function(x, arg, call) {
  nm <- names(x)
  need <- c("beta0", "beta1", "a", "b")
  if (is.null(nm) || !all(need %in% nm) || !any(c("sigma", "sigma2") %in% nm)) {
    abort(sprintf("`%s` must be a parameter list with elements `beta0`, `beta1`, `a`, `b` and `sigma` (or `sigma2`); it has %s.",
                  arg, if (is.null(nm) || !length(nm)) "no names" else paste0("`", nm, "`", collapse = ", ")),
          call = call, arg = arg)
  }
  if ("sigma" %in% nm) return(new_moe_truth(x$beta0, x$beta1, x$a, x$b, x$sigma, call))
  if (!is.numeric(x$sigma2) || any(!is.finite(x$sigma2)) || any(!(x$sigma2 > 0))) {
    abort(sprintf("`%s$sigma2` must hold positive variances, not %s.", arg, describe(x$sigma2)),
          call = call, arg = arg)
  }
  tr <- new_moe_truth(x$beta0, x$beta1, x$a, x$b, sqrt(x$sigma2), call)
  tr$sigma2[] <- as.numeric(x$sigma2)
  tr
}

loss_atoms.moe_fit <- function(x, arg = "fit", call = NULL) {
  loss_atoms(truth_from_fit(x, NULL, call))
}

loss_atoms.moe_mcmc <- function(x, arg = "fit", call = NULL) {
  if (inherits(fit_spec(x)$expert, "moe_expert_ffn")) truth_from_fit(x, NULL, call)
  loss_gate(x, call)
  if (!is_softmax_linear(fit_spec(x))) {
    # gate variants equivalent to a softmax: draw by draw through the
    # parameter lists (temperature: logits W / tau); the softmax gate with
    # linear experts vectorised below
    S <- prod(dim(x$draws)[1:2])
    ats <- lapply(seq_len(S), function(s) loss_atoms(truth_from_fit(x, s, call)))
    at1 <- ats[[1L]]
    return(list(atoms = array(unlist(lapply(ats, `[[`, "atoms")), c(dim(at1$atoms)[1:2], S)),
                d = at1$d, K = at1$K, S = S, draw_dim = dim(x$draws)[1:2],
                expert = at1$expert, trials = at1$trials,
                df = if (!is.null(at1$df)) matrix(unlist(lapply(ats, `[[`, "df")), at1$K, S)))
  }
  lay <- fit_layout(x, call)
  dr <- x$draws
  K <- x$K
  p <- lay$p
  q <- lay$q
  d <- lay$d
  if (length(dim(dr)) != 3L || dim(dr)[3L] != (p + 1L) * K + q * (K - 1L)) {
    abort(sprintf("`%s$draws` must be an array [iterations, chains, %d parameters].",
                  arg, (p + 1L) * K + q * (K - 1L)), kind = "internal", call = call, arg = arg)
  }
  S <- dim(dr)[1L] * dim(dr)[2L]
  th <- matrix(dr, S)
  m <- 2L * d + 3L
  atoms <- array(0, c(m, K, S))
  for (k in seq_len(K)) {
    ex <- (k - 1L) * (p + 1L)
    if (k < K) {
      gt <- (p + 1L) * K + (k - 1L) * q
      atoms[1L, k, ] <- th[, gt + lay$z_int]
      atoms[1L + seq_len(d), k, ] <- t(th[, gt + lay$z_cov, drop = FALSE])
    }
    atoms[1L + d + seq_len(d), k, ] <- t(th[, ex + lay$x_cov, drop = FALSE])
    atoms[2L + 2L * d, k, ] <- th[, ex + lay$x_int]
    atoms[m, k, ] <- th[, ex + p + 1L]
  }
  list(atoms = atoms, d = d, K = K, S = S, draw_dim = dim(dr)[1:2])
}

# Shape per-parameter-set results like the input: a number for a single
# parameter set, a matrix [iterations, chains] for an MCMC fit.
shape_draws <- function(v, at) {
  if (is.null(at$draw_dim)) return(v)
  matrix(v, at$draw_dim[1L], at$draw_dim[2L],
         dimnames = list(iteration = NULL, chain = NULL))
}

check_truth <- function(truth, call) {
  if (inherits(truth, "moe_truth")) {
    if (truth_is_ffn(truth)) loss_atoms(truth, "truth", call)
    return(truth)
  }
  if (is.list(truth) && !inherits(truth, "moe_fit")) return(truth_from_list(truth, "truth", call))
  abort(sprintf("`truth` must be made by `moe_truth()` or be a parameter list, not %s.",
                describe(truth)), call = call, arg = "truth")
}

check_same_d <- function(at, truth, call) {
  if (at$d != truth$d) {
    abort(sprintf("`fit` has %d covariate%s but `truth` has %d.", at$d,
                  if (at$d > 1L) "s" else "", truth$d),
          kind = "design", call = call, arg = "fit")
  }
}

check_rbar <- function(rbar, call) {
  if (!is.numeric(rbar) || !length(rbar) || any(!is.finite(rbar)) || any(rbar <= 0)) {
    abort(sprintf("`rbar` must be a vector of positive exponents (rbar[M] for cells of M atoms), not %s.",
                  describe(rbar)), call = call, arg = "rbar")
  }
  if (rbar[1L] != 1) {
    abort(sprintf("`rbar[1]` must be 1 (cells of one atom take exponent 1), not %s.",
                  format(rbar[1L])), call = call, arg = "rbar")
  }
  as.double(rbar)
}

# "D1" or "D2" for type "auto" / "exact" / "over" with K fitted, kstar true.
voronoi_type <- function(type, K, kstar) {
  switch(type, exact = "D1", over = "D2", auto = if (K > kstar) "D2" else "D1")
}

#' Voronoi losses between a fitted and a true mixture of experts
#'
#' `voronoi_loss()` computes the Voronoi loss D1 (exact-fitted) or D2
#' (over-fitted) of Nguyen, Nguyen and Ho (2023) between the mixing measure
#' of a fit and that of a truth. Atoms are \eqn{\theta_k = (\beta_{1k}, a_k,
#' b_k, \sigma_k^2)} (gating slopes, expert slopes and intercept,
#' **variance**) with unnormalised weights \eqn{\exp(\beta_{0k})} (the
#' reference expert has weight \eqn{e^0 = 1}). The Voronoi cell \eqn{A_j}
#' of the true atom \eqn{\theta^*_j} holds the fitted atoms closer to it than
#' to every other true atom (ties go to the lowest j). With
#' \eqn{w_i = \exp(\beta_{0i})},
#' \deqn{D_1 = \sum_j \Big|\sum_{i \in A_j} w_i - e^{\beta^*_{0j}}\Big| +
#'   \sum_j \sum_{i \in A_j} w_i \big(\|\Delta\beta_{1ij}\| + \|\Delta a_{ij}\| +
#'   |\Delta b_{ij}| + |\Delta\sigma^2_{ij}|\big)}{D1 = sum_j |sum_{i in A_j} w_i - exp(beta0*_j)| +
#'   sum_j sum_{i in A_j} w_i (|d beta1| + |d a| + |d b| + |d sigma2|)}
#' and D2 is the same except that inside a cell of \eqn{M \ge 2} atoms the
#' distances of \eqn{\beta_1} and \eqn{b} are raised to the power
#' \eqn{\bar r(M)} and those of \eqn{a} and \eqn{\sigma^2} to
#' \eqn{\bar r(M)/2}. Every atom of every cell is counted (also in D1) and an
#' empty cell contributes its whole true weight. With the default
#' `reference = "best"` both losses are invariant to relabelling the fitted
#' experts (including which one is the gating reference), so posterior draws
#' need no relabelling.
#'
#' **Other expert families.** For binomial and Poisson experts (truths and
#' fits with `family = binomial()` / `poisson()`) the atoms have no variance:
#' their variance coordinate is the constant 1 for the fit and the truth
#' alike (the placeholder of their parameter lists), so it adds nothing to the distances that form the cells nor to the
#' loss, and the atoms are in effect \eqn{(\beta_{1k}, a_k, b_k)} (the
#' coefficients on the link scale); the column `sigma2` of
#' `voronoi_cells()` is then 0. For Student-t experts the variance
#' coordinate is the squared scale \eqn{\sigma_k^2}; the degrees of freedom
#' are not an atom coordinate. The fit and the truth must have experts of
#' the same family (classed error `bayesmoe_error_family` otherwise).
#'
#' `voronoi_cells()` returns the cells and the per-parameter distances inside
#' them, from which the per-parameter rates are read: inside a cell of two
#' atoms \eqn{\beta_1} and \eqn{b} move at \eqn{n^{-1/8}} and \eqn{a} and
#' \eqn{\sigma^2} at \eqn{n^{-1/4}}.
#'
#' @param fit A fit from [moe_em()] (its estimate) or `moe_mcmc()` (every
#'   posterior draw), a truth from [moe_truth()], or a parameter list with
#'   elements `beta0`, `beta1`, `a`, `b` and `sigma` (noise s.d.) or
#'   `sigma2` (variances), as taken by [moe_truth()]. Fits must use an
#'   intercept and the same covariates for the experts and the gating.
#'   Gates: softmax; [gate_temperature()] (compared through its softmax
#'   logits \eqn{W / \tau}); [gate_topk()], for which `voronoi_loss()`
#'   returns [topk_loss()] (the Voronoi loss of top-k gating; `voronoi_cells()`
#'   and [density_loss()] refuse top-k fits with k < K); hierarchical gates
#'   with one group. Other hierarchical gates are not softmaxes of linear
#'   logits and are refused (classed error `bayesmoe_error_gate`).
#'   [expert_ffn()] experts and [moe_ls()] fits go to
#'   [voronoi_loss_strong()].
#' @param truth A truth from [moe_truth()] (or a parameter list as for
#'   `fit`) with the same number of covariates.
#' @param type `"exact"` for D1, `"over"` for D2, `"auto"` (default) for D1
#'   when the fit has at most as many experts as the truth and D2 when it has
#'   more.
#' @param rbar The exponents \eqn{\bar r(M)} for cells of M atoms, `rbar[M]`;
#'   `rbar[1]` must be 1. The default `c(1, 4, 6)` is the published table;
#'   cells with more atoms than the table covers give `NA` with a warning of
#'   class `bayesmoe_warning_rbar`.
#' @param norm The distance that assigns atoms to cells: `"euclidean"` (the
#'   default) or `"l1"` (the sum of absolute differences, as in the published
#'   code of the rate experiments). The distances inside the losses are
#'   Euclidean norms of the coefficient vectors whatever `norm` is.
#' @param reference Which fitted expert serves as the gating reference. The
#'   gating is identified only up to a translation of all gating vectors;
#'   making expert r the reference subtracts its gating vector from every
#'   gating vector, which leaves the fitted model unchanged but moves the
#'   weights \eqn{\exp(\beta_0)} and the slopes \eqn{\beta_1}, hence the
#'   loss. `"best"` (default) takes the smallest loss over the K choices, so
#'   the loss does not depend on how the fitted experts are labelled (an EM
#'   fit or a posterior draw whose last expert sits on a non-reference true
#'   atom is not penalised for it); `"fixed"` uses the fit's own last expert,
#'   as the published code of the rate experiments does (its near-truth
#'   starts keep the reference aligned).
#' @param translation If `TRUE`, the infimum of the loss over translations
#'   \eqn{(t_0, t_1)} of the fitted gating vectors
#'   \eqn{(\beta_{0k} + t_0, \beta_{1k} + t_1)} (the same fitted model; the
#'   truth stays in its reference form), and `reference` is ignored. Needed
#'   for over-fitted fits: when two fitted atoms share the cell of the true
#'   reference expert, their weights must sum to more than 1 under the
#'   reference convention (one of them is the reference itself, weight 1),
#'   so the loss without translation stays near the weight of the other atom
#'   however large n is. \eqn{t_0} scales every fitted weight by
#'   \eqn{e^{t_0}}; it is restricted to scales that do not make every fitted
#'   cell weight smaller than its true weight (otherwise shrinking all fitted
#'   weights to zero would cap the loss at the total true weight), and within
#'   them the minimum is exact: the loss is convex and piecewise linear in
#'   \eqn{e^{t_0}}, so it is attained where the fitted and true weights of one
#'   cell agree. \eqn{t_1} is searched over the shifts that put a fitted
#'   gating slope on a true one (exact for D1 with one covariate when the
#'   cells do not move) and then refined locally (Brent's method, or
#'   Nelder-Mead for several covariates). This differs from Do et al. (2025),
#'   who translate the truth, which makes the loss depend on the labelling of
#'   the fitted experts.
#' Fits of the least-squares regression form ([moe_ls()]) and fits with
#' [expert_ffn()] experts are handed to [voronoi_loss_strong()], the loss of
#' the least-squares theory for strongly identifiable experts (`type`,
#' `rbar` and `norm` do not apply; `translation = TRUE` becomes
#' `translate = "infimum"`, `reference = "best"` `"reference"` and
#' `"fixed"` `"none"`); `truth` is then a [moe_truth()] with experts of the
#' fit's kind or a list with `alpha` and `W` as [voronoi_loss_strong()]
#' takes. [voronoi_cells()] and [density_loss()] need linear experts and a
#' mixture-density fit.
#'
#' @return `voronoi_loss()`: a number, or for an MCMC fit a matrix
#'   \[iterations, chains\] with the loss of every posterior draw.
#'   `voronoi_cells()`: a data frame with one row per fitted atom (and per
#'   draw for MCMC fits: columns `draw`, `iteration`, `chain`): `atom`,
#'   `cell` (the index of the nearest true atom), `cell_size` (atoms in that
#'   cell), `weight` (\eqn{\exp(\beta_0)}), `true_weight`, and the distances
#'   `beta1`, `a`, `b`, `sigma2` to the cell's true atom, all after the
#'   translation of the fitted gating that `voronoi_loss()` with the same
#'   arguments uses (attribute `"shift"`: \eqn{(t_0, t_1)}, one column per
#'   parameter set).
#' @references Nguyen, H., Nguyen, T. and Ho, N. (2023). Demystifying softmax
#'   gating function in Gaussian mixture of experts. *NeurIPS 2023*.
#'   arXiv:2305.03288.
#'
#'   Do, T. H., Mai, T. N., Nguyen, T., Ho, N. et al. (2025). Dendrograms of
#'   mixing measures for softmax-gated Gaussian mixture of experts.
#'   arXiv:2510.12744.
#' @examples
#' tru <- moe_truth_example("p4")
#' voronoi_loss(tru, tru)
#' set.seed(1)
#' sim <- rmoe(1000, tru)
#' fit2 <- moe_em(y ~ x, data = sim, K = 2, seed = 1)
#' voronoi_loss(fit2, tru)                    # D1
#' fit3 <- moe_em(y ~ x, data = sim, K = 3, starts = 3, seed = 1)
#' voronoi_loss(fit3, tru)                    # D2
#' voronoi_cells(fit3, tru)
#' @export
voronoi_loss <- function(fit, truth, type = c("auto", "exact", "over"),
                         rbar = c(1, 4, 6), norm = c("euclidean", "l1"),
                         reference = c("best", "fixed"), translation = FALSE) {
  call <- sys.call()
  validate_if_fit(fit, "fit", call)
  if (inherits(fit, "moe_ls") ||
      inherits(fit, "moe_fit") && inherits(fit_spec(fit)$expert, "moe_expert_ffn")) {
    return(voronoi_strong_handoff(fit, truth, reference, translation, call))
  }
  if (inherits(fit, "moe_fit") && inherits(fit$gate, "moe_gate_topk") && fit$gate$k < fit$K) {
    # the Voronoi loss of top-k gating
    truth <- check_truth(truth, call)
    return(topk_loss(fit, truth_par(truth), rbar = rbar))
  }
  truth <- check_truth(truth, call)
  at <- loss_atoms(fit, "fit", call)
  check_same_d(at, truth, call)
  check_same_family(at, truth, call)
  res <- voronoi_compute(at, truth, type, rbar, norm, reference, translation, call)
  shape_draws(res$loss, at)
}

# voronoi_loss() of a least-squares or FFN fit: voronoi_loss_strong() with the
# translation convention mapped, draws shaped [iterations, chains].
voronoi_strong_handoff <- function(fit, truth, reference, translation, call) {
  reference <- check_choice(reference, c("best", "fixed"), "reference", call)
  translation <- check_flag(translation, "translation", call)
  if (inherits(truth, "moe_truth")) {
    fe <- fit_spec(fit)$expert
    if (is.null(fe)) fe <- expert_linear()
    if (!identical(class(fe)[1L], class(truth_expert(truth))[1L])) {
      abort(sprintf("`truth` must have experts of the fit's kind (%s), not %s.",
                    expert_label(fe), expert_label(truth_expert(truth))),
            kind = "expert", call = call, arg = "truth")
    }
    truth <- truth_par(truth)[c("alpha", "W")]
  }
  tr <- if (translation) "infimum" else if (reference == "best") "reference" else "none"
  l <- voronoi_loss_strong(fit, truth, translate = tr)
  if (inherits(fit, "moe_mcmc")) {
    l <- structure(matrix(as.numeric(l), dim(fit$draws)[1L], dim(fit$draws)[2L],
                          dimnames = list(iteration = NULL, chain = NULL)),
                   max_cell = attr(l, "max_cell"))
  }
  l
}

# Check the options of voronoi_loss() and compute the loss of every
# parameter set of `at` (loss_atoms()): list(loss, max_cell, shift (the
# translation (t0, t1) of the fit used, (d + 1) x S), name).
voronoi_compute <- function(at, truth, type = "auto", rbar = c(1, 4, 6), norm = "euclidean",
                            reference = "best", translation = FALSE, call = NULL) {
  type <- check_choice(type, c("auto", "exact", "over"), "type", call)
  norm <- check_choice(norm, c("euclidean", "l1"), "norm", call)
  reference <- check_choice(reference, c("best", "fixed"), "reference", call)
  rbar <- check_rbar(rbar, call)
  translation <- check_flag(translation, "translation", call)
  name <- voronoi_type(type, at$K, truth$K)
  over <- as.integer(name == "D2")
  ta <- loss_atoms(truth)$atoms
  nrm <- if (norm == "l1") 1L else 0L
  mode <- if (translation) 2L else if (reference == "best") 1L else 0L
  res <- .Call(ffi_voronoi, at$atoms, at$K, ta, at$d, over, nrm, rbar, mode, NULL)
  if (translation && (over == 1L || at$d > 1L)) {
    res <- voronoi_polish(at, ta, over, nrm, rbar, res)
  }
  if (any(is.infinite(res$loss) | is.nan(res$loss))) {
    abort("The loss overflows: the gating intercepts of `fit` or `truth` are too large for their exponentials (the weights of the mixing measure) to be finite, or the parameters too far apart; re-reference or bound the gating intercepts.",
          kind = "numerical", call = call, arg = "truth")
  }
  beyond <- which(res$max_cell > length(rbar) & over == 1L & is.na(res$loss))
  if (length(beyond)) {
    msg <- if (at$S == 1L) {
      sprintf("A Voronoi cell has %d atoms, more than `rbar` covers (%d); the loss is NA. Extend `rbar`.",
              res$max_cell[beyond], length(rbar))
    } else {
      sprintf("In %d of %d parameter sets a Voronoi cell has up to %d atoms, more than `rbar` covers (%d); their loss is NA. Extend `rbar`.",
              length(beyond), at$S, max(res$max_cell[beyond]), length(rbar))
    }
    warn(msg, kind = "rbar", call = call)
  }
  c(res, list(name = name))
}

# Local refinement of the gating-slope translation t1 of the infimum over
# translations (t0 stays exact in C): Brent's method for one covariate,
# Nelder-Mead otherwise, within the largest gating-slope distance of the
# best candidate. Never increases the loss.
voronoi_polish <- function(at, ta, over, nrm, rbar, res) {
  d <- at$d
  step <- (2L * d + 3L) * at$K
  for (s in which(is.finite(res$loss))) {
    a <- at$atoms[(s - 1L) * step + seq_len(step)]
    f <- function(t1) {
      v <- .Call(ffi_voronoi, a, at$K, ta, d, over, nrm, rbar, 3L, as.double(t1))$loss
      if (is.na(v)) Inf else v
    }
    t1 <- res$shift[-1L, s]
    cl <- .Call(ffi_voronoi_cells, a, at$K, ta, d, nrm, res$shift[, s])
    h <- max(matrix(cl$dist, 4L)[1L, ], 1e-8)
    opt <- if (d == 1L) {
      o <- stats::optimize(f, t1 + c(-h, h), tol = 1e-10)
      list(par = o$minimum, value = o$objective)
    } else {
      stats::optim(t1, f, method = "Nelder-Mead",
                   control = list(reltol = 1e-12, maxit = 2000, parscale = rep(h, d)))
    }
    if (opt$value < res$loss[s]) {
      fin <- .Call(ffi_voronoi, a, at$K, ta, d, over, nrm, rbar, 3L, as.double(opt$par))
      res$loss[s] <- fin$loss
      res$max_cell[s] <- fin$max_cell
      res$shift[, s] <- fin$shift
    }
  }
  res
}

#' @rdname voronoi_loss
#' @export
voronoi_cells <- function(fit, truth, type = c("auto", "exact", "over"), rbar = c(1, 4, 6),
                          norm = c("euclidean", "l1"), reference = c("best", "fixed"),
                          translation = FALSE) {
  call <- sys.call()
  validate_if_fit(fit, "fit", call)
  truth <- check_truth(truth, call)
  at <- loss_atoms(fit, "fit", call)
  check_same_d(at, truth, call)
  check_same_family(at, truth, call)
  vl <- suppressWarnings(voronoi_compute(at, truth, type, rbar, norm, reference,
                                         translation, call))
  cells_from_atoms(at, truth, vl$shift, if (identical(norm, "l1")) 1L else 0L)
}

# Cells and distances of every parameter set after the translations `shift`
# ((d + 1) x S) chosen by voronoi_compute().
cells_from_atoms <- function(at, truth, shift, nrm) {
  res <- .Call(ffi_voronoi_cells, at$atoms, at$K, loss_atoms(truth)$atoms, at$d, nrm,
               shift)
  K <- at$K
  S <- at$S
  cell <- matrix(res$cell, K, S)
  size <- apply(cell, 2L, function(cl) tabulate(cl, truth$K)[cl])
  dist <- matrix(res$dist, 4L, K * S)
  b0 <- matrix(at$atoms[1L, , ], K, S) + rep(shift[1L, ], each = K)
  out <- data.frame(atom = rep(seq_len(K), S), cell = as.vector(cell),
                    cell_size = as.vector(size), weight = exp(as.vector(b0)),
                    true_weight = exp(unname(truth$beta0)[as.vector(cell)]),
                    beta1 = dist[1L, ], a = dist[2L, ], b = dist[3L, ], sigma2 = dist[4L, ])
  if (!is.null(at$draw_dim)) {
    draw <- rep(seq_len(S), each = K)
    out <- data.frame(draw = draw, iteration = (draw - 1L) %% at$draw_dim[1L] + 1L,
                      chain = (draw - 1L) %/% at$draw_dim[1L] + 1L, out)
  }
  attr(out, "shift") <- shift
  out
}

#' Conditional-density distance between a fitted and a true mixture of experts
#'
#' The covariate-averaged Hellinger distance
#' \eqn{E_X\, h(g(\cdot \mid X), g^*(\cdot \mid X))}, with
#' \eqn{h^2 = \frac12 \int (\sqrt{g} - \sqrt{g^*})^2\, dy}, or total variation
#' \eqn{E_X\, V}, \eqn{V = \frac12 \int |g - g^*|\, dy}, between the
#' conditional densities of a fit and of a truth, the metric of the density
#' convergence rates (\eqn{\sqrt{\log n / n}}) of softmax-gated Gaussian
#' mixtures of experts. `type = "hellinger_joint"` gives the Hellinger
#' distance between the joint densities of \eqn{(X, Y)}, \eqn{\sqrt{E_X h^2}}.
#'
#' The integral over y is computed in C by composite Simpson rules between
#' cut points \eqn{\mu_c + \sigma_c \cdot (-8, -5, -3, -2, -1, 0, 1, 2, 3, 5, 8)}
#' of every component c of both mixtures at that x, with at least
#' `min_points` nodes in all (so it resolves every component, however narrow
#' and wherever it lies); for total variation the panels where the densities
#' cross are split at the crossing. The average over x uses the rows of `x`
#' with equal weights. Accuracy is about 1e-8 or better (checked against
#' [integrate()] in the tests).
#'
#' **Other expert families** (computed in R). Binomial and Poisson experts:
#' the same distances between the conditional pmfs, sums over the support:
#' \eqn{0, \dots, m} for binomial experts with the truth's `trials` m (the
#' fit's own trials do not enter); for Poisson experts from the smallest
#' lower to the largest upper \eqn{10^{-15}} tail quantile of every
#' component of both mixtures at that x, so the mass left out is below
#' \eqn{2 \cdot 10^{-15}} per component and \eqn{h^2} and V are off by less
#' than \eqn{10^{-14}}. Student-t experts: the integral over y by composite
#' Simpson rules (64 intervals per panel) between the cut points above
#' (with the scales), and on each tail beyond the outermost cut point after
#' the substitution \eqn{y = c \pm S \cot(s^2)}, \eqn{s \in (0, \sqrt{\pi/2}]}
#' (S the largest scale; 1000 intervals), which maps the polynomial tails
#' onto a bounded interval where the integrand is smooth and vanishes at
#' \eqn{s = 0} for df > 1/2; accuracy about 1e-10 for the Hellinger distance
#' and 1e-6 for total variation (whose integrand has kinks where the
#' densities cross). `min_points` applies to
#' Gaussian experts only.
#'
#' @inheritParams voronoi_loss
#' @param type `"hellinger"` (default), `"tv"` or `"hellinger_joint"`.
#' @param x Covariate values to average over: a numeric vector (one
#'   covariate) or a matrix with one column per covariate. `NULL` (default)
#'   averages over the uniform distribution on \[0, 1\]^d: for one covariate
#'   the 200-point midpoint grid `(1:200 - 0.5) / 200`, otherwise 1000
#'   uniform draws made with a fixed seed (the caller's random number stream
#'   is left untouched), so the loss is a deterministic function of the
#'   parameters.
#' @param min_points Minimum number of integration nodes over y at each x
#'   (default 2000), at most 2^30 (the node counts are C integers; memory
#'   does not grow with it, time does).
#' @return A number, or for an MCMC fit a matrix \[iterations, chains\] with
#'   the distance of every posterior draw.
#' @examples
#' tru <- moe_truth_example("p4")
#' set.seed(1)
#' sim <- rmoe(1000, tru)
#' fit <- moe_em(y ~ x, data = sim, K = 2, seed = 1)
#' density_loss(fit, tru)
#' density_loss(fit, tru, type = "tv")
#' @export
density_loss <- function(fit, truth, type = c("hellinger", "tv", "hellinger_joint"),
                         x = NULL, min_points = 2000) {
  call <- sys.call()
  validate_if_fit(fit, "fit", call)
  type <- check_choice(type, c("hellinger", "tv", "hellinger_joint"), "type", call)
  # the node count per piece is computed in C int arithmetic (min_points +
  # pieces); 2^30 keeps it far from overflow (memory does not grow with it)
  min_points <- check_number(min_points, "min_points", lower = 2, upper = 2^30, whole = TRUE,
                             call = call)
  truth <- check_truth(truth, call)
  at <- loss_atoms(fit, "fit", call)
  check_same_d(at, truth, call)
  check_same_family(at, truth, call)
  x <- density_x(x, truth$d, call)
  ty <- match(type, c("hellinger", "tv", "hellinger_joint")) - 1L
  v <- density_loss_atoms(at, loss_atoms(truth)$atoms, x, ty, min_points, truth)
  shape_draws(v, at)
}

# The density distance of every parameter set of `at` (loss_atoms()) to the
# true atoms `truth_atoms` ((2d + 3) x K*), averaged over the covariate rows
# of `x` (density_x()): `type` 0 Hellinger, 1 total variation, 2 joint
# Hellinger (src/loss.c); a vector of length at$S.
density_loss_atoms <- function(at, truth_atoms, x, type, min_points, truth = NULL) {
  if (is.null(at$expert)) {
    return(.Call(ffi_density_loss, at$atoms, at$K, truth_atoms, at$d, x, type, min_points))
  }
  density_loss_family(at, loss_atoms(truth), x, type)
}

# The density distance for experts of another family (R/truth-family.R):
# for every parameter set, the gating and the means of both mixtures at the
# rows of `x` from their atoms, family_distance() per row, the average over
# rows (type 0 Hellinger, 1 TV, 2 joint Hellinger sqrt(E_X h^2)).
density_loss_family <- function(at, tat, x, type) {
  d <- at$d
  D <- cbind(1, x)
  parts <- function(atoms, K) {
    # atoms: (2d + 3) x K; rows beta0, beta1 (d), a (d), b, scale
    W <- matrix(atoms[1L:(d + 1L), ], d + 1L, K)
    A <- matrix(atoms[c(2L * d + 2L, d + 1L + seq_len(d)), ], d + 1L, K)
    list(lg = log_softmax_rows(D %*% W), mu = truth_mean(at$expert, D %*% A),
         sigma2 = atoms[2L * d + 3L, ])
  }
  tp <- parts(matrix(tat$atoms[, , 1L], ncol = tat$K), tat$K)
  n0 <- list(sigma2 = tp$sigma2, df = tat$df[, 1L], trials = tat$trials)
  ty <- if (type == 1L) "tv" else "hellinger"
  vapply(seq_len(at$S), function(s) {
    fp <- parts(matrix(at$atoms[, , s], ncol = at$K), at$K)
    h <- family_distance(at$expert, fp$lg, fp$mu,
                         list(sigma2 = fp$sigma2, df = at$df[, s], trials = tat$trials),
                         tp$lg, tp$mu, n0, ty)
    if (type == 2L) sqrt(mean(h^2)) else mean(h)
  }, 0)
}

# The covariate values averaged over by density_loss().
density_x <- function(x, d, call = NULL) {
  if (is.null(x)) {
    if (d == 1L) return(matrix((seq_len(200L) - 0.5) / 200, ncol = 1L))
    return(with_seed(20230517L, matrix(runif(1000L * d), ncol = d)))
  }
  x <- check_truth_x(x, d, call, empty = FALSE)
  storage.mode(x) <- "double"
  x
}
