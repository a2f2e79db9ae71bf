# Gates: the gate objects (gate_softmax(), gate_topk(), gate_temperature(),
# gate_hierarchical()) and the generics every function that receives a
# parameter list dispatches on for its gating part; their C side is
# src/gate*.c (gate_codes and gate_c() are what C receives).
#
# A parameter list `par` holds `alpha` (P_e x K expert parameters), `sigma2`
# (K), `W` (q x K gating), plus `V` (q x G, hierarchical gates only) and `tau`
# (a learned temperature only), and `spec = list(gate = , expert = )`
# (R/spec.R).
#
# Generics (S3 on the gate objects):
#   gate_log_prob(gate, Z, par)         n x K log gating probabilities
#   gate_par_names(gate, znames, K)     names of the flat gating parameters
#   gate_flatten(gate, par)             flat gating parameters
#   gate_unflatten(gate, theta, q, K)   list(W, [V], [tau]) from them
#   gate_permute(gate, par, perm)       relabel the gate (new k = old perm[k])
#   gate_to_original(gate, sc, par), gate_to_internal(gate, sc, par)
#   gate_resolve(gate, K)               the gate checked against K
#   gate_label(), gate_details(), gate_call()   descriptions for printing

new_gate <- function(type, ...) {
  structure(list(type = type, ...), class = c(paste0("moe_gate_", type), "moe_gate"))
}

#' Gating networks of a mixture of experts
#'
#' Gate objects choose how the experts are weighted at each value \eqn{z} of
#' the gating covariates; pass one as `gate =` to [moe_em()] or [moe_mcmc()].
#' With gating logits \eqn{\eta_k(z) = z^\top w_k} (expert \eqn{K} is the
#' reference, \eqn{w_K = 0}):
#'
#' * `gate_softmax()`: \eqn{g_k(z) = \exp(\eta_k) / \sum_j \exp(\eta_j)},
#'   the default.
#' * `gate_topk(k)`: top-k sparse softmax. At each \eqn{z} only the \eqn{k}
#'   largest logits keep their weight (on ties the expert with the lower
#'   index is kept), the softmax is renormalised over them and the other
#'   experts get weight 0 (log weight `-Inf`). With `k` equal to the number
#'   of experts this is the softmax.
#' * `gate_temperature(tau)`: dense-to-sparse gating, the softmax of
#'   \eqn{\eta_k / \tau}. Small \eqn{\tau} tends to top-1 gating; \eqn{\tau
#'   = 1} is the softmax. With `learn = FALSE` (the default) \eqn{\tau} is
#'   fixed and the model is exactly the softmax gate with covariates
#'   \eqn{z / \tau}. With `learn = TRUE` \eqn{\tau} is a parameter with the
#'   prior \eqn{\log\tau \sim N(m, s^2)}, `prior = c(m, s)`, and `tau` is its
#'   starting value. The likelihood does not identify it: \eqn{(w, \tau)}
#'   and \eqn{(c\,w, c\,\tau)} give the same gate for every \eqn{c > 0}, so
#'   only the priors (on \eqn{\log\tau} and on \eqn{w}) pin it down. See
#'   Details.
#' * `gate_hierarchical(groups)`: a two-level softmax. The experts are split
#'   into \eqn{G} groups; \eqn{\log g_k(z) = \log \mathrm{softmax}(z^\top
#'   V)_{h(k)} + \log \mathrm{softmax}_{j \in h(k)}(z^\top w_j)_k}, with
#'   \eqn{h(k)} the group of expert \eqn{k}, a softmax over the groups (group
#'   \eqn{G} is the reference, its column of \eqn{V} is zero) times a
#'   softmax over the experts of the group (the last expert of each group is
#'   that group's reference). With one group it is the softmax.
#'
#' @details
#' **Parameters.** Fits store the gating matrix `W` (q x K) for every gate,
#' `V` (q x G) for hierarchical gates and `tau` for a learned temperature.
#' In `coef()` and the MCMC draws the gating parameters follow the expert
#' parameters: `gate<k>:<term>` for the free columns of `W` (k < K, or for a
#' hierarchical gate every expert that is not its group's reference, after
#' `group<g>:<term>`, g < G, for `V`), then `tau` when it is learned.
#'
#' **Learned temperature.** Under [moe_mcmc()] \eqn{\log\tau} is sampled
#' (random-walk Metropolis, plus a move along the direction
#' \eqn{(c\,w, c\,\tau)} on which the likelihood is constant), and the
#' posterior of \eqn{\tau} is its prior reweighted only through the prior of
#' \eqn{w}. Under [moe_em()] the estimate is the penalised (MAP) one:
#' \eqn{\log\tau} is penalised by its prior and \eqn{w} by the ridge of
#' [moe_em_control()]. With `ridge = 0` the likelihood alone cannot move
#' \eqn{\tau}, so the estimate is \eqn{\exp(m)} and the fit equals the
#' fixed-temperature (softmax) fit; `vcov()` reports the direction as not
#' identified.
#'
#' **Top-k fitting.** The log-likelihood of a top-k gate jumps where the
#' boundary between two regions with different active sets moves.
#' [moe_em()] alternates Newton steps for the gate over the active sets and
#' of the dense softmax with a coordinate search on the observed
#' log-likelihood that moves the boundaries; it never decreases, but local
#' optima are common, so use several starts. [moe_mcmc()] updates the gating
#' vectors by random-walk Metropolis. [topk_loss()] is the Voronoi loss of
#' top-k gating.
#'
#' @param k Number of experts kept at each \eqn{z}, a whole number >= 1 (at
#'   most the number of experts of the fit).
#' @param tau The temperature, a positive number (the starting value when
#'   `learn = TRUE`).
#' @param learn Learn the temperature (`TRUE`) or keep it fixed (`FALSE`).
#' @param prior Mean and standard deviation of the normal prior of
#'   \eqn{\log\tau} (used when `learn = TRUE`).
#' @param groups The group of every expert: an integer vector of length K
#'   with values \eqn{1, \dots, G}, each used at least once; or a single
#'   number \eqn{G}, meaning \eqn{G} groups of equal size of consecutive
#'   experts (K must then be a multiple of \eqn{G}).
#' @param x A gate object.
#' @param ... Unused.
#' @return An object of class `c("moe_gate_<type>", "moe_gate")`.
#' @seealso [expert_linear()] for the experts; [moe_em()], [moe_mcmc()].
#' @examples
#' gate_topk(2)
#' gate_temperature(0.5)
#' gate_hierarchical(c(1, 1, 2, 2))
#' @name moe_gates
NULL

