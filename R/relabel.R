# Label switching in MCMC fits: relabelling of the draws.
#
# Draws are stored as sampled (fit$draws, iterations x chains x parameters in
# the par_names() layout). The likelihood and the prior are invariant under
# permutations of the expert labels, so the sampler may visit every relabelled
# copy of a mode. moe_relabel() picks one permutation per draw so that the
# relabelled draws agree with a common labelling.
#
# A permutation `pi` (a vector of length K) maps a parameter set to the one
# whose expert k is the old expert pi[k]: expert parameters are permuted and
# the gating is re-referenced, w'_k = w_{pi[k]} - w_{pi[K]} (w_K = 0), so the
# gating probabilities satisfy g'_k(z) = g_{pi[k]}(z).

# The P x P matrix M with theta' = M %*% theta for the permutation `pi` of
# the parameter vector theta (par_flatten() layout, p expert coefficients,
# q gating coefficients, K experts).
perm_matrix <- function(pi, p, q, K, spec = make_spec()) {
  if (!is_softmax_linear(spec)) return(perm_matrix_spec(pi, p, q, K, spec))
  P <- (p + 1L) * K + q * (K - 1L)
  M <- matrix(0, P, P)
  ex <- function(k) (k - 1L) * (p + 1L) + seq_len(p + 1L)
  gt <- function(k) (p + 1L) * K + (k - 1L) * q + seq_len(q)
  for (k in seq_len(K)) M[cbind(ex(k), ex(pi[k]))] <- 1
  for (k in seq_len(K - 1L)) {
    if (pi[k] < K) M[cbind(gt(k), gt(pi[k]))] <- 1
    if (pi[K] < K) M[cbind(gt(k), gt(pi[K]))] <- -1
  }
  M
}

# The same for a variant (R/gate.R): relabelling is linear in the flat
# parameters (permutation and re-referencing of the gating, the identity on
# a learned temperature), so column j of M is the image of the j-th unit
# vector.
perm_matrix_spec <- function(pi, p, q, K, spec) {
  P <- length(par_names(rep("", p), rep("", q), K, spec))
  M <- matrix(0, P, P)
  for (j in seq_len(P)) {
    par <- par_unflatten(replace(numeric(P), j, 1), p, q, K, spec)
    M[, j] <- par_flatten(permute_par(par, pi))
  }
  M
}

# Apply one permutation per row of the draws matrix D (N x P); `perms` is
# N x K. Rows sharing a permutation are transformed together.
permute_rows <- function(D, perms, p, q, K, spec = make_spec()) {
  if (K == 1L) return(D)
  key <- apply(perms, 1L, paste, collapse = ",")
  out <- D
  for (u in unique(key)) {
    rows <- which(key == u)
    pi <- perms[rows[1L], ]
    if (identical(pi, seq_len(K))) next
    out[rows, ] <- D[rows, , drop = FALSE] %*% t(perm_matrix(pi, p, q, K, spec))
  }
  out
}

# Relabelling features of every expert in every draw, on the internal
# (centred and scaled) scale of the fit: the expert coefficients, the log
# variance and the gating vector centred over the experts. Centring makes the
# gating features permute like the expert features: under `pi` the centred
# vector of the new expert k is the centred vector of the old expert pi[k],
# whatever expert becomes the reference. Returns an N x K x d array.
relabel_features <- function(D, sc, xnames, znames, K, spec = make_spec()) {
  if (!is_softmax_linear(spec)) return(relabel_features_spec(D, sc, xnames, znames, K, spec))
  p <- length(xnames)
  q <- length(znames)
  N <- nrow(D)
  Tx_inv <- t(scaling_inverse(sc$x))
  Tz_inv <- t(scaling_inverse(sc$z))
  shift <- rep(0, p)
  if (sc$x$intercept > 0L) shift[sc$x$intercept] <- sc$my
  W <- array(0, c(N, q, K))
  for (k in seq_len(K - 1L)) {
    W[, , k] <- D[, (p + 1L) * K + (k - 1L) * q + seq_len(q), drop = FALSE] %*% Tz_inv
  }
  Wbar <- apply(W, c(1L, 2L), mean)
  d <- p + 1L + q
  F <- array(0, c(N, K, d))
  for (k in seq_len(K)) {
    ia <- (k - 1L) * (p + 1L) + seq_len(p)
    A <- sweep(D[, ia, drop = FALSE], 2L, shift) %*% Tx_inv / sc$sy
    F[, k, ] <- cbind(A, log(D[, k * (p + 1L)]), matrix(W[, , k] - Wbar, N, q))
  }
  dimnames(F) <- list(NULL, NULL, c(paste0("expert:", xnames), "expert:log_sigma2",
                                    paste0("gate:", znames)))
  F
}

