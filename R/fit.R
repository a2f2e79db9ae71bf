# The fit object shared by moe_em() and moe_mcmc(), its parameter layout and
# the computations on parameters every method needs.
#
# Parameter vector layout (coef(), vcov(), MCMC draws): for each expert k the
# p expert coefficients "expert<k>:<column>" and its variance
# "expert<k>:sigma2"; then for each non-reference expert k < K the q gating
# coefficients "gate<k>:<column>". The reference expert K has w_K = 0.

#
# The expert block holds the P_e = expert_npar() parameters of each expert
# (names from expert_par_names(): the p columns for linear experts) and the
# gating block is gate_flatten() / gate_par_names() of the gate (the layout
# above for the softmax). A parameter list carries the `spec` (R/spec.R)
# of its model: list(gate, expert).

# Families without a dispersion (expert_dispersion() FALSE: binomial,
# Poisson) have no "expert<k>:sigma2" entry; their parameter lists carry
# sigma2 = 1 as a placeholder (R/family-glm.R).
par_names <- function(xnames, znames, K, spec = make_spec()) {
  expert <- spec_expert(spec)
  xnames <- expert_par_names(expert, xnames)
  s2 <- expert_dispersion(expert)
  ex <- unlist(lapply(seq_len(K), function(k)
    c(paste0("expert", k, ":", xnames), if (s2) paste0("expert", k, ":sigma2"))))
  c(ex, gate_par_names(spec_gate(spec), znames, K))
}

par_flatten <- function(par) {
  ex <- if (expert_dispersion(spec_expert(par$spec))) rbind(par$alpha, par$sigma2) else par$alpha
  c(as.vector(ex), gate_flatten(spec_gate(par$spec), par))
}

# `p` is the number of columns of the expert design (the number of
# parameters per expert is expert_npar(expert, p)).
par_unflatten <- function(theta, p, q, K, spec = make_spec()) {
  expert <- spec_expert(spec)
  pe <- expert_npar(expert, p)
  s2 <- expert_dispersion(expert)
  pk <- pe + s2
  ex <- matrix(theta[seq_len(pk * K)], pk, K)
  gt <- gate_unflatten(spec_gate(spec), theta[-seq_len(pk * K)], q, K)
  c(list(alpha = ex[seq_len(pe), , drop = FALSE],
         sigma2 = if (s2) ex[pk, ] else rep(1, K)), gt,
    list(spec = spec))
}

# Dimension names of the parameter matrices.
name_par <- function(par, xnames, znames) {
  K <- length(par$sigma2)
  ek <- paste0("expert", seq_len(K))
  xnames <- expert_par_names(spec_expert(par$spec), xnames)
  par$alpha <- matrix(par$alpha, length(xnames), K, dimnames = list(xnames, ek))
  par$sigma2 <- setNames(as.numeric(par$sigma2), ek)
  par$W <- matrix(par$W, length(znames), K, dimnames = list(znames, ek))
  name_gate_par(par, znames)
}

# Parameter lists handed to users (fit$coefficients, the `par` of the
# workhorses, coef(matrix = TRUE)) hold the parameters only; internal ones
# carry their model's `spec` as well (with_spec()).
user_par <- function(par) par[names(par) != "spec"]
with_spec <- function(par, spec) {
  par$spec <- spec
  par
}

# Build a fit from the model pieces `fr` (moe_frame()) and the estimation
# result `res`; `class` is "moe_em" or "moe_mcmc".
new_moe_fit <- function(fr, res, call, class) {
  K <- length(res$par$sigma2)
  par <- user_par(name_par(with_spec(res$par, make_spec(res$gate, res$expert)),
                           colnames(fr$X), colnames(fr$Z)))
  fit <- c(list(call = call, K = K, coefficients = par), frame_fields(fr),
           res[setdiff(names(res), "par")])
  structure(fit, class = c(class, "moe_fit"))
}

# The fields of a fit that come from the model frame `fr` (moe_frame()), in
# the order every fit stores them.
frame_fields <- function(fr) {
  list(formula = fr$formula, gating = fr$gating,
       terms = fr$terms, gating_terms = fr$gating_terms,
       xlevels = fr$xlevels, zlevels = fr$zlevels,
       contrasts = fr$contrasts, zcontrasts = fr$zcontrasts,
       na.action = fr$na.action, y = fr$y, X = fr$X, Z = fr$Z,
       weights = fr$weights, offset = fr$offset, trials = fr$trials, model = fr$model)
}

