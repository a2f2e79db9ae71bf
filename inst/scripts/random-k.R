# Random number of experts: contraction of the model-averaged posterior and
# the posterior probability of the true K (vignettes "Posterior
# contraction", section "Random number of experts", and "Choosing the
# number of experts"). Writes into inst/extdata/:
#   random-k-two.rds    moe_contraction(two-expert truth, K = prior_K(K_max = 5),
#                       method = "mcmc"): the two-expert truth of Nguyen,
#                       Nguyen and Ho (2023) (moe_truth_example("p4"))
#   random-k-three.rds  the same on a three-expert truth
#   random-k-sw.rds     P(K = k*) under smaller gating prior scales s_w
#                       (moe_prior(s_w = )), three-expert truth
# The sensitivity to the prior on K needs no run: moe_contraction_K(x,
# prior = ) recomputes P(K = k*) from the stored marginal likelihoods.
#
# Usage, from the package root with bayesmoe installed:
#   Rscript inst/scripts/random-k.R [part] [size] [output folder]
# part: "two", "three", "sw" or "all" (default); size: "full" (default, what
# inst/extdata holds), "small" or "quick". Replicates run through future: the
# script sets future::plan(multisession, workers = BAYESMOE_WORKERS)
# (default 2) when future is installed. Results depend only on the seeds,
# not on the plan.
#
# "full": two and three: n = 500, 1000, 2000, 4000, 8000, 20000, 10
#   replicates, K_max = 5, two chains of 1,000 iterations per fit; sw: s_w in
#   {1, 2.5} (5 is the default of the main runs), three-expert truth,
#   n = 500, 2000, 8000, 10 replicates, K_max = 4.
# "small": two: n = 500, 1000, 2000, 4000, 8000, 8 replicates, K_max = 5
#   (the acceptance run of the random-K study: 18.7 min elapsed, 2,005 s of
#   CPU in the replicates, on 2 workers; `BAYESMOE_WORKERS=2 Rscript
#   inst/scripts/random-k.R two small`, Hellinger slope -0.502); three: n up
#   to 4000, 5 replicates; sw: n = 500, 1000, 2000, 4 replicates.
# CPU time of the shipped ("full") files, the sum over replicates of the CPU
# seconds of each task ($settings$cpu_seconds; $settings$elapsed_seconds is
# the wall time on $settings$workers workers): two 4,142 s, three 2,898 s,
# sw 468 s (s_w = 1) and 553 s (s_w = 2.5); 2 hours elapsed for the whole
# script on 2 workers, 27 minutes of which the workers were paused
# (`BAYESMOE_WORKERS=2 Rscript inst/scripts/random-k.R all full`).
# With BAYESMOE_CHECKPOINT=<folder> every finished replicate is kept there
# and an interrupted run resumes where it stopped.

library(bayesmoe)

args <- commandArgs(trailingOnly = TRUE)
part <- if (length(args) >= 1L) args[1L] else "all"
size <- if (length(args) >= 2L) args[2L] else "full"
out_dir <- if (length(args) >= 3L) args[3L] else file.path("inst", "extdata")
stopifnot(part %in% c("two", "three", "sw", "all"), size %in% c("full", "small", "quick"))
dir.create(out_dir, showWarnings = FALSE, recursive = TRUE)
if (requireNamespace("future", quietly = TRUE)) {
  workers <- as.integer(Sys.getenv("BAYESMOE_WORKERS", "2"))
  future::plan(future::multisession, workers = workers)
}

two <- moe_truth_example("p4")
three <- moe_truth(beta0 = c(3, -3, 0), beta1 = c(-6, 6, 0), a = c(-2, 2, 0),
                   b = c(4, -3, 0.5), sigma = c(0.3, 0.3, 0.3))
set <- switch(size,
  small = list(n = c(500, 1000, 2000, 4000, 8000), n_three = c(500, 1000, 2000, 4000),
               reps = 8L, reps_three = 5L, K_max = 5L,
               sw = c(1, 2.5), sw_n = c(500, 1000, 2000), sw_reps = 4L, sw_K_max = 4L,
               sw_truths = "three", mcmc = list()),
  full = list(n = c(500, 1000, 2000, 4000, 8000, 20000), reps = 10L, K_max = 5L,
              sw = c(1, 2.5), sw_n = c(500, 2000, 8000), sw_reps = 10L, sw_K_max = 4L,
              sw_truths = "three", mcmc = list()),
  quick = list(n = c(200, 400), reps = 2L, K_max = 4L, sw = 1, sw_n = c(200, 400),
               sw_reps = 2L, sw_K_max = 4L, sw_truths = "three",
               mcmc = list(chains = 1, iter = 200)))

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
  t <- system.time(st <- moe_contraction(..., checkpoint = checkpoint_of(file)))
  st$settings$cpu_seconds <- sum(st$runs$seconds)
  st$settings$elapsed_seconds <- t[["elapsed"]]
  st$settings$workers <- if (requireNamespace("future", quietly = TRUE)) future::nbrOfWorkers() else 1L
  st$settings$created <- format(Sys.time(), "%Y-%m-%d %H:%M:%S %Z")
  st$settings$package_version <- as.character(utils::packageVersion("bayesmoe"))
  st$settings$size <- size
  message(format(Sys.time()), sprintf(" done %s: %.0f s CPU in the replicates, %.0f s elapsed on %d workers",
                                      file, st$settings$cpu_seconds, t[["elapsed"]],
                                      st$settings$workers))
  st
}

if (part %in% c("two", "all")) {
  st <- run("random-k-two.rds", two, n = set$n, reps = set$reps,
            K = prior_K(K_max = set$K_max), method = "mcmc", mcmc = set$mcmc, seed = 2031L)
  saveRDS(st, file.path(out_dir, "random-k-two.rds"), compress = "xz")
  print(st)
}
if (part %in% c("three", "all")) {
  n3 <- if (is.null(set$n_three)) set$n else set$n_three
  r3 <- if (is.null(set$reps_three)) set$reps else set$reps_three
  st <- run("random-k-three.rds", three, n = n3, reps = r3,
            K = prior_K(K_max = set$K_max), method = "mcmc", mcmc = set$mcmc, seed = 2032L)
  saveRDS(st, file.path(out_dir, "random-k-three.rds"), compress = "xz")
  print(st)
}
if (part %in% c("sw", "all")) {
  truths <- list(two = two, three = three)[set$sw_truths]
  out <- list()
  for (tn in names(truths)) for (s in set$sw) {
    st <- run(sprintf("s_w = %g, %s", s, tn), truths[[tn]], n = set$sw_n, reps = set$sw_reps,
              K = prior_K(K_max = set$sw_K_max), method = "mcmc",
              mcmc = c(list(prior = moe_prior(s_w = s)), set$mcmc), losses = "hellinger",
              seed = 2033L)
    # keep what the vignette needs (the fits are not stored anyway)
    out[[sprintf("%s_%g", tn, s)]] <- list(truth = tn, s_w = s, K_post = st$K_post,
                                           K_est = st$K_est, K_table = st$K_table,
                                           results = st$results, settings = st$settings)
    print(st$K_table)
  }
  saveRDS(out, file.path(out_dir, "random-k-sw.rds"), compress = "xz")
}