# The same for a variant: the expert features of expert_features() (on the
# internal scale), the log variance and gating features that move with the
# expert under every permutation the gate allows: the gating vectors (divided
# by a learned temperature) centred over the experts; for a hierarchical
# gate the within-group vector centred over the group and the group's vector
# centred over the groups.
relabel_features_spec <- function(D, sc, xnames, znames, K, spec) {
  p <- length(xnames)
  q <- length(znames)
  N <- nrow(D)
  gate <- spec_gate(spec)
  expert <- spec_expert(spec)
  pe <- expert_npar(expert, p)
  Tz_inv <- t(scaling_inverse(sc$z))
  pars <- lapply(seq_len(N), function(i) par_unflatten(D[i, ], p, q, K, spec))
  W <- array(0, c(N, q, K))
  for (i in seq_len(N)) {
    Wi <- t(pars[[i]]$W) %*% Tz_inv
    if (isTRUE(gate$learn)) Wi <- Wi / pars[[i]]$tau
    W[i, , ] <- t(Wi)
  }
  centre <- function(A, idx) {
    A[, , idx] <- A[, , idx, drop = FALSE] - as.vector(apply(A[, , idx, drop = FALSE], c(1L, 2L), mean))
    A
  }
  if (inherits(gate, "moe_gate_hierarchical")) {
    for (g in seq_len(gate$G)) W <- centre(W, which(gate$groups == g))
    Vg <- array(0, c(N, q, gate$G))
    for (i in seq_len(N)) Vg[i, , ] <- t(t(pars[[i]]$V) %*% Tz_inv)
    Vg <- centre(Vg, seq_len(gate$G))
  } else {
    W <- centre(W, seq_len(K))
  }
  ef <- NULL
  # experts without a variance (binomial, Poisson) have no sigma2 column
  disp <- expert_dispersion(expert)
  pk <- pe + disp
  for (k in seq_len(K)) {
    A <- D[, (k - 1L) * pk + seq_len(pe), drop = FALSE]
    fk <- cbind(expert_features(expert, sc, A), if (disp) log(D[, k * pk]),
                matrix(W[, , k], N, q),
                if (inherits(gate, "moe_gate_hierarchical")) matrix(Vg[, , gate$groups[k]], N, q))
    if (is.null(ef)) ef <- array(0, c(N, K, ncol(fk)))
    ef[, k, ] <- fk
  }
  nf <- dim(ef)[3L] - disp - q * (1L + inherits(gate, "moe_gate_hierarchical"))
  dimnames(ef) <- list(NULL, NULL, c(paste0("expert:", if (nf == p) xnames else seq_len(nf)),
                                     if (disp) "expert:log_sigma2", paste0("gate:", znames),
                                     if (inherits(gate, "moe_gate_hierarchical"))
                                       paste0("group:", znames)))
  ef
}

# Cost array C[n, k, j]: standardised squared distance between the old
# expert j of draw n and the centre of label k. One pass per label over all
# draws and experts at once (rows of Fm are (draw, expert) pairs).
relabel_cost <- function(F, centres, scale) {
  N <- dim(F)[1L]
  K <- dim(F)[2L]
  Fm <- matrix(F, N * K)
  C <- array(0, c(N, K, K))
  for (k in seq_len(K)) {
    C[, k, ] <- rowSums(sweep(sweep(Fm, 2L, centres[k, ]), 2L, scale, "/")^2)
  }
  C
}

# The optimal permutation of every draw (N x K), exact for every K
# (solve_assignment(), R/assign.R); under a hierarchical gate only the
# permutations that keep the groups.
assign_perms <- function(C, gate = NULL) {
  if (inherits(gate, "moe_gate_hierarchical") && gate$G > 1L && gate$G < dim(C)[2L]) {
    return(assign_hierarchical(C, gate$groups))
  }
  solve_assignment(C)
}

