# Full-size contraction studies of the vignette "Posterior contraction"
# (vignette("contraction", package = "bayesmoe")), written as compact .rds
# files (moe_contraction objects) into inst/extdata/.
#
# Usage, from the package source folder (bayesmoe installed):
#   Rscript inst/scripts/contraction.R [em|mcmc|all] [output folder]
# Default: "em" into inst/extdata. Set a future plan in ~/.Rprofile or
# below to spread the replicates over several cores; results do not depend
# on the plan.
#
# Truth: moe_truth_example("p4"), the two-expert truth of Nguyen, Nguyen and
# Ho (2023), covariate uniform on [0, 1].
#
# Grid. The published runs used 200 sample sizes from 1e2 to 1e5 with 40
# replicates (8,000 fits per study). Here 30 log-spaced sample sizes from 1e2
# to 1e5 (25 for the over-fitted study) with 40 replicates each: the slope
# fits need many replicates per n more than many n, and the over-fitted EM
# study then takes about 1.5 hours of CPU on one core (measured CPU time per
# fit with 5 near-truth starts: 0.1 s at n = 100, 0.7 s at 1e3, 8.5 s at 1e4,
# 17 s at 1e5; EM on an over-fitted model converges slowly). The exact-fitted
# studies take minutes.
#
# Studies written:
#   em_k2.rds         K = 2 (exact-fitted), EM from the default starts (5):
#                     D1, Hellinger and total variation.
#   em_k2_oracle.rds  K = 2, EM from one near-truth (oracle) start, the
#                     protocol of the published runs: D1 and Hellinger.
#   em_k3_oracle.rds  K = 3 (over-fitted), EM from 5 near-truth starts (the
#                     published protocol): D2 (infimum over translations of
#                     the fitted gating), Hellinger, and the per-parameter
#                     distances in the largest Voronoi cell.
#   mcmc_k2.rds, mcmc_k3.rds  the same with moe_mcmc() (posterior mean and
#                     90% quantile of the loss per replicate), once moe_mcmc()
#                     exists; smaller grids, see below.

library(bayesmoe)

args <- commandArgs(trailingOnly = TRUE)
what <- if (length(args) >= 1L) args[1L] else "em"
out_dir <- if (length(args) >= 2L) args[2L] else file.path("inst", "extdata")
stopifnot(what %in% c("em", "mcmc", "all"))
dir.create(out_dir, showWarnings = FALSE, recursive = TRUE)

tru <- moe_truth_example("p4")
log_grid <- function(from, to, length.out) {
  unique(round(exp(seq(log(from), log(to), length.out = length.out))))
}
n_k2 <- log_grid(100, 1e5, 30)
n_k3 <- log_grid(100, 1e5, 25)
reps <- 40L

run <- function(file, ...) {
  path <- file.path(out_dir, file)
  message(format(Sys.time()), " start ", file)
  cpu <- system.time(st <- moe_contraction(...))
  st$settings$cpu_seconds <- sum(cpu[c("user.self", "sys.self", "user.child", "sys.child")],
                                 na.rm = TRUE)
  st$settings$elapsed_seconds <- cpu[["elapsed"]]
  st$settings$created <- format(Sys.time(), "%Y-%m-%d %H:%M:%S %Z")
  st$settings$package_version <- as.character(utils::packageVersion("bayesmoe"))
  saveRDS(st, path, compress = "xz")
  message(format(Sys.time()), sprintf(" done %s: %.0f s CPU, %.0f s elapsed", file,
                                      st$settings$cpu_seconds, st$settings$elapsed_seconds))
  print(st)
  invisible(st)
}

if (what %in% c("em", "all")) {
  run("em_k2.rds", tru, n = n_k2, reps = reps, K = 2, method = "em",
      losses = c("D", "hellinger", "tv"), seed = 2023L, init = "default", starts = 5)
  run("em_k2_oracle.rds", tru, n = n_k2, reps = reps, K = 2, method = "em",
      losses = c("D", "hellinger"), seed = 2024L, init = "near_truth", starts = 1)
  run("em_k3_oracle.rds", tru, n = n_k3, reps = reps, K = 3, method = "em",
      losses = c("D", "hellinger"), seed = 2025L, init = "near_truth", starts = 5,
      cells = TRUE)
}

if (what %in% c("mcmc", "all")) {
  if (!exists("moe_mcmc", envir = asNamespace("bayesmoe"))) {
    stop("moe_mcmc() is not available in this version of bayesmoe.")
  }
  # Posterior runs cost far more per fit (a Gibbs sweep is a few EM
  # iterations); a smaller grid, up to n = 3e4, with 20 replicates. Adjust
  # `mcmc` (chains, iter, warmup) to the sampler's needs.
  n_mc <- log_grid(100, 3e4, 15)
  mc <- list(chains = 2, iter = 1000, warmup = 500)
  run("mcmc_k2.rds", tru, n = n_mc, reps = 20L, K = 2, method = "mcmc",
      losses = c("D", "hellinger"), seed = 2026L, mcmc = mc, density_draws = 100)
  run("mcmc_k3.rds", tru, n = n_mc, reps = 20L, K = 3, method = "mcmc",
      losses = c("D", "hellinger"), seed = 2027L, mcmc = mc, density_draws = 100,
      cells = TRUE)
}
