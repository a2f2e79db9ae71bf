# Contraction studies of the vignette "Posterior contraction"
# (vignette("contraction", package = "bayesmoe")), written as compact .rds
# files (moe_contraction objects, a few kilobytes each) into inst/extdata/.
#
# Usage, from the package source folder (bayesmoe installed):
#   Rscript inst/scripts/contraction.R [size] [output folder]
# size: "shipped" (default; the files in inst/extdata) or "full" (the
# published scale, hours of CPU). Set a future plan (e.g. in ~/.Rprofile)
# to spread the replicates over several cores; results do not depend on the
# plan, only on the seeds below.
#
# Truth: moe_truth_example("p4"), the two-expert truth of Nguyen, Nguyen and
# Ho (2023), covariate uniform on [0, 1].
#
# "shipped" (sized for a budget of about 15 minutes of CPU on one core):
#   em_k2         10 log-spaced sample sizes from 500 to 20,000, 8 replicates;
#   em_k2_oracle  20 sizes from 100 to 1e5, 40 replicates;
#   em_k3_oracle  12 sizes from 500 to 50,000, 8 replicates, 2 starts;
#   mcmc_k2       6 sizes from 500 to 16,000, 8 replicates, one chain of 600
#                 iterations (300 warm-up).
# "full": 30 (K = 2) and 25 (K = 3) sizes from 1e2 to 1e5 with 40
# replicates (the published runs used 200 sizes and 40 replicates), MCMC at
# 8 sizes up to 3e4 with 20 replicates and two chains of 1,000 iterations.
#
# Studies written:
#   em_k2.rds         K = 2 (exact-fitted), EM from the default starts (5):
#                     D1, Hellinger and total variation.
#   em_k2_oracle.rds  K = 2, EM from one near-truth (oracle) start, the
#                     protocol of the published runs: D1 and Hellinger.
#   em_k3_oracle.rds  K = 3 (over-fitted), EM from near-truth starts (the
#                     published protocol): D2 (infimum over translations of
#                     the fitted gating), Hellinger, and the per-parameter
#                     distances in the largest Voronoi cell.
#   mcmc_k2.rds       K = 2 with moe_mcmc() (posterior mean and 90% quantile
#                     of D1 and of the Hellinger distance per replicate).

library(bayesmoe)

args <- commandArgs(trailingOnly = TRUE)
size <- if (length(args) >= 1L) args[1L] else "shipped"
out_dir <- if (length(args) >= 2L) args[2L] else file.path("inst", "extdata")
stopifnot(size %in% c("shipped", "full"))
dir.create(out_dir, showWarnings = FALSE, recursive = TRUE)

tru <- moe_truth_example("p4")
log_grid <- function(from, to, length.out) {
  unique(round(exp(seq(log(from), log(to), length.out = length.out))))
}
if (size == "shipped") {
  n_k2 <- log_grid(500, 20000, 10)     # the acceptance grid of the EM D1 slope
  reps_k2 <- 8L
  n_k2o <- log_grid(100, 1e5, 20)
  reps_k2o <- 40L
  n_k3 <- log_grid(500, 50000, 12)
  reps_k3 <- 8L
  k3_starts <- 2L
  n_mc <- log_grid(500, 16000, 6)
  reps_mc <- 8L
  mc <- list(chains = 1, iter = 600, warmup = 300,
             control = moe_mcmc_control(em_starts = 2))
} else {
  n_k2 <- log_grid(100, 1e5, 30)
  reps_k2 <- 40L
  n_k2o <- n_k2
  reps_k2o <- 40L
  n_k3 <- log_grid(100, 1e5, 25)
  reps_k3 <- 40L
  k3_starts <- 5L
  n_mc <- log_grid(100, 3e4, 8)
  reps_mc <- 20L
  mc <- list(chains = 2, iter = 1000, warmup = 500)
}

# Run one study, record its CPU and wall time in its settings, save it.
# With the environment variable BAYESMOE_CHECKPOINT set to a folder, every
# study keeps its finished tasks in a subfolder named after its file, and a
# rerun after an interruption resumes (see ?moe_contraction, "Checkpoints and
# clusters"); the results are the same.
checkpoint_of <- function(file) {
  root <- Sys.getenv("BAYESMOE_CHECKPOINT")
  if (nzchar(root)) file.path(root, gsub("[^A-Za-z0-9_.-]+", "_", sub("[.]rds$", "", file)))
}

run <- function(file, ...) {
  path <- file.path(out_dir, file)
  message(format(Sys.time()), " start ", file)
  cpu <- system.time(st <- moe_contraction(..., checkpoint = checkpoint_of(file)))
  st$settings$cpu_seconds <- sum(cpu[c("user.self", "sys.self", "user.child", "sys.child")],
                                 na.rm = TRUE)
  st$settings$elapsed_seconds <- cpu[["elapsed"]]
  st$settings$created <- format(Sys.time(), "%Y-%m-%d %H:%M:%S %Z")
  st$settings$package_version <- as.character(utils::packageVersion("bayesmoe"))
  st$settings$size <- size
  saveRDS(st, path, compress = "xz")
  message(format(Sys.time()), sprintf(" done %s: %.0f s CPU, %.0f s elapsed, %.1f kB", file,
                                      st$settings$cpu_seconds, st$settings$elapsed_seconds,
                                      file.size(path) / 1024))
  print(st)
  invisible(st)
}

run("em_k2.rds", tru, n = n_k2, reps = reps_k2, K = 2, method = "em",
    losses = c("D", "hellinger", "tv"), seed = 2023L, init = "default", starts = 5)
run("em_k2_oracle.rds", tru, n = n_k2o, reps = reps_k2o, K = 2, method = "em",
    losses = c("D", "hellinger"), seed = 2024L, init = "near_truth", starts = 1)
run("em_k3_oracle.rds", tru, n = n_k3, reps = reps_k3, K = 3, method = "em",
    losses = c("D", "hellinger"), seed = 2025L, init = "near_truth", starts = k3_starts,
    cells = TRUE)
run("mcmc_k2.rds", tru, n = n_mc, reps = reps_mc, K = 2, method = "mcmc",
    losses = c("D", "hellinger"), seed = 2026L, mcmc = mc, density_draws = 20)