# Assignment under a hierarchical gate: only permutations that map every
# group onto a group (of the same size) keep the model, so the experts are
# permuted within groups and the groups as blocks. For every pair (new group
# g, old group h) of equal sizes the best assignment of h's experts to g's
# labels is found, then the best assignment of old groups to new groups with
# those costs (exact: both levels are solved exactly). Returns N x K.
assign_hierarchical <- function(C, groups) {
  N <- dim(C)[1L]
  K <- dim(C)[2L]
  G <- max(groups)
  members <- lapply(seq_len(G), function(g) which(groups == g))
  Cg <- array(NA_real_, c(N, G, G))
  within <- vector("list", G * G)
  for (g in seq_len(G)) for (h in seq_len(G)) {
    if (length(members[[g]]) != length(members[[h]])) next
    sub <- C[, members[[g]], members[[h]], drop = FALSE]
    pm <- solve_assignment(sub)
    m <- length(members[[g]])
    Cg[, g, h] <- rowSums(matrix(sub[cbind(rep(seq_len(N), m), rep(seq_len(m), each = N),
                                           as.vector(pm))], N, m))
    within[[(h - 1L) * G + g]] <- pm
  }
  # groups of different sizes cannot be swapped: a cost larger than any sum
  # of allowed ones
  Cg[is.na(Cg)] <- (max(abs(Cg), na.rm = TRUE) + 1) * (G + 1) * 10
  gp <- solve_assignment(Cg)
  perm <- matrix(0L, N, K)
  for (g in seq_len(G)) for (h in seq_len(G)) {
    rows <- which(gp[, g] == h)
    if (!length(rows)) next
    pm <- within[[(h - 1L) * G + g]][rows, , drop = FALSE]
    perm[rows, members[[g]]] <- matrix(members[[h]][pm], length(rows))
  }
  perm
}

# Features of every expert after permuting: G[n, k, ] = F[n, perm[n, k], ].
permute_features <- function(F, perm) {
  N <- dim(F)[1L]
  K <- dim(F)[2L]
  d <- dim(F)[3L]
  G <- F
  for (k in seq_len(K)) {
    for (l in seq_len(d)) G[, k, l] <- F[cbind(seq_len(N), perm[, k], l)]
  }
  G
}

# The parameter set of the pivot: the EM fit stored in the MCMC fit, if any.
em_pivot <- function(fit) {
  em <- fit$em
  # a moe_em() fit, a moe_em_fit() result (parameters in `par`) or a
  # parameter list
  par <- if (inherits(em, "moe_fit")) em$coefficients else if (is.list(em$par)) em$par else em
  if (is.list(par) && all(c("alpha", "sigma2", "W") %in% names(par)) &&
      length(par$sigma2) == fit$K) with_spec(par, fit_spec(fit)) else NULL
}

