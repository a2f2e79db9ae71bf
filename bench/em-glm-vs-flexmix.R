# Benchmark of the EM fit with GLM experts: bayesmoe::moe_em(family =
# binomial() / poisson()) against flexmix::flexmix(model = FLXMRglm(family =
# ...), concomitant = FLXPmultinom(~ x)).
#
# Run from the package root after installing bayesmoe (`make bench` does both):
#   Rscript bench/em-glm-vs-flexmix.R
# Prints a table and writes bench/results/em-glm-vs-flexmix.md.
# Environment: BAYESMOE_BENCH_QUICK=true runs few repetitions (a smoke test).
#
# Problems (softmax gating on the same covariates as the experts, expert K
# the gating reference; covariates independent N(0, 1)); n = 20,000, K = 2:
#   (binomial) binary responses, logit P(y = 1) = x'a_k with d = 2
#              covariates (truth_binomial below); given to flexmix as
#              cbind(y, 1 - y), which its binomial driver needs;
#   (poisson)  counts, log E(y) = x'a_k + log(exposure), d = 2, exposure
#              uniform on (0.5, 2) as an offset() (truth_poisson below).
#
# Fairness:
#  - Same data, same model (GLM experts with an intercept and all
#    covariates, the offset for counts; multinomial-logit gating on all
#    covariates), maximum likelihood.
#  - Same convergence rule. flexmix stops when |l_t - l_{t-1}| / (|l_t| +
#    0.1) < tolerance; bayesmoe when |l_t - l_{t-1}| <= tol (|l_t| + tol).
#    With GLM experts bayesmoe's internal log-likelihood is the original
#    one (the response is not rescaled), so the rules coincide; both get
#    tolerance TOL (flexmix's default, 1e-6) and at most 1000 iterations.
#  - Same start: bayesmoe's deterministic first start (observations split
#    by the rank of their least-squares residual, 0.9 on the assigned
#    expert), given to flexmix as `cluster =` (flexmix does not pay for
#    computing it, bayesmoe does: moe_em(starts = 1) computes it itself).
#  - Each M-step: flexmix runs glm.fit() to convergence per component and
#    nnet's multinom for the gating; bayesmoe makes one weighted IRLS
#    (Newton) step with step halving per expert and one Newton step on the
#    gating (the defaults; a generalised EM), all in C.
#  - flexmix's FLXMRglm() ignores offset() terms of the formula (it fits
#    without them); it takes the offset through its `offset` argument.
#  - Time is CPU time (user + sys) of the whole call, formula to fitted
#    object, the median of several repetitions. The machine is shared, so
#    ratios mean more than absolute times.

suppressPackageStartupMessages({
  library(bayesmoe)
  library(flexmix)
})

quick <- identical(Sys.getenv("BAYESMOE_BENCH_QUICK"), "true")
TOL <- 1e-6
MAXIT <- 1000L
N <- 20000L

# columns: experts; rows: (Intercept), x1, x2
truth_binomial <- list(alpha = cbind(c(-1.5, 2, 0.5), c(1, -1, 1.5)),
                       W = cbind(c(0.3, 1.5, -1), 0))
truth_poisson <- list(alpha = cbind(c(0.5, 0.6, -0.3), c(2, -0.4, 0.5)),
                      W = cbind(c(-0.2, -1.2, 1), 0))

simulate <- function(n, truth, family, seed) {
  set.seed(seed)
  d <- nrow(truth$alpha) - 1L
  x <- matrix(rnorm(n * d), n, d, dimnames = list(NULL, paste0("x", seq_len(d))))
  X1 <- cbind(1, x)
  eta <- X1 %*% truth$W
  g <- exp(eta - apply(eta, 1L, max))
  g <- g / rowSums(g)
  z <- 1L + rowSums(runif(n) > t(apply(g, 1L, cumsum))[, -ncol(g), drop = FALSE])
  lin <- rowSums(X1 * t(truth$alpha)[z, ])
  if (family == "binomial") {
    data.frame(y = rbinom(n, 1, plogis(lin)), x)
  } else {
    expo <- runif(n, 0.5, 2)
    data.frame(y = rpois(n, expo * exp(lin)), x, expo = expo)
  }
}

cpu <- function(expr) {
  t <- system.time(expr, gcFirst = FALSE)
  t[["user.self"]] + t[["sys.self"]]
}

timed <- function(f, reps) {
  val <- NULL
  times <- vapply(seq_len(reps), function(r) cpu(val <<- f()), 0)
  list(times = times, value = val)
}

# bayesmoe's deterministic first start (moe_em(starts = 1) computes the same).
first_start <- function(dat, K) {
  X <- cbind("(Intercept)" = 1, as.matrix(dat[, c("x1", "x2")]))
  sc <- bayesmoe:::moe_scaling(dat$y, X, X)
  s <- bayesmoe:::scale_data(sc, dat$y, X, X)
  bayesmoe:::start_resp("residual", s$y, s$X, NULL, K)
}

