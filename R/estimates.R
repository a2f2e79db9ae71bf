# What every method reads off a fit: the point estimate (`moe_point()`: the
# EM or least-squares estimate, or the posterior mean of the relabelled
# draws of an MCMC fit), the posterior draws as a matrix, credible limits,
# predictions of one parameter set on a design, and the expert sizes.
# Below the print, predict, membership and plot methods of every class.

moe_point <- function(object) UseMethod("moe_point")

moe_point.moe_fit <- function(object) with_spec(object$coefficients, fit_spec(object))

moe_point.moe_mcmc <- function(object) {
  D <- draws_matrix(object, relabel = TRUE, complete = TRUE)
  par <- par_unflatten(colMeans(D), ncol(object$X), ncol(object$Z), object$K,
                       fit_spec(object))
  name_par(par, colnames(object$X), colnames(object$Z))
}

# The draws of a fit as an N x P matrix (chains stacked), raw or relabelled;
# with `complete = TRUE` without the rows a stopped chain left NA.
draws_matrix <- function(fit, relabel = FALSE, complete = FALSE) {
  draws <- if (relabel) relabelled_draws(fit) else fit$draws
  d <- dim(draws)
  D <- matrix(draws, d[1L] * d[2L], d[3L], dimnames = list(NULL, dimnames(draws)[[3L]]))
  if (complete) D <- D[stats::complete.cases(D), , drop = FALSE]
  D
}

# Indices of `ndraws` draws evenly spread over the N stacked draws (all when
# NULL); deterministic, so predictions are reproducible.
draw_index <- function(N, ndraws, call = NULL) {
  if (is.null(ndraws)) return(seq_len(N))
  ndraws <- check_number(ndraws, "ndraws", lower = 1, upper = N, whole = TRUE, call = call)
  unique(round(seq(1, N, length.out = ndraws)))
}

# Equal-tailed credible limits of each column of an S x C matrix.
column_limits <- function(V, level) {
  a <- (1 - level) / 2
  vapply(seq_len(ncol(V)), function(j) stats::quantile(V[, j], c(a, 1 - a), names = FALSE),
         numeric(2L))
}

# Prediction for one parameter set `par` on design `des` (list X, Z, y and
# optionally offset; des$y is the response minus the offset): expert means
# are shifted by the offset, densities at given `y` taken at y - offset.
predict_par <- function(par, des, type, y = NULL, probs = 0.5, log = FALSE, K) {
  expert <- spec_expert(par$spec)
  o <- des_offset(des)
  cm <- moe_components(par, des$X, des$Z, o)
  cm$mean <- shift_mean(expert, cm$mean, o)
  n <- nrow(des$X)
  ek <- paste0("expert", seq_len(K))
  switch(type,
    mean = rowSums(exp(cm$log_gate) * cm$mean),
    gating = {
      g <- exp(cm$log_gate)
      dimnames(g) <- list(rownames(des$X), ek)
      g
    },
    expert = {
      m <- cm$mean
      dimnames(m) <- list(rownames(des$X), ek)
      m
    },
    density = {
      if (is.null(y)) {
        if (is.null(des$y)) {
          abort("`y` must be given for `type = \"density\"` when `newdata` has no response.",
                kind = "input", arg = "y")
        }
        ld <- moe_log_density(par, des$X, des$Z, des$y, o, des$trials)
        if (log) ld else exp(ld)
      } else {
        check_density_y(y)
        out <- vapply(y, function(v) moe_log_density(par, des$X, des$Z,
                                                     shift_response(expert, rep_len(v, n),
                                                                    rep_len(o, n)),
                                                     o, des$trials),
                      numeric(n))
        out <- matrix(out, n, length(y), dimnames = list(rownames(des$X), format(y)))
        if (log) out else exp(out)
      }
    },
    quantile = {
      if (!is.numeric(probs) || !length(probs) || anyNA(probs) || any(!(probs > 0 & probs < 1))) {
        abort(sprintf("`probs` must be probabilities strictly between 0 and 1, not %s.",
                      describe(probs)), kind = "input", arg = "probs")
      }
      q <- if (is_glm_expert(expert)) {
        glm_mixture_quantile(expert, exp(cm$log_gate), cm$mean, probs, des$trials)
      } else mixture_quantile(cm$log_gate, cm$mean, cm$sd, probs, cm$df)
      rownames(q) <- rownames(des$X)
      q
    })
}

# `y` of predict(type = "density"): finite numbers at most 1e100 in
# absolute value, the bound of the response of a fit (beyond it the squared
# standardised residual, and so the log density, overflows).
check_density_y <- function(y, call = NULL) {
  if (!is.numeric(y) || !length(y) || any(!is.finite(y)) || any(abs(y) > data_max)) {
    abort(sprintf("`y` must be a vector of finite numbers at most 1e100 in absolute value (the bound of the response of a fit), not %s.",
                  describe(y)), call = call, arg = "y")
  }
  invisible(y)
}

# Expert sizes (the sum over observations of the case weight times the
# membership probability, flexmix's "size") and mean gating weights
# (weighted means of the gating probabilities, flexmix's "prior") of a
# fit, as a 2 x K matrix. MCMC fits average memberships and gating
# probabilities over at most 200 evenly spread draws.
expert_sizes <- function(x) {
  des <- list(X = x$X, Z = x$Z, y = x$y, offset = x$offset, trials = x$trials)
  w <- x$weights
  K <- x$K
  if (inherits(x, "moe_mcmc")) {
    D <- draws_matrix(x, relabel = TRUE, complete = TRUE)
    D <- D[unique(round(seq(1, nrow(D), length.out = min(200L, nrow(D))))), , drop = FALSE]
    spec <- fit_spec(x)
    g <- r <- matrix(0, length(w), K)
    for (s in seq_len(nrow(D))) {
      par <- par_unflatten(D[s, ], ncol(x$X), ncol(x$Z), K, spec)
      g <- g + predict_par(par, des, "gating", K = K)
      r <- r + responsibilities(par, x$X, x$Z, x$y, x$offset, x$trials)
    }
    g <- g / nrow(D)
    r <- r / nrow(D)
  } else {
    par <- moe_point(x)
    g <- predict_par(par, des, "gating", K = K)
    r <- responsibilities(par, x$X, x$Z, x$y, x$offset, x$trials)
  }
  out <- rbind(size = colSums(w * r), weight = colSums(w * g) / sum(w))
  colnames(out) <- paste0("expert", seq_len(K))
  out
}