#' @rdname moe_gates
#' @export
gate_softmax <- function() new_gate("softmax")

#' @rdname moe_gates
#' @export
gate_topk <- function(k) {
  call <- sys.call()
  if (missing(k)) abort("`k` must be supplied: the number of experts kept at each z.",
                        call = call, arg = "k")
  new_gate("topk", k = check_number(k, "k", lower = 1, whole = TRUE, call = call))
}

#' @rdname moe_gates
#' @export
gate_temperature <- function(tau = 1, learn = FALSE, prior = c(0, 1)) {
  call <- sys.call()
  tau <- check_number(tau, "tau", lower = 0, strict_lower = TRUE, call = call)
  learn <- check_flag(learn, "learn", call)
  if (!is.numeric(prior) || length(prior) != 2L || any(!is.finite(prior)) || !(prior[2L] > 0)) {
    abort(sprintf("`prior` must be the mean and the positive standard deviation of log(tau), two finite numbers, not %s.",
                  describe(prior)), call = call, arg = "prior")
  }
  new_gate("temperature", tau = tau, learn = learn, prior = as.numeric(prior))
}

#' @rdname moe_gates
#' @export
gate_hierarchical <- function(groups) {
  call <- sys.call()
  if (missing(groups)) {
    abort("`groups` must be supplied: the group of every expert, or the number of groups.",
          call = call, arg = "groups")
  }
  if (length(groups) == 1L) {
    G <- check_number(groups, "groups", lower = 1, whole = TRUE, call = call)
    return(new_gate("hierarchical", G = G, groups = NULL))
  }
  ok <- is.numeric(groups) && length(groups) > 0L && all(is.finite(groups)) && all(abs(groups - round(groups)) < 1e-8) &&
    all(groups >= 1)
  if (ok) {
    groups <- as.integer(round(groups))
    ok <- all(seq_len(max(groups)) %in% groups)
  }
  if (!ok) {
    abort(sprintf("`groups` must be whole numbers 1, ..., G using every group at least once, or a single number of groups, not %s.",
                  describe(groups)), call = call, arg = "groups")
  }
  new_gate("hierarchical", G = max(groups), groups = groups)
}

