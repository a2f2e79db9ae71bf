# Fitting the gating and expert variants: the R side of the generic Gibbs
# sampler (src/mcmc_variants.c) and the pieces moe_mcmc_fit() and the chain
# runner of R/mcmc.R call for a fit with a `spec` (R/variants.R). The EM of
# the variants is em_variant_run() in R/em.R (src/em_variants.c).

# Check that the sampler offers the variant before any work is done.
mcmc_variant_check <- function(spec, set, call = NULL) {
  if (is_ffn_softmax(spec)) return(invisible(TRUE))
  expert <- spec_expert(spec)
  if (!inherits(expert, "moe_expert_linear") &&
      !isTRUE(tryCatch(is.list(expert_c(expert)), error = function(e) FALSE))) {
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
# order of src/mcmc_variants.c): the gate's, then the expert family's.
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
  c(gb, expert_accept_names(spec_expert(spec)))
}

expert_accept_names <- function(expert) UseMethod("expert_accept_names")
expert_accept_names.moe_expert <- function(expert) character()

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
# (the generic expert_state_init() and its methods are in R/expert-ffn.R)

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

# One chain of the variant sampler (runs in a future), as mcmc_chain().
mcmc_variant_chain <- function(chain, s, pc, K, inits, states, streams, warmup, iter,
                               thin, offsets, refresh, gate_mode, spec) {
  if (is_ffn_softmax(spec)) {
    # softmax gating with FFN experts: the sampler of src/ffn.c
    return(ffn_mcmc_chain(chain, s, pc, K, inits, states, streams, warmup, iter, thin,
                          offsets, refresh, gate_mode, spec))
  }
  # the variant sampler has no collapsed update: "collapsed" (code 3) runs
  # as "pg+mh" (code 1); gate_steps does not apply; "mh" (code 2) adds the
  # Polya-Gamma draws in warm-up and every pg_every-th sweep after
  pg_every <- gate_mode[3L]
  gate_mode <- gate_mode[1L]
  if (gate_mode == 3L) gate_mode <- 1L
  st <- if (is.null(states)) NULL else states[[chain]]
  rng <- if (is.null(st)) streams[[chain]] else st$rng
  gate <- spec_gate(spec)
  expert <- spec_expert(spec)
  p <- ncol(s$X)
  q <- ncol(s$Z)
  blocks <- variant_blocks(spec, K, gate_mode)
  nbg <- length(blocks) - length(expert_accept_names(expert))
  run <- with_rng_state(rng, {
    par <- if (!is.null(st)) st else
      if (is.null(inits[[chain]])) prior_draw_spec(pc, K, spec) else inits[[chain]]
    adapt <- if (!is.null(st)) st$adapt else variant_adapt_init(spec, q, K)
    xstate <- if (!is.null(st)) st$xstate else expert_state_init(expert, p)
    ctl <- c(warmup, iter, thin, offsets[chain], refresh, chain, gate_mode, nbg, pg_every)
    t0 <- proc.time()
    res <- variant_chain_c(s, pc, K, par, spec, adapt, xstate, ctl)
    res$cpu <- sum((proc.time() - t0)[1:2])
    res
  })
  res <- run$value
  names(res$accept) <- blocks
  pe <- expert_npar(expert, p)
  state <- list(alpha = matrix(res$alpha_end, pe, K), sigma2 = res$sigma2_end,
                W = matrix(res$W_end, q, K))
  if (gate$type == "hierarchical") state$V <- matrix(res$V_end, q, gate$G)
  if (isTRUE(gate$learn)) state$tau <- res$tau_end
  state$spec <- spec
  state <- c(state, list(adapt = res$state_end, xstate = res$xstate_end, rng = run$state,
                         iterations_done = (if (is.null(st)) 0L else st$iterations_done) +
                           res$done))
  list(res = res, rng = run$state, p = p, q = q, state = state)
}

# The C call of one variant chain (the caller holds the RNG state): data
# `s` (internal scale, whole weights >= 1), prior `pc` (prior_internal()),
# starting parameters `par` (internal scale), adaptation state and expert
# state, controls c(warmup, iter, thin, offset, refresh, chain, gate_mode,
# number of gate blocks).
variant_chain_c <- function(s, pc, K, par, spec, adapt, xstate, ctl) {
  gate <- spec_gate(spec)
  tau <- if (isTRUE(gate$learn)) par$tau else if (is.null(gate$tau)) 1 else gate$tau
  .Call(ffi_mcmc_variant, as.double(s$y), s$X, s$Z, as.double(s$w), as.double(par$alpha),
        as.double(par$sigma2), as.double(par$W),
        if (gate$type == "hierarchical") as.double(par$V),
        as.double(tau), gate_c(gate, K), expert_c(spec_expert(spec)),
        if (isTRUE(gate$learn)) as.double(gate$prior), pc, as.integer(ctl),
        as.double(adapt), as.double(xstate))
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
