# What truths and losses need from each expert family (R/truth.R,
# R/loss.R): the noise parameters a truth stores, responses simulated from
# it, the "variance" coordinate of its Voronoi atoms, and the covariate-wise
# Hellinger / total-variation distance between two conditional
# distributions of the family. Gaussian experts (linear or networks) keep
# their paths in R/truth.R and src/loss.c; the methods here serve the other
# families (S3 on the expert objects of R/family*.R):
#
#   truth_noise(expert, sigma, df, trials, K, call)
#       the noise fields of a truth: list(sigma, sigma2, df, trials)
#   truth_noise_from_par(expert, par, trials)
#       the same from a parameter list of a fit
#   truth_draw(expert, mu, k, truth, trials)
#       responses of the experts k (one per row) with means mu
#   atom_scale(expert, truth)      the last coordinate of the Voronoi atoms
#   family_distance(expert, lg, mu, noise, lg0, mu0, noise0, type)
#       per-covariate-row distance between two mixtures of the family:
#       log gating probabilities lg (nx x K), means mu (nx x K) and noise
#       (truth_noise()-like list) of each
#
# Distances follow src/loss.c: h^2 = 1/2 sum (sqrt(p) - sqrt(q))^2 and
# TV = 1/2 sum |p - q|, with the density loss E_X h (or E_X TV).

truth_noise <- function(expert, sigma, df, trials, K, call = NULL) UseMethod("truth_noise")

# Whether `trials` is the default 1 (for families without trials).
is_one <- function(x) is.numeric(x) && length(x) == 1L && !is.na(x) && x == 1

truth_noise.default <- function(expert, sigma, df, trials, K, call = NULL) {
  list(sigma = sigma, sigma2 = sigma^2)
}

truth_noise_from_par <- function(expert, par, trials = NULL) UseMethod("truth_noise_from_par")

truth_noise_from_par.default <- function(expert, par, trials = NULL) {
  list(sigma = sqrt(par$sigma2), sigma2 = par$sigma2)
}

truth_draw <- function(expert, mu, k, truth, trials = NULL) UseMethod("truth_draw")

truth_draw.default <- function(expert, mu, k, truth, trials = NULL) {
  mu + truth$sigma[k] * stats::rnorm(length(mu))
}

# Means of the experts from their linear predictors eta (nx x K).
truth_mean <- function(expert, eta) UseMethod("truth_mean")

truth_mean.default <- function(expert, eta) eta

truth_mean.moe_expert_glm <- function(expert, eta) glm_linkinv(expert, eta)

# The family object moe_em() / moe_mcmc() take for these experts.
truth_family_object <- function(expert) UseMethod("truth_family_object")

truth_family_object.moe_expert_glm <- function(expert) {
  if (expert$type == "binomial") stats::binomial() else stats::poisson()
}

atom_scale <- function(expert, truth) UseMethod("atom_scale")

atom_scale.default <- function(expert, truth) truth$sigma2

family_distance <- function(expert, lg, mu, noise, lg0, mu0, noise0, type) {
  UseMethod("family_distance")
}

# --- GLM experts (binomial, Poisson) --------------------------------------
#
# No noise parameter. A binomial truth has a number of trials (one whole
# number >= 1 for its conditional pmfs; rmoe() may be given others per
# observation). The variance coordinate of the Voronoi atoms is the
# constant 1 (the placeholder of the GLM parameter lists; src/loss.c takes
# positive variances) for the fit and the truth alike, so it adds nothing to the
# distances that assign atoms to cells nor to the loss: the atoms are, in
# effect, (beta1, a, b).

truth_noise.moe_expert_glm <- function(expert, sigma, df, trials, K, call = NULL) {
  if (!is.null(sigma)) {
    abort(sprintf("`sigma` must be missing for `family = %s()`: its experts have no noise parameter.",
                  expert$type), kind = "family", call = call, arg = "sigma")
  }
  if (!is.null(df)) {
    abort("`df` is for `family = student_t()` only.", kind = "family", call = call, arg = "df")
  }
  if (expert$type != "binomial") {
    if (!is_one(trials)) {
      abort("`trials` is for `family = binomial()` only.", kind = "family", call = call,
            arg = "trials")
    }
    return(list())
  }
  list(trials = check_number(trials, "trials", lower = 1, upper = 1e7, whole = TRUE,
                             call = call))
}

