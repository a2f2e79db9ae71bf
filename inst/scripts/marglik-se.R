# Calibration of the Monte Carlo error of moe_marglik() (bridge sampling).
#
# Regenerates inst/extdata/marglik-se.rds. For one fixed simulated data set
# (n = 50, K = 2 experts, one covariate, a steep gating so that the gating
# slope mixes slowly) it computes
#   * an independent reference log marginal likelihood by importance
#     sampling: a multivariate t (5 degrees of freedom) fitted to the
#     relabelled pooled draws of one long moe_mcmc() run, symmetrised over
#     the K! = 2 relabellings, with its own Monte Carlo error;
#   * `n_rep` independent moe_mcmc() fits (default settings, seeds 100 + r)
#     and on each moe_marglik(method = "bridge") with proposal = "mixture"
#     and proposal = "normal": the estimate, the reported `se`, the
#     effective posterior sample size `n_eff`, and the standardised error
#     z = (estimate - reference) / sqrt(se^2 + ref_se^2).
# If the reported errors are honest, the root mean square of z is about 1.
#
# The importance-sampling reference evaluates exactly the unnormalised
# posterior of moe_marglik(): the log-likelihood and the log prior on the
# internal (standardised) scale in phi = (alpha_k, log sigma2_k, w_k), with
# the Jacobian of sigma2 -> log sigma2 (internal helpers of bayesmoe, which
# tests/testthat/test-marglik.R checks against plain-R references), and the
# same scale term -sum(w) log(sy). It integrates over the whole parameter
# space (both labellings), as the symmetrised bridge estimator does.
#
# Run from the package root, with the package installed:
#   nice Rscript inst/scripts/marglik-se.R [output file]
# About 2 minutes of one core with the default 64 replicates (the CPU
# seconds are stored in the output); MARGLIK_SE_REPS=16 for a quicker run.

library(bayesmoe)

out_file <- commandArgs(trailingOnly = TRUE)[1]
if (is.na(out_file)) out_file <- file.path("inst", "extdata", "marglik-se.rds")
n_rep <- as.integer(Sys.getenv("MARGLIK_SE_REPS", "64"))
stopifnot(n_rep >= 2L)
ns <- asNamespace("bayesmoe")
cpu0 <- proc.time()

# ---- data ------------------------------------------------------------------

data_seed <- 11L
truth <- moe_truth(beta0 = -8, beta1 = 25, a = c(-20, 20), b = c(15, -5),
                   sigma = c(0.3, 0.4))
set.seed(data_seed)
d <- rmoe(50, truth)

# ---- importance-sampling reference ---------------------------------------

ref_fit_seed <- 999L
ref_is_seed <- 7L
ref_draws <- 400000L
ref_df <- 5
ref_inflate <- 1.2     # covariance of the t: 1.2 x the posterior covariance

is_reference <- function(d) {
  fit <- moe_mcmc(y ~ x, data = d, K = 2, chains = 4, iter = 4000, seed = ref_fit_seed,
                  progress = FALSE)
  K <- fit$K
  p <- ncol(fit$X)
  q <- ncol(fit$Z)
  pc <- ns$prior_internal(fit$prior, p, q)
  sd_ <- ns$scale_data(fit$scaling, fit$y, fit$X, fit$Z)
  s <- list(y = sd_$y, X = sd_$X, Z = sd_$Z, w = as.double(fit$weights))
  log_q <- function(Phi) {
    par <- ns$par_from_phi(Phi, p, q, K)
    out <- ns$loglik_draws_internal(par, s) + ns$log_prior_phi(par, pc)
    out[!is.finite(out)] <- -Inf
    out
  }
  dr <- ns$draws_internal(fit)
  Phi <- ns$phi_from_par(dr$alpha, dr$sigma2, dr$W)
  perms <- ns$all_permutations(K)
  rl <- ns$relabel_phi(Phi, which.max(log_q(Phi)), p, q, K, perms)
  mu <- colMeans(rl$Phi)
  R <- chol(ref_inflate * stats::cov(rl$Phi))
  D <- length(mu)
  log_t <- function(Ph) {
    z <- backsolve(R, t(Ph) - mu, transpose = TRUE)
    lgamma((ref_df + D) / 2) - lgamma(ref_df / 2) - D / 2 * log(ref_df * pi) -
      sum(log(diag(R))) - (ref_df + D) / 2 * log1p(colSums(z^2) / ref_df)
  }
  # symmetrised proposal (1 / K!) sum_pi t(pi phi): draw from t, relabel at random
  log_tsym <- function(Ph) {
    L <- vapply(seq_len(nrow(perms)), function(j)
      log_t(ns$permute_phi(Ph, perms[j, ], p, q, K)), numeric(nrow(Ph)))
    L <- matrix(L, nrow(Ph))
    m <- apply(L, 1L, max)
    m + log(rowSums(exp(L - m))) - lgamma(K + 1)
  }
  set.seed(ref_is_seed)
  Z <- matrix(stats::rnorm(ref_draws * D), ref_draws) %*% R /
    sqrt(stats::rchisq(ref_draws, ref_df) / ref_df)
  Ph <- sweep(Z, 2L, mu, "+")
  pick <- sample.int(nrow(perms), ref_draws, replace = TRUE)
  for (j in seq_len(nrow(perms))) {
    id <- which(pick == j)
    if (length(id)) Ph[id, ] <- ns$permute_phi(Ph[id, , drop = FALSE], perms[j, ], p, q, K)
  }
  lw <- log_q(Ph) - log_tsym(Ph)
  m <- max(lw)
  w <- exp(lw - m)
  c(logml = m + log(mean(w)) - sum(fit$weights) * log(fit$scaling$sy),
    se = stats::sd(w) / sqrt(ref_draws) / mean(w),
    ess = sum(w)^2 / sum(w^2))
}

