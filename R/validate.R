# Structure of fit objects, checked once where every method, loss, and the
# continuation of a sampler start.
#
# A fit is a plain list: fields changed by hand (draws of another size,
# chains changed, a field removed, the class of an EM fit given to an MCMC
# fit) would otherwise reach `subscript out of bounds`, non-conformable
# products or the type checks of the C entry points. validate_moe_fit()
# compares the class with the fields that class needs and the sizes of the
# fields with one another (K, the designs X and Z, the gate and expert, the
# parameter names, iter/warmup/thin/chains), and raises one classed error
# (bayesmoe_error_fit) naming the first broken component. It only looks at
# lengths, dims and a few scalars, never at the values of large arrays, so
# it costs a fraction of a millisecond on every call.
#
# Fields by class (new_moe_fit(), new_moe_ls(), R/mcmc.R for MCMC fits):
#   every fit   K, coefficients (alpha [P_e x K], sigma2 [K], W [q x K]),
#               y [n], X [n x p], Z [n x q], weights [n], loglik, terms,
#               gating_terms; gate, expert (NULL or a gate / an expert);
#               scaling (NULL or moe_scaling() of designs with p, q columns)
#   moe_em      iter, status; resp NULL or [n x K]
#   moe_mcmc    draws [S, chains, P] with P = par_names() and
#               S = (iter - warmup) %/% thin, loglik_draws [S, chains],
#               chains, iter, warmup, thin; gating_moves NULL or
#               [chains, length(gating_move_names)]; state NULL (a fit that
#               cannot be continued) or one list per chain with alpha
#               [P_e x K], sigma2 [K], W [q x K], rng (an integer
#               L'Ecuyer-CMRG .Random.seed, 7 integers), iterations_done
#   moe_ls      rss (its sigma2 is one noise variance)

fit_classes <- c("moe_em", "moe_mcmc", "moe_ls")

fit_fields <- list(
  common = c("K", "coefficients", "y", "X", "Z", "weights", "loglik", "terms", "gating_terms"),
  moe_em = c("iter", "status"),
  moe_mcmc = c("draws", "loglik_draws", "chains", "iter", "warmup", "thin"),
  moe_ls = "rss")

# Check the structure of `fit` (the argument `arg` of the function called
# from `call`); `continue`: the chains are to be continued, so the state of
# every chain is needed. Returns `fit` invisibly.
validate_moe_fit <- function(fit, arg = "fit", call = NULL, continue = FALSE) {
  bad <- function(fmt, ...) {
    abort(sprintf(fmt, ...), kind = "fit", call = call, arg = arg)
  }
  fld <- function(...) sprintf("`%s$%s`", arg, paste0(...))
  if (!is.list(fit) || !inherits(fit, "moe_fit")) {
    bad("`%s` must be a fit made by `moe_em()`, `moe_mcmc()` or `moe_ls()`, not %s.",
        arg, describe(fit))
  }
  cls <- intersect(class(fit), fit_classes)
  if (length(cls) != 1L) {
    bad("`%s` must have exactly one of the classes \"moe_em\", \"moe_mcmc\" and \"moe_ls\"; its class is %s.",
        arg, paste0("\"", class(fit), "\"", collapse = ", "))
  }
  need <- c(fit_fields$common, fit_fields[[cls]])
  miss <- need[vapply(need, function(f) is.null(fit[[f]]), TRUE)]
  if (length(miss)) {
    bad("`%s` has class \"%s\" but lacks %s, which such fits have: was the fit or its class changed by hand?",
        arg, cls, paste(fld(miss), collapse = ", "))
  }
  K <- fit$K
  if (!is_count(K, 1)) bad("%s must be a whole number >= 1, not %s.", fld("K"), describe_shape(K))
  y <- fit$y
  if (!is.numeric(y) || !is.null(dim(y)) || !length(y)) {
    bad("%s must be a non-empty numeric vector, not %s.", fld("y"), describe_shape(y))
  }
  n <- length(y)
  for (d in c("X", "Z")) {
    M <- fit[[d]]
    if (!is.numeric(M) || !is.matrix(M) || nrow(M) != n || ncol(M) < 1L) {
      bad("%s must be a numeric matrix with %d rows (one per element of %s), not %s.",
          fld(d), n, fld("y"), describe_shape(M))
    }
  }
  if (!is.numeric(fit$weights) || length(fit$weights) != n) {
    bad("%s must be %d numbers (one per element of %s), not %s.", fld("weights"), n, fld("y"),
        describe_shape(fit$weights))
  }
  if (!is.numeric(fit$loglik) || length(fit$loglik) != 1L) {
    bad("%s must be a number, not %s.", fld("loglik"), describe_shape(fit$loglik))
  }
  if (!is.null(fit$gate) && !inherits(fit$gate, "moe_gate")) {
    bad("%s must be made by a gate constructor such as `gate_softmax()`, not %s.", fld("gate"),
        describe_shape(fit$gate))
  }
  if (!is.null(fit$expert) && !inherits(fit$expert, "moe_expert")) {
    bad("%s must be made by an expert constructor such as `expert_linear()`, not %s.",
        fld("expert"), describe_shape(fit$expert))
  }
  p <- ncol(fit$X)
  q <- ncol(fit$Z)
  spec <- fit_spec(fit)
  pe <- expert_npar(spec_expert(spec), p)
  co <- fit$coefficients
  if (!is.list(co)) bad("%s must be a list of parameters, not %s.", fld("coefficients"),
                        describe_shape(co))
  check_par_dims(co, pe, q, K, if (cls == "moe_ls") c(1L, K) else K,
                 fld("coefficients"), fld("K"), bad)
  sc <- fit$scaling
  if (!is.null(sc) && (!is.list(sc) || length(sc$x$scale) != p || length(sc$z$scale) != q ||
                       !is.numeric(sc$sy) || length(sc$sy) != 1L)) {
    bad("%s must be the scaling of designs with %d and %d columns, as %s and %s have.",
        fld("scaling"), p, q, fld("X"), fld("Z"))
  }
  switch(cls,
    moe_em = validate_em_fields(fit, n, K, fld, bad),
    moe_mcmc = validate_mcmc_fields(fit, p, q, pe, K, spec, continue, fld, bad),
    moe_ls = if (!is.numeric(fit$rss) || length(fit$rss) != 1L) {
      bad("%s must be a number, not %s.", fld("rss"), describe_shape(fit$rss))
    })
  invisible(fit)
}

