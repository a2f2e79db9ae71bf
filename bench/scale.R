# Scale of the Gibbs sampler (softmax gate, linear Gaussian experts, the
# default collapsed gating update): the sweep against the log-likelihood
# pass for every width, threads inside a chain, peak memory and the time of
# a million-observation fit. Writes bench/results/scale.md.
#
# Run from the package root after installing bayesmoe (`make bench` does):
#   Rscript bench/scale.R
# Each measurement runs in its own R process (Rscript), so the peak memory
# of the large fit is that fit's alone (VmHWM of /proc/self/status: Linux).
# Settings (environment variables):
#   BAYESMOE_BENCH_QUICK=true   a small grid, one pair of thread runs and 100
#                               sweeps at n = 1e6 (the time of 1000 sweeps is
#                               then extrapolated and labelled so);
#   BENCH_SCALE_GRID=full       every d = 1..10 and K = 2..10 (90 cells);
#   BENCH_SCALE_N               observations of the grid (default 10000);
#   BENCH_PAIRS                 pairs of thread runs (default 3);
#   BENCH_SCALE_BIG_ITER        sweeps of the n = 1e6 fit (default 1000);
#   BENCH_SCALE_BIG_THREADS     its threads (default 2).
#
# Measured:
# - grid: the log-likelihood pass (ffi_loglik, the cost floor) and the sweep
#   (fit$timing, the chain alone, CPU seconds) in ns per observation per
#   expert, for d covariates in both the experts and the gate (p = q = d + 1,
#   intercepts included) and K experts;
# - the information subsample: the sweep at n = 200,000 with
#   moe_mcmc_control(info_obs = Inf) and with the default (50,000), and the
#   gating acceptance of both;
# - threads: wall seconds of one chain (n = 200,000, K = 3, two covariates;
#   and K = 5, three covariates) with threads = 1 and 2, run in turn in
#   pairs; the speed-up is the ratio per pair;
# - the large fit: moe_mcmc(y ~ x1 + x2 + x3, K = 5, chains = 1,
#   iter = 1000, warmup = 200) on n = 1e6 observations with the default
#   warm start, its wall time split into the warm start and the chain, and
#   the peak resident memory of the process against the size of the data;
#   the same with moe_mcmc_control(gate_steps = 1) and with pg_every = Inf
#   (the cost of the scheduled Polya-Gamma draws), and the effective sample
#   size per CPU second of gate_steps = 2 and 1, three chains each at
#   n = 2,000 and n = 200,000 (needs coda; skipped when quick);
# - the step gate (bench/lib/step.R, n = 1e6): the default moe_em() (time,
#   the separation warning) and moe_mcmc(chains = 1, iter = 1000) on 2
#   threads (wall time, gating acceptance, peak memory); skipped when quick;
# - the warm start: the tables of bench/warmstart.R (before and after the
#   short-runs strategy), read from bench/results/warmstart.rds (`make bench`
#   runs bench/warmstart.R first).

quick <- identical(Sys.getenv("BAYESMOE_BENCH_QUICK"), "true")
rscript <- file.path(R.home("bin"), "Rscript")

# Run `fun(...)` in a fresh R process; returns its value.
in_child <- function(fun, args = list()) {
  script <- tempfile(fileext = ".R")
  out <- tempfile(fileext = ".rds")
  writeLines(c(paste("fun <-", paste(deparse(fun), collapse = "\n")),
               sprintf("args <- readRDS(%s)", deparse(inp <- tempfile(fileext = ".rds"))),
               sprintf("saveRDS(do.call(fun, args), %s)", deparse(out))), script)
  saveRDS(args, inp)
  status <- system2(rscript, script, stdout = FALSE, stderr = FALSE)
  if (status != 0L || !file.exists(out)) stop("child process failed: ", script)
  readRDS(out)
}

