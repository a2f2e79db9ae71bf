# The pieces of moe_mcmc_fit() and the chain runner of R/mcmc.R for the
# models the generic kernel of src/mcmc.c samples (any gate or expert
# family other than the softmax with linear experts): the Metropolis blocks
# and their acceptance rates, the adaptation state, prior draws, draws
# mapped to the original scale.

# Check that the sampler offers the variant before any work is done.
mcmc_variant_check <- function(spec, set, call = NULL) {
  if (is_ffn_softmax(spec) || is_t_softmax(spec)) return(invisible(TRUE))
  expert <- spec_expert(spec)
  if (!inherits(expert, "moe_expert_linear") && !is_glm_expert(expert)) {
    what <- if (inherits(spec_gate(spec), "moe_gate_softmax")) {
      sprintf("`expert = %s`", expert_call(expert))
    } else {
      sprintf("`gate = %s` with `expert = %s`", gate_call(spec_gate(spec)), expert_call(expert))
    }
    abort_unavailable(what, "moe_mcmc", call)
  }
  invisible(TRUE)
}

# Names of the Metropolis-Hastings blocks of the variant sampler (in the
# order of the gate updates of src/gate*.c): the gate's, then the expert family's.
variant_blocks <- function(spec, K, mode) {
  gate <- spec_gate(spec)
  refresh <- mode > 0L && K >= 2L
  gb <- switch(gate$type,
    topk = if (gate$k < K) paste0("gate", seq_len(K - 1L)) else if (refresh) "refresh",
    temperature = c(if (refresh) "refresh", if (isTRUE(gate$learn)) c("log_tau", "scale")),
    hierarchical = if (mode > 0L) {
      sizes <- tabulate(gate$groups, gate$G)
      c(if (gate$G >= 2L) "refresh:groups",
        paste0("refresh:group", which(sizes >= 2L)))
    },
    if (refresh) "refresh")
  c(gb, expert_accept_names(spec_expert(spec), K))
}

expert_accept_names <- function(expert, K) UseMethod("expert_accept_names")
expert_accept_names.moe_expert <- function(expert, K) character()

# What an expert family's accepted-proposal counts are divided by, besides
# the sweeps: its Metropolis steps per sweep.
expert_accept_scale <- function(expert) UseMethod("expert_accept_scale")
expert_accept_scale.moe_expert <- function(expert) 1

# Starting adaptation state of a chain (moe_mcmcv_state_size() doubles): for
# top-k, per free gating vector the log scale and an identity Cholesky
# factor; for a learned temperature the log scales of its two moves.
variant_adapt_init <- function(spec, q, K) {
  gate <- spec_gate(spec)
  if (gate$type == "topk" && gate$k < K) {
    return(rep(c(log(0.2), as.vector(diag(q))), K - 1L))
  }
  if (isTRUE(gate$learn)) return(c(log(0.3), log(0.3)))
  numeric()
}

# The expert family's starting state (moe_expert_family.nstate doubles).
# (the generic expert_state_init() and its methods are in R/family-ffn.R)

# One draw from the prior of a variant (internal scale): the experts and W
# as prior_draw(); a hierarchical gate draws each level from the gating
# prior with its own number of categories; a learned temperature from its
# prior.
prior_draw_spec <- function(pc, K, spec) {
  gate <- spec_gate(spec)
  par <- prior_draw(pc, K)
  q <- length(pc$s_w2)
  if (gate$type == "hierarchical") {
    level <- function(Kl) prior_draw(pc, Kl)$W
    par$V <- level(gate$G)
    W <- matrix(0, q, K)
    for (g in seq_len(gate$G)) {
      idx <- which(gate$groups == g)
      W[, idx] <- level(length(idx))
    }
    par$W <- W
  }
  if (isTRUE(gate$learn)) par$tau <- exp(stats::rnorm(1L, gate$prior[1L], gate$prior[2L]))
  par$spec <- spec
  par
}

# Kept draws of one variant chain on the original scale: an S x P matrix in
# the layout of par_flatten(). `res` holds alpha (P_e x K x S), sigma2
# (K x S), W (q x K x S) and, for the gates that have them, V (q x G x S)
# and tau (S).
variant_draws_to_original <- function(sc, res, p, q, K, spec) {
  S <- length(res$loglik)
  P <- length(par_names(rep("", p), rep("", q), K, spec))
  if (S == 0L) return(matrix(0, 0L, P))
  pe <- expert_npar(spec_expert(spec), p)
  A <- array(res$alpha, c(pe, K, S))
  s2 <- matrix(res$sigma2, K, S)
  W <- array(res$W, c(q, K, S))
  V <- if (!is.null(res$V)) array(res$V, c(q, length(res$V) / (q * S), S))
  out <- matrix(0, S, P)
  for (s in seq_len(S)) {
    par <- list(alpha = matrix(A[, , s], pe, K), sigma2 = s2[, s], W = matrix(W[, , s], q, K),
                spec = spec)
    if (!is.null(V)) par$V <- matrix(V[, , s], q)
    if (!is.null(res$tau)) par$tau <- res$tau[s]
    out[s, ] <- par_flatten(par_to_original(sc, par))
  }
  out
}

# Acceptance rates of the Metropolis-Hastings blocks of variant chains after
# warm-up: a chains x blocks matrix; `counts` (chains x blocks) accepted over
# `n_new` sweeps combined with the rates `old` over `n_old` sweeps. NULL when
# the sampler has no Metropolis-Hastings block.
variant_accept_rates <- function(old, n_old, counts, n_new) {
  if (is.null(counts) || !length(counts) || !ncol(counts)) return(NULL)
  if (!is.null(old)) counts <- counts + round(old * n_old)
  out <- counts / (n_old + n_new)
  rownames(out) <- paste0("chain", seq_len(nrow(out)))
  out
}
