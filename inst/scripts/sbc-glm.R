# Simulation-based calibration (SBC) of the Gibbs sampler with binomial and
# Poisson experts (src/family_binomial.c: Polya-Gamma draws of the experts;
# src/family_poisson.c: independence Metropolis-Hastings with a t proposal
# at the conditional mode), with the gating update of moe_mcmc()'s defaults
# (the generic kernel runs them as Polya-Gamma draws and the joint refresh),
# K = 2 experts, n = 100 observations, from starts drawn from the prior.
# Read by tests/testthat/test-family-binomial.R and test-family-poisson.R.
#
#   cd <package root>
#   nice -n 10 Rscript inst/scripts/sbc-glm.R [family reps out_file]
#
# family: "binomial" or "poisson" (default both, each to its file);
# reps: replicates (default 1000); out_file: default
# inst/extdata/sbc-<family>.rds. The shipped runs (1000 replicates each)
# took 150 s (binomial) and 188 s (Poisson) of CPU time.
#
# Each replicate draws parameters from the prior (internal scale: the
# sampler is given the data as they are, x ~ N(0, 1), so the internal
# scale is the scale of the simulation): gating a la moe_prior(s_w = 1.5),
# expert coefficients a_k ~ N(0, V_a I) (V_a = 2), simulates binary
# responses (binomial) or counts (Poisson) with experts and gating on (1,
# x), runs one chain of the C sampler (warm-up 1000, 1000 sweeps kept) from
# a separate prior draw, and records the rank of each label-invariant
# functional of the truth among the draws: the predictive mean at x = 0.5
# (pm), the smallest expert slope (smin), the largest gating probability at
# x = 0.5 (gmax) and the total log-likelihood of the data (ll). Ranks are
# taken after thinning to the effective sample size (Talts et al. 2018,
# section 5.1: L = the smallest bulk ESS of the four functionals, at most
# 100; ranks put on [0, 1] as (rank + U) / (L + 1)) and, as a check of
# mixing, every 10th draw (L = 100). Tests per functional: chi-square over
# 20 bins and a two-sided test of the number of extreme ranks (0 or L;
# exact Poisson-binomial for the ESS thinning). A chain is frozen when its
# expert coefficients or its gating coefficients never change after
# warm-up.
library(bayesmoe)
args <- commandArgs(TRUE)
families <- if (length(args) >= 1L) args[1L] else c("binomial", "poisson")
reps <- if (length(args) >= 2L) as.integer(args[2L]) else 1000L
K <- 2L
n <- 100L
warmup <- 1000L
iter <- 1000L
thin <- 10L
L <- iter %/% thin
prior <- moe_prior(s_w = 1.5, V_a = 2)
pc <- bayesmoe:::prior_internal(prior, 2L, 2L)
ctl <- moe_mcmc_control()

chain <- function(s, init, expert) {
  spec <- bayesmoe:::make_spec(gate_softmax(), expert)
  mode <- bayesmoe:::chain_gate_mode(spec, bayesmoe:::gate_mode(ctl))
  blocks <- bayesmoe:::variant_blocks(spec, K, mode[1L])
  nbg <- length(blocks) - length(bayesmoe:::expert_accept_names(expert, K))
  cc <- bayesmoe:::mcmc_control_c(warmup, iter, 1L, 0L, 0L, 1L, mode)
  bayesmoe:::gibbs_chain_c(s, pc, K, init, gate_softmax(), expert,
                           bayesmoe:::variant_adapt_init(spec, 2L, K), numeric(), cc, nbg)
}

functionals <- function(alpha, W, expert, x0) {
  eta <- matrix(drop(x0 %*% matrix(W, 2L)), K)
  g <- exp(eta - rep(apply(eta, 2L, max), each = K))
  g <- g / rep(colSums(g), each = K)
  A <- matrix(alpha, 2L)
  mu <- bayesmoe:::glm_linkinv(expert, matrix(drop(x0 %*% A), K))
  cbind(pm = colSums(g * mu), smin = apply(matrix(A[2L, ], K), 2L, min),
        gmax = apply(g, 2L, max))
}

prior_par <- function(expert) {
  spec <- bayesmoe:::make_spec(gate_softmax(), expert)
  par <- bayesmoe:::glm_prior_draw(pc, K, bayesmoe:::prior_draw_spec(pc, K, spec))
  par$spec <- spec
  par
}