# Simulated softmax-gated linear-Gaussian data: d covariates (standard
# normal), K experts, gate and experts on all of them.
sim_data <- function(n, d, K, seed) {
  set.seed(seed)
  X <- cbind(1, matrix(rnorm(n * d), n, d))
  W <- cbind(matrix(rnorm((d + 1) * (K - 1)), d + 1, K - 1), 0)
  eta <- X %*% W
  P <- exp(eta - apply(eta, 1, max))
  P <- P / rowSums(P)
  z <- pmin(K, 1L + rowSums(runif(n) > P %*% upper.tri(diag(K), diag = TRUE)))
  A <- matrix(rnorm((d + 1) * K, sd = 2), d + 1, K)
  y <- rowSums(X * t(A[, z])) + rnorm(n, sd = 0.5)
  list(y = (y - mean(y)) / sd(y), X = X)
}

# ---- the grid ----

grid_worker <- function(cells, n, iter, sim_data) {
  library(bayesmoe)
  cpu <- function(expr) {
    t0 <- proc.time()
    force(expr)
    sum((proc.time() - t0)[1:2])
  }
  res <- NULL
  for (r in seq_len(nrow(cells))) {
    d <- cells$d[r]
    K <- cells$K[r]
    s <- sim_data(n, d, K, 100 * d + K)
    X <- s$X
    y <- s$y
    em <- suppressWarnings(moe_em_fit(y, X, X, K = K, starts = 1,
                                      control = moe_em_control(maxit = 30)))
    par <- em$par
    w <- rep(1, n)
    # proc.time() counts CPU time in clock ticks (10 ms on Linux), too coarse
    # for 40 passes or 80 sweeps of a small model at this n: repeat until
    # the measurement takes at least half a second (pass) or a second (chain)
    reps <- 40
    repeat {
      ll <- cpu(for (i in seq_len(reps))
        .Call(bayesmoe:::ffi_loglik, y, X, X, w, par$alpha, par$sigma2, par$W))
      if (ll >= 0.5 || reps >= 40960) break
      reps <- reps * 4
    }
    it <- iter
    repeat {
      f <- suppressWarnings(moe_mcmc_fit(
        y, X, X, K = K, chains = 1, iter = it, warmup = it %/% 4, seed = 1,
        control = moe_mcmc_control(em_starts = 1, em_control = moe_em_control(maxit = 30))))
      if (f$timing >= 1 || it >= 20 * iter) break
      it <- it * 4
    }
    ns <- function(sec, k) 1e9 * sec / (k * n * K)
    res <- rbind(res, data.frame(d = d, K = K, pass = ns(ll, reps), sweep = ns(f$timing, it),
                                 reps = reps, sweeps = it))
  }
  res
}

n_grid <- as.integer(Sys.getenv("BENCH_SCALE_N", "10000"))
cells <- if (identical(Sys.getenv("BENCH_SCALE_GRID"), "full")) {
  expand.grid(d = 1:10, K = 2:10)
} else if (quick) {
  expand.grid(d = c(1, 3, 10), K = c(2, 5, 10))
} else {
  expand.grid(d = c(1, 2, 3, 5, 7, 10), K = c(2, 3, 5, 7, 10))
}
message("grid: ", nrow(cells), " cells, n = ", n_grid)
grid <- in_child(grid_worker, list(cells = cells, n = n_grid, iter = if (quick) 40 else 80,
                                   sim_data = sim_data))
grid$ratio <- grid$sweep / grid$pass

# ---- the information of the proposals from a subsample (info_obs) ----

# n = 200,000 > info_obs (default 50,000): the information from every 4th
# observation against that of every observation (info_obs = Inf), one chain
# each, in separate processes; the pass as in the grid
info_worker <- function(cells, n, iter, sim_data) {
  library(bayesmoe)
  res <- NULL
  for (r in seq_len(nrow(cells))) {
    d <- cells$d[r]
    K <- cells$K[r]
    s <- sim_data(n, d, K, 200 + 10 * d + K)
    em <- suppressWarnings(moe_em_fit(s$y, s$X, s$X, K = K, starts = 1,
                                      control = moe_em_control(maxit = 30)))
    par <- em$par
    w <- rep(1, n)
    t0 <- proc.time()
    for (i in 1:10) .Call(bayesmoe:::ffi_loglik, s$y, s$X, s$X, w, par$alpha, par$sigma2, par$W)
    pass <- sum((proc.time() - t0)[1:2]) / 10
    for (io in c(Inf, 50000)) {
      f <- suppressWarnings(moe_mcmc_fit(
        s$y, s$X, s$X, K = K, chains = 1, iter = iter, warmup = iter %/% 4, seed = 1,
        control = moe_mcmc_control(em_starts = 1, em_control = moe_em_control(maxit = 30),
                                   info_obs = io)))
      mv <- f$gating_moves[1L, ]
      res <- rbind(res, data.frame(d = d, K = K, info_obs = io, pass = 1e9 * pass / (n * K),
                                   sweep = 1e9 * f$timing / (iter * n * K),
                                   acc = mv[["accepted"]] / mv[["proposed"]]))
    }
  }
  res
}
info_cells <- if (quick) data.frame(d = 3, K = 5) else
  data.frame(d = c(1, 3, 5, 10), K = c(2, 5, 5, 10))
