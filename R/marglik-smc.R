# An independent estimator of the marginal likelihood p(y | K) for checking
# moe_marglik(): an adaptive tempered sequential Monte Carlo sampler (Del
# Moral, Doucet and Jasra 2006; Chopin 2002) from the prior to the
# posterior, p_b(theta) ~ p(theta) p(y | theta)^b, b from 0 to 1. It shares
# no draw with the Gibbs chains and needs no label-switching correction:
# the particles start from the (exchangeable) prior, so they populate all
# K! symmetric modes, and the estimate
#   log p(y) = sum_t log mean_i exp((b_t - b_{t-1}) l_i)
# (particles resampled at every step, so their weights are equal) is that
# of the unsymmetrised posterior. The product of the incremental means is
# an unbiased estimate of p(y).
#
# Parameterisation: phi of R/marglik.R (expert coefficients, log
# variances, reference-coded gating), internal scale. Moves: random-walk
# Metropolis, several per temperature, with the covariance of the particles
# after relabelling them towards a common labelling: each particle proposes
# in its own labelling (its draw relabelled by the permutation T(phi) that
# brings it closest to the reference), phi' = T^-1 (T phi + e), e ~ N(0,
# c^2 Sigma). The relabelling is linear with |det| = 1, so the proposal
# density is N(T phi'; T phi, c^2 Sigma), and the reverse move uses T(phi'):
# when T(phi') differs from T(phi) the Metropolis-Hastings ratio includes
# the two proposal densities, so every move leaves p_b invariant.

# Log-likelihood of every row of Phi (N x D) on the internal data `s`
# (list y, X, Z, w; `family` for GLM experts), vectorised over the
# particles: an N-vector (ml_loglik() of the family of `expert`).
loglik_particles <- function(Phi, s, p, q, K, expert = spec_expert(make_spec())) {
  ml_loglik(expert, ml_par(expert, Phi, p, q, K), s)
}

# Adaptive tempered SMC estimate of log p(y | K) on the internal scale (add
# -sum(w) log(sy) for the original response). `s` internal data, `pc`
# prior_internal(). N particles, the next temperature chosen so that the
# effective sample size of the incremental weights is `ess` N, `moves`
# random-walk moves per temperature. Uses the session RNG.
smc_logml_internal <- function(s, pc, K, N = 1000L, ess = 0.5, moves = 10L,
                               max_steps = 2000L, expert = spec_expert(make_spec())) {
  q <- ncol(s$Z)
  r <- ml_extra(expert)
  linear <- inherits(expert, "moe_expert_linear")
  Phi <- NULL
  for (i in seq_len(N)) {
    d <- ml_prior_draw(expert, pc, K)
    pe <- NROW(d$alpha)
    ph <- ml_phi(expert, list(alpha = array(d$alpha, c(pe, K, 1L)),
                              sigma2 = matrix(d$sigma2, K, 1L), W = array(d$W, c(q, K, 1L))))
    if (is.null(Phi)) Phi <- matrix(0, N, length(ph))
    Phi[i, ] <- ph
  }
  p <- ml_ncoef(expert, pe)
  D <- ncol(Phi)
  lprior <- function(Ph) {
    if (linear) log_prior_rows(Ph, pc, p, q, K) else
      ml_log_prior(expert, ml_par(expert, Ph, p, q, K), pc)
  }
  ll <- loglik_particles(Phi, s, p, q, K, expert)
  lp <- lprior(Phi)
  perms <- if (K > 1L) all_permutations(K) else matrix(1L, 1L, 1L)
  b <- 0
  logz <- 0
  scale <- 2.38 / sqrt(D)
  steps <- 0L
  acc_hist <- numeric()
  while (b < 1 && steps < max_steps) {
    steps <- steps + 1L
    # next temperature: ESS of exp(db * ll) equal to ess * N (bisection)
    ess_of <- function(db) {
      lw <- db * ll
      lw[!is.finite(lw)] <- -Inf
      w <- exp(lw - max(lw))
      sum(w)^2 / sum(w^2)
    }
    db <- 1 - b
    if (ess_of(db) < ess * N) {
      lo <- 0
      hi <- db
      for (it in 1:60) {
        mid <- (lo + hi) / 2
        if (ess_of(mid) >= ess * N) lo <- mid else hi <- mid
      }
      db <- max(lo, 1e-12)
    }
    lw <- db * ll
    lw[!is.finite(lw)] <- -Inf
    m <- max(lw)
    logz <- logz + m + log(mean(exp(lw - m)))
    b <- min(1, b + db)
    # systematic resampling
    wn <- exp(lw - m)
    cw <- cumsum(wn) / sum(wn)
    idx <- pmin(findInterval((stats::runif(1) + 0:(N - 1L)) / N, cw) + 1L, N)
    Phi <- Phi[idx, , drop = FALSE]
    ll <- ll[idx]
    lp <- lp[idx]
    # the common labelling and the within-labelling covariance
    if (K > 1L) {
      rl <- relabel_phi(Phi, which.max(ll + lp), p, q, K, perms, r)
      Pr <- rl$Phi
    } else {
      rl <- NULL
      Pr <- Phi
    }
    Sig <- stats::cov(Pr)
    Sig <- (Sig + t(Sig)) / 2 + diag(1e-10 * pmax(diag(Sig), 1e-10), D)
    R <- chol(Sig)
    acc_total <- 0
    for (mv in seq_len(moves)) {
      Tcur <- if (K > 1L) relabel_perms(Phi, rl$ref, rl$scale, p, K, perms, r) else NULL
      Rc <- if (K > 1L) smc_permute_rows(Phi, Tcur, p, q, K, r) else Phi
      E <- matrix(stats::rnorm(N * D), N) %*% R * scale
      Rn <- Rc + E
      Pn <- if (K > 1L) smc_permute_rows(Rn, inverse_perms(Tcur), p, q, K, r) else Rn
      ll_n <- loglik_particles(Pn, s, p, q, K, expert)
      lp_n <- lprior(Pn)
      lr <- b * (ll_n - ll) + lp_n - lp
      if (K > 1L) {
        Tnew <- relabel_perms(Pn, rl$ref, rl$scale, p, K, perms, r)
        diff_lab <- rowSums(Tnew != Tcur) > 0
        if (any(diff_lab)) {
          # reverse proposal from phi' in its own labelling
          j <- which(diff_lab)
          Ra <- smc_permute_rows(Pn[j, , drop = FALSE], Tnew[j, , drop = FALSE], p, q, K, r)
          Rb <- smc_permute_rows(Phi[j, , drop = FALSE], Tnew[j, , drop = FALSE], p, q, K, r)
          Rsc <- R * scale
          lr[j] <- lr[j] + dmvn_log(Rb - Ra, rep(0, D), Rsc) -
            dmvn_log(Rn[j, , drop = FALSE] - Rc[j, , drop = FALSE], rep(0, D), Rsc)
        }
      }
      acc <- is.finite(lr) & log(stats::runif(N)) < lr
      Phi[acc, ] <- Pn[acc, ]
      ll[acc] <- ll_n[acc]
      lp[acc] <- lp_n[acc]
      acc_total <- acc_total + mean(acc)
    }
    acc_rate <- acc_total / moves
    acc_hist <- c(acc_hist, acc_rate)
    scale <- scale * exp(acc_rate - 0.25)
  }
  list(logml = logz, steps = steps, acceptance = acc_hist, converged = b >= 1)
}

