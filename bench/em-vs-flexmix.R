# Benchmark of the EM fit: bayesmoe::moe_em() against flexmix::flexmix().
#
# Run from the package root after installing bayesmoe (`make bench` does both):
#   Rscript bench/em-vs-flexmix.R
# Prints a table and writes bench/results/em-vs-flexmix.md.
# Environment: BAYESMOE_BENCH_QUICK=true runs few repetitions (a smoke test).
#
# Problems (softmax gating on the same covariates as the experts, expert K
# the gating reference; covariates independent N(0, 1); the response is then
# standardised, see below):
#   (a) n = 20,000, d = 2 covariates, K = 3 experts (truth_a below);
#   (b) n = 200,000, d = 5 covariates, K = 4 experts (truth_b below).
# The experts are well separated: their intercepts are 3 to 4 residual
# standard deviations apart, with different slopes.
#
# Fairness:
#  - Same data, same model (Gaussian linear experts with an intercept and
#    all covariates; multinomial-logit gating on all covariates), maximum
#    likelihood, no variance or prior tweaks.
#  - Same convergence rule. flexmix stops when |l_t - l_{t-1}| / (|l_t| +
#    0.1) < tolerance; bayesmoe when |l_t - l_{t-1}| <= tol (|l_t| + tol),
#    with l_t on its internal scale (response centred and scaled to unit
#    variance). The simulated response is standardised (mean 0, variance 1),
#    so bayesmoe's internal log-likelihood is the original one and the two
#    rules coincide; both get tolerance TOL (flexmix's default, 1e-6) and at
#    most 1000 iterations.
#  - Single start: both start from the same soft partition, bayesmoe's
#    deterministic first start (observations split by the rank of their
#    least-squares residual, 0.9 on the assigned expert), given to flexmix
#    as `cluster =` (flexmix does not pay for computing it, bayesmoe does).
#  - Several starts (problem (a) only: flexmix needs minutes per start on
#    (b)): moe_em(starts = S) against stepFlexmix(nrep = S), each with its
#    own start strategy, best log-likelihood kept.
#  - Time is CPU time (user + sys) of the whole call, formula to fitted
#    object, the median of several repetitions; all numbers of a row come
#    from the same run. The machine is shared, so ratios mean more than
#    absolute times.
#  - The cost floor: one log-likelihood pass in C (`ffi_loglik`, gating
#    log-softmax plus Gaussian densities plus log-sum-exp for every
#    observation and expert) at the fitted parameters, timed over many calls
#    and interleaved with the timing of the C EM loop (`ffi_em` from the same
#    start, called through bayesmoe:::em_run() with moe_em()'s default
#    controls: variance floor, gate steps, ridge, minimum expert size
#    ncol(X) + 1); both are reported in ns per observation per expert. The EM
#    figure divides the whole `ffi_em` call (including its set-up and first
#    M-step) by the number of E-steps.

suppressPackageStartupMessages({
  library(bayesmoe)
  library(flexmix)
})

quick <- identical(Sys.getenv("BAYESMOE_BENCH_QUICK"), "true")
TOL <- 1e-6
MAXIT <- 1000L
STARTS <- 10L

truth_a <- list(
  # columns: experts; rows: (Intercept), x1, x2
  alpha = cbind(c(-3, 1, 0.5), c(0, -1, 1), c(3, 0.5, -1)),
  sigma = c(0.6, 0.5, 0.7),
  W = cbind(c(0, 1.5, -1), c(0.5, -1, 1), 0)
)
truth_b <- list(
  # rows: (Intercept), x1, ..., x5
  alpha = cbind(c(-4, 1, 0.5, 0, -0.5, 1), c(-1.5, -1, 1, 0.5, 0, 0),
                c(1.5, 0.5, -1, 0, 1, -0.5), c(4, 0, 0.5, -1, 0.5, 0.5)),
  sigma = c(0.6, 0.5, 0.7, 0.5),
  W = cbind(c(0, 1.5, -1, 0.5, 0, 0), c(0.5, -1, 1, 0, 0.5, 0),
            c(0, 0.5, 0.5, -1, 0, 1), 0)
)