info <- in_child(info_worker, list(cells = info_cells, n = 200000, iter = if (quick) 40 else 80,
                                   sim_data = sim_data))
info$ratio <- info$sweep / info$pass

# ---- threads ----

thread_worker <- function(n, d, K, iter, threads, sim_data) {
  library(bayesmoe)
  s <- sim_data(n, d, K, 7)
  t0 <- proc.time()
  f <- suppressWarnings(moe_mcmc_fit(
    s$y, s$X, s$X, K = K, chains = 1, iter = iter, warmup = iter %/% 5, seed = 1,
    control = moe_mcmc_control(em_starts = 1, em_control = moe_em_control(maxit = 5),
                               threads = threads)))
  c(wall = (proc.time() - t0)[["elapsed"]], cpu_chain = f$timing)
}
pairs <- if (quick) 1L else as.integer(Sys.getenv("BENCH_PAIRS", "3"))
thr <- NULL
for (cfg in list(c(d = 2, K = 3), c(d = 3, K = 5))) {
  for (r in seq_len(pairs)) {
    a <- in_child(thread_worker, list(n = 200000, d = cfg[["d"]], K = cfg[["K"]],
                                      iter = if (quick) 60 else 200, threads = 1, sim_data = sim_data))
    b <- in_child(thread_worker, list(n = 200000, d = cfg[["d"]], K = cfg[["K"]],
                                      iter = if (quick) 60 else 200, threads = 2, sim_data = sim_data))
    thr <- rbind(thr, data.frame(d = cfg[["d"]], K = cfg[["K"]], pair = r,
                                 wall1 = a[["wall"]], wall2 = b[["wall"]]))
  }
}
thr$speedup <- thr$wall1 / thr$wall2

# ---- n = 1e6: time, split, peak memory ----

big_worker <- function(iter, threads, gate_steps = 2L, pg_every = 20) {
  library(bayesmoe)
  set.seed(1)
  n <- 1e6
  d <- data.frame(x1 = rnorm(n), x2 = rnorm(n), x3 = rnorm(n))
  X <- cbind(1, as.matrix(d))
  W <- cbind(c(0.5, 1, -1, 0.5), c(-0.5, -1, 0.5, 1), c(0, 0.5, 1, -1), c(1, 0, 0, 0.5), 0)
  eta <- X %*% W
  P <- exp(eta - apply(eta, 1, max))
  P <- P / rowSums(P)
  z <- pmin(5L, 1L + rowSums(runif(n) > P %*% upper.tri(diag(5), diag = TRUE)))
  A <- cbind(c(-4, 1, 0, 0), c(-2, 0, 1, 0), c(0, 0, 0, 1), c(2, -1, 0, 0), c(4, 0, -1, 0))
  d$y <- rowSums(X * t(A[, z])) + rnorm(n, sd = 0.5)
  data_mb <- as.numeric(object.size(d)) / 2^20
  hwm <- function() {
    s <- readLines("/proc/self/status")
    as.numeric(gsub("[^0-9]", "", grep("^VmHWM", s, value = TRUE))) / 1024
  }
  before <- hwm()
  t0 <- proc.time()
  f <- moe_mcmc(y ~ x1 + x2 + x3, data = d, K = 5, chains = 1, iter = iter,
                warmup = min(200, iter %/% 5), seed = 1, progress = FALSE,
                control = moe_mcmc_control(threads = threads, gate_steps = gate_steps,
                                           pg_every = pg_every))
  el <- proc.time() - t0
  c(wall = el[["elapsed"]], cpu = sum(el[1:2]), chain_cpu = f$timing, iter = iter,
    pg = sum(f$gating_moves[, c("pg_warmup", "pg")]), acc = f$accept[[1L]],
    data_mb = data_mb, peak_before_mb = before, peak_mb = hwm(),
    fit_mb = as.numeric(object.size(f)) / 2^20)
}
big_iter <- if (quick) 100L else as.integer(Sys.getenv("BENCH_SCALE_BIG_ITER", "1000"))
big_threads <- as.integer(Sys.getenv("BENCH_SCALE_BIG_THREADS", "2"))
big <- in_child(big_worker, list(iter = big_iter, threads = big_threads))
big1 <- in_child(big_worker, list(iter = big_iter, threads = big_threads, gate_steps = 1L))
bignopg <- in_child(big_worker, list(iter = big_iter, threads = big_threads, pg_every = Inf))

