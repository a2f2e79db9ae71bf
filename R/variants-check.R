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

describe_object <- function(x) {
  if (is.object(x) && !is.data.frame(x) && !inherits(x, "formula")) {
    sprintf("an object of class \"%s\"", class(x)[1L])
  } else describe(x)
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
           binomial = function(o) new_expert_glm("binomial", "logit"),
           poisson = function(o) new_expert_glm("poisson", "log"),
           t = function(o) expert_t(o$df),
           NULL)
  }
  if (is.null(make)) return(NULL)
  new <- tryCatch(make(obj), error = function(e) NULL)
  if (is.null(new) || !identical(new, obj)) return(NULL)
  new
}

# The expert families reachable through `family =`: one entry per family
# name, each a function(family, expert, call) returning the expert object
# (the family's link is checked before). The Gaussian family keeps the
# `expert` argument (linear or network experts); every other family adds
# its entry here (the family files are loaded before this one).
family_registry <- new.env(parent = emptyenv())

register_family <- function(name, links, make) {
  assign(name, list(links = links, make = make), envir = family_registry)
  invisible(name)
}

register_family("gaussian", "identity", function(family, expert, call) expert)
register_family("student_t", "identity", make_expert_student_t)  # R/family-t.R
register_family("binomial", "logit", make_expert_binomial)      # R/family-binomial.R
register_family("poisson", "log", make_expert_poisson)          # R/family-poisson.R

# The `family` argument of a front end, as glm() takes it (object, function
# or name), turned into the expert object the engine runs.
resolve_family <- function(family, expert, call = NULL) {
  fam <- family
  if (is.character(fam) && length(fam) == 1L && !is.na(fam)) {
    fam <- tryCatch(get(fam, mode = "function", envir = parent.frame(2L)),
                    error = function(e) NULL)
    if (is.null(fam)) {
      abort(sprintf("`family` must name a family function such as \"gaussian\", not \"%s\".",
                    family), kind = "family", call = call, arg = "family")
    }
  }
  # a function that is no family function (fails without arguments) is
  # refused below like any other non-family
  if (is.function(fam)) fam <- tryCatch(fam(), error = function(e) NULL)
  if (!inherits(fam, "family") || !is.character(fam$family) ||
      length(fam$family) != 1L) {
    abort(sprintf("`family` must be a family object such as `gaussian()`, a family function or its name, not %s.",
                  describe_object(family)), kind = "family", call = call, arg = "family")
  }
  entry <- get0(fam$family, envir = family_registry, inherits = FALSE)
  supported <- paste0("`", sort(ls(family_registry)), "()`", collapse = ", ")
  if (is.null(entry)) {
    abort(sprintf("`family` %s is not supported; the supported families are %s.",
                  fam$family, supported), kind = "family", call = call, arg = "family")
  }
  link <- fam$link
  if (!is.null(link) && !(link %in% entry$links)) {
    abort(sprintf("`family = %s()` is supported with the %s link only, not \"%s\".",
                  fam$family, paste0("\"", entry$links, "\"", collapse = " or "), link),
          kind = "family", call = call, arg = "family")
  }
  entry$make(fam, expert, call)
}
