# The random number state: saving and restoring the caller's, running code
# under a seed or a given state, and independent L'Ecuyer-CMRG streams.
# Every function that takes a `seed` leaves the caller's RNG kind and
# .Random.seed (or its absence) as they were.

# Record the caller's RNG kind and state; the returned function restores them.
save_rng <- function() {
  old_kind <- RNGkind()
  had_seed <- exists(".Random.seed", envir = globalenv(), inherits = FALSE)
  old_seed <- if (had_seed) get(".Random.seed", envir = globalenv())
  function() {
    RNGkind(old_kind[1L], old_kind[2L], old_kind[3L])
    if (had_seed) {
      assign(".Random.seed", old_seed, envir = globalenv())
    } else if (exists(".Random.seed", envir = globalenv(), inherits = FALSE)) {
      rm(".Random.seed", envir = globalenv())
    }
  }
}

# Run `expr` with the RNG seeded by `seed` (when not NULL), leaving the
# caller's RNG state (kind and .Random.seed) as it was.
with_seed <- function(seed, expr, kind = "default") {
  if (is.null(seed)) return(expr)
  restore <- save_rng()
  on.exit(restore(), add = TRUE)
  RNGkind(kind, "Inversion", "Rejection")
  set.seed(seed)
  expr
}

# Evaluate `expr` with .Random.seed set to `state`; return its value and the
# RNG state after it, leaving the caller's RNG state as it was.
with_rng_state <- function(state, expr) {
  restore <- save_rng()
  on.exit(restore(), add = TRUE)
  assign(".Random.seed", state, envir = globalenv())
  value <- expr
  list(value = value, state = get(".Random.seed", envir = globalenv()))
}

# `m` independent L'Ecuyer-CMRG streams (values of .Random.seed) from a
# seed: stream i is the state set.seed(seed) gives with that kind, advanced
# by parallel::nextRNGStream() `skip + i - 1` times. The harness takes its
# task streams with `skip = 0` (the first is the seeded state itself), the
# MCMC chains theirs with `skip = 1` (chain_streams()).
rng_streams <- function(seed, m, skip = 0L) {
  with_seed(seed, {
    s <- get(".Random.seed", envir = globalenv())
    for (i in seq_len(skip)) s <- parallel::nextRNGStream(s)
    out <- vector("list", m)
    for (i in seq_len(m)) {
      out[[i]] <- s
      s <- parallel::nextRNGStream(s)
    }
    out
  }, kind = "L'Ecuyer-CMRG")
}

# The streams of `chains` MCMC chains: the c-th nextRNGStream() after
# set.seed(seed) with the L'Ecuyer-CMRG kind.
chain_streams <- function(seed, chains) rng_streams(seed, chains, skip = 1L)