truth_noise_from_par.moe_expert_glm <- function(expert, par, trials = NULL) {
  if (expert$type != "binomial") return(list())
  # one number of trials for the truth's pmfs: the fit's when they are all
  # equal, 1 otherwise
  tr <- if (!is.null(trials) && length(trials) && all(trials == trials[1L])) trials[1L] else 1
  list(trials = as.numeric(tr))
}

truth_draw.moe_expert_glm <- function(expert, mu, k, truth, trials = NULL) {
  n <- length(mu)
  if (expert$type == "binomial") {
    m <- if (is.null(trials)) rep(truth$trials, n) else rep_len(trials, n)
    stats::rbinom(n, m, mu)
  } else stats::rpois(n, mu)
}

atom_scale.moe_expert_glm <- function(expert, truth) rep(1, truth$K)

# The support over which two discrete mixtures are compared at every
# covariate row: binomial 0..trials; Poisson from the smallest lower to
# the largest upper 1e-15 tail quantile of every component of both
# mixtures (the mass left out is below 2e-15 per component, so h^2 and TV
# are off by less than 1e-14).
family_distance.moe_expert_glm <- function(expert, lg, mu, noise, lg0, mu0, noise0, type) {
  nx <- nrow(mu)
  pmf_mix <- function(y, lg, mu) {
    # pmf of the mixture at every row (nx x L) on the support y
    L <- length(y)
    out <- matrix(0, nx, L)
    for (k in seq_len(ncol(mu))) {
      mk <- rep(mu[, k], L)
      yk <- rep(y, each = nx)
      dk <- if (expert$type == "binomial") stats::dbinom(yk, noise0$trials, mk) else
        stats::dpois(yk, mk)
      out <- out + exp(lg[, k]) * matrix(dk, nx, L)
    }
    out
  }
  dist_rows <- function(P, Q) {
    if (type == "tv") 0.5 * rowSums(abs(P - Q)) else
      sqrt(pmin(1, 0.5 * rowSums((sqrt(P) - sqrt(Q))^2)))
  }
  if (expert$type == "binomial") {
    y <- 0:noise0$trials
    return(dist_rows(pmf_mix(y, lg, mu), pmf_mix(y, lg0, mu0)))
  }
  allmu <- cbind(mu, mu0)
  lo <- stats::qpois(1e-15, allmu)
  hi <- stats::qpois(1e-15, allmu, lower.tail = FALSE)
  if ((max(hi) - min(lo) + 1) * nx <= 4e6) {
    y <- min(lo):max(hi)
    return(dist_rows(pmf_mix(y, lg, mu), pmf_mix(y, lg0, mu0)))
  }
  # far-apart means: one covariate row at a time, on its own support
  vapply(seq_len(nx), function(i) {
    y <- min(lo[i, ]):max(hi[i, ])
    one <- function(lg, mu) {
      colSums(exp(lg[i, ]) * t(vapply(mu[i, ], function(l) stats::dpois(y, l),
                                      numeric(length(y)))))
    }
    P <- one(lg, mu)
    Q <- one(lg0, mu0)
    if (type == "tv") 0.5 * sum(abs(P - Q)) else sqrt(min(1, 0.5 * sum((sqrt(P) - sqrt(Q))^2)))
  }, 0)
}

# --- Student-t experts ----------------------------------------------------
# (moe_expert_t objects of student_t(): the expert class and parameter
# layout of R/family-t.R, an estimated df the last row of `alpha`.) These
# methods need nothing from that file beyond the class and the layout.
#
# A t truth stores the scale `sigma` (not a standard deviation), its square
# `sigma2` (the variance coordinate of the Voronoi atoms: the degrees of
# freedom are not an atom coordinate, so D1/D2 compare location, scale and
# gating) and `df`, one per expert.