# validate_moe_fit() of the objects that may be fits (losses, moe_truth()):
# other objects are left to the caller's own checks.
validate_if_fit <- function(x, arg = "fit", call = NULL) {
  if (inherits(x, "moe_fit")) validate_moe_fit(x, arg, call)
  invisible(x)
}

# alpha [pe x K], sigma2 [one of `nsig`], W [q x K] of a parameter list
# named `name` (a string such as "`fit$coefficients`").
check_par_dims <- function(par, pe, q, K, nsig, name, kname, bad) {
  el <- function(e) sprintf("%s$%s`", sub("`$", "", name), e)
  if (!is.numeric(par$alpha) || !identical(dim(par$alpha), c(pe, K))) {
    bad("%s must be a %d x %d matrix (%d expert coefficients for each of the %s = %d experts), not %s.",
        el("alpha"), pe, K, pe, kname, K, describe_shape(par$alpha))
  }
  if (!is.numeric(par$sigma2) || !length(par$sigma2) %in% nsig) {
    bad("%s must be %d variance%s (%s = %d), not %s.", el("sigma2"), max(nsig),
        if (max(nsig) > 1L) "s" else "", kname, K, describe_shape(par$sigma2))
  }
  if (!is.numeric(par$W) || !identical(dim(par$W), c(q, K))) {
    bad("%s must be a %d x %d matrix (%d gating coefficients for each of the %s = %d experts), not %s.",
        el("W"), q, K, q, kname, K, describe_shape(par$W))
  }
}

validate_em_fields <- function(fit, n, K, fld, bad) {
  for (f in c("iter", "status")) {
    if (!is.numeric(fit[[f]]) || length(fit[[f]]) != 1L) {
      bad("%s must be a number, not %s.", fld(f), describe_shape(fit[[f]]))
    }
  }
  if (!is.null(fit$resp) && (!is.numeric(fit$resp) || !identical(dim(fit$resp), c(n, K)))) {
    bad("%s must be a %d x %d matrix (observations x experts), not %s.", fld("resp"), n, K,
        describe_shape(fit$resp))
  }
}

