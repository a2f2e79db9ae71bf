# Convergence diagnostics of MCMC draws: rank-normalised split-Rhat, bulk and
# tail effective sample sizes and the Monte Carlo standard error of the mean
# (Vehtari, Gelman, Simpson, Carpenter and Buerkner, 2021, Bayesian Analysis
# 16(2), 667-718).
#
# The posterior package computes them when it is installed (and the option
# `bayesmoe.use_posterior` is not FALSE); otherwise the functions below, a
# plain-R implementation of the same definitions, are used. Every function
# takes an iterations x chains matrix of one quantity.
#
# - split chains: each chain is cut into its first and second halves (the
#   middle draw of an odd-length chain is dropped);
# - rank normalisation: z = qnorm((r - 3/8) / (S + 1/4)), with r the average
#   ranks of all S draws pooled;
# - Rhat = max(Rhat of the rank-normalised split chains, Rhat of the
#   rank-normalised split chains of |x - median(x)| (the folded draws)), with
#   Rhat = sqrt(((N - 1) / N * W + B / N) / W) for chains of length N;
# - ESS = M N / tau, tau = -1 + 2 sum_t rho_t over Geyer's initial positive
#   sequence of paired autocorrelations, made monotone, with the
#   autocorrelations of the M chains combined as in Stan
#   (rho_t = 1 - (W - mean autocovariance_t) / var+) and tau bounded below
#   by 1 / log10(M N);
# - bulk ESS: ESS of the rank-normalised split chains; tail ESS: the smaller
#   ESS of the indicators x <= 5% and x <= 95% quantiles (split chains);
# - MCSE of the mean: sd(x) / sqrt(ESS of the split chains, not rank
#   normalised).
# Each returns NA when the draws are constant or not all finite.

diag_na <- function(x) {
  anyNA(x) || any(!is.finite(x)) || abs(max(x) - min(x)) < .Machine$double.eps
}

diag_split <- function(x) {
  x <- as.matrix(x)
  n <- nrow(x)
  if (n < 2L) return(x)
  half <- n / 2
  cbind(x[seq_len(floor(half)), , drop = FALSE],
        x[seq.int(ceiling(half + 1), n), , drop = FALSE])
}

diag_z_scale <- function(x) {
  r <- rank(x, ties.method = "average")
  z <- stats::qnorm((r - 3 / 8) / (length(r) - 2 * 3 / 8 + 1))
  dim(z) <- dim(x)
  z
}

diag_rhat_basic <- function(x) {
  if (diag_na(x)) return(NA_real_)
  n <- nrow(x)
  cm <- colMeans(x)
  cv <- colSums(sweep(x, 2L, cm)^2) / (n - 1)
  B <- n * stats::var(cm)
  W <- mean(cv)
  sqrt((B / W + n - 1) / n)
}

diag_rhat <- function(x) {
  x <- as.matrix(x)
  if (diag_na(x)) return(NA_real_)
  bulk <- diag_rhat_basic(diag_z_scale(diag_split(x)))
  tail <- diag_rhat_basic(diag_z_scale(diag_split(abs(x - stats::median(x)))))
  max(bulk, tail)
}

# Autocovariances of one chain at lags 0..n-1 by FFT (biased estimator).
diag_autocov <- function(x) {
  n <- length(x)
  v <- stats::var(x)
  if (v == 0) return(rep(0, n))
  m <- 2L * stats::nextn(n)
  xc <- c(x - mean(x), rep(0, m - n))
  ac <- Re(stats::fft(Mod(stats::fft(xc))^2, inverse = TRUE)[seq_len(n)])
  ac / ac[1L] * v * (n - 1) / n
}