#' Relabel the draws of a Bayesian mixture-of-experts fit
#'
#' The posterior of a mixture of experts is invariant under permutations of
#' the expert labels, so the Gibbs sampler may switch labels between and
#' within chains. `moe_relabel()` chooses for every draw the permutation of
#' the experts that brings it closest to a common labelling, and returns the
#' fit with relabelled draws. [coef()], [summary()], trace plots and
#' `predict(type = "gating" / "expert")` of an MCMC fit use relabelled draws
#' (relabelling on the fly when the fit was not relabelled); label-invariant
#' quantities (the log-likelihood, predictive means, densities and
#' quantiles) do not depend on it.
#'
#' Permuting the experts changes which expert is the gating reference, so
#' the gating vectors are re-referenced, not just permuted: under the
#' permutation \eqn{\pi} (new expert k is old expert \eqn{\pi(k)}),
#' \eqn{w'_k = w_{\pi(k)} - w_{\pi(K)}}, which keeps every gating
#' probability: \eqn{g'_k(z) = g_{\pi(k)}(z)}. Expert coefficients and
#' variances are permuted.
#'
#' **Algorithm** (`method = "kmeans"`, a k-means relabelling in the
#' parameter space in the spirit of Celeux, 1998, and Stephens, 2000). Each
#' expert of each draw is described by a feature vector on the internal
#' (centred and scaled) scale of the fit: its coefficients, its log
#' variance and its gating vector centred over the experts (this centred
#' vector moves with the expert under any permutation, whatever expert is the
#' reference). Starting from the centres of the pivot (the EM fit stored in
#' the MCMC fit, otherwise the draw with the highest log-likelihood), the
#' algorithm alternates two steps until no permutation changes:
#' 1. for every draw, the permutation minimising the sum over experts of the
#'    squared standardised distances between the permuted features and the
#'    label centres;
#' 2. centres become the means of the relabelled features, and every feature
#'    is standardised by its pooled within-label posterior standard deviation.
#'
#' `method = "pivot"` runs step 1 once against the pivot (features scaled by
#' their overall standard deviation). Step 1 is an assignment problem,
#' solved exactly for every K by the Hungarian algorithm (Kuhn, 1955, in the
#' shortest augmenting path form of Jonker and Volgenant, 1987) in
#' \eqn{O(K^3)} operations per draw; among equally good permutations the
#' identity is kept.
#'
#' The methods of an MCMC fit that need relabelled draws relabel it once:
#' the result is kept for the session (the last few fits, recognised by
#' their draws and pivot), so `print()`, `coef()`, `summary()` and
#' `predict()` of the same fit do not repeat the work. Calling
#' `moe_relabel()` and keeping its result stores the relabelling in the fit
#' itself.
#'
#' @param fit A fit from [moe_mcmc()].
#' @param method `"kmeans"` (iterated, the default) or `"pivot"` (one pass
#'   against the pivot).
#' @param pivot The labelling to start from: `"auto"` (the EM fit stored in
#'   `fit` when there is one, otherwise the highest log-likelihood draw),
#'   `"em"`, `"maxlik"`, or a parameter list `list(alpha, sigma2, W)` as
#'   returned by `coef(fit, matrix = TRUE)`.
#' @param maxit Maximum number of iterations of `method = "kmeans"`.
#' @return `fit` with relabelled `draws` and a `relabel` element: the
#'   `method` and `pivot` used, `permutations` (an iterations x chains x K
#'   integer array: expert k of the relabelled draw is expert
#'   `permutations[i, c, k]` of the draw as sampled), the number of
#'   `iterations`, whether the algorithm `converged`, the final `centres` and
#'   feature `scale`, and `switched`, the proportion of draws whose labels
#'   were changed.
#' @references Jonker, R. and Volgenant, A. (1987). A shortest augmenting
#'   path algorithm for dense and sparse linear assignment problems.
#'   *Computing* 38, 325--340.
#'
#'   Kuhn, H. W. (1955). The Hungarian method for the assignment problem.
#'   *Naval Research Logistics Quarterly* 2, 83--97.
#'
#'   Celeux, G. (1998). Bayesian inference for mixtures: the
#'   label-switching problem. *COMPSTAT 98*, 227--232.
#'
#'   Stephens, M. (2000). Dealing with label switching in mixture models.
#'   *Journal of the Royal Statistical Society B* 62(4), 795--809.
#' @examples
#' fit <- moe_mcmc(tuned ~ stretchratio, data = tonedata, K = 2,
#'                 chains = 2, iter = 300, seed = 1)
#' rl <- moe_relabel(fit)
#' rl$relabel$switched
#' coef(rl)
#' @export
moe_relabel <- function(fit, method = c("kmeans", "pivot"), pivot = "auto", maxit = 100) {
  call <- sys.call()
  if (!inherits(fit, "moe_mcmc")) {
    abort(sprintf("`fit` must be a fit from `moe_mcmc()`, not %s.", describe_fit(fit)),
          call = call, arg = "fit")
  }
  validate_moe_fit(fit, "fit", call)
  method <- check_choice(method, c("kmeans", "pivot"), "method", call)
  maxit <- check_number(maxit, "maxit", lower = 1, whole = TRUE, call = call)
  relabel_fit(fit, method, pivot, maxit, call = call)
}