#' @rdname moe_gates
#' @export
print.moe_gate <- function(x, ...) {
  cat("<moe_gate> ", gate_label(x), "\n", sep = "")
  txt <- gate_details(x)
  if (length(txt)) cat(paste0("  ", txt, "\n"), sep = "")
  invisible(x)
}

# One-line description (fit titles) and further lines (print()).
gate_label <- function(gate) UseMethod("gate_label")

gate_label.NULL <- function(gate) "softmax gating"

gate_label.moe_gate_softmax <- function(gate) "softmax gating"

gate_label.moe_gate_topk <- function(gate) sprintf("top-%d sparse softmax gating", gate$k)

gate_label.moe_gate_temperature <- function(gate) {
  if (isTRUE(gate$learn)) "softmax gating with a learned temperature" else
    sprintf("softmax gating with temperature %s", format(signif(gate$tau, 4)))
}

gate_label.moe_gate_hierarchical <- function(gate) {
  sprintf("hierarchical softmax gating (%d group%s)", gate$G, if (gate$G > 1L) "s" else "")
}

gate_details <- function(gate) UseMethod("gate_details")

gate_details.moe_gate <- function(gate) character()

gate_details.moe_gate_topk <- function(gate) {
  "only the k largest gating logits keep their weight at each z (ties: lower index first)"
}

gate_details.moe_gate_temperature <- function(gate) {
  if (isTRUE(gate$learn)) {
    sprintf("logits divided by tau; prior log(tau) ~ N(%s, %s^2), starting value tau = %s",
            format(gate$prior[1L]), format(gate$prior[2L]), format(signif(gate$tau, 4)))
  } else "logits divided by tau (fixed)"
}

gate_details.moe_gate_hierarchical <- function(gate) {
  if (is.null(gate$groups)) sprintf("%d groups of equal size of consecutive experts", gate$G) else
    sprintf("group of each expert: %s", paste(gate$groups, collapse = " "))
}

gate_resolve <- function(gate, K, call = NULL) UseMethod("gate_resolve")

gate_resolve.moe_gate <- function(gate, K, call = NULL) gate

gate_resolve.moe_gate_topk <- function(gate, K, call = NULL) {
  if (gate$k > K) {
    abort(sprintf("`k` of `gate_topk()` must be at most the number of experts `K` = %d, not %d.",
                  K, gate$k), call = call, arg = "gate")
  }
  gate
}

gate_resolve.moe_gate_hierarchical <- function(gate, K, call = NULL) {
  if (is.null(gate$groups)) {
    if (K %% gate$G != 0L) {
      abort(sprintf("`groups` of `gate_hierarchical()` asks for %d groups of equal size, but `K` = %d is not a multiple of %d; give the group of every expert instead.",
                    gate$G, K, gate$G), call = call, arg = "gate")
    }
    gate$groups <- rep(seq_len(gate$G), each = K %/% gate$G)
  } else if (length(gate$groups) != K) {
    abort(sprintf("`groups` of `gate_hierarchical()` must give the group of each of the `K` = %d experts; it has length %d.",
                  K, length(gate$groups)), call = call, arg = "gate")
  }
  gate
}

# Reference (last) expert of every group, and whether each expert is one.
hier_refs <- function(groups) {
  G <- max(groups)
  vapply(seq_len(G), function(g) max(which(groups == g)), 0L)
}

hier_free <- function(groups) setdiff(seq_along(groups), hier_refs(groups))

gate_log_prob <- function(gate, Z, par) UseMethod("gate_log_prob")

gate_log_prob.moe_gate_softmax <- function(gate, Z, par) log_softmax_rows(Z %*% par$W)

gate_log_prob.moe_gate <- function(gate, Z, par) {
  storage.mode(Z) <- "double"
  W <- as.matrix(par$W)
  storage.mode(W) <- "double"
  V <- if (is.null(par$V)) NULL else as.double(par$V)
  if (isTRUE(gate$learn) && !is.null(par$tau)) gate$tau <- par$tau
  .Call(ffi_gate_logprob, Z, W, V, gate_c(gate, ncol(W)))
}

# Type codes of the gates and expert families (moe_gate_type and
# moe_family_type in src/moe.h; test-tables.R compares them with
# ffi_code_tables()).
gate_codes <- c(softmax = 0L, topk = 1L, temperature = 2L, hierarchical = 3L)