# y_raw = x'alpha_z + sigma_z e with P(z = k | x) = softmax(x'W)_k, then
# y = (y_raw - mean(y_raw)) / sd(y_raw) (population sd).
simulate <- function(n, truth, seed) {
  set.seed(seed)
  d <- nrow(truth$alpha) - 1L
  x <- matrix(rnorm(n * d), n, d, dimnames = list(NULL, paste0("x", seq_len(d))))
  X1 <- cbind(1, x)
  eta <- X1 %*% truth$W
  g <- exp(eta - apply(eta, 1L, max))
  g <- g / rowSums(g)
  u <- runif(n)
  z <- 1L + rowSums(u > t(apply(g, 1L, cumsum))[, -ncol(g), drop = FALSE])
  y <- rowSums(X1 * t(truth$alpha)[z, ]) + rnorm(n, sd = truth$sigma[z])
  y <- (y - mean(y)) / sqrt(mean((y - mean(y))^2))
  data.frame(y = y, x)
}

cpu <- function(expr) {
  t <- system.time(expr, gcFirst = FALSE)
  t[["user.self"]] + t[["sys.self"]]
}

# time `f()` reps times; returns the times and the last value
timed <- function(f, reps) {
  val <- NULL
  times <- vapply(seq_len(reps), function(r) cpu(val <<- f()), 0)
  list(times = times, value = val)
}

flexmix_fit <- function(dat, K, cluster = NULL, nrep = 1L) {
  gating <- reformulate(setdiff(names(dat), "y"))
  ctl <- list(tolerance = TOL, iter.max = MAXIT)
  if (nrep == 1L) {
    flexmix(y ~ ., data = dat, k = K, cluster = cluster, model = FLXMRglm(),
            concomitant = FLXPmultinom(gating), control = ctl)
  } else {
    stepFlexmix(y ~ ., data = dat, k = K, nrep = nrep, model = FLXMRglm(),
                concomitant = FLXPmultinom(gating), control = ctl,
                verbose = FALSE)
  }
}

# The internal-scale data and the deterministic first start of moe_em().
internal <- function(dat, K) {
  X <- cbind("(Intercept)" = 1, as.matrix(dat[, -1L]))
  sc <- bayesmoe:::moe_scaling(dat$y, X, X)
  s <- bayesmoe:::scale_data(sc, dat$y, X, X)
  s$R0 <- bayesmoe:::start_resp("residual", s$y, s$X, s$Z, K)
  s$w <- rep(1, length(dat$y))
  s
}

# ns per observation per expert of one C EM iteration and of one
# log-likelihood pass, measured interleaved.
floor_ratio <- function(s, K, rounds, ll_calls) {
  n <- length(s$y)
  ctl <- moe_em_control(maxit = MAXIT, tol = TOL)
  em <- function() bayesmoe:::em_run(s, s$w, s$R0, ctl, ncol(s$X) + 1, gate_softmax(),
                                     expert_linear())
  fit <- em()
  pass <- function() .Call(bayesmoe:::ffi_loglik, s$y, s$X, s$Z, s$w, fit$alpha,
                           fit$sigma2, fit$W)
  stopifnot(abs(pass() - fit$loglik) < 1e-6 * abs(fit$loglik))
  t_em <- t_ll <- numeric(rounds)
  for (r in seq_len(rounds)) {
    t_em[r] <- cpu(em())
    t_ll[r] <- cpu(for (j in seq_len(ll_calls)) pass()) / ll_calls
  }
  ns_iter <- median(t_em) / fit$iter / (n * K) * 1e9
  ns_ll <- median(t_ll) / (n * K) * 1e9
  list(ns_iter = ns_iter, ns_ll = ns_ll, iter = fit$iter, em_s = median(t_em))
}

