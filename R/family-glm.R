# GLM experts: what the binomial (R/family-binomial.R) and Poisson
# (R/family-poisson.R) expert families share. Their C side is
# src/family_binomial.c and src/family_poisson.c (IRLS M-steps, Polya-Gamma
# and independence Metropolis-Hastings draws).
#
# An expert of a GLM family is linear on the link scale: eta = x'a_k + o
# (o the offset of the formula, 0 without one) and mean linkinv(eta). The
# experts have no dispersion. The parameter lists of the engine keep a
# placeholder `sigma2` = 1 per expert so that the number of experts and the
# gate/expert generics keep one layout for every family; expert_dispersion()
# is FALSE for these families, and par_names(), par_flatten() and
# par_unflatten() (R/fit.R) leave the placeholder out: it never appears in
# coef(), vcov(), draws or printed output.
#
# Scales: the expert design is centred and scaled internally like that of
# linear experts (coefficients mapped back by the same linear map), the
# response never (my = 0, sy = 1: glm_scaling()).
#
# Data beyond (y, X, Z, w): the trials of binomial responses and the offset,
# carried with the internal-scale data as `s$family` (glm_family_data()) and
# sent to C by expert_c_data().

# A GLM expert object of family `family` ("binomial", "poisson") with link
# `link`. `steps`: Newton steps per EM M-step (each one monotone, stopping
# early at relative gain `tol`). One step per M-step (a generalised EM) is
# the fastest route to the maximum: the M-steps start from the previous
# estimate, and every further step costs as much as an E-step.
new_expert_glm <- function(family, link, steps = 1L, tol = 1e-10) {
  structure(list(type = family, link = link, steps = as.integer(steps), tol = tol),
            class = c(paste0("moe_expert_", family), "moe_expert_glm", "moe_expert"))
}

is_glm_expert <- function(expert) inherits(expert, "moe_expert_glm")

# Whether the experts of a family have a dispersion parameter sigma2 (shown
# in coef(), draws, ...).
expert_dispersion <- function(expert) !inherits(expert, "moe_expert_glm")

expert_c.moe_expert_glm <- function(expert) {
  list(type = family_codes[[expert$type]], steps = expert$steps, tol = expert$tol)
}

expert_npar.moe_expert_glm <- function(expert, p) p

expert_par_names.moe_expert_glm <- function(expert, xnames) xnames

# The response-scale mean of each expert (n x K), the offset in the linear
# predictor.
expert_mean.moe_expert_glm <- function(expert, X, alpha) {
  glm_linkinv(expert, X %*% alpha)
}

glm_linkinv <- function(expert, eta) {
  if (expert$link == "logit") stats::plogis(eta) else exp(eta)
}

# Coefficients map between scales like those of linear experts with sy = 1,
# my = 0 (glm_scaling()).
expert_to_original.moe_expert_glm <- function(expert, sc, alpha) sc$x$T %*% alpha

expert_to_internal.moe_expert_glm <- function(expert, sc, alpha) {
  scaling_inverse(sc$x) %*% alpha
}

expert_features.moe_expert_glm <- function(expert, sc, A) {
  t(expert_to_internal(expert, sc, t(A)))
}

expert_call.moe_expert_glm <- function(expert) sprintf("%s()", expert$type)

# The internal scale of a GLM fit: the designs as for linear experts, the
# response untouched.
glm_scaling <- function(sc) {
  sc$my <- 0
  sc$sy <- 1
  sc
}

# The family's data on the rows of y: list(y = what C takes (successes,
# counts), trials (binomial), offset (NULL without one), lconst (the
# constant of each log density)).
glm_family_data <- function(expert, y, offset = NULL, trials = NULL) {
  if (expert$type == "binomial") {
    if (is.null(trials)) trials <- rep(1, length(y))
    s <- round(y * trials)
    list(y = s, trials = as.double(trials), offset = offset,
         lconst = lchoose(trials, s))
  } else {
    list(y = as.double(y), trials = NULL, offset = offset, lconst = -lgamma(y + 1))
  }
}

# Rows `keep` of family data.
glm_family_rows <- function(fd, keep) {
  if (is.null(fd)) return(NULL)
  lapply(fd, function(v) if (is.null(v)) NULL else v[keep])
}

# The family as C takes it, with its data (`s$family`, glm_family_data()).
expert_c_data <- function(expert, s) {
  out <- expert_c(expert)
  if (!is_glm_expert(expert)) return(out)
  fd <- s$family
  c(out, list(trials = if (!is.null(fd$trials)) as.double(fd$trials),
              offset = if (!is.null(fd$offset)) as.double(fd$offset),
              lconst = as.double(fd$lconst)))
}

# Log density of y under each expert (n x K) from the components `cm`
# (moe_components(): response-scale means; `trials` for binomial responses,
# y the proportion of successes).
expert_log_density <- function(expert, y, cm, trials = NULL) {
  n <- length(y)
  if (!is_glm_expert(expert)) {
    return(noise_logpdf(y, cm$mean, rep(cm$sd, each = n),
                        if (!is.null(cm$df)) rep(cm$df, each = n)))
  }
  if (expert$type == "binomial") {
    m <- if (is.null(trials)) rep(1, n) else rep_len(trials, n)
    stats::dbinom(round(y * m), m, cm$mean, log = TRUE)
  } else {
    stats::dpois(y, cm$mean, log = TRUE)
  }
}

# Means with the offset `o`: added to the mean of Gaussian experts, already
# in the linear predictor of GLM experts (moe_components(offset = )).
shift_mean <- function(expert, mean, o) if (is_glm_expert(expert)) mean else mean + o

