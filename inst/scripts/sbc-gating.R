# Simulation-based calibration (SBC) of the gating updates of the Gibbs
# sampler with its documented defaults, from starts drawn from the prior:
# the default ("collapsed", 2 steps per sweep, a Polya-Gamma draw every 20th
# sweep after warm-up) and "mh", for K = 2 and 3 experts and n = 40, 100
# and 1000 observations. Read by vignettes/validation.Rmd.
#
#   cd <package root>
#   nice -n 10 Rscript inst/scripts/sbc-gating.R [reps_small reps_large out_file]
#
# Defaults: 1000 replicates for n = 40 and 100, 300 for n = 1000, written to
# inst/extdata/sbc-gating.rds. Takes about 30-40 minutes of CPU time.
#
# Each replicate draws parameters from the prior (internal scale, the prior
# of the validation vignette), simulates a data set (x ~ N(0, 1), experts
# and gating on (1, x)), runs one chain of the C sampler from a separate
# prior draw with the defaults of moe_mcmc() (iter = 2000, warmup = 1000)
# and of moe_mcmc_control() (gate_steps = 2, pg_every = 20), and records the
# rank of each label-invariant functional of the truth among the draws after
# warm-up: the predictive mean at x = 0.5 (pm), the log of the smallest
# expert variance (ls), the largest gating probability at x = 0.5 (gmax)
# and the total log-likelihood of the data (ll). For a correct sampler and
# independent draws the ranks are uniform on 0..L. Two thinnings of the
# same chains:
#  - "ess" (the main check; Talts et al. 2018, section 5.1, thin to the
#    effective sample size): L = the smallest bulk effective sample size of
#    the four functionals in that chain, at most 100, at least 1, and the
#    draws at L evenly spaced positions; the ranks are put on [0, 1] as
#    (rank + U) / (L + 1), U uniform;
#  - "fixed": every 10th draw (L = 100), which also shows slow mixing (an
#    excess of extreme ranks) where the effective sample size is below L.
# Tests: a chi-square test over 20 bins and a two-sided test of the number
# of extreme ranks (0 or L; probability 2 / (L + 1) each, a binomial for
# the fixed thinning and a Poisson-binomial computed exactly for the ESS
# thinning). A frozen chain has an effective sample size near 1 and
# extreme ranks, so both show freezing. A chain is counted
# as frozen when its gating coefficients never change after warm-up, and as
# stalled when it accepted fewer than 1% of its gating Metropolis-Hastings
# moves after warm-up (the threshold of moe_mcmc()'s warning).
library(bayesmoe)
args <- commandArgs(TRUE)
reps_small <- if (length(args) >= 1L) as.integer(args[1L]) else 1000L
reps_large <- if (length(args) >= 2L) as.integer(args[2L]) else 300L
out_file <- if (length(args) >= 3L) args[3L] else file.path("inst", "extdata", "sbc-gating.rds")
t_start <- proc.time()
# SBC_GATE_STEPS (default: the default of moe_mcmc_control(), 2) and
# SBC_UPDATES (default "collapsed,mh") run other settings, e.g.
#   SBC_GATE_STEPS=1 SBC_UPDATES=collapsed Rscript inst/scripts/sbc-gating.R \
#     1000 300 /tmp/sbc-gating-steps1.rds
# (the shipped inst/extdata/sbc-gating.rds is made with the defaults;
# inst/extdata/sbc-gating-steps1.rds, read by the vignette's "One step per
# sweep", by exactly the command above with that output file).
gate_steps <- Sys.getenv("SBC_GATE_STEPS")
ctl <- if (nzchar(gate_steps)) moe_mcmc_control(gate_steps = as.numeric(gate_steps)) else
  moe_mcmc_control()
updates <- strsplit(Sys.getenv("SBC_UPDATES", "collapsed,mh"), ",", fixed = TRUE)[[1L]]
stopifnot(length(updates) > 0L, all(updates %in% c("collapsed", "mh")))
warmup <- 1000L
iter <- 1000L
thin <- 10L
L <- iter %/% thin
prior <- moe_prior(s_w = 1.5, V_a = 4, c0 = 3, C0 = 1)
pc <- bayesmoe:::prior_internal(prior, 2L, 2L)

# One chain of the C sampler (the fused softmax x linear-Gaussian kernel,
# which has no Metropolis blocks besides the gating moves it counts in
# `moves`), drawing from the session's RNG; `mode` is the code of the gating
# update, gate_steps and pg_every those of `ctl`.
spec <- bayesmoe:::make_spec(gate_softmax(), expert_linear())
chain <- function(y, X, Z, init, mode) {
  gm <- bayesmoe:::gate_mode(ctl)
  gm[1L] <- mode
  K <- length(init$sigma2)
  s <- list(y = as.double(y), X = X, Z = Z, w = rep(1, length(y)))
  bayesmoe:::gibbs_chain_c(s, pc, K, init, gate_softmax(), expert_linear(),
                           bayesmoe:::variant_adapt_init(spec, ncol(Z), K), numeric(),
                           bayesmoe:::mcmc_control_c(warmup, iter, 1L, 0L, 0L, 1L, gm), 0L)
}

