# The model of a fit and of its parameter lists: spec = list(gate, expert)
# (R/gate.R, R/family.R). Every parameter list a method computes with
# carries it; make_spec() fills in the softmax gate and linear experts.
# is_softmax_linear() picks the closed forms and vectorised paths of that
# model, as the C drivers pick their fused kernels.

# The `spec` of a fit and of its parameter lists: list(gate, expert), the
# softmax gate and linear experts unless given.
make_spec <- function(gate = NULL, expert = NULL) {
  list(gate = if (is.null(gate)) gate_softmax() else gate,
       expert = if (is.null(expert)) expert_linear() else expert)
}

# TRUE for the softmax gate with linear experts: the model that closed forms
# (observed information, prediction Jacobians) and vectorised code paths
# (draws, relabelling) serve, as the fused kernels of src/ serve it in C.
is_softmax_linear <- function(spec) {
  inherits(spec_gate(spec), "moe_gate_softmax") &&
    inherits(spec_expert(spec), "moe_expert_linear")
}

spec_gate <- function(spec) if (is.null(spec$gate)) gate_softmax() else spec$gate

spec_expert <- function(spec) if (is.null(spec$expert)) expert_linear() else spec$expert

# The spec of a fit or truth.
fit_spec <- function(fit) make_spec(fit$gate, fit$expert)

# An error for a variant a code path does not offer.
abort_unavailable <- function(what, where, call = NULL) {
  abort(sprintf("%s is not available in `%s()`.", what, where),
        kind = "unavailable", call = call, arg = "gate")
}

# Permute the experts of a parameter list (new expert k = old perm[k]).
permute_par <- function(par, perm) {
  spec <- par$spec
  out <- gate_permute(spec_gate(spec), par, perm)
  out$alpha <- par$alpha[, perm, drop = FALSE]
  out$sigma2 <- par$sigma2[perm]
  out
}

# Names of the gating parameter matrices of a parameter list.
name_gate_par <- function(par, znames) {
  if (!is.null(par$V)) {
    par$V <- matrix(par$V, length(znames), ncol(as.matrix(par$V)),
                    dimnames = list(znames, paste0("group", seq_len(ncol(as.matrix(par$V))))))
  }
  par
}
