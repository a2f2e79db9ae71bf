# The EM starts (the default of moe_em() and the warm start of moe_mcmc()):
# time and log-likelihood of the short-runs strategy (the default) against
# every start run to convergence on all the data (the old default), and the
# separation stop on a step gate.
#
# Run from the package root after installing bayesmoe (`make bench` does):
#   Rscript bench/warmstart.R
# Writes bench/results/warmstart.md. Environment: BAYESMOE_BENCH_QUICK=true
# skips the 1e6-row problem; BAYESMOE_BENCH_MCMC=false skips the moe_mcmc()
# runs.
#
# Problems (covariates independent N(0, 1) in (a) and (b), the response
# standardised; the truths of bench/em-vs-flexmix.R):
#   (a) n = 20,000, d = 2 covariates, K = 3 experts;
#   (b) n = 200,000, d = 5 covariates, K = 4 experts;
#   (c) n = 1,000,000, 3 covariates uniform on (0, 1), y on one line when
#       x1 > 0.5 and on another otherwise plus N(0, 0.3^2) noise (a step
#       gate: the maximum-likelihood gating coefficients are infinite), K = 3.
# Fits: moe_em(y ~ ., K, seed = 1) with 10 starts, "new" with the default
# moe_em_control(), "old" with moe_em_control(strategy = "full", sep_bound =
# Inf), the default of earlier versions. The old default on (c) runs for
# more than 25 minutes (every start crawls to the iteration cap), so only
# one of its starts is run there, capped at 200 iterations. Time is CPU
# time (user + sys) of the whole call; `iter` sums the EM iterations on all
# the data over the starts. moe_mcmc(chains = 1) gives its warm start (the
# same EM, em_starts = 10) and chain times from fit$timing on (a); the
# chain on (c) is timed by bench/scale.R, which also reports these tables
# (from bench/results/warmstart.rds; `make bench` runs this script first).

suppressPackageStartupMessages(library(bayesmoe))

quick <- identical(Sys.getenv("BAYESMOE_BENCH_QUICK"), "true")
do_mcmc <- !identical(Sys.getenv("BAYESMOE_BENCH_MCMC"), "false")

truth_a <- list(
  alpha = cbind(c(-3, 1, 0.5), c(0, -1, 1), c(3, 0.5, -1)),
  sigma = c(0.6, 0.5, 0.7),
  W = cbind(c(0, 1.5, -1), c(0.5, -1, 1), 0)
)
truth_b <- list(
  alpha = cbind(c(-4, 1, 0.5, 0, -0.5, 1), c(-1.5, -1, 1, 0.5, 0, 0),
                c(1.5, 0.5, -1, 0, 1, -0.5), c(4, 0, 0.5, -1, 0.5, 0.5)),
  sigma = c(0.6, 0.5, 0.7, 0.5),
  W = cbind(c(0, 1.5, -1, 0.5, 0, 0), c(0.5, -1, 1, 0, 0.5, 0),
            c(0, 0.5, 0.5, -1, 0, 1), 0)
)

simulate_moe <- function(n, truth, seed) {
  set.seed(seed)
  d <- nrow(truth$alpha) - 1L
  x <- matrix(rnorm(n * d), n, d, dimnames = list(NULL, paste0("x", seq_len(d))))
  X1 <- cbind(1, x)
  eta <- X1 %*% truth$W
  g <- exp(eta - apply(eta, 1L, max))
  g <- g / rowSums(g)
  z <- 1L + rowSums(runif(n) > t(apply(g, 1L, cumsum))[, -ncol(g), drop = FALSE])
  y <- rowSums(X1 * t(truth$alpha)[z, ]) + rnorm(n, sd = truth$sigma[z])
  y <- (y - mean(y)) / sqrt(mean((y - mean(y))^2))
  data.frame(y = y, x)
}

script <- sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE)[1])
bench_dir <- if (is.na(script)) "bench" else dirname(script)
source(file.path(bench_dir, "lib", "step.R"))  # simulate_step()

cpu <- function(expr) {
  t <- system.time(expr, gcFirst = FALSE)
  t[["user.self"]] + t[["sys.self"]]
}

old_ctl <- moe_em_control(strategy = "full", sep_bound = Inf)

# One moe_em() fit: CPU time, log-likelihood, EM iterations on all the data,
# status and the classes of the warnings it gave.
em_row <- function(problem, dat, K, label, control, starts = 10) {
  warns <- character()
  t <- cpu(fit <- withCallingHandlers(
    moe_em(y ~ ., data = dat, K = K, starts = starts, seed = 1, control = control),
    warning = function(w) {
      warns <<- c(warns, setdiff(class(w), c("bayesmoe_warning", "warning", "condition")))
      invokeRestart("muffleWarning")
    }))
  data.frame(problem = problem, n = nrow(dat), K = K, fit = label, starts = starts,
             cpu_s = t, loglik = as.numeric(logLik(fit)), iter = sum(fit$starts$iter),
             status = fit$starts$status[fit$best],
             warnings = if (length(warns)) paste(unique(warns), collapse = ", ") else "",
             stringsAsFactors = FALSE)
}

