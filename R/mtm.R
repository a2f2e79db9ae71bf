# Merge-Truncate-Merge (MTM): the number of experts from an over-fitted
# Bayesian fit, draw by draw (Guha, Ho and Nguyen 2021, Algorithm 1; the C
# kernel is src/mtm.c). moe_mtm() is generic: a method for moe_mcmc fits
# (atoms built from every posterior draw) and one for plain lists of atom
# sets, so that the algorithm can be checked on hand-built examples.

#' Number of experts by Merge-Truncate-Merge of an over-fitted posterior
#'
#' Applies the Merge-Truncate-Merge (MTM) post-processing of Guha, Ho and
#' Nguyen (2021, Algorithm 1) to every posterior draw of a fit with more
#' experts than needed, and returns the posterior distribution of the
#' resulting estimate \eqn{\tilde K} of the number of experts.
#'
#' **Atoms and weights.** A draw with \eqn{K} experts is read as the
#' discrete measure \eqn{G = \sum_k p_k \delta_{\theta_k}}. The atom of
#' expert \eqn{k} is \eqn{\theta_k = (\beta_{1k}, a_k, \sigma_k^2)}: its
#' gating slopes (the gating coefficients other than the intercept), its
#' expert coefficients (intercept included) and its variance, under the
#' reference convention (\eqn{w_K = 0}), all on the **internal scale** on
#' which the sampler works (response and non-intercept covariates centred
#' and scaled to unit standard deviation, see [moe_prior()]); distances are
#' Euclidean on that scale, so they do not depend on the units of the data.
#' With `weights = "intercept"` (the default, as in the theory) the weights
#' are \eqn{p_k \propto \exp(\beta_{0k})}, normalised to sum to one; because
#' the gating covariates are centred internally, these are the gating
#' probabilities at the mean of the gating covariates. With
#' `weights = "gate"` they are the average gating probabilities over the
#' observations, \eqn{p_k = \sum_i w_i g_k(z_i) / \sum_i w_i}, which is more
#' stable when the gating is steep (an expert that dominates only away from
#' the centre of the data) and also works without a gating intercept.
#'
#' **Algorithm**, for radius \eqn{\omega}, constants \eqn{c > 0},
#' \eqn{r \ge 1} and threshold \eqn{t = (c\omega)^r}:
#' 1. *Merge.* Visit the atoms in a uniformly random order (drawn from R's
#'    random number generator, so [set.seed()] or `seed` reproduces it). An
#'    atom closer than \eqn{\omega} to an atom kept earlier is merged into
#'    the nearest such atom (ties: the one kept first): the weights add and
#'    the earlier atom keeps its location. Sort the kept atoms by decreasing
#'    weight \eqn{q_1 \ge q_2 \ge \dots} (equal weights stay in visiting
#'    order).
#' 2. *Truncate and merge.* Atoms with \eqn{q_j \le t} are set aside; so is,
#'    going down the sorted list, every remaining atom \eqn{j} with
#'    \eqn{q_j\, d(\phi_j, \phi_i)^r \le t} for some heavier atom \eqn{i}
#'    still remaining. The weight of each atom set aside goes to the nearest
#'    remaining atom (ties: the heavier). \eqn{\tilde K} is the number of
#'    remaining atoms. If \eqn{t} exceeds every weight the heaviest atom is
#'    kept, so \eqn{\tilde K \ge 1}.
#'
#' **Defaults.** The theory (Guha, Ho and Nguyen 2021, Theorem 3.1) gives
#' \eqn{\Pi(\tilde K = k^* \mid data) \to 1} when \eqn{\omega = \omega_n} is
#' the contraction rate of the mixing measure and \eqn{c} is below a
#' constant \eqn{c_0} set by the truth (smaller for smaller true weights).
#' For a mixture of experts with a split atom the slowest parameters (gating
#' slopes and expert intercepts in a two-atom Voronoi cell) contract at
#' \eqn{n^{-1/8}} up to logarithms (Nguyen, Nguyen and Ho 2023), so
#' `omega = NULL` uses \eqn{\omega_n = (\log n / n)^{1/8}} with \eqn{n} the
#' (frequency-weighted) number of observations: about 0.54 at
#' \eqn{n = 1000} and 0.42 at \eqn{n = 10^4}.
#'
#' The constant `c` sets the truncation threshold \eqn{(c\omega_n)^r}: with
#' the default `c = 0.5` and \code{r = 2} it is about 0.07 at \eqn{n = 1000} and
#' 0.05 at \eqn{n = 5000}, so an expert is counted when its weight exceeds
#' roughly 5\%. The theory leaves \eqn{c} to the user (it must be below a
#' constant that depends on the unknown smallest true weight); the default
#' was chosen on simulations (see the vignette "Choosing the number of
#' experts", which shows the sensitivity): in over-fitted posteriors at
#' \eqn{n} of a few thousand, spurious experts keep weights of 0.1--3\% in
#' a sizeable share of the draws, so `c = 0.05` (threshold about
#' \eqn{5 \times 10^{-4}}) leaves them in and gives
#' \eqn{P(\tilde K = k^*) \approx 0.4}--0.6, while `c = 1` (threshold about
#' 0.2, suggested when this function was specified) truncates genuine
#' experts that serve a fifth of the data. `c = 0.5` is also one of the
#' values used in the authors' code (0.05, 0.45, 0.5, 0.55, 1). Lower it when
#' genuine experts may carry less than about 5\% of the weight (and use
#' longer chains and larger \eqn{n}); note that with `weights = "intercept"`
#' an expert that dominates only far from the centre of the gating
#' covariates has a small weight.
#'
#' **Limitation.** An over-fitted posterior often splits a true expert into
#' two copies with the same regression line and variance but different
#' gating slopes (the copies share the expert's region between them). The
#' gating slopes of such copies are the slowest parameters to contract, and
#' at moderate \eqn{n} they can differ by more than \eqn{\omega_n} (and by
#' more than two distinct true experts differ on the standardised scale), so
#' the copies are neither merged nor truncated and \eqn{\tilde K} exceeds the
#' true number; `summary()` shows the merged atoms, which makes such splits
#' visible. The posterior over \eqn{K} of [moe_select()] does not have this
#' problem.
#'
#' @param fit A fit from [moe_mcmc()], usually with more experts than
#'   expected; or a list of atom sets (see Details of the list method), each
#'   a list with `atoms` (a matrix, one row per atom) and `weights`
#'   (non-negative, normalised to sum to one); a single atom set is accepted
#'   too.
#' @param omega Merge radius, a number > 0; `NULL` (fits only) uses
#'   \eqn{(\log n / n)^{1/8}}.
#' @param c Truncation constant, a number > 0 (see Details).
#' @param r Order of the Wasserstein distance in the truncation rule, a
#'   number >= 1.
#' @param weights How the weight of an expert is defined: `"intercept"`
#'   (normalised exp(gating intercept)) or `"gate"` (average gating
#'   probability over the data).
#' @param order For the list method: `NULL` (random visiting orders) or a
#'   list of visiting orders, one permutation of `1:nrow(atoms)` per atom
#'   set, for reproducing an example by hand.
#' @param seed `NULL` or a whole number seeding the random visiting orders
#'   (the caller's random number state is then left untouched).
#' @param ... Unused.
#' @return An object of class `moe_mtm`: `K` (the estimate for every draw),
#'   `draw` (chain and iteration of every draw, for fits), `table` (counts of
#'   each value of \eqn{\tilde K}), `probs` (their posterior frequencies,
#'   named by K, for \eqn{K = 1, \dots,} the largest number of atoms),
#'   `K_hat` (the mode, the smallest in case of ties), `atoms` and
#'   `weights` (lists with the merged atoms, one row each, heaviest first,
#'   and their weights, for every draw), `assign` (for each draw the merged
#'   atom each input atom went to), and the settings `omega`, `c`, `r`,
#'   `threshold` \eqn{(c\omega)^r}, `n`, `weights_type`.
#' @references
#' Guha, A., Ho, N. and Nguyen, X. (2021). On posterior contraction of
#' parameters and interpretability in Bayesian mixture modeling.
#' *Bernoulli* 27, 2159-2188.
#'
#' Nguyen, H., Nguyen, T. and Ho, N. (2023). Demystifying softmax gating
#' function in Gaussian mixture of experts. *NeurIPS 2023*.
#' @seealso [moe_select()] for both strategies of choosing the number of
#'   experts side by side.
#' @examples
#' # hand-built atom sets: two atoms closer than omega merge, a light one is
#' # truncated into its nearest neighbour
#' sets <- list(
#'   list(atoms = rbind(c(0, 0), c(0.1, 0), c(5, 5)), weights = c(0.5, 0.3, 0.2)),
#'   list(atoms = rbind(c(0, 0), c(5, 5), c(9, 9)), weights = c(0.6, 0.3999, 1e-4)))
#' m <- moe_mtm(sets, omega = 0.5, c = 0.05, seed = 1)
#' m$K
#' m$atoms[[1]]
#'
#' # an over-fitted Bayesian fit
#' fit <- moe_mcmc(tuned ~ stretchratio, data = tonedata, K = 4,
#'                 chains = 1, iter = 300, seed = 1)
#' mtm <- moe_mtm(fit, seed = 1)
#' mtm
#' @export
moe_mtm <- function(fit, omega = NULL, c = 0.5, r = 2, ...) {
  UseMethod("moe_mtm")
}