ref <- is_reference(d)
cpu_ref <- (proc.time() - cpu0)[["user.self"]]
cat(sprintf("reference: %.4f (MC s.e. %.4f, IS effective size %.0f of %d), %.0f s\n",
            ref[["logml"]], ref[["se"]], ref[["ess"]], ref_draws, cpu_ref))

# ---- replicated bridge sampling ------------------------------------------

seeds <- 100L + seq_len(n_rep)
runs <- do.call(rbind, lapply(seq_len(n_rep), function(r) {
  fit <- moe_mcmc(y ~ x, data = d, K = 2, seed = seeds[r], progress = FALSE)
  do.call(rbind, lapply(c("mixture", "normal"), function(pr) {
    b <- moe_marglik(fit, method = "bridge", proposal = pr, seed = r)
    data.frame(replicate = r, mcmc_seed = seeds[r], marglik_seed = r, proposal = pr,
               estimate = b$logml, se = b$se, n_post = b$n_post, n_eff = b$n_eff,
               converged = b$converged)
  }))
}))
runs$z <- (runs$estimate - ref[["logml"]]) / sqrt(runs$se^2 + ref[["se"]]^2)

rms <- function(v) sqrt(mean(v^2))
summary_tab <- do.call(rbind, lapply(split(runs, runs$proposal), function(x) {
  data.frame(proposal = x$proposal[1], replicates = nrow(x), rms_z = rms(x$z),
             mean_z = mean(x$z), share_abs_z_below_2 = mean(abs(x$z) < 2),
             sd_estimate = stats::sd(x$estimate), rms_se = rms(x$se),
             mean_n_eff = mean(x$n_eff), n_post = x$n_post[1])
}))
rownames(summary_tab) <- NULL
print(summary_tab, digits = 3)

out <- list(
  reference = ref, runs = runs, summary = summary_tab, data = d, truth = truth,
  meta = list(date = Sys.time(), package_version = as.character(utils::packageVersion("bayesmoe")),
              R = R.version.string, data_seed = data_seed, mcmc_seeds = seeds,
              marglik_seeds = seq_len(n_rep), ref_fit_seed = ref_fit_seed,
              ref_is_seed = ref_is_seed, ref_draws = ref_draws, ref_df = ref_df,
              ref_inflate = ref_inflate,
              mcmc = "moe_mcmc(y ~ x, data, K = 2) with default chains, iter, warmup",
              cpu_seconds = (proc.time() - cpu0)[["user.self"]],
              cpu_reference_seconds = cpu_ref,
              cpu = tryCatch({
                m <- grep("^model name", readLines("/proc/cpuinfo"), value = TRUE)[1]
                trimws(sub("^model name\\s*:", "", m))
              }, error = function(e) NA_character_, warning = function(w) NA_character_))
)
saveRDS(out, out_file)
cat(sprintf("written %s (%.0f CPU seconds)\n", out_file, out$meta$cpu_seconds))