# The workhorse of moe_relabel().
relabel_fit <- function(fit, method = "kmeans", pivot = "auto", maxit = 100L,
                        call = NULL) {
  K <- fit$K
  xnames <- colnames(fit$X)
  znames <- colnames(fit$Z)
  p <- length(xnames)
  q <- length(znames)
  d <- dim(fit$draws)
  N <- d[1L] * d[2L]
  D <- matrix(fit$draws, N, d[3L])
  sc <- if (!is.null(fit$scaling)) fit$scaling else moe_scaling(fit$y, fit$X, fit$Z)
  spec <- fit_spec(fit)
  old <- if (is_relabelled(fit)) matrix(fit$relabel$permutations, N, K) else
    matrix(seq_len(K), N, K, byrow = TRUE)

  piv <- relabel_pivot(fit, pivot, call)
  # draws a stopped chain did not fill (NA) keep their labels
  ok <- which(rowSums(!is.finite(D)) == 0L)
  perm <- matrix(seq_len(K), N, K, byrow = TRUE)
  if (K == 1L || !length(ok)) {
    res <- list(iterations = 0L, converged = TRUE, centres = NULL, scale = NULL)
  } else {
    Nok <- length(ok)
    F <- relabel_features(D[ok, , drop = FALSE], sc, xnames, znames, K, spec)
    Fp <- relabel_features(matrix(par_flatten(piv$par), 1L), sc, xnames, znames, K, spec)
    centres <- matrix(Fp, K, dim(F)[3L])
    scale <- apply(F, 3L, stats::sd)
    scale[!(scale > 0)] <- 1
    pok <- NULL
    converged <- FALSE
    for (it in seq_len(if (method == "pivot") 1L else maxit)) {
      new <- assign_perms(relabel_cost(F, centres, scale), spec_gate(spec))
      if (!is.null(pok) && identical(new, pok)) {
        converged <- TRUE
        break
      }
      pok <- new
      G <- permute_features(F, pok)
      centres <- t(vapply(seq_len(K), function(k) colMeans(matrix(G[, k, ], Nok)),
                          numeric(dim(F)[3L])))
      if (method == "kmeans") {
        within <- apply(G, c(2L, 3L), function(v) if (length(v) > 1L) stats::var(v) else 0)
        scale <- sqrt(colMeans(matrix(within, K)))
        scale[!(scale > 0)] <- 1
      }
    }
    if (method == "pivot") converged <- TRUE
    perm[ok, ] <- pok
    dimnames(centres) <- list(paste0("expert", seq_len(K)), dimnames(F)[[3L]])
    res <- list(iterations = it, converged = converged, centres = centres,
                scale = setNames(scale, dimnames(F)[[3L]]))
  }
  D_new <- permute_rows(D, perm, p, q, K, spec)
  # compose with a previous relabelling so permutations refer to the draws
  # as sampled
  total <- matrix(old[cbind(rep(seq_len(N), K), as.vector(perm))], N, K)
  fit$draws <- array(D_new, d, dimnames(fit$draws))
  fit$relabel <- c(list(method = method, pivot = piv$type,
                        permutations = array(total, c(d[1L], d[2L], K),
                                             list(NULL, dimnames(fit$draws)[[2L]],
                                                  paste0("expert", seq_len(K))))),
                   res,
                   list(switched = mean(rowSums(perm != matrix(seq_len(K), N, K,
                                                               byrow = TRUE)) > 0),
                        checksum = draws_checksum(fit$draws)))
  fit
}

relabel_pivot <- function(fit, pivot, call = NULL) {
  if (is.list(pivot) && !is.data.frame(pivot)) {
    # experts without a variance: coef(matrix = TRUE) has no sigma2
    if (!expert_dispersion(fit$expert) && is.null(pivot$sigma2)) pivot$sigma2 <- rep(1, fit$K)
    ok <- all(c("alpha", "sigma2", "W") %in% names(pivot)) &&
      identical(dim(as.matrix(pivot$alpha)), c(ncol(fit$X), fit$K)) &&
      length(pivot$sigma2) == fit$K && all(is.finite(unlist(pivot[c("alpha", "sigma2", "W")]))) &&
      all(pivot$sigma2 > 0) && identical(dim(as.matrix(pivot$W)), c(ncol(fit$Z), fit$K))
    if (!ok) {
      abort(sprintf("`pivot` must be a parameter list `list(alpha, sigma2, W)` of a %d-expert fit with these covariates, as from `coef(fit, matrix = TRUE)`.",
                    fit$K), call = call, arg = "pivot")
    }
    return(list(type = "user", par = pivot_spec(pivot, fit_spec(fit), fit, call)))
  }
  if (!is.character(pivot) || length(pivot) != 1L || is.na(pivot) ||
      !pivot %in% c("auto", "em", "maxlik")) {
    abort(sprintf("`pivot` must be \"auto\", \"em\", \"maxlik\" or a parameter list, not %s.",
                  describe(pivot)), call = call, arg = "pivot")
  }
  type <- pivot
  em <- em_pivot(fit)
  if (type == "em" && is.null(em)) {
    abort("`pivot` is \"em\" but the fit stores no EM fit; use \"maxlik\" or \"auto\".",
          call = call, arg = "pivot")
  }
  if (type %in% c("auto", "em") && !is.null(em)) return(list(type = "em", par = em))
  d <- dim(fit$draws)
  best <- which.max(as.vector(fit$loglik_draws))
  theta <- matrix(fit$draws, d[1L] * d[2L], d[3L])[best, ]
  list(type = "maxlik", par = par_unflatten(theta, ncol(fit$X), ncol(fit$Z), fit$K,
                                            fit_spec(fit)))
}