#' @rdname moe_mtm
#' @export
moe_mtm.moe_mcmc <- function(fit, omega = NULL, c = 0.5, r = 2,
                             weights = c("intercept", "gate"), seed = NULL, ...) {
  call <- sys.call()
  validate_moe_fit(fit, "fit", call)
  weights <- check_choice(weights, c("intercept", "gate"), "weights", call)
  set <- mtm_settings(omega, c, r, seed, call)
  n <- sum(fit$weights)
  set$omega_default <- is.null(set$omega)
  if (set$omega_default) set$omega <- mtm_default_omega(n)
  mtm_check_threshold(set, call)
  at <- mtm_fit_atoms(fit, weights, call)
  res <- with_seed(set$seed, mtm_run(at$theta, at$w, rep(fit$K, dim(at$theta)[3L]),
                                     order = NULL, set))
  new_moe_mtm(res, at$names, set, n = n, weights_type = weights,
              draw = at$draw, K_fit = fit$K)
}

#' @rdname moe_mtm
#' @export
moe_mtm.list <- function(fit, omega = NULL, c = 0.5, r = 2, order = NULL,
                         seed = NULL, ...) {
  call <- sys.call()
  set <- mtm_settings(omega, c, r, seed, call)
  if (is.null(set$omega)) {
    abort("`omega` must be given for a list of atom sets: there is no sample size to derive it from.",
          call = call, arg = "omega")
  }
  mtm_check_threshold(set, call)
  sets <- mtm_check_sets(fit, call)
  d <- ncol(sets[[1L]]$atoms)
  natoms <- vapply(sets, function(s) nrow(s$atoms), 1L)
  Kmax <- max(natoms)
  S <- length(sets)
  theta <- array(0, c(d, Kmax, S))
  w <- matrix(0, Kmax, S)
  for (s in seq_len(S)) {
    theta[, seq_len(natoms[s]), s] <- t(sets[[s]]$atoms)
    w[seq_len(natoms[s]), s] <- sets[[s]]$weights
  }
  ord <- NULL
  if (!is.null(order)) {
    if (!is.list(order) && S == 1L) order <- list(order)
    ok <- is.list(order) && length(order) == S &&
      all(vapply(seq_len(S), function(s) {
        o <- order[[s]]
        is.numeric(o) && length(o) == natoms[s] && !anyNA(o) &&
          setequal(o, seq_len(natoms[s]))
      }, TRUE))
    if (!ok) {
      abort("`order` must be NULL or a list with, for each atom set, a permutation of `seq_len(nrow(atoms))`.",
            call = call, arg = "order")
    }
    ord <- matrix(0L, Kmax, S)
    for (s in seq_len(S)) ord[seq_len(natoms[s]), s] <- as.integer(order[[s]]) - 1L
  }
  nm <- colnames(sets[[1L]]$atoms)
  res <- with_seed(set$seed, mtm_run(theta, w, natoms, ord, set))
  new_moe_mtm(res, nm, set, n = NA_real_, weights_type = "given",
              draw = data.frame(set = seq_len(S)), K_fit = Kmax)
}