# ---- one collapsed step per sweep instead of two: effective sample size ----
# Replicated chains at a small and a large n (d = 3): n = 2,000 with K = 3
# (three data sets, one chain each, 3000 sweeps, 500 warm-up, one thread)
# and n = 200,000 with K = 5 (the subsampled information; one data set,
# three chain seeds, 600 sweeps, 100 warm-up, 2 threads). coda's effective
# sample size of every raw parameter (the EM start fixes the labels at
# these n) per CPU second of the chain.
ess_worker <- function(n, K, data_seed, seed, gate_steps, iter, warmup, threads, sim_data) {
  library(bayesmoe)
  s <- sim_data(n, 3L, K, data_seed)
  f <- suppressWarnings(moe_mcmc_fit(s$y, s$X, s$X, K = K, chains = 1, iter = iter,
                                     warmup = warmup, seed = seed,
                                     control = moe_mcmc_control(threads = threads,
                                                                gate_steps = gate_steps)))
  D <- f$draws[, 1L, ]
  ess <- coda::effectiveSize(coda::mcmc(D))
  gate <- grepl("^gate", colnames(D))
  c(n = n, gate_steps = gate_steps, kept = iter - warmup, chain_cpu = f$timing,
    acc = f$accept[[1L]], gate_min = min(ess[gate]), gate_median = median(ess[gate]),
    all_min = min(ess), all_median = median(ess))
}
ess_runs <- rbind(
  expand.grid(gate_steps = 2:1, data_seed = 1:3, seed = 1L, n = 2000L, K = 3L,
              iter = 3000L, warmup = 500L, threads = 1L),
  expand.grid(gate_steps = 2:1, data_seed = 7L, seed = 1:3, n = 200000L, K = 5L,
              iter = 600L, warmup = 100L, threads = big_threads))
ess <- if (!quick && requireNamespace("coda", quietly = TRUE)) {
  as.data.frame(do.call(rbind, lapply(seq_len(nrow(ess_runs)), function(j)
    in_child(ess_worker, c(as.list(ess_runs[j, ]), list(sim_data = sim_data))))))
}

# ---- the step gate, n = 1e6 ----