fits <- list(
  binomial = list(
    bayesmoe = function(dat, ctl) moe_em(y ~ x1 + x2, data = dat, K = 2, family = binomial(),
                                         starts = 1, control = ctl),
    flexmix = function(dat, R0) flexmix(cbind(y, 1 - y) ~ x1 + x2, data = dat, k = 2,
                                        cluster = R0,
                                        model = FLXMRglm(family = "binomial"),
                                        concomitant = FLXPmultinom(~ x1 + x2),
                                        control = list(tolerance = TOL, iter.max = MAXIT))),
  poisson = list(
    bayesmoe = function(dat, ctl) moe_em(y ~ x1 + x2 + offset(log(expo)), data = dat, K = 2,
                                         family = poisson(), starts = 1, control = ctl),
    flexmix = function(dat, R0) flexmix(y ~ x1 + x2, data = dat, k = 2,
                                        cluster = R0,
                                        model = FLXMRglm(family = "poisson",
                                                         offset = log(dat$expo)),
                                        concomitant = FLXPmultinom(~ x1 + x2),
                                        control = list(tolerance = TOL, iter.max = MAXIT))))

truths <- list(binomial = truth_binomial, poisson = truth_poisson)
ctl <- moe_em_control(maxit = MAXIT, tol = TOL)
reps_b <- if (quick) 3L else 11L
reps_f <- if (quick) 1L else 3L
rows <- lapply(names(fits), function(fam) {
  dat <- simulate(N, truths[[fam]], fam, seed = 20261207)
  R0 <- first_start(dat, 2L)
  message(sprintf("(%s) bayesmoe x %d", fam, reps_b))
  b <- timed(function() fits[[fam]]$bayesmoe(dat, ctl), reps_b)
  message(sprintf("(%s) flexmix x %d", fam, reps_f))
  f <- timed(function() fits[[fam]]$flexmix(dat, R0), reps_f)
  data.frame(family = fam, n = N, K = 2L,
             bayesmoe_s = median(b$times), flexmix_s = median(f$times),
             ratio = median(f$times) / median(b$times),
             bayesmoe_loglik = as.numeric(logLik(b$value)),
             flexmix_loglik = as.numeric(logLik(f$value)),
             bayesmoe_iter = b$value$iter, flexmix_iter = f$value@iter,
             flexmix_K = f$value@k, reps = sprintf("%d / %d", reps_b, reps_f))
})
speed <- do.call(rbind, rows)

fmt <- data.frame(
  problem = sprintf("%s n=%d K=%d", speed$family, speed$n, speed$K),
  `bayesmoe CPU s` = sprintf("%.3f", speed$bayesmoe_s),
  `flexmix CPU s` = sprintf("%.2f", speed$flexmix_s),
  ratio = sprintf("%.1fx", speed$ratio),
  `bayesmoe logLik` = sprintf("%.3f", speed$bayesmoe_loglik),
  `flexmix logLik` = sprintf("%.3f", speed$flexmix_loglik),
  `logLik difference` = sprintf("%.3g", speed$bayesmoe_loglik - speed$flexmix_loglik),
  `bayesmoe iter` = speed$bayesmoe_iter,
  `flexmix iter` = speed$flexmix_iter,
  `flexmix K` = speed$flexmix_K,
  `reps (b / f)` = speed$reps,
  check.names = FALSE)

cat("\nCPU time, bayesmoe::moe_em() vs flexmix::flexmix() with GLM experts (ratio = flexmix / bayesmoe)\n")
print(fmt, row.names = FALSE)

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
  "# EM speed with GLM experts: bayesmoe against flexmix",
  "",
  "Produced by `Rscript bench/em-glm-vs-flexmix.R` (run by `make bench`); do not",
  "edit by hand. The script documents the simulated truths and how the comparison",
  "is made fair (same data, model, start and convergence rule).",
  "",
  sprintf("- Date: %s; %s; bayesmoe %s, flexmix %s%s.", format(Sys.time(), "%Y-%m-%d %H:%M"),
          R.version.string, packageVersion("bayesmoe"), packageVersion("flexmix"),
          if (quick) "; QUICK run (few repetitions)" else ""),
  sprintf("- Machine: %s, %s; BLAS %s.", cpu_model,
          paste(Sys.info()[c("sysname", "machine")], collapse = " "), basename(si$BLAS)),
  sprintf("- Load average at the end (the machine is shared): %s.", load_avg),
  sprintf("- Convergence tolerance %g for both (same rule, see the script), at most %d iterations; one start, the same for both.",
          TOL, MAXIT),
  "",
  "## CPU time of a whole fit (user + sys, median of the repetitions)",
  "",
  "ratio = flexmix / bayesmoe; logLik difference = bayesmoe - flexmix.",
  "",
  md_table(fmt),
  ""
)
writeLines(md, file.path(out_dir, "em-glm-vs-flexmix.md"))
message("wrote ", file.path(out_dir, "em-glm-vs-flexmix.md"))