validate_mcmc_fields <- function(fit, p, q, pe, K, spec, continue, fld, bad) {
  counts <- list(chains = 1, iter = 1, warmup = 0, thin = 1)
  for (f in names(counts)) {
    if (!is_count(fit[[f]], counts[[f]])) {
      bad("%s must be a whole number >= %d, not %s.", fld(f), counts[[f]], describe_shape(fit[[f]]))
    }
  }
  chains <- fit$chains
  if (fit$warmup > fit$iter) {
    bad("%s (%d) must be at most %s (%d): the iterations per chain include the warm-up.",
        fld("warmup"), fit$warmup, fld("iter"), fit$iter)
  }
  D <- fit$draws
  d <- dim(D)
  if (!is.numeric(D) || length(d) != 3L) {
    bad("%s must be a numeric array [draws, chains, parameters], not %s.", fld("draws"),
        describe_shape(D))
  }
  if (d[2L] != chains) {
    bad("%s has %d chain%s but %s is %d.", fld("draws"), d[2L], if (d[2L] == 1L) "" else "s",
        fld("chains"), chains)
  }
  nm <- par_names(colnames(fit$X), colnames(fit$Z), K, spec)
  if (d[3L] != length(nm)) {
    bad("%s has %d parameters but a fit with %s = %d and the designs %s, %s has %d.",
        fld("draws"), d[3L], fld("K"), K, fld("X"), fld("Z"), length(nm))
  }
  dn <- dimnames(D)[[3L]]
  if (!is.null(dn) && !identical(dn, nm)) {
    i <- which(dn != nm)[1L]
    bad("The parameters of %s must be named as those of the fit: parameter %d must be \"%s\", not \"%s\".",
        fld("draws"), i, nm[i], dn[i])
  }
  S <- (fit$iter - fit$warmup) %/% fit$thin
  if (d[1L] != S) {
    bad("%s has %d draws per chain but %s, %s and %s (%d, %d, %d) give %d.", fld("draws"), d[1L],
        fld("iter"), fld("warmup"), fld("thin"), fit$iter, fit$warmup, fit$thin, S)
  }
  if (!is.numeric(fit$loglik_draws) || !identical(dim(fit$loglik_draws), d[1:2])) {
    bad("%s must be a %d x %d matrix (draws x chains, as in %s), not %s.", fld("loglik_draws"),
        d[1L], d[2L], fld("draws"), describe_shape(fit$loglik_draws))
  }
  gm <- fit$gating_moves
  if (!is.null(gm) && (!is.numeric(gm) ||
                       !identical(dim(gm), c(chains, length(gating_move_names))))) {
    bad("%s must be a %d x %d matrix (chains x gating moves), not %s.", fld("gating_moves"),
        chains, length(gating_move_names), describe_shape(gm))
  }
  st <- fit$state
  if (is.null(st)) {
    if (continue) {
      bad("%s is NULL: the fit does not store the state of its chains and cannot be continued.",
          fld("state"))
    }
    return(invisible())
  }
  if (!is.list(st) || length(st) != chains) {
    bad("%s has %d chain%s but %s is %d.", fld("state"), length(st),
        if (length(st) == 1L) "" else "s", fld("chains"), chains)
  }
  for (ch in seq_len(chains)) {
    s <- st[[ch]]
    name <- fld("state[[", ch, "]]")
    if (!is.list(s)) bad("%s must be the state of a chain (a list), not %s.", name, describe_shape(s))
    check_par_dims(s, pe, q, K, K, name, fld("K"), bad)
    if (!is.integer(s$rng) || length(s$rng) != 7L) {
      bad("%s must be 7 integers (the L'Ecuyer-CMRG `.Random.seed` of the chain), not %s.",
          sprintf("%s$rng`", sub("`$", "", name)), describe_shape(s$rng))
    }
    it <- s$iterations_done
    if (!is_count(it, 0) || it > fit$iter) {
      bad("%s must be a whole number from 0 to %s (%d), not %s.",
          sprintf("%s$iterations_done`", sub("`$", "", name)), fld("iter"), fit$iter,
          describe_shape(it))
    }
  }
}

is_count <- function(x, lower) {
  is.numeric(x) && length(x) == 1L && is.finite(x) && x == round(x) && x >= lower
}

# describe() with the dimensions of matrices and arrays.
describe_shape <- function(x) {
  if (is.array(x)) {
    return(sprintf("a %s %s with dimensions %s", typeof(x),
                   if (length(dim(x)) == 2L) "matrix" else "array",
                   paste(dim(x), collapse = " x ")))
  }
  if (inherits(x, "moe_fit")) return("a fit")
  describe(x)
}