step_worker <- function(step_file, iter, threads) {
  library(bayesmoe)
  source(step_file)
  dat <- simulate_step(1e6, 3)
  hwm <- function() {
    s <- readLines("/proc/self/status")
    as.numeric(gsub("[^0-9]", "", grep("^VmHWM", s, value = TRUE))) / 1024
  }
  warns <- character()
  keep <- function(w) {
    warns <<- c(warns, setdiff(class(w), c("bayesmoe_warning", "warning", "condition")))
    invokeRestart("muffleWarning")
  }
  t0 <- proc.time()
  em <- withCallingHandlers(moe_em(y ~ ., data = dat, K = 3, seed = 1), warning = keep)
  te <- proc.time() - t0
  em_warns <- unique(warns)
  warns <- character()
  t0 <- proc.time()
  f <- withCallingHandlers(
    moe_mcmc(y ~ ., data = dat, K = 3, chains = 1, iter = iter, seed = 1, progress = FALSE,
             control = moe_mcmc_control(threads = threads)), warning = keep)
  tm <- proc.time() - t0
  mv <- f$gating_moves[1L, ]
  list(em = c(wall = te[["elapsed"]], cpu = sum(te[1:2]), loglik = as.numeric(logLik(em))),
       em_warnings = paste(em_warns, collapse = ", "),
       em_status = em$starts$status[em$best],
       mcmc = c(wall = tm[["elapsed"]], cpu = sum(tm[1:2]), chain_cpu = f$timing, iter = iter,
                warmup = f$warmup, acc_warm = mv[["accepted_warmup"]] / mv[["proposed_warmup"]],
                acc = mv[["accepted"]] / mv[["proposed"]], pg_warm = mv[["pg_warmup"]],
                pg = mv[["pg"]], peak_mb = hwm()),
       mcmc_warnings = paste(unique(warns), collapse = ", "))
}
bench_dir <- local({
  script <- sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE)[1])
  if (is.na(script)) "bench" else dirname(script)
})
step <- if (!quick) in_child(step_worker, list(step_file = normalizePath(file.path(bench_dir, "lib", "step.R")),
                                               iter = 1000L, threads = big_threads))
ws_file <- file.path(bench_dir, "results", "warmstart.rds")
ws <- if (file.exists(ws_file)) readRDS(ws_file)

# ---- the report ----

f1 <- function(x) sprintf("%.1f", x)
f2 <- function(x) sprintf("%.2f", x)
md_table <- function(df) {
  c(paste0("| ", paste(names(df), collapse = " | "), " |"),
    paste0("|", paste(rep("---", ncol(df)), collapse = "|"), "|"),
    apply(df, 1L, function(r) paste0("| ", paste(r, collapse = " | "), " |")))
}
gt <- data.frame(d = grid$d, K = grid$K, pass = f1(grid$pass), sweep = f1(grid$sweep),
                 "sweep / pass" = f2(grid$ratio), "pass calls" = grid$reps,
                 sweeps = grid$sweeps, check.names = FALSE)
wide <- reshape(data.frame(d = grid$d, K = grid$K, r = f2(grid$ratio)), idvar = "d",
                timevar = "K", direction = "wide")
names(wide) <- c("d \\ K", sub("^r\\.", "K = ", names(wide)[-1L]))
med <- aggregate(speedup ~ d + K, thr, median)
rng <- aggregate(speedup ~ d + K, thr, function(x) sprintf("%.2f-%.2f", min(x), max(x)))
w1 <- aggregate(wall1 ~ d + K, thr, median)
w2 <- aggregate(wall2 ~ d + K, thr, median)
tt <- data.frame(d = med$d, K = med$K, "wall, 1 thread (s)" = f1(w1$wall1),
                 "wall, 2 threads (s)" = f1(w2$wall2), "speed-up (median)" = f2(med$speedup),
                 "min-max" = rng$speedup, check.names = FALSE)