# The gate in the form the C code takes (moe_gate in src/moe.h).
gate_c <- function(gate, K) {
  list(type = gate_codes[[gate$type]], K = as.integer(K),
       k = if (is.null(gate$k)) as.integer(K) else as.integer(min(gate$k, K)),
       tau = if (is.null(gate$tau)) 1 else as.double(gate$tau),
       G = if (is.null(gate$G)) 1L else as.integer(gate$G),
       group = if (is.null(gate$groups)) integer() else as.integer(gate$groups) - 1L)
}

# TRUE where expert k is among the k largest logits of row i (ties: the
# lower index first).
topk_mask <- function(eta, k) {
  K <- ncol(eta)
  above <- matrix(0L, nrow(eta), K)
  for (l in seq_len(K)) for (j in seq_len(K)) {
    if (j == l) next
    beats <- if (j < l) eta[, j] >= eta[, l] else eta[, j] > eta[, l]
    above[, l] <- above[, l] + beats
  }
  above < k
}

gate_tau <- function(gate, par) {
  if (isTRUE(gate$learn) && !is.null(par$tau)) par$tau else gate$tau
}

gate_par_names <- function(gate, znames, K) UseMethod("gate_par_names")

gate_par_names.moe_gate <- function(gate, znames, K) {
  nm <- if (K > 1L) unlist(lapply(seq_len(K - 1L), function(k) paste0("gate", k, ":", znames))) else
    character()
  if (isTRUE(gate$learn)) nm <- c(nm, "tau")
  nm
}

gate_par_names.moe_gate_hierarchical <- function(gate, znames, K) {
  G <- gate$G
  c(if (G > 1L) unlist(lapply(seq_len(G - 1L), function(g) paste0("group", g, ":", znames))),
    unlist(lapply(hier_free(gate$groups), function(k) paste0("gate", k, ":", znames))))
}

gate_flatten <- function(gate, par) UseMethod("gate_flatten")

gate_flatten.moe_gate <- function(gate, par) {
  K <- ncol(par$W)
  c(if (K > 1L) as.vector(par$W[, -K, drop = FALSE]), if (isTRUE(gate$learn)) par$tau)
}

gate_flatten.moe_gate_hierarchical <- function(gate, par) {
  G <- gate$G
  c(if (G > 1L) as.vector(par$V[, -G, drop = FALSE]),
    as.vector(par$W[, hier_free(gate$groups), drop = FALSE]))
}

gate_unflatten <- function(gate, theta, q, K) UseMethod("gate_unflatten")

gate_unflatten.moe_gate <- function(gate, theta, q, K) {
  W <- matrix(0, q, K)
  if (K > 1L) W[, -K] <- theta[seq_len(q * (K - 1L))]
  out <- list(W = W)
  if (isTRUE(gate$learn)) out$tau <- theta[q * (K - 1L) + 1L]
  out
}

gate_unflatten.moe_gate_hierarchical <- function(gate, theta, q, K) {
  G <- gate$G
  V <- matrix(0, q, G)
  if (G > 1L) V[, -G] <- theta[seq_len(q * (G - 1L))]
  W <- matrix(0, q, K)
  free <- hier_free(gate$groups)
  W[, free] <- theta[q * (G - 1L) + seq_len(q * length(free))]
  list(W = W, V = V)
}

# Relabel: new expert k is old expert perm[k]; the gating is re-referenced.
gate_permute <- function(gate, par, perm) UseMethod("gate_permute")

gate_permute.moe_gate <- function(gate, par, perm) {
  K <- length(perm)
  W <- par$W[, perm, drop = FALSE]
  par$W <- W - W[, K]
  par
}

gate_permute.moe_gate_hierarchical <- function(gate, par, perm) {
  groups <- gate$groups
  G <- gate$G
  # the group permutation: new group g holds the old group sigma[g]
  sigma <- vapply(seq_len(G), function(g) groups[perm[which(groups == g)[1L]]], 0L)
  if (!all(groups[perm] == sigma[groups]) || anyDuplicated(sigma)) {
    stop("internal error in bayesmoe: a permutation that does not keep the groups")
  }
  V <- par$V[, sigma, drop = FALSE]
  par$V <- V - V[, G]
  W <- par$W[, perm, drop = FALSE]
  for (r in hier_refs(groups)) {
    idx <- which(groups == groups[r])
    W[, idx] <- W[, idx] - W[, r]
  }
  par$W <- W
  par
}

