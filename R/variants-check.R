# Checks of the gate and expert objects a user passes to a front end. They
# rebuild each object with its constructor, so they sit above every variant
# (R/gate.R and R/family.R for the generics, the gates and linear experts,
# R/family-ffn.R for the network experts).

# Check the `gate` and `expert` arguments of a front end against K and the
# designs; returns list(gate, expert) with the gate resolved (the groups of
# a hierarchical gate as a vector of length K).
check_variants <- function(gate, expert, K, call = NULL) {
  if (!inherits(gate, "moe_gate") || is.null(rebuild_variant(gate))) {
    abort(sprintf("`gate` must be made by `gate_softmax()`, `gate_topk()`, `gate_temperature()` or `gate_hierarchical()`, not %s.",
                  describe_object(gate)), call = call, arg = "gate")
  }
  if (!inherits(expert, "moe_expert") || is.null(rebuild_variant(expert))) {
    abort(sprintf("`expert` must be made by `expert_linear()` or another `expert_*()` constructor, not %s.",
                  describe_object(expert)), call = call, arg = "expert")
  }
  list(gate = gate_resolve(gate, K, call), expert = expert)
}

# A gate or expert object rebuilt by its constructor from its own fields:
# NULL unless the object is exactly what the constructor makes (hand-built or
# edited objects with unknown types or invalid fields are refused before any
# C code sees them).
rebuild_variant <- function(obj) {
  type <- obj$type
  if (!is.character(type) || length(type) != 1L || is.na(type)) return(NULL)
  make <- if (inherits(obj, "moe_gate")) {
    switch(type, softmax = function(o) gate_softmax(),
           topk = function(o) gate_topk(o$k),
           temperature = function(o) gate_temperature(o$tau, o$learn, o$prior),
           hierarchical = function(o) gate_hierarchical(if (is.null(o$groups)) o$G else o$groups),
           NULL)
  } else {
    switch(type, linear = function(o) expert_linear(),
           ffn = function(o) expert_ffn(o$hidden, o$activation, o$lm_steps, o$mh_steps,
                                        o$prior_sd),
           t = function(o) expert_t(o$df),
           NULL)
  }
  if (is.null(make)) return(NULL)
  new <- tryCatch(make(obj), error = function(e) NULL)
  if (is.null(new) || !identical(new, obj)) return(NULL)
  new
}