run_problem <- function(label, n, truth, reps_b, reps_f, rounds, ll_calls,
                        multi = FALSE) {
  K <- ncol(truth$alpha)
  dat <- simulate(n, truth, seed = 20261123)
  s <- internal(dat, K)
  ctl <- moe_em_control(maxit = MAXIT, tol = TOL)
  rows <- list()

  message(sprintf("(%s) single start: bayesmoe x %d", label, reps_b))
  b <- timed(function() moe_em(y ~ ., data = dat, K = K, starts = 1, control = ctl),
             reps_b)
  message(sprintf("(%s) single start: flexmix x %d", label, reps_f))
  f <- timed(function() flexmix_fit(dat, K, cluster = s$R0), reps_f)
  rows[[1]] <- data.frame(
    problem = label, n = n, K = K, starts = "1 (same)",
    bayesmoe_s = median(b$times), flexmix_s = median(f$times),
    ratio = median(f$times) / median(b$times),
    bayesmoe_loglik = as.numeric(logLik(b$value)),
    flexmix_loglik = as.numeric(logLik(f$value)),
    bayesmoe_iter = b$value$iter, flexmix_iter = f$value@iter,
    flexmix_K = f$value@k, reps = sprintf("%d / %d", reps_b, reps_f))

  if (multi) {
    reps_m <- max(3L, reps_b %/% 2L)
    message(sprintf("(%s) %d starts: bayesmoe x %d", label, STARTS, reps_m))
    bm <- timed(function() moe_em(y ~ ., data = dat, K = K, starts = STARTS,
                                  seed = 1, control = ctl), reps_m)
    message(sprintf("(%s) %d starts: flexmix x 1", label, STARTS))
    set.seed(1)
    fm <- timed(function() flexmix_fit(dat, K, nrep = STARTS), 1L)
    rows[[2]] <- data.frame(
      problem = label, n = n, K = K, starts = as.character(STARTS),
      bayesmoe_s = median(bm$times), flexmix_s = median(fm$times),
      ratio = median(fm$times) / median(bm$times),
      bayesmoe_loglik = as.numeric(logLik(bm$value)),
      flexmix_loglik = as.numeric(logLik(fm$value)),
      bayesmoe_iter = sum(bm$value$starts$iter), flexmix_iter = fm$value@iter,
      flexmix_K = fm$value@k, reps = sprintf("%d / 1", reps_m))
  }

  message(sprintf("(%s) C EM iteration against the log-likelihood pass", label))
  fl <- floor_ratio(s, K, rounds, ll_calls)
  list(rows = do.call(rbind, rows), floor = data.frame(
    problem = label, n = n, K = K, em_iter = fl$iter, em_s = fl$em_s,
    ns_ll_pass = fl$ns_ll, ns_em_iter = fl$ns_iter,
    floor_multiple = fl$ns_iter / fl$ns_ll,
    flexmix_ns_iter = rows[[1]]$flexmix_s / rows[[1]]$flexmix_iter / (n * K) * 1e9))
}

res_a <- run_problem("a", 20000, truth_a, reps_b = if (quick) 3 else 11,
                     reps_f = if (quick) 1 else 3, rounds = if (quick) 3 else 9,
                     ll_calls = if (quick) 20 else 200, multi = TRUE)
res_b <- run_problem("b", 200000, truth_b, reps_b = if (quick) 1 else 3,
                     reps_f = 1, rounds = if (quick) 2 else 5,
                     ll_calls = if (quick) 5 else 30)

speed <- rbind(res_a$rows, res_b$rows)
floor_tab <- rbind(res_a$floor, res_b$floor)

fmt_speed <- data.frame(
  problem = sprintf("(%s) n=%d K=%d", speed$problem, speed$n, speed$K),
  starts = speed$starts,
  `bayesmoe CPU s` = sprintf("%.3f", speed$bayesmoe_s),
  `flexmix CPU s` = sprintf("%.2f", speed$flexmix_s),
  `ratio` = sprintf("%.1fx", speed$ratio),
  `bayesmoe logLik` = sprintf("%.2f", speed$bayesmoe_loglik),
  `flexmix logLik` = sprintf("%.2f", speed$flexmix_loglik),
  `bayesmoe iter` = speed$bayesmoe_iter,
  `flexmix iter` = speed$flexmix_iter,
  `flexmix K` = speed$flexmix_K,
  `reps (b / f)` = speed$reps,
  check.names = FALSE)