# Log gating probabilities and expert means at designs X, Z for one
# parameter set. `offset` (GLM experts only: NULL or one per row) enters
# their linear predictor; Gaussian and Student-t experts ignore it (callers add it to the
# means, shift_mean()).
moe_components <- function(par, X, Z, offset = NULL) {
  expert <- spec_expert(par$spec)
  mean <- if (is_glm_expert(expert) && !is.null(offset) && any(offset != 0)) {
    glm_linkinv(expert, X %*% par$alpha + offset)
  } else expert_mean(expert, X, par$alpha)
  list(log_gate = gate_log_prob(spec_gate(par$spec), Z, par), mean = mean,
       sd = sqrt(par$sigma2), df = expert_df(expert, par))
}

# Per-observation log density log p(y_i | x_i, z_i); `offset` and `trials`
# for GLM experts (moe_components(), expert_log_density()).
moe_log_density <- function(par, X, Z, y, offset = NULL, trials = NULL) {
  cm <- moe_components(par, X, Z, offset)
  row_lse(cm$log_gate + expert_log_density(spec_expert(par$spec), y, cm, trials))
}

# Row-wise log-sum-exp; -Inf for a row whose entries are all -Inf (a
# response so far out that every density underflows), never NaN.
row_lse <- function(lk) {
  mx <- apply(lk, 1L, max)
  out <- mx + log(rowSums(exp(lk - ifelse(is.finite(mx), mx, 0))))
  out[mx == -Inf] <- -Inf
  out
}

# Posterior probabilities of the experts for each observation (n x K).
responsibilities <- function(par, X, Z, y, offset = NULL, trials = NULL) {
  cm <- moe_components(par, X, Z, offset)
  lk <- cm$log_gate + expert_log_density(spec_expert(par$spec), y, cm, trials)
  R <- exp(lk - row_lse(lk))
  R[!is.finite(rowSums(R)), ] <- 1 / ncol(R)
  R
}

# Mixture CDF quantiles by vectorised bisection, one row per observation;
# `df`: NULL (Gaussian experts) or the K degrees of freedom of Student-t
# experts.
mixture_quantile <- function(log_gate, mean, sd, probs, df = NULL) {
  # rows with missing covariates give NA
  ok <- !is.na(rowSums(mean) + rowSums(log_gate))
  if (!all(ok)) {
    out <- matrix(NA_real_, nrow(mean), length(probs),
                  dimnames = list(NULL, paste0(format(100 * probs, trim = TRUE), "%")))
    out[ok, ] <- mixture_quantile(log_gate[ok, , drop = FALSE], mean[ok, , drop = FALSE],
                                  sd, probs, df)
    return(out)
  }
  n <- nrow(mean)
  sdm <- matrix(sd, n, length(sd), byrow = TRUE)
  g <- exp(log_gate)
  lo0 <- apply(mean - 12 * sdm, 1L, min)
  hi0 <- apply(mean + 12 * sdm, 1L, max)
  out <- matrix(NA_real_, n, length(probs))
  dfm <- if (!is.null(df)) matrix(df, n, length(df), byrow = TRUE)
  for (j in seq_along(probs)) {
    lo <- lo0
    hi <- hi0
    if (!is.null(df)) {
      # the mixture quantile lies between the smallest and the largest
      # quantile of the experts (heavy tails make +-12 sd too narrow)
      qk <- noise_quantile(probs[j], mean, sdm, dfm)
      lo <- apply(qk, 1L, min)
      hi <- apply(qk, 1L, max)
    }
    for (it in 1:100) {
      mid <- (lo + hi) / 2
      cdf <- rowSums(g * noise_cdf(mid, mean, sdm, dfm))
      below <- cdf < probs[j]
      lo[below] <- mid[below]
      hi[!below] <- mid[!below]
      if (all(hi - lo <= 1e-12 * pmax(1, abs(mid)))) break
    }
    out[, j] <- (lo + hi) / 2
  }
  colnames(out) <- paste0(format(100 * probs, trim = TRUE), "%")
  out
}