gate_to_original <- function(gate, sc, par) UseMethod("gate_to_original")

gate_to_original.moe_gate <- function(gate, sc, par) {
  par$W <- sc$z$T %*% par$W
  if (!is.null(par$V)) par$V <- sc$z$T %*% par$V
  par
}

gate_to_internal <- function(gate, sc, par) UseMethod("gate_to_internal")

gate_to_internal.moe_gate <- function(gate, sc, par) {
  par$W <- scaling_inverse(sc$z) %*% par$W
  if (!is.null(par$V)) par$V <- scaling_inverse(sc$z) %*% par$V
  par
}

# Print the gating parameters of a fit (print() of EM and MCMC fits).
print_gating <- function(gate, par, K, digits, prefix = "") {
  head <- function(txt) {
    txt <- paste0(prefix, txt)
    paste0("\n", toupper(substring(txt, 1, 1)), substring(txt, 2))
  }
  if (is.null(gate) || inherits(gate, "moe_gate_softmax") || inherits(gate, "moe_gate_topk") ||
      inherits(gate, "moe_gate_temperature")) {
    if (K > 1L) {
      cat(head(sprintf("gating coefficients (expert %d is the reference):\n", K)))
      print(par$W[, -K, drop = FALSE], digits = digits)
    }
    if (inherits(gate, "moe_gate_topk")) {
      cat(sprintf("Top-%d gating: only the %d largest logits keep their weight at each z.\n",
                  gate$k, gate$k))
    }
    if (inherits(gate, "moe_gate_temperature")) {
      tau <- gate_tau(gate, par)
      cat(sprintf("Temperature: tau = %s (%s); gating probabilities are softmax(z'w / tau).\n",
                  format(signif(tau, digits)), if (isTRUE(gate$learn)) "learned" else "fixed"))
    }
    return(invisible())
  }
  G <- gate$G
  if (G > 1L) {
    cat(head(sprintf("gating coefficients of the groups (group %d is the reference):\n", G)))
    print(par$V[, -G, drop = FALSE], digits = digits)
  }
  free <- hier_free(gate$groups)
  if (length(free)) {
    cat(head("gating coefficients within the groups (the last expert of each group is its reference):\n"))
    print(par$W[, free, drop = FALSE], digits = digits)
  }
  cat(sprintf("Groups of the experts: %s\n", paste(gate$groups, collapse = " ")))
  invisible()
}

# Header of one group of coefficients ("expert1", "gate2", "group1", "tau")
# in the printed summaries.
coef_group_label <- function(g, K, gate = NULL) {
  if (startsWith(g, "gate")) {
    if (inherits(gate, "moe_gate_hierarchical")) {
      k <- as.integer(sub("^gate", "", g))
      h <- gate$groups[k]
      return(sprintf("Gating within group %d, %s (reference: expert %d):", h, g,
                     hier_refs(gate$groups)[h]))
    }
    return(sprintf("Gating, %s (reference: expert %d):", g, K))
  }
  if (startsWith(g, "group")) {
    return(sprintf("Gating of the groups, %s (reference: group %d):", g, gate$G))
  }
  if (g == "tau") return("Temperature:")
  sprintf("%s%s:", toupper(substring(g, 1, 1)), substring(g, 2))
}

# How the user would write a gate or expert, for messages.
gate_call <- function(gate) {
  switch(gate$type,
    softmax = "gate_softmax()",
    topk = sprintf("gate_topk(%d)", gate$k),
    temperature = sprintf("gate_temperature(%s%s)", format(signif(gate$tau, 4)),
                          if (isTRUE(gate$learn)) ", learn = TRUE" else ""),
    hierarchical = sprintf("gate_hierarchical(%s)",
                           if (is.null(gate$groups)) gate$G else
                             paste0("c(", paste(gate$groups, collapse = ", "), ")")),
    sprintf("gate_%s()", gate$type))
}

# Row-wise log-softmax of an n x K matrix of logits, by log-sum-exp.
log_softmax_rows <- function(eta) {
  mx <- eta[, 1L]
  if (ncol(eta) > 1L) for (k in 2:ncol(eta)) mx <- pmax(mx, eta[, k])
  lse <- mx + log(rowSums(exp(eta - mx)))
  eta - lse
}
