# Plain-R references of the gate evaluations in C, used by the tests of
# R/gate.R, R/variants-fit.R and R/loss-topk.R.

# Plain-R log gating probabilities of every gate (the reference of the C
# evaluation).
gate_log_prob_r <- function(gate, Z, par) {
  eta <- Z %*% par$W
  switch(gate$type,
    softmax = log_softmax_rows(eta),
    topk = {
      K <- ncol(eta)
      if (gate$k < K) eta[!topk_mask(eta, gate$k)] <- -Inf
      log_softmax_rows(eta)
    },
    temperature = log_softmax_rows(eta / gate_tau(gate, par)),
    hierarchical = {
      lv <- log_softmax_rows(Z %*% par$V)
      out <- eta
      for (g in seq_len(gate$G)) {
        idx <- which(gate$groups == g)
        out[, idx] <- lv[, g] + log_softmax_rows(eta[, idx, drop = FALSE])
      }
      out
    })
}