functionals <- function(alpha, sigma2, W, K, x0) {
  eta <- matrix(drop(x0 %*% matrix(W, 2L)), K)
  g <- exp(eta - rep(apply(eta, 2L, max), each = K))
  g <- g / rep(colSums(g), each = K)
  mu <- matrix(drop(x0 %*% matrix(alpha, 2L)), K)
  cbind(pm = colSums(g * mu), ls = log(apply(matrix(sigma2, K), 2L, min)),
        gmax = apply(g, 2L, max))
}

one_rep <- function(K, n, mode) {
  th <- bayesmoe:::prior_draw(pc, K)
  x <- rnorm(n)
  X <- cbind(1, x)
  g <- exp(bayesmoe:::log_softmax_rows(X %*% th$W))
  k <- 1L + rowSums(runif(n) > t(apply(g, 1L, cumsum))[, -K, drop = FALSE])
  y <- rowSums(X * t(th$alpha[, k])) + sqrt(th$sigma2[k]) * rnorm(n)
  res <- chain(y, X, X, bayesmoe:::prior_draw(pc, K), mode)
  S <- length(res$loglik)
  x0 <- c(1, 0.5)
  f <- cbind(functionals(res$alpha, res$sigma2, res$W, K, x0), ll = res$loglik)
  ft <- c(functionals(th$alpha, th$sigma2, th$W, K, x0),
          ll = sum(bayesmoe:::moe_log_density(th, X, X, y)))
  fixed <- seq(thin, S, by = thin)
  ess <- apply(f, 2L, function(v) bayesmoe:::diag_ess_bulk(v))
  Le <- max(1L, min(L, floor(min(ess, na.rm = FALSE))), na.rm = TRUE)
  if (!is.finite(Le)) Le <- 1L
  keep <- round(seq(S / Le, S, length.out = Le))
  re <- colSums(f[keep, , drop = FALSE] < rep(ft, each = Le))
  Wd <- matrix(res$W, ncol = S)
  mv <- res$moves
  c(colSums(f[fixed, , drop = FALSE] < rep(ft, each = length(fixed))),
    setNames(re, paste0("ess_", names(re))), L_ess = Le,
    frozen = as.integer(all(Wd == Wd[, 1L])),
    stalled = as.integer(mv[4L] > 0L && mv[3L] < 0.01 * mv[4L]),
    accept = mv[3L] / max(mv[4L], 1L), pg = mv[6L], pg_every = res$pg_every)
}

# pbinom_test(), rank_tests(): the rank tests of the SBC scripts (run from
# the package root)
source(file.path("inst", "scripts", "sbc-tests.R"))

cells <- expand.grid(n = c(40L, 100L, 1000L), K = 2:3, update = updates,
                     stringsAsFactors = FALSE)
res <- list()
for (j in seq_len(nrow(cells))) {
  cl <- cells[j, ]
  reps <- if (cl$n >= 1000L) reps_large else reps_small
  mode <- if (cl$update == "collapsed") 3L else 2L
  set.seed(20261206 + j)
  t0 <- proc.time()
  out <- t(replicate(reps, one_rep(cl$K, cl$n, mode)))
  fn <- c("pm", "ls", "gmax", "ll")
  r <- out[, fn]
  re <- out[, paste0("ess_", fn)]
  colnames(re) <- fn
  res[[j]] <- list(n = cl$n, K = cl$K, update = cl$update, reps = reps, ranks = r,
                   ranks_ess = re, L_ess = out[, "L_ess"],
                   tests = rank_tests(re, out[, "L_ess"]),
                   tests_fixed = rank_tests(r, rep(L, reps)), frozen = sum(out[, "frozen"]),
                   stalled = sum(out[, "stalled"]), accept = out[, "accept"],
                   pg = out[, "pg"], pg_every = out[, "pg_every"],
                   cpu = sum((proc.time() - t0)[c("user.self", "sys.self")]))
  tt <- res[[j]]$tests
  tf <- res[[j]]$tests_fixed
  message(sprintf("%s n = %d K = %d: ESS thinning (median L %.0f) min chisq p %.3g, min extreme p %.3g; thin 10: %.3g, %.3g; frozen %d, stalled %d, %.0f s",
                  cl$update, cl$n, cl$K, stats::median(res[[j]]$L_ess), min(tt[, "chisq_p"]),
                  min(tt[, "extreme_p"]), min(tf[, "chisq_p"]), min(tf[, "extreme_p"]),
                  res[[j]]$frozen, res[[j]]$stalled, res[[j]]$cpu))
}
sbc <- list(cells = res, L = L, warmup = warmup, iter = iter, thin = thin,
            control = unclass(ctl), prior = unclass(prior),
            meta = list(date = format(Sys.time(), "%Y-%m-%d %H:%M %Z"),
                        bayesmoe = as.character(utils::packageVersion("bayesmoe")),
                        R = R.version.string,
                        cpu = sum((proc.time() - t_start)[c("user.self", "sys.self")])))
dir.create(dirname(out_file), showWarnings = FALSE, recursive = TRUE)
saveRDS(sbc, out_file, version = 2)
message(sprintf("written %s (%.0f s CPU)", out_file, sbc$meta$cpu))