# The response a density is evaluated at: y minus the offset for Gaussian
# experts, y itself for GLM experts.
shift_response <- function(expert, y, o) if (is_glm_expert(expert)) y else y - o

# Simulated responses of GLM experts with means `mu` (one per row), as the
# fit stores them (proportions of `trials` for binomial responses).
glm_simulate <- function(expert, mu, trials = NULL) {
  n <- length(mu)
  if (expert$type == "binomial") {
    m <- if (is.null(trials)) rep(1, n) else rep_len(trials, n)
    stats::rbinom(n, m, mu) / m
  } else stats::rpois(n, mu)
}

# The response of a GLM model frame as list(y, trials) (methods in
# R/family-binomial.R and R/family-poisson.R), checked.
glm_response <- function(expert, y, call) UseMethod("glm_response")

# Prior draws (internal scale) of the experts of `base` (a prior draw of the
# whole model): a_k ~ N(m_a, V_a), the placeholder sigma2 = 1.
glm_prior_draw <- function(pc, K, base) {
  p <- length(pc$m_a)
  R <- chol(solve(matrix(pc$Va_inv, p, p)))
  base$alpha <- vapply(seq_len(K), function(k) pc$m_a + drop(crossprod(R, stats::rnorm(p))),
                       numeric(p))
  base$alpha <- matrix(base$alpha, p, K)
  base$sigma2 <- rep(1, K)
  base
}

# Variance of the response under each expert (n x K) with means `mean`:
# sigma2 for Gaussian experts (sigma2 df / (df - 2) for Student-t experts
# with degrees of freedom `df`), mu (1 - mu) / m for binomial proportions, mu
# for Poisson counts.
expert_variance <- function(expert, mean, sigma2, trials = NULL, df = NULL) {
  n <- nrow(mean)
  if (!is_glm_expert(expert)) return(matrix(rep(noise_var(sigma2, df), each = n), n))
  if (expert$type == "binomial") {
    mean * (1 - mean) / (if (is.null(trials)) 1 else rep_len(trials, n))
  } else mean
}

# Quantiles of the discrete mixture of GLM experts, one row per observation
# (gating probabilities g, expert means mu: n x K), on the scale of the
# response (proportions for binomial responses with `trials`).
glm_mixture_quantile <- function(expert, g, mu, probs, trials = NULL) {
  n <- nrow(mu)
  m <- if (is.null(trials)) rep(1, n) else rep_len(trials, n)
  out <- matrix(NA_real_, n, length(probs))
  for (i in seq_len(n)) {
    if (anyNA(mu[i, ]) || anyNA(g[i, ])) next
    if (expert$type == "binomial") {
      grid <- 0:m[i]
      pmf <- colSums(g[i, ] * t(vapply(mu[i, ], function(p) stats::dbinom(grid, m[i], p),
                                       numeric(length(grid)))))
    } else {
      top <- max(stats::qpois(1 - 1e-10, mu[i, ]))
      grid <- 0:top
      pmf <- colSums(g[i, ] * t(vapply(mu[i, ], function(l) stats::dpois(grid, l),
                                       numeric(length(grid)))))
    }
    cdf <- cumsum(pmf)
    out[i, ] <- grid[pmin(length(grid), findInterval(probs - 1e-12, cdf) + 1L)] /
      (if (expert$type == "binomial") m[i] else 1)
  }
  colnames(out) <- paste0(format(100 * probs, trim = TRUE), "%")
  out
}

# Marginal likelihood pieces (R/marglik.R, "expert families"): in the
# bridge-sampling coordinates an expert is its p coefficients alone (r = 0:
# no dispersion), with the prior a_k ~ N(m_a, V_a) on the internal scale.
ml_supported.moe_expert_glm <- function(expert) TRUE

ml_extra.moe_expert_glm <- function(expert) 0L

ml_extra_from_par.moe_expert_glm <- function(expert, par) {
  array(0, c(0L, dim(par$alpha)[2L], dim(par$alpha)[3L]))
}

ml_par_from_extra.moe_expert_glm <- function(expert, A, E) {
  list(alpha = A, sigma2 = matrix(1, dim(A)[2L], dim(A)[3L]))
}

ml_log_prior_experts.moe_expert_glm <- function(expert, par, pc) {
  p <- dim(par$alpha)[1L]
  K <- dim(par$alpha)[2L]
  S <- dim(par$alpha)[3L]
  Dm <- matrix(par$alpha, p, K * S) - pc$m_a
  quad <- matrix(colSums(Dm * (pc$Va_inv %*% Dm)), K, S)
  logdet_Va <- as.numeric(determinant(pc$V_a, logarithm = TRUE)$modulus)
  colSums(-p / 2 * log(2 * pi) - logdet_Va / 2 - quad / 2)
}

# log p(y_i | a_k) of every draw (n x S) from the family data `s$family`
# (glm_family_data(): successes and trials, or counts; offset; constants).
ml_expert_logdens.moe_expert_glm <- function(expert, par, k, s) {
  p <- dim(par$alpha)[1L]
  S <- dim(par$alpha)[3L]
  fd <- s$family
  eta <- s$X %*% matrix(par$alpha[, k, ], p, S)
  if (!is.null(fd$offset)) eta <- eta + fd$offset
  if (expert$type == "binomial") {
    # m log(1 + e^eta), computed without overflow
    fd$y * eta - fd$trials * (pmax(eta, 0) + log1p(exp(-abs(eta)))) + fd$lconst
  } else {
    fd$y * eta - exp(eta) + fd$lconst
  }
}

ml_prior_draw.moe_expert_glm <- function(expert, pc, K) {
  glm_prior_draw(pc, K, prior_draw(pc, K))
}
