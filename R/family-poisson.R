# Poisson experts (log-linear experts), reached through `family =
# poisson()`; the C side is src/family_poisson.c. Shared GLM machinery:
# R/family-glm.R; documentation: ?moe_glm_experts (R/family-binomial.R).

# The registry entry of poisson() (registered in R/variants-check.R).
make_expert_poisson <- function(family, expert, call) new_expert_glm("poisson", "log")

expert_label.moe_expert_poisson <- function(expert) "Poisson (log)"

# The response of a Poisson model frame: non-negative whole counts.
glm_response.moe_expert_poisson <- function(expert, y, call) {
  bad <- function(msg) {
    abort(sprintf("The response of `formula` must be non-negative whole numbers (counts) for `family = poisson()`; %s.",
                  msg), kind = "data", call = call, arg = "formula")
  }
  if (is.matrix(y) && ncol(y) == 1L) y <- drop(y)
  if (!is.numeric(y) || is.matrix(y)) bad(sprintf("it is %s", describe(y)))
  if (any(!is.finite(y))) bad("it has missing or infinite values")
  if (any(y < 0)) bad(sprintf("it has negative values (%s)", format(min(y))))
  if (any(abs(y - round(y)) > 1e-8)) bad("it has values that are not whole numbers")
  if (any(y > 1e15)) bad("it has counts above 1e15")
  list(y = round(as.numeric(y)), trials = NULL)
}

# One independence Metropolis-Hastings step per expert and sweep.
expert_accept_names.moe_expert_poisson <- function(expert, K) paste0("expert", seq_len(K))