# Inverse of each row of a permutation matrix (rows are permutations).
inverse_perms <- function(P) {
  out <- P
  K <- ncol(P)
  out[cbind(rep(seq_len(nrow(P)), K), as.vector(P))] <- rep(seq_len(K), each = nrow(P))
  out
}

# Row r of Phi relabelled by permutation P[r, ] (permute_phi()), grouping
# the rows by permutation.
smc_permute_rows <- function(Phi, P, p, q, K, r = 1L) {
  key <- drop((P - 1L) %*% K^(seq_len(K) - 1L))
  out <- Phi
  for (g in split(seq_len(nrow(P)), key)) {
    out[g, ] <- permute_phi(Phi[g, , drop = FALSE], P[g[1L], ], p, q, K, r)
  }
  out
}

# log_prior_phi() of the rows of Phi, computed on the columns directly.
log_prior_rows <- function(Phi, pc, p, q, K) {
  ls2 <- Phi[, p * K + seq_len(K), drop = FALSE]
  s2 <- exp(ls2)
  logdet_Va <- as.numeric(determinant(pc$V_a, logarithm = TRUE)$modulus)
  quad <- vapply(seq_len(K), function(k) {
    A <- sweep(Phi[, (k - 1L) * p + seq_len(p), drop = FALSE], 2L, pc$m_a)
    rowSums((A %*% pc$Va_inv) * A)
  }, numeric(nrow(Phi)))
  quad <- matrix(quad, nrow(Phi))
  ex <- -p / 2 * log(2 * pi) - p / 2 * ls2 - logdet_Va / 2 - quad / (2 * s2) +
    pc$c0 * log(pc$C0) - lgamma(pc$c0) - (pc$c0 + 1) * ls2 - pc$C0 / s2 + ls2
  lp <- rowSums(ex)
  if (K > 1L) {
    off <- (p + 1L) * K
    for (j in seq_len(q)) {
      Wj <- Phi[, off + (seq_len(K - 1L) - 1L) * q + j, drop = FALSE]
      ss <- rowSums(Wj^2)
      s_w2 <- pc$s_w2[j]
      lp <- lp + if (pc$exchangeable) {
        -(K - 1) / 2 * log(2 * pi * s_w2) - log(K) / 2 - (ss - rowSums(Wj)^2 / K) / (2 * s_w2)
      } else {
        -(K - 1) / 2 * log(2 * pi * s_w2) - ss / (2 * s_w2)
      }
    }
  }
  lp
}

# log p(y | K) of the model of a fit (its data, K and prior; a moe_mcmc()
# fit, or any fit with a `prior`) by `runs` independent SMC runs under
# `seed`: the runs' estimates on the original scale of the response, their
# mean and its standard error (sd / sqrt(runs)), the log of the mean of
# the p(y) estimates (each unbiased), steps and CPU seconds.
marglik_smc <- function(fit, runs = 4L, N = 1000L, moves = 20L, ess = 0.95, seed = NULL,
                        prior = fit$prior) {
  md <- ml_data(fit)
  s <- md$s
  sc <- md$sc
  pc <- prior_internal(prior, expert_prior_npar(md$expert, ncol(fit$X)), ncol(fit$Z))
  jac <- -sum(fit$weights) * log(sc$sy)
  t0 <- proc.time()
  res <- with_seed(seed, lapply(seq_len(runs), function(r) {
    smc_logml_internal(s, pc, fit$K, N = N, moves = moves, ess = ess, expert = md$expert)
  }))
  est <- vapply(res, `[[`, 0, "logml") + jac
  list(logml = mean(est), se = if (runs > 1L) stats::sd(est) / sqrt(runs) else NA_real_,
       log_mean = log_mean_exp(est), runs = est,
       steps = vapply(res, `[[`, 0L, "steps"),
       acceptance = vapply(res, function(r) mean(r$acceptance), 0),
       cpu = sum((proc.time() - t0)[c("user.self", "sys.self")], na.rm = TRUE),
       N = N, moves = moves, ess = ess, K = fit$K)
}