#' @export
moe_mtm.default <- function(fit, omega = NULL, c = 0.5, r = 2, ...) {
  abort(sprintf("`fit` must be a fit from `moe_mcmc()` or a list of atom sets, not %s.",
                describe(fit)), call = sys.call(), arg = "fit")
}

# Default merge radius: the two-atom-cell contraction rate (log n / n)^(1/8).
mtm_default_omega <- function(n) (log(n) / n)^(1 / 8)

mtm_settings <- function(omega, c, r, seed, call) {
  if (!is.null(omega)) {
    omega <- check_number(omega, "omega", lower = 0, strict_lower = TRUE, call = call)
  }
  c <- check_number(c, "c", lower = 0, strict_lower = TRUE, call = call)
  r <- check_number(r, "r", lower = 1, call = call)
  list(omega = omega, c = c, r = r, seed = check_seed(seed, call))
}

# The truncation threshold (c omega)^r must be a positive finite number:
# extreme settings underflow it to zero or overflow it.
mtm_check_threshold <- function(set, call) {
  thr <- (set$c * set$omega)^set$r
  if (!is.finite(thr) || thr <= 0) {
    abort(sprintf("`c`, `omega` and `r` must give a positive finite truncation threshold (c omega)^r, not %s (c = %s, omega = %s, r = %s).",
                  format(thr), format(set$c), format(set$omega), format(set$r)),
          call = call, arg = "c")
  }
  invisible()
}