# Observed information matrix of the log-likelihood at `par` (original
# scale), in the layout of par_flatten(). Exact: the complete-data Hessian
# averaged over the responsibilities plus the variance of the complete-data
# score (Louis' identity), computed per observation.
moe_information <- function(par, y, X, Z, w, offset = NULL, trials = NULL) {
  if (!is_softmax_linear(par$spec)) {
    return(moe_information_numeric(par, y, X, Z, w, offset, trials))
  }
  n <- length(y)
  p <- ncol(X)
  q <- ncol(Z)
  K <- length(par$sigma2)
  P <- (p + 1L) * K + q * (K - 1L)
  cm <- moe_components(par, X, Z)
  R <- responsibilities(par, X, Z, y)
  G <- exp(cm$log_gate)
  ia <- function(k) (k - 1L) * (p + 1L) + seq_len(p)
  is <- function(k) k * (p + 1L)
  iw <- function(j) (p + 1L) * K + (j - 1L) * q + seq_len(q)
  H <- matrix(0, P, P)
  S <- matrix(0, n, P)
  for (k in seq_len(K)) {
    s2 <- par$sigma2[k]
    e <- y - cm$mean[, k]
    rw <- w * R[, k]
    H[ia(k), ia(k)] <- H[ia(k), ia(k)] - crossprod(X * rw, X) / s2
    hs <- -crossprod(X, rw * e) / s2^2
    H[ia(k), is(k)] <- H[ia(k), is(k)] + hs
    H[is(k), ia(k)] <- H[is(k), ia(k)] + hs
    H[is(k), is(k)] <- H[is(k), is(k)] + sum(rw * (1 / (2 * s2^2) - e^2 / s2^3))
    Gk <- matrix(0, n, P)
    Gk[, ia(k)] <- X * (e / s2)
    Gk[, is(k)] <- e^2 / (2 * s2^2) - 1 / (2 * s2)
    for (j in seq_len(K - 1L)) Gk[, iw(j)] <- Z * ((k == j) - G[, j])
    H <- H + crossprod(Gk * rw, Gk)
    S <- S + Gk * R[, k]
  }
  for (j in seq_len(K - 1L)) for (l in seq_len(K - 1L)) {
    H[iw(j), iw(l)] <- H[iw(j), iw(l)] - crossprod(Z * (w * G[, j] * ((j == l) - G[, l])), Z)
  }
  H <- H - crossprod(S * w, S)
  -(H + t(H)) / 2
}

moe_df <- function(object) {
  length(par_names(colnames(object$X), colnames(object$Z), object$K, fit_spec(object)))
}

# Observed information of a variant (any `spec`): minus the Hessian of the
# total log-likelihood in the par_flatten() layout, by central differences
# of the analytic log density (the top-k log-likelihood is piecewise smooth,
# so this is the information on the piece the estimate lies in).
moe_information_numeric <- function(par, y, X, Z, w, offset = NULL, trials = NULL) {
  theta <- par_flatten(par)
  P <- length(theta)
  p <- ncol(X)
  q <- ncol(Z)
  K <- length(par$sigma2)
  f <- function(th) sum(w * moe_log_density(par_unflatten(th, p, q, K, par$spec), X, Z, y,
                                            offset, trials))
  h <- 1e-4 * pmax(1, abs(theta))
  is_s2 <- if (expert_dispersion(spec_expert(par$spec)))
    seq_len(K) * nrow(as.matrix(par$alpha)) + seq_len(K) else integer()
  h[is_s2] <- pmin(h[is_s2], 1e-3 * theta[is_s2])
  f0 <- f(theta)
  H <- matrix(0, P, P)
  for (j in seq_len(P)) {
    ej <- replace(numeric(P), j, h[j])
    H[j, j] <- (f(theta + ej) - 2 * f0 + f(theta - ej)) / h[j]^2
    for (l in seq_len(j - 1L)) {
      el <- replace(numeric(P), l, h[l])
      H[j, l] <- H[l, j] <- (f(theta + ej + el) - f(theta + ej - el) -
                               f(theta - ej + el) + f(theta - ej - el)) / (4 * h[j] * h[l])
    }
  }
  -H
}