# A user pivot of a variant: the gate's further parameters (V, tau) are
# required, the gating is put in its reference form.
pivot_spec <- function(pivot, spec, fit, call) {
  gate <- spec_gate(spec)
  par <- list(alpha = as.matrix(pivot$alpha), sigma2 = as.numeric(pivot$sigma2),
              W = as.matrix(pivot$W), spec = spec)
  if (inherits(gate, "moe_gate_hierarchical")) {
    V <- pivot$V
    if (!is.numeric(V) || !identical(dim(as.matrix(V)), c(ncol(fit$Z), gate$G)) ||
        any(!is.finite(V))) {
      abort(sprintf("`pivot` of a fit with a hierarchical gate must also hold `V`, the %d x %d gating matrix of the groups.",
                    ncol(fit$Z), gate$G), call = call, arg = "pivot")
    }
    par$V <- as.matrix(V)
    # re-reference both levels (the identity permutation does exactly that)
    par <- gate_permute(gate, par, seq_len(fit$K))
  } else {
    par$W <- par$W - par$W[, fit$K]
  }
  if (isTRUE(gate$learn)) {
    tau <- pivot$tau
    if (!is.numeric(tau) || length(tau) != 1L || !is.finite(tau) || !(tau > 0)) {
      abort("`pivot` of a fit with a learned temperature must also hold `tau`, a positive number.",
            call = call, arg = "pivot")
    }
    par$tau <- tau
  }
  par
}

# A cheap fingerprint of a draws array, so that a stored relabelling is only
# trusted for the draws it was computed on.
draws_checksum <- function(draws) {
  c(dim(draws), sum(draws, na.rm = TRUE),
    sum(draws * seq_along(draws) / length(draws), na.rm = TRUE))
}

is_relabelled <- function(fit) {
  !is.null(fit$relabel) && identical(fit$relabel$checksum, draws_checksum(fit$draws))
}

# Relabellings with the default settings are computed once per fit and
# session: relabel_cache holds the last `relabel_cache_size` results (draws
# and record), keyed by relabel_key(). Fits are values, so the cache lives in
# the namespace, not in the fit; the key covers everything relabel_fit()
# reads with default arguments.
relabel_cache <- new.env(parent = emptyenv())
relabel_cache_size <- 4L

relabel_key <- function(fit) {
  piv <- em_pivot(fit)
  parts <- c(fit$K, draws_checksum(fit$draws),
             if (!is.null(fit$loglik_draws)) draws_checksum(fit$loglik_draws),
             if (!is.null(piv)) draws_checksum(unlist(piv[c("alpha", "sigma2", "W")])),
             if (!is.null(fit$scaling)) draws_checksum(unlist(fit$scaling)))
  paste(c(class(fit)[1L], format(parts, digits = 17L), dimnames(fit$draws)[[3L]],
          paste(deparse(fit_spec(fit)), collapse = "")),
        collapse = "|")
}

# `fit` relabelled with the default settings: itself when it carries a valid
# relabelling, otherwise the cached result or a new one (then cached).
relabelled_fit <- function(fit) {
  if (is_relabelled(fit)) return(fit)
  key <- relabel_key(fit)
  hit <- relabel_cache$entries[[key]]
  if (is.null(hit)) {
    rl <- relabel_fit(fit)
    hit <- list(draws = rl$draws, relabel = rl$relabel)
    entries <- c(relabel_cache$entries[setdiff(names(relabel_cache$entries), key)],
                 setNames(list(hit), key))
    relabel_cache$entries <- utils::tail(entries, relabel_cache_size)
  }
  fit$draws <- hit$draws
  fit$relabel <- hit$relabel
  fit
}

# Draws with consistent labels (iterations x chains x P): those of a
# relabelled fit, otherwise relabelled with the default settings (once per
# fit, see relabelled_fit()).
relabelled_draws <- function(fit) relabelled_fit(fit)$draws