# Validate a list of atom sets (or one set); returns a list of sets with
# numeric atoms matrices and weights normalised to sum to one.
mtm_check_sets <- function(x, call) {
  if (!is.null(x$atoms) && !is.null(x$weights)) x <- list(x)
  if (length(x) == 0L) {
    abort("`fit` must hold at least one atom set.", call = call, arg = "fit")
  }
  d <- NULL
  for (s in seq_along(x)) {
    st <- x[[s]]
    if (!is.list(st) || is.null(st$atoms) || is.null(st$weights)) {
      abort(sprintf("Atom set %d of `fit` must be a list with elements `atoms` and `weights`.", s),
            call = call, arg = "fit")
    }
    a <- st$atoms
    if (is.numeric(a) && !is.matrix(a)) a <- matrix(a, ncol = 1L)
    if (!is.numeric(a) || nrow(a) == 0L || ncol(a) == 0L || any(!is.finite(a))) {
      abort(sprintf("`atoms` of atom set %d must be a finite numeric matrix with one row per atom.", s),
            call = call, arg = "fit")
    }
    if (is.null(d)) d <- ncol(a)
    if (ncol(a) != d) {
      abort(sprintf("`atoms` of atom set %d has %d columns; every atom set must have %d.",
                    s, ncol(a), d), call = call, arg = "fit")
    }
    wt <- st$weights
    if (!is.numeric(wt) || length(wt) != nrow(a) || any(!is.finite(wt)) || any(wt < 0) ||
        sum(wt) <= 0) {
      abort(sprintf("`weights` of atom set %d must be %d non-negative numbers, not all zero.",
                    s, nrow(a)), call = call, arg = "fit")
    }
    storage.mode(a) <- "double"
    x[[s]] <- list(atoms = a, weights = as.double(wt) / sum(wt))
  }
  x
}

# Uniformly random visiting orders (0-based, Kmax x S) of the natoms[s]
# atoms of every set: Fisher-Yates shuffles from one runif() stream.
mtm_orders <- function(natoms, Kmax) {
  u <- stats::runif(sum(natoms - 1L))
  out <- matrix(0L, Kmax, length(natoms))
  pos <- 0L
  for (s in seq_along(natoms)) {
    K <- natoms[s]
    ord <- seq_len(K) - 1L
    if (K > 1L) {
      for (i in (K - 1L):1L) {
        pos <- pos + 1L
        j <- min(as.integer(u[pos] * (i + 1L)), i)
        tmp <- ord[i + 1L]
        ord[i + 1L] <- ord[j + 1L]
        ord[j + 1L] <- tmp
      }
    }
    out[seq_len(K), s] <- ord
  }
  out
}

