# The posterior over K where it is hardest: the marginal likelihood of
# over-fitted models (K = k* + 1 and k* + 2, whose posteriors have an empty
# or a split expert) by moe_marglik() (bridge sampling on the Gibbs draws,
# with the symmetrised complete-data mixture importance density), against
# an independent estimator: tempered sequential Monte Carlo from the prior
# (bayesmoe:::marglik_smc(); random-walk moves, no label-permutation
# correction, no draw shared with the chains). Shown in the validation
# vignette ("Marginal likelihoods of over-fitted models").
#
# Two small data sets (n = 100, one covariate x ~ U(0, 1)):
#   one: one expert,   y = 1 + 2 x + N(0, 0.5^2);       K = 1 (exact), 2, 3
#   two: two experts, the "two" truth of choosing-k.R;  K = 2, 3, 4
# Bridge sampling: `bridge_fits` Gibbs fits per K (4 chains of 2,000
# iterations, different seeds), one moe_marglik() each. SMC: `smc_runs`
# independent runs of `smc_N` particles, 20 moves per temperature, the next
# temperature at an effective sample size of 95%.
#
# Run from the package root with the package installed:
#   Rscript inst/scripts/marglik-check.R [size] [output file]
# size "shipped" (default): 3 SMC runs of 1,000 particles, 3 bridge fits;
# "full": 8 SMC runs of 2,000 particles, 5 bridge fits.
# CPU: the shipped run took 529 s on one core ($cpu_seconds of the result).

library(bayesmoe)

args <- commandArgs(trailingOnly = TRUE)
size <- if (length(args) >= 1L) args[1L] else "shipped"
out_file <- if (length(args) >= 2L) args[2L] else file.path("inst", "extdata", "marglik-check.rds")
stopifnot(size %in% c("shipped", "full", "quick"))
set <- switch(size,
              shipped = list(smc_runs = 3L, smc_N = 1000L, moves = 20L, bridge_fits = 3L,
                             iter = 2000L),
              full = list(smc_runs = 8L, smc_N = 2000L, moves = 20L, bridge_fits = 5L,
                          iter = 4000L),
              quick = list(smc_runs = 2L, smc_N = 200L, moves = 3L, bridge_fits = 2L,
                           iter = 400L))

simulate <- function(n, W, alpha, sigma, seed) {
  set.seed(seed)
  x <- runif(n)
  X <- cbind(1, x)
  eta <- X %*% W
  g <- exp(eta - apply(eta, 1, max))
  g <- g / rowSums(g)
  k <- apply(g, 1, function(p) sample.int(length(p), 1, prob = p))
  data.frame(x = x, y = rowSums(X * t(alpha[, k, drop = FALSE])) + rnorm(n, sd = sigma[k]))
}
data_sets <- list(
  one = list(k = 1L, K = 1:3, data = simulate(100, matrix(0, 2, 1), cbind(c(1, 2)), 0.5, 101)),
  two = list(k = 2L, K = 2:4, data = simulate(100, cbind(c(-2, 4), c(0, 0)),
                                             cbind(c(0, 3), c(4, -3)), c(0.4, 0.4), 102))
)

t_all <- proc.time()
rows <- list()
smc_runs <- list()
for (nm in names(data_sets)) {
  ds <- data_sets[[nm]]
  for (K in ds$K) {
    t0 <- proc.time()
    br <- lapply(seq_len(set$bridge_fits), function(j) {
      fit <- moe_mcmc(y ~ x, data = ds$data, K = K, chains = 4, iter = set$iter,
                      seed = 100 * K + j, progress = FALSE)
      m <- if (K == 1L) moe_marglik(fit, method = "exact") else moe_marglik(fit, seed = j)
      list(fit = fit, ml = m)
    })
    cpu_bridge <- sum((proc.time() - t0)[1:2])
    sm <- bayesmoe:::marglik_smc(br[[1]]$fit, runs = set$smc_runs, N = set$smc_N,
                                 moves = set$moves, ess = 0.95, seed = 1000 + K)
    b <- vapply(br, function(z) z$ml$logml, 0)
    bse <- vapply(br, function(z) z$ml$se, 0)
    sw <- vapply(br, function(z) if (is.null(z$ml$switching)) 0 else max(z$ml$switching), 0)
    rows[[length(rows) + 1L]] <- data.frame(
      data = nm, k_true = ds$k, K = K, over = K - ds$k,
      method = if (K == 1L) "exact" else "bridge",
      bridge = mean(b), bridge_sd = if (length(b) > 1L) sd(b) else NA_real_,
      bridge_se_reported = sqrt(mean(bse^2)), bridge_switching = max(sw),
      smc = sm$logml, smc_se = sm$se, smc_sd = sd(sm$runs), smc_log_mean = sm$log_mean,
      diff = mean(b) - sm$logml,
      z = (mean(b) - sm$logml) / sqrt(sm$se^2 + (if (length(b) > 1L) var(b) / length(b) else 0)),
      smc_steps = mean(sm$steps), smc_acceptance = mean(sm$acceptance),
      cpu_bridge = cpu_bridge, cpu_smc = sm$cpu)
    smc_runs[[paste(nm, K)]] <- list(smc = sm$runs, bridge = b, bridge_se = bse)
    cat(sprintf("%s, K = %d: bridge %.2f (sd over fits %.2f), SMC %.2f (se %.2f); %.0f + %.0f s\n",
                nm, K, mean(b), if (length(b) > 1L) sd(b) else NA, sm$logml, sm$se,
                cpu_bridge, sm$cpu))
  }
}
res <- list(table = do.call(rbind, rows), runs = smc_runs, settings = set, size = size,
            cpu_seconds = sum((proc.time() - t_all)[1:2]),
            created = format(Sys.time(), "%Y-%m-%d %H:%M:%S %Z"),
            versions = c(R = R.version.string,
                         bayesmoe = as.character(utils::packageVersion("bayesmoe"))))
dir.create(dirname(out_file), showWarnings = FALSE, recursive = TRUE)
saveRDS(res, out_file, compress = "xz")
print(res$table, digits = 3)
cat(sprintf("Wrote %s; CPU %.0f s\n", out_file, res$cpu_seconds))