one_rep <- function(expert) {
  th <- prior_par(expert)
  x <- rnorm(n)
  X <- cbind("(Intercept)" = 1, x = x)
  g <- exp(bayesmoe:::log_softmax_rows(X %*% th$W))
  k <- 1L + rowSums(runif(n) > t(apply(g, 1L, cumsum))[, -K, drop = FALSE])
  mu <- bayesmoe:::glm_linkinv(expert, rowSums(X * t(th$alpha[, k])))
  y <- if (expert$type == "binomial") rbinom(n, 1L, mu) else rpois(n, mu)
  s <- list(y = as.double(y), X = X, Z = X, w = rep(1, n),
            family = bayesmoe:::glm_family_data(expert, y))
  res <- chain(s, prior_par(expert), expert)
  S <- length(res$loglik)
  x0 <- c(1, 0.5)
  f <- cbind(functionals(res$alpha, res$W, expert, x0), ll = res$loglik)
  ft <- c(functionals(th$alpha, th$W, expert, x0),
          ll = sum(bayesmoe:::moe_log_density(th, X, X, y)))
  fixed <- seq(thin, S, by = thin)
  ess <- apply(f, 2L, function(v) bayesmoe:::diag_ess_bulk(v))
  Le <- max(1L, min(L, floor(min(ess))), na.rm = TRUE)
  if (!is.finite(Le)) Le <- 1L
  keep <- round(seq(S / Le, S, length.out = Le))
  re <- colSums(f[keep, , drop = FALSE] < rep(ft, each = Le))
  Ad <- matrix(res$alpha, ncol = S)
  Wd <- matrix(res$W, ncol = S)
  c(colSums(f[fixed, , drop = FALSE] < rep(ft, each = length(fixed))),
    setNames(re, paste0("ess_", names(re))), L_ess = Le,
    frozen = as.integer(all(Ad == Ad[, 1L]) || all(Wd == Wd[, 1L])),
    accept_min = if (length(res$accept) > nbg_of(expert)) min(res$accept[-seq_len(nbg_of(expert))]) / iter else NA_real_)
}

nbg_of <- function(expert) {
  spec <- bayesmoe:::make_spec(gate_softmax(), expert)
  mode <- bayesmoe:::chain_gate_mode(spec, bayesmoe:::gate_mode(ctl))
  length(bayesmoe:::variant_blocks(spec, K, mode[1L])) -
    length(bayesmoe:::expert_accept_names(expert, K))
}

# The package's internal generics dispatch to methods of its namespace:
# the functions above that call them are evaluated there.
for (f in c("chain", "functionals", "prior_par", "one_rep", "nbg_of")) {
  fun <- get(f)
  environment(fun) <- asNamespace("bayesmoe")
  assign(f, fun)
}

# pbinom_test(), rank_tests(): the rank tests of the SBC scripts (run from
# the package root)
source(file.path("inst", "scripts", "sbc-tests.R"))

for (family in families) {
  t0 <- proc.time()
  expert <- bayesmoe:::resolve_family(family, expert_linear())
  set.seed(switch(family, binomial = 20261207L, poisson = 20261208L))
  out <- t(replicate(reps, one_rep(expert)))
  fn <- c("pm", "smin", "gmax", "ll")
  r <- out[, fn]
  re <- out[, paste0("ess_", fn)]
  colnames(re) <- fn
  cpu <- sum((proc.time() - t0)[c("user.self", "sys.self")])
  sbc <- list(family = family, n = n, K = K, reps = reps, ranks = r, ranks_ess = re,
              L_ess = out[, "L_ess"], tests = rank_tests(re, out[, "L_ess"]),
              tests_fixed = rank_tests(r, rep(L, reps)), frozen = sum(out[, "frozen"]),
              accept_min = out[, "accept_min"], L = L, warmup = warmup, iter = iter,
              thin = thin, prior = unclass(prior),
              meta = list(date = format(Sys.time(), "%Y-%m-%d %H:%M %Z"),
                          bayesmoe = as.character(utils::packageVersion("bayesmoe")),
                          R = R.version.string, cpu = cpu))
  tt <- sbc$tests
  tf <- sbc$tests_fixed
  message(sprintf("%s: %d replicates, ESS thinning (median L %.0f) min chisq p %.3g, min extreme p %.3g; thin 10: %.3g, %.3g; frozen %d; %.0f s CPU",
                  family, reps, stats::median(sbc$L_ess), min(tt[, "chisq_p"]),
                  min(tt[, "extreme_p"]), min(tf[, "chisq_p"]), min(tf[, "extreme_p"]),
                  sbc$frozen, cpu))
  out_file <- if (length(args) >= 3L) args[3L] else
    file.path("inst", "extdata", sprintf("sbc-%s.rds", family))
  dir.create(dirname(out_file), showWarnings = FALSE, recursive = TRUE)
  saveRDS(sbc, out_file, version = 2)
  message(sprintf("written %s", out_file))
}