# Run the C kernel over atom sets theta (d x Kmax x S) with weights (Kmax x
# S), natoms per set and visiting orders (NULL: random, mtm_orders()).
mtm_run <- function(theta, w, natoms, order, set) {
  d <- dim(theta)[1L]
  Kmax <- dim(theta)[2L]
  if (is.null(order)) order <- mtm_orders(natoms, Kmax)
  storage.mode(theta) <- "double"
  storage.mode(w) <- "double"
  thr <- (set$c * set$omega)^set$r
  storage.mode(order) <- "integer"
  res <- .Call(ffi_mtm, theta, w, as.integer(natoms), order,
               as.integer(c(d, Kmax)), as.double(c(set$omega, thr, set$r)))
  res$theta <- array(res$theta, c(d, Kmax, length(natoms)))
  res$threshold <- thr
  res
}

# Atoms (internal scale) and weights of every kept draw of a fit.
# Returns theta (d x K x S), w (K x S), names (d), draw (data frame) for the
# draws without missing values. An atom is the gating slopes, then the
# expert's coordinates of mtm_expert_atoms() (its family's).
mtm_fit_atoms <- function(fit, weights, call) {
  dr <- draws_internal(fit)
  zint <- fit$scaling$z$intercept
  slopes <- setdiff(seq_len(ncol(fit$Z)), zint)
  K <- fit$K
  S <- length(dr$sigma2) / K
  ea <- mtm_expert_atoms(fit$expert, dr, colnames(fit$X))
  theta <- array(0, c(length(slopes) + dim(ea$theta)[1L], K, S))
  theta[seq_along(slopes), , ] <- dr$W[slopes, , , drop = FALSE]
  theta[length(slopes) + seq_len(dim(ea$theta)[1L]), , ] <- ea$theta
  if (weights == "intercept") {
    if (zint == 0L) {
      abort("`weights = \"intercept\"` needs a gating intercept; the gating formula has none. Use `weights = \"gate\"`.",
            call = call, arg = "weights")
    }
    eta <- matrix(dr$W[zint, , ], K, S)
    w <- exp(sweep(eta, 2L, apply(eta, 2L, max)))
    w <- sweep(w, 2L, colSums(w), "/")
  } else {
    s <- scale_data(fit$scaling, fit$y, fit$X, fit$Z)
    keep <- fit$weights > 0
    Zs <- s$Z[keep, , drop = FALSE]
    cw <- fit$weights[keep] / sum(fit$weights[keep])
    w <- vapply(seq_len(S), function(j) {
      g <- exp(log_softmax_rows(Zs %*% matrix(dr$W[, , j], ncol = K)))
      colSums(g * cw)
    }, numeric(K))
    w <- matrix(w, K, S)
  }
  ok <- colSums(!is.finite(matrix(theta, ncol = S))) == 0 & colSums(!is.finite(w)) == 0
  names <- c(paste0("gate:", colnames(fit$Z)[slopes]), ea$names)
  list(theta = theta[, , ok, drop = FALSE], w = w[, ok, drop = FALSE], names = names,
       draw = dr$draw[ok, , drop = FALSE])
}

# The expert part of the MTM atoms of the draws `dr` (draws_internal()):
# list(theta = d_e x K x S, names = d_e names), on the internal scale. An
# expert family's method says which of its parameters locate an atom:
# coefficients and variance for Gaussian experts, coefficients alone for
# experts without a dispersion (GLM experts: no variance coordinate).
mtm_expert_atoms <- function(expert, dr, xnames) UseMethod("mtm_expert_atoms")

mtm_expert_atoms.default <- function(expert, dr, xnames) {
  p <- dim(dr$alpha)[1L]
  K <- dim(dr$alpha)[2L]
  S <- dim(dr$alpha)[3L]
  th <- array(0, c(p + 1L, K, S))
  th[seq_len(p), , ] <- dr$alpha
  th[p + 1L, , ] <- dr$sigma2
  list(theta = th, names = c(xnames, "sigma2"))
}