truth_noise.moe_expert_t <- function(expert, sigma, df, trials, K, call = NULL) {
  if (is.null(sigma)) {
    abort("`sigma` must be supplied: the scales of the t experts.", call = call, arg = "sigma")
  }
  if (is.null(df)) df <- expert$df
  if (is.null(df)) {
    abort("`df` must be supplied for t experts (or fixed in `student_t(df = )`).",
          call = call, arg = "df")
  }
  if (!is.numeric(df) || !length(df) %in% c(1L, K) || any(!is.finite(df)) || any(df <= 0)) {
    abort(sprintf("`df` must be %d positive degrees of freedom (one per expert, or one for all), not %s.",
                  K, describe(df)), kind = "input", call = call, arg = "df")
  }
  if (!is_one(trials)) {
    abort("`trials` is for `family = binomial()` only.", kind = "family", call = call,
          arg = "trials")
  }
  list(sigma = sigma, sigma2 = sigma^2, df = rep_len(as.numeric(df), K))
}

truth_noise_from_par.moe_expert_t <- function(expert, par, trials = NULL) {
  list(sigma = sqrt(par$sigma2), sigma2 = par$sigma2, df = as.numeric(expert_df(expert, par)))
}

truth_family_object.moe_expert_t <- function(expert) student_t(df = expert$df)

truth_draw.moe_expert_t <- function(expert, mu, k, truth, trials = NULL) {
  mu + truth$sigma[k] * stats::rt(length(mu), truth$df[k])
}

atom_scale.moe_expert_t <- function(expert, truth) truth$sigma2

# Hellinger / TV between two mixtures of t densities at every covariate
# row: composite Simpson rules on the panels between the cut points
# mu_c + s_c * (-8, -5, -3, -2, -1, 0, 1, 2, 3, 5, 8) of every component c
# of both mixtures (64 intervals per panel), and on each tail beyond the
# outermost cut point (1000 intervals) after the substitution
# y = edge +- S cot(s^2), s in (0, sqrt(pi / 2)], S the largest scale: it
# maps the polynomial tails onto a bounded interval on which the integrand
# vanishes at s = 0 (for df > 1/2) and is smooth there (the tan
# substitution leaves a square-root kink at the end point when the df
# differ). Accurate to about 1e-10 for h, 1e-6 for TV (kinks where the
# densities cross; test-loss-family.R against integrate()).
family_distance.moe_expert_t <- function(expert, lg, mu, noise, lg0, mu0, noise0, type) {
  sc <- sqrt(noise$sigma2)
  sc0 <- sqrt(noise0$sigma2)
  cuts <- c(-8, -5, -3, -2, -1, 0, 1, 2, 3, 5, 8)
  dens <- function(y, i, lg, mu, s, df) {
    out <- 0
    for (k in seq_along(s)) out <- out + exp(lg[i, k]) * stats::dt((y - mu[i, k]) / s[k], df[k]) / s[k]
    out
  }
  f <- function(y, i) {
    p <- dens(y, i, lg, mu, sc, noise$df)
    q <- dens(y, i, lg0, mu0, sc0, noise0$df)
    if (type == "tv") 0.5 * abs(p - q) else 0.5 * (sqrt(p) - sqrt(q))^2
  }
  simpson <- function(a, b, m, g) {
    # m intervals (even) on each panel [a[j], b[j]]
    h <- (b - a) / m
    w <- c(1, rep(c(4, 2), length.out = m - 1L), 1)
    nodes <- outer(0:m, h) + rep(a, each = m + 1L)
    colSums(w * matrix(g(as.vector(nodes)), m + 1L)) * h / 3
  }
  S <- max(sc, sc0)
  vapply(seq_len(nrow(mu)), function(i) {
    br <- sort(unique(c(outer(cuts, sc) + rep(mu[i, ], each = length(cuts)),
                        outer(cuts, sc0) + rep(mu0[i, ], each = length(cuts)))))
    mid <- sum(simpson(br[-length(br)], br[-1L], 64L, function(y) f(y, i)))
    tail <- function(edge, dir) {
      g <- function(s) {
        v <- f(edge + dir * S / tan(s^2), i) * 2 * S * s / sin(s^2)^2
        v[!is.finite(v)] <- 0  # s = 0: the limit, 0
        v
      }
      simpson(0, sqrt(pi / 2), 1000L, g)
    }
    tot <- mid + tail(br[length(br)], 1) + tail(br[1L], -1)
    if (type == "tv") tot else sqrt(min(1, max(0, tot)))
  }, 0)
}
