# Simulation-based calibration (SBC) of the Gibbs sampler with Student-t
# experts (student_t(), degrees of freedom estimated per expert), with the
# documented defaults of moe_mcmc_control() as moe_mcmc() runs them for
# this family (the "pg+mh" gating update, 2 steps per sweep), from starts
# drawn from the prior: K = 2 experts, n = 100 observations. Read by
# tests/testthat/test-family-t.R.
#
#   cd <package root>
#   nice -n 10 Rscript inst/scripts/sbc-t.R [reps out_file]
#
# Defaults: 1000 replicates, written to inst/extdata/sbc-t.rds (about 15
# minutes of CPU time).
#
# Each replicate draws parameters from the prior (internal scale: the prior
# of sbc-gating.R, moe_prior(s_w = 1.5, V_a = 4, c0 = 3, C0 = 1), and the
# default Gamma(2, 0.1) prior of the degrees of freedom truncated to [0.1,
# 1e4]), simulates a data set (x ~ N(0, 1), experts and gating on (1, x),
# y = x' a_k + sigma_k t_{nu_k}), runs one chain of the C sampler
# (gibbs_chain_c(), iter = 2000, warmup = 1000) from a separate prior draw
# and records the rank of each label-invariant functional of the truth among
# the draws after warm-up: the predictive location at x = 0.5 (pm), the log
# of the smallest squared scale (ls), the largest gating probability at
# x = 0.5 (gmax), the mean log degrees of freedom of the experts (ldf), the
# smallest log degrees of freedom (ldf_min) and the total log-likelihood
# of the data (ll). Thinning and tests as in sbc-gating.R: the main check
# thins each chain to its effective sample size (L = the smallest bulk ESS
# of the functionals, at most 100), ranks put on [0, 1] as (rank + U) / (L
# + 1); a chi-square test over 20 bins and an exact two-sided test of the
# number of extreme ranks (0 or L). "fixed" thins every 10th draw (L = 100).
# A chain is frozen when its gating coefficients, or the degrees of freedom
# of an expert, never change after warm-up.
library(bayesmoe)
args <- commandArgs(TRUE)
reps <- if (length(args) >= 1L) as.integer(args[1L]) else 1000L
out_file <- if (length(args) >= 2L) args[2L] else file.path("inst", "extdata", "sbc-t.rds")
t_start <- proc.time()
ns <- asNamespace("bayesmoe")
K <- 2L
n <- 100L
warmup <- 1000L
iter <- 1000L
thin <- 10L
L <- iter %/% thin
ctl <- moe_mcmc_control()
prior <- moe_prior(s_w = 1.5, V_a = 4, c0 = 3, C0 = 1)
pc <- ns$prior_internal(prior, 2L, 2L)
family <- student_t()
expert <- ns$make_expert_student_t(family, expert_linear(), NULL)
gate <- gate_softmax()
spec <- ns$make_spec(gate, expert)
mode <- ns$chain_gate_mode(spec, ns$gate_mode(ctl))
blocks <- ns$variant_blocks(spec, K, mode[1L])
# the expert generics dispatch on methods of the namespace: call them there
in_ns <- function(f, ...) eval(as.call(list(as.name(f), ...)), ns)
nbg <- length(blocks) - length(in_ns("expert_accept_names", expert, K))
xstate0 <- in_ns("expert_state_init", expert, K)
accept_scale <- in_ns("expert_accept_scale", expert)

functionals <- function(alpha, sigma2, W, x0) {
  A <- array(alpha, c(3L, K, length(alpha) / (3L * K)))
  S <- dim(A)[3L]
  eta <- matrix(drop(x0 %*% matrix(W, 2L)), K)
  g <- exp(eta - rep(apply(eta, 2L, max), each = K))
  g <- g / rep(colSums(g), each = K)
  mu <- matrix(x0[1L] * A[1L, , ] + x0[2L] * A[2L, , ], K, S)
  ldf <- matrix(log(A[3L, , ]), K, S)
  cbind(pm = colSums(g * mu), ls = log(apply(matrix(sigma2, K), 2L, min)),
        gmax = apply(g, 2L, max), ldf = colMeans(ldf), ldf_min = apply(ldf, 2L, min))
}