mtm_expert_atoms.moe_expert_glm <- function(expert, dr, xnames) {
  list(theta = dr$alpha, names = xnames)
}

# Every kept draw of an MCMC fit on the internal scale, draws of all chains
# stacked (chain 1 first): alpha P_e x K x S (expert_npar() rows, mapped by
# the family's expert_to_internal()), sigma2 K x S (1 for families without
# a dispersion), W q x K x S (reference column 0), draw =
# data.frame(chain, iteration).
draws_internal <- function(fit) {
  D <- fit$draws
  S0 <- dim(D)[1L]
  nch <- dim(D)[2L]
  S <- S0 * nch
  p <- ncol(fit$X)
  q <- ncol(fit$Z)
  K <- fit$K
  expert <- spec_expert(fit_spec(fit))
  pe <- expert_npar(expert, p)
  disp <- expert_dispersion(expert)
  pk <- pe + disp
  th <- matrix(aperm(D, c(3L, 1L, 2L)), dim(D)[3L], S)
  ex <- array(th[seq_len(pk * K), , drop = FALSE], c(pk, K, S))
  sc <- fit$scaling
  A <- matrix(ex[seq_len(pe), , , drop = FALSE], pe, K * S)
  A <- expert_to_internal(expert, sc, A)
  W <- matrix(0, q, K * S)
  if (K > 1L) {
    Wf <- array(th[pk * K + seq_len(q * (K - 1L)), , drop = FALSE], c(q, K - 1L, S))
    Wa <- array(0, c(q, K, S))
    Wa[, -K, ] <- Wf
    W <- scaling_inverse(sc$z) %*% matrix(Wa, q, K * S)
  }
  list(alpha = array(A, c(pe, K, S)),
       sigma2 = if (disp) matrix(ex[pk, , ], K, S) / sc$sy^2 else matrix(1, K, S),
       W = array(W, c(q, K, S)),
       draw = data.frame(chain = rep(seq_len(nch), each = S0),
                         iteration = rep(seq_len(S0), nch)))
}

new_moe_mtm <- function(res, names, set, n, weights_type, draw, K_fit) {
  S <- length(res$K)
  Kmax <- dim(res$theta)[2L]
  atoms <- vector("list", S)
  wts <- vector("list", S)
  for (s in seq_len(S)) {
    k <- seq_len(res$K[s])
    atoms[[s]] <- matrix(t(res$theta[, k, s]), length(k))
    if (!is.null(names)) colnames(atoms[[s]]) <- names
    wts[[s]] <- res$weights[k, s]
  }
  tab <- table(factor(res$K, levels = seq_len(K_fit)))
  probs <- setNames(as.numeric(tab) / max(S, 1L), seq_len(K_fit))
  structure(list(K = res$K, draw = draw, table = tab, probs = probs,
                 K_hat = if (S) as.integer(names(probs)[which.max(probs)]) else NA_integer_,
                 atoms = atoms, weights = wts, assign = res$assign,
                 omega = set$omega, c = set$c, r = set$r, threshold = res$threshold,
                 omega_default = isTRUE(set$omega_default),
                 n = n, weights_type = weights_type, K_fit = K_fit),
            class = "moe_mtm")
}

#' @rdname moe_mtm
#' @param x,object A `moe_mtm` object.
#' @param digits Number of significant digits to print.
#' @export
print.moe_mtm <- function(x, digits = max(3L, getOption("digits") - 3L), ...) {
  digits <- check_digits(digits, call = sys.call())
  cat(sprintf("Merge-Truncate-Merge over %d draw%s with up to %d atoms\n",
              length(x$K), if (length(x$K) == 1L) "" else "s", x$K_fit))
  cat(sprintf("omega = %s%s, c = %s, r = %s, truncation threshold (c omega)^r = %s\n",
              format(signif(x$omega, digits)),
              if (isTRUE(x$omega_default)) sprintf(" (the default (log n / n)^(1/8), n = %s)",
                                                   format(x$n)) else "",
              format(x$c), format(x$r), format(signif(x$threshold, digits))))
  cat("Posterior frequency of the number of experts:\n")
  print(round(x$probs, digits))
  cat(sprintf("Mode: K = %d\n", x$K_hat))
  invisible(x)
}

