# Cost of the EM iteration and the Gibbs sweep of the engine, in nanoseconds
# per observation per expert, against one log-likelihood pass in C (the cost
# floor), and the same for a second build side by side (before / after a
# change of the engine).
#
# Run from the package root after installing bayesmoe (`make bench` does):
#   Rscript bench/engine.R
# Compare two builds installed in two libraries, measured in turn (A B A B
# ...) in separate R processes, with the ratios per pair:
#   BENCH_LIB_BEFORE=/path/lib-old BENCH_LIB_AFTER=/path/lib-new Rscript bench/engine.R
# Writes bench/results/engine.md. BAYESMOE_BENCH_QUICK=true: one pair.
#
# Problem: n = 20,000, two covariates, K = 3 well-separated experts with
# softmax gating on the same covariates (the EM benchmark's problem (a)).
# Measured (CPU time, user + sys):
#  - the log-likelihood pass (ffi_loglik) at the EM estimate, 200 calls;
#  - EM: one start, at most 200 iterations (tol 1e-300), per iteration made;
#  - Gibbs: one chain, 500 warm-up + 1000 sweeps from the EM estimate, for
#    the default collapsed update and the Polya-Gamma update (fit$timing,
#    the chain alone);
#  - the generic kernels: EM with gate_topk(2) (at most 60 iterations) and a chain
#    with gate_hierarchical(c(1, 1, 2)) (300 + 300 sweeps).

worker <- function() {
  library(bayesmoe)
  set.seed(1)
  n <- 20000
  K <- 3
  x <- matrix(rnorm(n * 2), n, 2)
  X <- cbind("(Intercept)" = 1, x1 = x[, 1], x2 = x[, 2])
  W <- cbind(c(0.5, 2, -1), c(-0.5, -1, 2), 0)
  eta <- X %*% W
  g <- exp(eta - apply(eta, 1, max))
  z <- apply(g, 1, function(p) sample.int(K, 1L, prob = p))
  A <- cbind(c(-3, 1, 0), c(0, -1, 1), c(3, 0.5, -0.5))
  y <- rowSums(X * t(A[, z])) + rnorm(n, sd = 0.5)
  y <- (y - mean(y)) / sd(y)
  cpu <- function(expr) {
    t0 <- proc.time()
    force(expr)
    sum((proc.time() - t0)[1:2])
  }
  ns <- function(sec, reps) 1e9 * sec / (reps * n * K)
  # per iteration actually made: an EM run stops before maxit when its
  # objective stops changing at all
  em_time <- cpu(em <- suppressWarnings(
    moe_em_fit(y, X, X, K = K, starts = 1,
               control = moe_em_control(tol = 1e-300, maxit = 200))))
  par <- em$par
  ll_time <- cpu(for (r in 1:200)
    .Call(bayesmoe:::ffi_loglik, y, X, X, rep(1, n), par$alpha, par$sigma2, par$W))
  `%||%` <- function(a, b) if (is.null(a)) b else a
  chain <- function(mode, gate = gate_softmax(), warmup = 500, iter = 1500) {
    f <- suppressWarnings(moe_mcmc_fit(
      y, X, X, K = K, chains = 1, iter = iter, warmup = warmup, seed = 1, gate = gate,
      control = moe_mcmc_control(em_starts = 1, gate_update = mode,
                                 em_control = moe_em_control(maxit = 50))))
    ns(sum(f$res$timing %||% f$timing), iter)
  }
  topk_time <- cpu(tk <- suppressWarnings(
    moe_em_fit(y, X, X, K = K, starts = 1, gate = gate_topk(2),
               control = moe_em_control(tol = 1e-300, maxit = 60))))
  c(pass = ns(ll_time, 200), em_iter = ns(em_time, em$iter),
    sweep_collapsed = chain("collapsed"), sweep_pg = chain("pg"),
    em_iter_topk = ns(topk_time, tk$iter),
    sweep_hier = chain("pg+mh", gate_hierarchical(c(1, 1, 2)), 300, 600))
}

run_worker <- function(lib) {
  code <- paste(deparse(worker), collapse = "\n")
  script <- tempfile(fileext = ".R")
  writeLines(c(if (nzchar(lib)) sprintf(".libPaths(c(%s, .libPaths()))", deparse(lib)),
               paste("worker <-", code), "v <- worker()",
               "cat(paste(sprintf('%s=%.6g', names(v), v), collapse = ' '), '\\n')"),
             script)
  out <- system2(file.path(R.home("bin"), "Rscript"), script, stdout = TRUE, stderr = FALSE)
  kv <- strsplit(strsplit(trimws(tail(out, 1L)), " ")[[1L]], "=")
  setNames(as.numeric(vapply(kv, `[`, "", 2L)), vapply(kv, `[`, "", 1L))
}

quick <- identical(Sys.getenv("BAYESMOE_BENCH_QUICK"), "true")
before <- Sys.getenv("BENCH_LIB_BEFORE")
after <- Sys.getenv("BENCH_LIB_AFTER")
pairs <- if (quick) 1L else as.integer(Sys.getenv("BENCH_PAIRS", "5"))
rows_a <- rows_b <- list()
for (r in seq_len(pairs)) {
  rows_a[[r]] <- run_worker(after)
  if (nzchar(before)) rows_b[[r]] <- run_worker(before)
}
A <- do.call(rbind, rows_a)
med <- function(M) apply(M, 2L, median)
lab <- c(pass = "log-likelihood pass (the floor)", em_iter = "EM iteration (fused kernel)",
         sweep_collapsed = "Gibbs sweep, collapsed (default)", sweep_pg = "Gibbs sweep, Polya-Gamma",
         em_iter_topk = "EM iteration, top-2 gate (generic kernel)",
         sweep_hier = "Gibbs sweep, hierarchical gate (generic kernel)")
tab <- data.frame(cost = lab[colnames(A)], ns = sprintf("%.1f", med(A)),
                  x_pass = sprintf("%.2f", med(A) / med(A)[["pass"]]))
if (length(rows_b)) {
  B <- do.call(rbind, rows_b)
  ratio <- A / B
  tab$ns_before <- sprintf("%.1f", med(B))
  tab$ratio_after_before <- sprintf("%.3f (%.3f-%.3f)", med(ratio), apply(ratio, 2L, min),
                                    apply(ratio, 2L, max))
}
names(tab)[1:3] <- c("cost", "ns per obs per expert", "x the pass")
print(tab, row.names = FALSE)
lines <- c("# Engine: EM iteration and Gibbs sweep against the log-likelihood pass", "",
           sprintf("`%s`, %s, %d pair%s of runs in turn%s.", "Rscript bench/engine.R",
                   format(Sys.time(), "%Y-%m-%d"), pairs, if (pairs > 1L) "s" else "",
                   if (length(rows_b)) " (after, before)" else ""),
           "Medians over the runs; ratio after / before per pair (median, min-max).", "",
           paste0("| ", paste(names(tab), collapse = " | "), " |"),
           paste0("|", paste(rep("---", ncol(tab)), collapse = "|"), "|"),
           apply(tab, 1L, function(r) paste0("| ", paste(r, collapse = " | "), " |")))
dir.create("bench/results", showWarnings = FALSE, recursive = TRUE)
writeLines(lines, "bench/results/engine.md")