diag_ess_raw <- function(x) {
  x <- as.matrix(x)
  M <- ncol(x)
  n <- nrow(x)
  if (n < 3L || diag_na(x)) return(NA_real_)
  acov <- vapply(seq_len(M), function(j) diag_autocov(x[, j]), numeric(n))
  acov_mean <- rowMeans(matrix(acov, n))
  mean_var <- acov_mean[1L] * n / (n - 1)
  var_plus <- mean_var * (n - 1) / n
  if (M > 1L) var_plus <- var_plus + stats::var(colMeans(x))
  rho <- numeric(n)
  rho[1L] <- 1
  rho_even <- 1
  rho_odd <- 1 - (mean_var - acov_mean[2L]) / var_plus
  rho[2L] <- rho_odd
  t <- 0L
  # Geyer's initial positive sequence of sums of adjacent pairs
  while (t < n - 5L && !is.nan(rho_even + rho_odd) && rho_even + rho_odd > 0) {
    t <- t + 2L
    rho_even <- 1 - (mean_var - acov_mean[t + 1L]) / var_plus
    rho_odd <- 1 - (mean_var - acov_mean[t + 2L]) / var_plus
    if (rho_even + rho_odd >= 0) {
      rho[t + 1L] <- rho_even
      rho[t + 2L] <- rho_odd
    }
  }
  max_t <- t
  if (rho_even > 0) rho[max_t + 1L] <- rho_even
  # ... made monotone
  t <- 0L
  while (t <= max_t - 4L) {
    t <- t + 2L
    if (rho[t + 1L] + rho[t + 2L] > rho[t - 1L] + rho[t]) {
      rho[t + 1L] <- (rho[t - 1L] + rho[t]) / 2
      rho[t + 2L] <- rho[t + 1L]
    }
  }
  S <- M * n
  # 1:max_t, not seq_len(): for very short chains (max_t = 0) this counts
  # rho_0 once more, as the posterior package does (a conservative ESS)
  tau <- -1 + 2 * sum(rho[1:max_t]) + rho[max_t + 1L]
  tau <- max(tau, 1 / log10(S))
  S / tau
}

diag_ess_bulk <- function(x) {
  x <- as.matrix(x)
  if (diag_na(x)) return(NA_real_)
  diag_ess_raw(diag_z_scale(diag_split(x)))
}

diag_ess_quantile <- function(x, prob) {
  x <- as.matrix(x)
  if (diag_na(x)) return(NA_real_)
  I <- x <= stats::quantile(x, prob)
  storage.mode(I) <- "double"
  diag_ess_raw(diag_split(I))
}

diag_ess_tail <- function(x) {
  min(diag_ess_quantile(x, 0.05), diag_ess_quantile(x, 0.95))
}

diag_mcse_mean <- function(x) {
  x <- as.matrix(x)
  if (diag_na(x)) return(NA_real_)
  stats::sd(as.vector(x)) / sqrt(diag_ess_raw(diag_split(x)))
}

use_posterior <- function() {
  !isFALSE(getOption("bayesmoe.use_posterior")) &&
    requireNamespace("posterior", quietly = TRUE)
}

# Diagnostics of every variable of an iterations x chains x V array: a V x 4
# matrix with columns rhat, ess_bulk, ess_tail, mcse_mean. `backend` is
# "posterior" or "bayesmoe" (the fallback above).
draws_diagnostics <- function(draws, backend = if (use_posterior()) "posterior" else "bayesmoe") {
  V <- dim(draws)[3L]
  fns <- if (backend == "posterior") {
    list(rhat = posterior::rhat, ess_bulk = posterior::ess_bulk,
         ess_tail = posterior::ess_tail, mcse_mean = posterior::mcse_mean)
  } else {
    list(rhat = diag_rhat, ess_bulk = diag_ess_bulk, ess_tail = diag_ess_tail,
         mcse_mean = diag_mcse_mean)
  }
  out <- vapply(seq_len(V), function(v) {
    x <- matrix(draws[, , v], dim(draws)[1L], dim(draws)[2L])
    vapply(fns, function(f) suppressWarnings(as.numeric(f(x))), 0)
  }, numeric(4L))
  out <- t(matrix(out, 4L, V, dimnames = list(names(fns), dimnames(draws)[[3L]])))
  attr(out, "backend") <- backend
  out
}