fmt_floor <- data.frame(
  problem = sprintf("(%s) n=%d K=%d", floor_tab$problem, floor_tab$n, floor_tab$K),
  `EM iterations` = floor_tab$em_iter,
  `C EM call, CPU s` = sprintf("%.3f", floor_tab$em_s),
  `log-lik pass, ns/obs/expert` = sprintf("%.1f", floor_tab$ns_ll_pass),
  `EM iteration, ns/obs/expert` = sprintf("%.1f", floor_tab$ns_em_iter),
  `EM iteration / pass` = sprintf("%.2f", floor_tab$floor_multiple),
  `flexmix iteration, ns/obs/expert` = sprintf("%.0f", floor_tab$flexmix_ns_iter),
  check.names = FALSE)

cat("\nCPU time, bayesmoe::moe_em() vs flexmix::flexmix() (ratio = flexmix / bayesmoe)\n")
print(fmt_speed, row.names = FALSE)
cat("\nbayesmoe EM iteration (C) against one log-likelihood pass in C\n")
print(fmt_floor, row.names = FALSE)

md_table <- function(df) {
  c(paste0("| ", paste(names(df), collapse = " | "), " |"),
    paste0("|", paste(rep("---", ncol(df)), collapse = "|"), "|"),
    apply(df, 1L, function(r) paste0("| ", paste(r, collapse = " | "), " |")))
}

cpu_model <- tryCatch({
  l <- grep("^model name", readLines("/proc/cpuinfo"), value = TRUE)[1L]
  trimws(sub("^[^:]*:", "", l))
}, error = function(e) NA_character_, warning = function(w) NA_character_)
load_avg <- tryCatch(readLines("/proc/loadavg")[1L], error = function(e) NA_character_,
                     warning = function(w) NA_character_)
si <- sessionInfo()

args <- commandArgs(trailingOnly = FALSE)
script <- sub("^--file=", "", grep("^--file=", args, value = TRUE)[1L])
out_dir <- file.path(if (is.na(script)) "bench" else dirname(script), "results")
dir.create(out_dir, showWarnings = FALSE, recursive = TRUE)
md <- c(
  "# EM speed: bayesmoe against flexmix",
  "",
  "Produced by `Rscript bench/em-vs-flexmix.R` (run by `make bench`); do not edit",
  "by hand. The script documents the simulated truths and how the comparison is",
  "made fair (same data, model, start and convergence rule).",
  "",
  sprintf("- Date: %s; %s; bayesmoe %s, flexmix %s%s.", format(Sys.time(), "%Y-%m-%d %H:%M"),
          R.version.string, packageVersion("bayesmoe"), packageVersion("flexmix"),
          if (quick) "; QUICK run (few repetitions)" else ""),
  sprintf("- Machine: %s, %s; BLAS %s.", cpu_model, paste(Sys.info()[c("sysname", "machine")], collapse = " "),
          basename(si$BLAS)),
  sprintf("- Load average at the end (the machine is shared): %s.", load_avg),
  sprintf("- Convergence tolerance %g for both (same rule, see the script), at most %d iterations.",
          TOL, MAXIT),
  "",
  "## CPU time of a whole fit (user + sys, median of the repetitions)",
  "",
  "ratio = flexmix / bayesmoe. `1 (same)`: both from the same starting partition.",
  sprintf("`%d`: moe_em(starts = %d) against stepFlexmix(nrep = %d); iterations of bayesmoe", STARTS, STARTS, STARTS),
  "summed over its starts, of flexmix for its best start only.",
  "",
  md_table(fmt_speed),
  "",
  "## An EM iteration against the cost floor",
  "",
  "One log-likelihood pass in C (`ffi_loglik`) and the C EM loop (`ffi_em`, whole call",
  "divided by its E-steps) on the internal-scale data from the same start, timed",
  "interleaved in the same run; ns per observation per expert. flexmix's iteration is",
  "its single-start CPU time divided by its iterations. `C EM call` is the CPU time of",
  "`ffi_em` alone; the rest of bayesmoe's single-start time above is R code (model",
  "frame, scaling, starting partition, fit object).",
  "",
  md_table(fmt_floor),
  ""
)
writeLines(md, file.path(out_dir, "em-vs-flexmix.md"))
message("wrote ", file.path(out_dir, "em-vs-flexmix.md"))