per_sweep <- big[["chain_cpu"]] / big[["iter"]]
warm <- big[["cpu"]] - big[["chain_cpu"]] # the warm start (EM) and the set-up, CPU
lines <- c(
  "# Scale: the sweep against the pass, threads, memory, n = 1e6", "",
  sprintf("`Rscript bench/scale.R`%s, %s, R %s, %d cores (`parallel::detectCores()`); load average at the end: %s.",
          if (quick) " (BAYESMOE_BENCH_QUICK=true)" else "", format(Sys.time(), "%Y-%m-%d %H:%M UTC", tz = "UTC"),
          getRversion(), parallel::detectCores(),
          tryCatch(paste(strsplit(readLines("/proc/loadavg"), " ")[[1]][1:3], collapse = " "),
                   error = function(e) "unknown")),
  "",
  "## Sweep against the log-likelihood pass", "",
  sprintf(paste("n = %d, d covariates in the experts and the gate (p = q = d + 1), K experts,",
                "default collapsed gating update (2 Metropolis-Hastings steps). CPU ns per",
                "observation per expert: the pass (`ffi_loglik`, %d to %d calls, at least half",
                "a second) and the sweep (`fit$timing` of one chain of %d to %d sweeps, one",
                "thread, at least a second where %d sweeps do)."), n_grid, min(grid$reps),
          max(grid$reps), min(grid$sweeps), max(grid$sweeps), max(grid$sweeps)), "",
  "Sweep / pass:", "", md_table(wide), "", md_table(gt), "",
  sprintf("Within 2x of the pass: %s of %d cells (%s).", sum(grid$ratio <= 2), nrow(grid),
          if (any(grid$ratio <= 2)) paste(sprintf("d = %d, K = %d", grid$d[grid$ratio <= 2],
                                                  grid$K[grid$ratio <= 2]), collapse = "; ")
          else "none"), "",
  paste("Why not every cell: a sweep of the default collapsed gating update makes five passes",
        "over the data (the pass at the current gate, which also gives the Newton proposal;",
        "one per Metropolis-Hastings step, two by default; the allocation pass; the proposal",
        "of the refresh given the allocations), each with the exponentials of the gate or the",
        "experts, so even at the cost of the log-likelihood pass per pass a sweep would cost",
        "about five passes. Each pass also accumulates the exact gating information, the",
        "K (K - 1) / 2 blocks of q (q + 1) / 2 entries per observation, which the Newton",
        "proposals and their reverse densities need: (K - 1) q (q + 1) / 4 multiply-adds per",
        "observation per expert and pass against about p + 1 and one exp() in the",
        "log-likelihood pass, so the ratio grows with the width (7.5 at d = 1, K = 2;",
        "1,485 at d = 10, K = 10). The sized and blocked kernels keep every sum in the same",
        "order, so they do not change the draws. On data sets larger than `info_obs`",
        "(default 50,000; the grid's n is below it) the information is summed over a fixed",
        "subsample instead, which removes most of that cost (next section)."), "",
  "## The information of the proposals from a subsample", "",
  paste("n = 200,000, one chain, one thread: `moe_mcmc_control(info_obs = Inf)` (the",
        "gating information of every observation, the draws of the grid above) against the",
        "default `info_obs = 50000` (the information of every 4th observation, scaled; the",
        "target, its gradient and the allocations still take every observation, and the",
        "Metropolis-Hastings steps stay exact). CPU ns per observation per expert;",
        "acceptance: the gating moves after warm-up accepted / proposed."), "",
  md_table(data.frame(d = info$d, K = info$K,
                      info_obs = ifelse(is.infinite(info$info_obs), "Inf", "50000"),
                      pass = f1(info$pass), sweep = f1(info$sweep),
                      "sweep / pass" = f2(info$ratio), acceptance = f2(info$acc),
                      check.names = FALSE)), "",
  "## Threads inside a chain", "",
  paste("One chain, n = 200,000, `moe_mcmc_control(threads = 1)` against `threads = 2`,",
        "run in turn in separate processes; wall seconds of `moe_mcmc_fit()` (a 5-iteration",
        "EM start included); speed-up = wall(1) / wall(2) per pair. The draws are identical."), "",
  md_table(tt), "",
  "## n = 1e6, K = 5, 3 covariates", "",
  sprintf(paste("`moe_mcmc(y ~ x1 + x2 + x3, K = 5, chains = 1, iter = %d, warmup = %d,",
                "control = moe_mcmc_control(threads = %d))`, default warm start (EM, 10 starts)."),
          big_iter, min(200L, big_iter %/% 5L), big_threads), "",
  md_table(data.frame(
    what = c("wall, whole call (s)", "CPU, whole call (s)", "CPU of the chain (s)",
             "CPU per sweep (s)",
             "ns per observation per expert per sweep (CPU)",
             if (big_iter < 1000) "1000 sweeps, extrapolated CPU of the chain (s)",
             "warm start and set-up, CPU (s, whole call minus the chain)",
             "sweeps with a Polya-Gamma draw", "gating acceptance after warm-up",
             "data frame (MB)", "peak resident memory of the process (MB)",
             "peak before the call (MB)", "the fit object (MB)"),
    value = c(f1(big[["wall"]]), f1(big[["cpu"]]), f1(big[["chain_cpu"]]), f2(per_sweep),
              f1(1e9 * per_sweep / (1e6 * 5)),
              if (big_iter < 1000) f1(1000 * per_sweep),
              f1(warm), sprintf("%d", as.integer(big[["pg"]])), f2(big[["acc"]]),
              f1(big[["data_mb"]]), f1(big[["peak_mb"]]),
              f1(big[["peak_before_mb"]]), f1(big[["fit_mb"]])))), "",
  paste(sprintf("The target of 120 s wall for 1000 sweeps is %s.",
                if (big_iter < 1000) "not measured by this run" else
                if (big[["wall"]] <= 120) "met" else "not met"),
        "A sweep makes five passes over the data (see the first section), here about",
        sprintf("%.0f ms of CPU each (a fifth of the CPU per sweep),", 1e3 * per_sweep / 5),
        "and every 20th sweep after warm-up adds the Polya-Gamma draw of the four gating",
        "vectors (4e6 draws, by chunks on the threads). The passes take two observations",
        "at a time in the lanes of a 128-bit vector (`src/moe_v2.h`, the same bits as one",
        "at a time); about half of their time is the exp() of the expert densities and of",
        "the gates, the rest the normalisations (two divisions per observation) and the sums",
        "in observation order (perf, n = 1e6). The memory a pass streams (about 170 MB)",
        "takes under 10 ms at the bandwidth two threads reach on this machine. Fewer passes",
        "per sweep is the lever left; one Metropolis-Hastings step per sweep instead of two",
        "(`gate_steps = 1`, four passes) gives the second row below; the third is the default",
        "without the scheduled Polya-Gamma draws (`pg_every = Inf`, for studying the sampler",
        "only: the chain is then not guaranteed to move), the cost of those draws:"), "",
  md_table(data.frame(
    gate_steps = c(2L, 1L, 2L), pg_every = c("20", "20", "Inf"),
    "wall, whole call (s)" = f1(c(big[["wall"]], big1[["wall"]], bignopg[["wall"]])),
    "CPU of the chain (s)" = f1(c(big[["chain_cpu"]], big1[["chain_cpu"]],
                                  bignopg[["chain_cpu"]])),
    "gating acceptance" = f2(c(big[["acc"]], big1[["acc"]], bignopg[["acc"]])),
    check.names = FALSE)), "",
  if (!is.null(ess)) {
    ess$gate_rate <- ess$gate_min / ess$chain_cpu
    ess$all_rate <- ess$all_min / ess$chain_cpu
    by_set <- split(ess, list(factor(ess$gate_steps, levels = 2:1), ess$n), drop = TRUE)
    tab <- do.call(rbind, lapply(by_set, function(e) data.frame(
      n = format(e$n[1L], big.mark = ",", scientific = FALSE),
      gate_steps = as.integer(e$gate_steps[1L]), chains = nrow(e),
      "kept draws" = as.integer(e$kept[1L]),
      "CPU of the chain (s)" = f1(mean(e$chain_cpu)), acceptance = f2(mean(e$acc)),
      "ESS gate, min / median" = sprintf("%.0f / %.0f", mean(e$gate_min), mean(e$gate_median)),
      "ESS all, min / median" = sprintf("%.0f / %.0f", mean(e$all_min), mean(e$all_median)),
      "min ESS per CPU s, gate / all" = sprintf("%.2f / %.2f", mean(e$gate_rate),
                                                 mean(e$all_rate)),
      check.names = FALSE)))
    ratio <- function(nn, what) {
      e <- ess[ess$n == nn, ]
      mean(e[[what]][e$gate_steps == 1]) / mean(e[[what]][e$gate_steps == 2])
    }
    c(paste("Mixing per CPU second, replicated: three chains of each setting (n = 2,000,",
            "K = 3, d = 3: three data sets, 3000 sweeps with 500 warm-up, one thread;",
            "n = 200,000, K = 5, d = 3: one data set, three seeds, 600 sweeps with 100",
            "warm-up, 2 threads); coda's effective sample size of every raw parameter, the",
            "means over the chains. One step against two, the smallest effective sample size",
            sprintf("per CPU second: %.2fx (n = 2,000) and %.2fx (n = 200,000) over all",
                    ratio(2000, "all_rate"), ratio(200000, "all_rate")),
            sprintf("parameters, %.2fx and %.2fx over the gating coefficients.",
                    ratio(2000, "gate_rate"), ratio(200000, "gate_rate")),
            "Per sweep one step mixes less (a second step is a second chance to move where",
            "the acceptance is low); where it is near 1 a second step draws again from",
            "nearly the same conditional of the gating given the experts. Two steps remain",
            "the default because the validation studies shipped in `inst/extdata` (the",
            "simulation-based calibration of the gating update, the contraction and",
            "choosing-K studies) were made with it; `gate_steps = 1` is a documented option."),
      "", md_table(tab), "")
  },
  if (!is.null(step)) c(
    "## The step gate, n = 1e6", "",
    paste("The data of `bench/lib/step.R` (3 covariates, y on one line when x1 > 0.5 and on",
          "another otherwise: no finite maximum-likelihood gate). `moe_em(y ~ ., K = 3)` with its",
          sprintf("defaults, then `moe_mcmc(y ~ ., K = 3, chains = 1, iter = 1000` (%d warm-up),",
                  step$mcmc[["warmup"]]),
          sprintf("`threads = %d)`, default warm start included. Gating acceptance: the", big_threads),
          "Metropolis-Hastings moves accepted / proposed; PG: sweeps with a Polya-Gamma draw."), "",
    md_table(data.frame(
      what = c("moe_em(): wall (s)", "moe_em(): CPU (s)", "moe_em(): log-likelihood",
               "moe_em(): status of the best start", "moe_em(): warnings",
               "moe_mcmc(): wall, whole call (s)", "moe_mcmc(): CPU, whole call (s)",
               "moe_mcmc(): CPU of the chain (s)", "gating acceptance, warm-up / sampling",
               "PG sweeps, warm-up / sampling", "peak resident memory (MB)",
               "moe_mcmc(): warnings"),
      value = c(f1(step$em[["wall"]]), f1(step$em[["cpu"]]), sprintf("%.2f", step$em[["loglik"]]),
                step$em_status, step$em_warnings, f1(step$mcmc[["wall"]]),
                f1(step$mcmc[["cpu"]]), f1(step$mcmc[["chain_cpu"]]),
                sprintf("%.2f / %.2f", step$mcmc[["acc_warm"]], step$mcmc[["acc"]]),
                sprintf("%d / %d", as.integer(step$mcmc[["pg_warm"]]), as.integer(step$mcmc[["pg"]])),
                f1(step$mcmc[["peak_mb"]]),
                if (nzchar(step$mcmc_warnings)) step$mcmc_warnings else "none"))), ""),
  "## Warm start", "",
  if (is.null(ws)) "Run `Rscript bench/warmstart.R` first (`make bench` does) for this section." else c(
    sprintf(paste("From `bench/warmstart.R` (%s, load average %s%s; the problems are described",
                  "there and in bench/results/warmstart.md). `old`: every EM start to",
                  "convergence on all the data, no separation stop; `new`: the default short",
                  "runs. CPU seconds of `moe_em(..., starts = 10)`."),
            ws$date, ws$load, if (isTRUE(ws$quick)) "; quick run" else ""), "",
    md_table(data.frame(problem = ws$em$problem, n = format(ws$em$n, big.mark = ","),
                        K = ws$em$K, fit = ws$em$fit, "CPU (s)" = f2(ws$em$cpu_s),
                        loglik = sprintf("%.2f", ws$em$loglik), status = ws$em$status,
                        check.names = FALSE)), ""))
print(gt, row.names = FALSE)
print(tt, row.names = FALSE)
print(info, row.names = FALSE)
print(big)
print(big1)
print(ess)
if (!is.null(step)) str(step)
dir.create("bench/results", showWarnings = FALSE, recursive = TRUE)
writeLines(lines, "bench/results/scale.md")