mcmc_row <- function(problem, dat, K, label, em_control, iter, warmup) {
  t <- cpu(fit <- suppressWarnings(moe_mcmc(
    y ~ ., data = dat, K = K, chains = 1, iter = iter, warmup = warmup, seed = 1,
    progress = FALSE, control = moe_mcmc_control(em_control = em_control))))
  chain <- sum(fit$timing)
  data.frame(problem = problem, n = nrow(dat), K = K, fit = label,
             sweeps = iter, cpu_s = t, chain_s = chain, warm_start_s = t - chain,
             em_loglik = fit$em$loglik, stringsAsFactors = FALSE)
}

rows <- list()
mrows <- list()
dat_a <- simulate_moe(20000, truth_a, 1)
rows$a_old <- em_row("a", dat_a, 3, "old (full, no separation stop)", old_ctl)
rows$a_new <- em_row("a", dat_a, 3, "new (default)", moe_em_control())
dat_b <- simulate_moe(200000, truth_b, 2)
rows$b_old <- em_row("b", dat_b, 4, "old (full, no separation stop)", old_ctl)
rows$b_new <- em_row("b", dat_b, 4, "new (default)", moe_em_control())
if (do_mcmc) {
  mrows$a_old <- mcmc_row("a", dat_a, 3, "old warm start", old_ctl, 600, 100)
  mrows$a_new <- mcmc_row("a", dat_a, 3, "new warm start", moe_em_control(), 600, 100)
}
rm(dat_a, dat_b)
if (!quick) {
  dat_c <- simulate_step(1e6, 3)
  rows$c_old1 <- em_row("c", dat_c, 3, "old control, 1 start, maxit = 200",
                        moe_em_control(strategy = "full", sep_bound = Inf, maxit = 200),
                        starts = 1)
  rows$c_new <- em_row("c", dat_c, 3, "new (default)", moe_em_control())
}
tab <- do.call(rbind, rows)
mtab <- if (length(mrows)) do.call(rbind, mrows)
print(tab, row.names = FALSE)
if (!is.null(mtab)) print(mtab, row.names = FALSE)

md_table <- function(df) {
  df[] <- lapply(df, function(col) if (is.numeric(col)) format(col, big.mark = ",",
                                                                 scientific = FALSE, digits = 8,
                                                                 drop0trailing = TRUE) else col)
  c(paste0("| ", paste(names(df), collapse = " | "), " |"),
    paste0("|", paste(rep("---", ncol(df)), collapse = "|"), "|"),
    apply(df, 1L, function(r) paste0("| ", paste(r, collapse = " | "), " |")))
}
fmt <- tab
fmt$cpu_s <- round(fmt$cpu_s, 2)
fmt$loglik <- round(fmt$loglik, 2)
out_dir <- file.path(bench_dir, "results")
dir.create(out_dir, showWarnings = FALSE, recursive = TRUE)
load_avg <- tryCatch(readLines("/proc/loadavg", warn = FALSE)[1], error = function(e) "unknown")
md <- c(
  "# EM starts: short runs on a subsample, separation stop",
  "",
  "Produced by `Rscript bench/warmstart.R` (run by `make bench`); do not edit by hand.",
  "The script documents the problems and the fits.",
  "",
  sprintf("- Date: %s; %s; bayesmoe %s%s.", format(Sys.time(), "%Y-%m-%d %H:%M"),
          R.version.string, packageVersion("bayesmoe"),
          if (quick) "; QUICK run (no 1e6-row problem)" else ""),
  sprintf("- Load average at the end (the machine is shared): %s.", load_avg),
  "",
  "## moe_em(), 10 starts",
  "",
  "`old`: every start to convergence on all the data, no separation stop (the default",
  "of earlier versions, `moe_em_control(strategy = \"full\", sep_bound = Inf)`); `new`:",
  "the default (short runs of at most 20 iterations on 2,000 rows, the 2 best to",
  "convergence on all the data; separation stop at 1000). CPU seconds of the whole call;",
  "`iter`: EM iterations on all the data, summed over the starts.",
  "",
  md_table(fmt),
  ""
)
if (!is.null(mtab)) {
  mfmt <- mtab
  for (v in c("cpu_s", "chain_s", "warm_start_s")) mfmt[[v]] <- round(mfmt[[v]], 2)
  mfmt$em_loglik <- round(mfmt$em_loglik, 2)
  md <- c(md,
    "## moe_mcmc(chains = 1)",
    "",
    "Warm start = the whole call minus the chain (`fit$timing`), i.e. the EM with",
    "`em_starts = 10` plus the set-up; (a) with 600 sweeps (100 warm-up). CPU seconds.",
    "The chain on the step gate (c) is timed by `bench/scale.R`.",
    "",
    md_table(mfmt),
    "")
}
writeLines(md, file.path(out_dir, "warmstart.md"))
# the tables, for the warm-start section of bench/results/scale.md
saveRDS(list(em = tab, mcmc = mtab, date = format(Sys.time(), "%Y-%m-%d %H:%M"),
             load = load_avg, quick = quick), file.path(out_dir, "warmstart.rds"))
message("wrote ", file.path(out_dir, "warmstart.md"))