#' @rdname moe_mtm
#' @export
summary.moe_mtm <- function(object, ...) {
  k <- object$K_hat
  sel <- which(object$K == k)
  atoms <- NULL
  if (length(sel)) {
    ref <- object$atoms[[sel[1L]]]
    aligned <- lapply(sel, function(s) {
      a <- object$atoms[[s]]
      w <- object$weights[[s]]
      if (k > 1L) {
        cost <- outer(seq_len(k), seq_len(k), Vectorize(function(i, j)
          sum((ref[i, ] - a[j, ])^2)))
        perm <- best_assignment(cost)
        a <- a[perm, , drop = FALSE]
        w <- w[perm]
      }
      if (is.null(colnames(a))) colnames(a) <- rep("", ncol(a))
      cbind(weight = w, a)
    })
    arr <- array(unlist(aligned), c(k, ncol(aligned[[1L]]), length(aligned)))
    atoms <- lapply(seq_len(k), function(j) {
      v <- matrix(arr[j, , ], ncol = length(aligned))
      out <- cbind(mean = rowMeans(v),
                   t(apply(v, 1L, stats::quantile, probs = c(0.05, 0.5, 0.95))))
      nm <- colnames(aligned[[1L]])
      nm[!nzchar(nm)] <- paste0("theta", seq_len(sum(!nzchar(nm))))
      rownames(out) <- nm
      out
    })
    names(atoms) <- paste0("atom", seq_len(k))
  }
  structure(list(probs = object$probs, K_hat = k, n_draws = length(object$K),
                 omega = object$omega, c = object$c, r = object$r,
                 threshold = object$threshold, weights_type = object$weights_type,
                 atoms = atoms),
            class = "summary.moe_mtm")
}

#' @export
print.summary.moe_mtm <- function(x, digits = max(3L, getOption("digits") - 3L), ...) {
  digits <- check_digits(digits, call = sys.call())
  cat(sprintf("Merge-Truncate-Merge: %d draws, omega = %s, c = %s, r = %s, threshold = %s\n",
              x$n_draws, format(signif(x$omega, digits)), format(x$c), format(x$r),
              format(signif(x$threshold, digits))))
  cat("Posterior frequency of the number of experts:\n")
  print(round(x$probs, digits))
  cat(sprintf("Mode: K = %d (frequency %s)\n", x$K_hat,
              format(signif(x$probs[[as.character(x$K_hat)]], digits))))
  if (!is.null(x$atoms)) {
    cat(sprintf("\nMerged atoms of the draws with K = %d (labels aligned to the first such draw;\n%s scale):\n",
                x$K_hat, if (x$weights_type == "given") "given" else "internal"))
    for (j in seq_along(x$atoms)) {
      cat(sprintf("\n%s\n", names(x$atoms)[j]))
      print(signif(x$atoms[[j]], digits))
    }
  }
  invisible(x)
}

#' @rdname moe_mtm
#' @param which For `plot()`: `"probs"` (bar chart of the posterior
#'   frequencies of the number of experts) or `"trace"` (the estimate
#'   against the draw, one line per chain).
#' @export
plot.moe_mtm <- function(x, which = c("probs", "trace"), ...) {
  which <- check_choice(which, c("probs", "trace"), "which", sys.call())
  if (which == "probs") {
    graphics::barplot(x$probs, names.arg = names(x$probs), xlab = "number of experts K",
                      ylab = "posterior frequency", ylim = c(0, 1),
                      main = "Merge-Truncate-Merge", ...)
  } else {
    ch <- if (!is.null(x$draw$chain)) x$draw$chain else rep(1L, length(x$K))
    it <- if (!is.null(x$draw$iteration)) x$draw$iteration else seq_along(x$K)
    graphics::plot(it, x$K, type = "n", xlab = "draw", ylab = "estimated K",
                   ylim = c(1, x$K_fit), yaxt = "n", main = "Merge-Truncate-Merge", ...)
    graphics::axis(2L, at = seq_len(x$K_fit))
    for (j in unique(ch)) {
      graphics::lines(it[ch == j], x$K[ch == j], type = "s", col = j)
    }
  }
  invisible(x)
}