one_rep <- function() {
  th <- ns$t_complete_draw(ns$prior_draw_spec(pc, K, spec), pc, K)
  x <- rnorm(n)
  X <- cbind(1, x)
  g <- exp(ns$log_softmax_rows(X %*% th$W))
  k <- 1L + rowSums(runif(n) > t(apply(g, 1L, cumsum))[, -K, drop = FALSE])
  y <- rowSums(X * t(th$alpha[1:2, k])) + sqrt(th$sigma2[k]) * rt(n, th$alpha[3L, k])
  s <- list(y = y, X = X, Z = X, w = rep(1, n))
  init <- ns$t_complete_draw(ns$prior_draw_spec(pc, K, spec), pc, K)
  cc <- ns$mcmc_control_c(warmup, iter, 1L, 0L, 0L, 1L, mode)
  res <- ns$gibbs_chain_c(s, pc, K, init, gate, expert, numeric(),
                          xstate0, cc, nbg)
  S <- length(res$loglik)
  x0 <- c(1, 0.5)
  f <- cbind(functionals(res$alpha, res$sigma2, res$W, x0), ll = res$loglik)
  ft <- c(functionals(th$alpha, th$sigma2, th$W, x0),
          ll = sum(ns$moe_log_density(th, X, X, y)))
  fixed <- seq(thin, S, by = thin)
  ess <- apply(f, 2L, function(v) ns$diag_ess_bulk(v))
  Le <- max(1L, min(L, floor(min(ess))), na.rm = TRUE)
  if (!is.finite(Le)) Le <- 1L
  keep <- round(seq(S / Le, S, length.out = Le))
  re <- colSums(f[keep, , drop = FALSE] < rep(ft, each = Le))
  Wd <- matrix(res$W, ncol = S)
  Ad <- array(res$alpha, c(3L, K, S))
  df_frozen <- any(apply(Ad[3L, , , drop = FALSE], 2L, function(v) all(v == v[1L])))
  acc <- res$accept
  c(colSums(f[fixed, , drop = FALSE] < rep(ft, each = length(fixed))),
    setNames(re, paste0("ess_", names(re))), L_ess = Le,
    frozen = as.integer(all(Wd == Wd[, 1L]) || df_frozen),
    accept_df = mean(acc[nbg + seq_len(K)]) / (iter * accept_scale))
}

# pbinom_test(), rank_tests(): the rank tests of the SBC scripts (run from
# the package root)
source(file.path("inst", "scripts", "sbc-tests.R"))

set.seed(20261207)
out <- t(replicate(reps, one_rep()))
fn <- c("pm", "ls", "gmax", "ldf", "ldf_min", "ll")
r <- out[, fn]
re <- out[, paste0("ess_", fn)]
colnames(re) <- fn
tests <- rank_tests(re, out[, "L_ess"])
tests_fixed <- rank_tests(r, rep(L, reps))
sbc <- list(n = n, K = K, reps = reps, ranks = r, ranks_ess = re, L_ess = out[, "L_ess"],
            tests = tests, tests_fixed = tests_fixed, frozen = sum(out[, "frozen"]),
            accept_df = out[, "accept_df"], L = L, warmup = warmup, iter = iter,
            thin = thin, gate_mode = mode, prior = unclass(prior),
            meta = list(date = format(Sys.time(), "%Y-%m-%d %H:%M %Z"),
                        bayesmoe = as.character(utils::packageVersion("bayesmoe")),
                        R = R.version.string,
                        cpu = sum((proc.time() - t_start)[c("user.self", "sys.self")])))
dir.create(dirname(out_file), showWarnings = FALSE, recursive = TRUE)
saveRDS(sbc, out_file, version = 2)
print(round(tests, 4))
print(round(tests_fixed, 4))
message(sprintf("K = %d, n = %d, %d replicates: ESS thinning (median L %.0f) min chisq p %.3g, min extreme p %.3g; thin 10: %.3g, %.3g; frozen %d; df acceptance median %.2f; %.0f s CPU; written %s",
                K, n, reps, stats::median(out[, "L_ess"]), min(tests[, "chisq_p"]),
                min(tests[, "extreme_p"]), min(tests_fixed[, "chisq_p"]),
                min(tests_fixed[, "extreme_p"]), sbc$frozen, stats::median(out[, "accept_df"]),
                sbc$meta$cpu, out_file))
