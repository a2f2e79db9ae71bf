# Benchmark of the exact Polya-Gamma sampler, rpolyagamma() (src/polyagamma.c).
#
# Run from the package root after installing bayesmoe (`make bench` does both):
#   Rscript bench/polyagamma.R [reps]
#
# 1. CPU time (user + sys, median of `reps` repetitions, default 5) of 1e6
#    PG(1, z) draws for z in {0, 1, 5, 20} and for z ~ N(0, 3) (one z per draw,
#    as in the Gibbs sampler's gating update), against 1e6 rgamma(shape = 1)
#    and 1e6 rnorm() draws timed in the same run; ns per draw and ratios.
# 2. Work per draw, counted by an instrumented copy of src/polyagamma.c
#    compiled here into a temporary shared library (its PG_COUNT() hook is
#    empty in the package): proposals per accepted draw, series terms per
#    draw and inner rejection loops per draw, next to the exact expected
#    number of proposals, cosh(Z) (p + q), computed in R.

suppressPackageStartupMessages(library(bayesmoe))

args <- commandArgs(trailingOnly = TRUE)
reps <- if (length(args)) as.integer(args[1]) else 5L
N <- 1e6

cpu <- function(f) {
  t <- vapply(seq_len(reps), function(i) {
    st <- system.time(f())
    st[["user.self"]] + st[["sys.self"]]
  }, 0)
  median(t)
}

set.seed(1)
z_rand <- rnorm(N, 0, 3)
cases <- list("z = 0" = 0, "z = 1" = 1, "z = 5" = 5, "z = 20" = 20,
              "z ~ N(0, 3)" = z_rand)

t_gamma <- cpu(function() rgamma(N, shape = 1))
t_norm <- cpu(function() rnorm(N))
t_pg <- vapply(cases, function(z) cpu(function() rpolyagamma(N, b = 1, z = z)), 0)

# ---- work per draw, from an instrumented build --------------------------------
src <- file.path(getwd(), "src")
counts <- NULL
if (file.exists(file.path(src, "polyagamma.c"))) {
  dir <- tempfile("pg-bench-")
  dir.create(dir)
  writeLines(c(
    "/* Instrumented copy of polyagamma.c for bench/polyagamma.R only. */",
    "#include <R.h>",
    "static double n_proposal, n_left, n_term, n_levy, n_tilt, n_ig_trunc;",
    "#define PG_COUNT(what) (n_##what += 1.0)",
    "#include \"polyagamma.c\"",
    "void pg_bench_count(int *n, double *z, int *nz, double *out)",
    "{",
    "  n_proposal = n_left = n_term = n_levy = n_tilt = n_ig_trunc = 0.0;",
    "  GetRNGstate();",
    "  for (int i = 0; i < *n; i++) (void) rpg1(z[i % *nz]);",
    "  PutRNGstate();",
    "  out[0] = n_proposal; out[1] = n_left; out[2] = n_term;",
    "  out[3] = n_levy; out[4] = n_tilt; out[5] = n_ig_trunc;",
    "}"), file.path(dir, "pgcount.c"))
  old <- setwd(dir)
  ok <- system2(file.path(R.home("bin"), "R"),
                c("CMD", "SHLIB", "-o", "pgcount.so", "pgcount.c"),
                env = sprintf("PKG_CPPFLAGS=-I%s", shQuote(src)),
                stdout = FALSE, stderr = FALSE) == 0
  setwd(old)
  if (ok) {
    dll <- dyn.load(file.path(dir, paste0("pgcount", .Platform$dynlib.ext)))
    counts <- t(vapply(cases, function(z) {
      r <- .C("pg_bench_count", as.integer(N), as.double(z), length(z),
              out = double(6))$out
      c(proposals = r[1], left = r[2], terms = r[3], levy = r[4], tilt = r[5],
        ig_trunc = r[6]) / N
    }, numeric(6)))
    dyn.unload(dll[["path"]])
  } else {
    message("could not compile the instrumented sampler; skipping the work counts")
  }
  unlink(dir, recursive = TRUE)
} else {
  message("run from the package root to count proposals (src/polyagamma.c not found)")
}

# Exact expected number of proposals per accepted draw: the proposal kernel
# exp(-Z^2 x/2) a_0(x) has mass p + q, the target has mass 1 / cosh(Z).
expected_proposals <- function(z) {
  Z <- abs(z) / 2
  t <- 0.64
  K <- pi^2 / 8 + Z^2 / 2
  log_cosh <- Z + log1p(exp(-2 * Z)) - log(2)
  p <- pi / 2 * exp(log_cosh - K * t - log(K))
  q <- (1 + exp(-2 * Z)) * pnorm((t * Z - 1) / sqrt(t)) +
    exp(2 * Z + pnorm(-(t * Z + 1) / sqrt(t), log.p = TRUE)) * (1 + exp(-2 * Z))
  p + q
}

ns <- function(t) t / N * 1e9
tab <- data.frame(
  sampler = c(paste("rpolyagamma,", names(cases)), "rgamma(shape = 1)", "rnorm"),
  cpu_s = c(t_pg, t_gamma, t_norm),
  ns_per_draw = ns(c(t_pg, t_gamma, t_norm)),
  x_rgamma = c(t_pg, t_gamma, t_norm) / t_gamma,
  x_rnorm = c(t_pg, t_gamma, t_norm) / t_norm,
  row.names = NULL
)
cat(sprintf("bayesmoe %s, %s, R %s; CFLAGS: %s\n", utils::packageVersion("bayesmoe"),
            Sys.info()[["machine"]], getRversion(),
            trimws(system2(file.path(R.home("bin"), "R"), c("CMD", "config", "CFLAGS"),
                           stdout = TRUE))))
cat(sprintf("1e6 draws each; CPU seconds (user + sys), median of %d repetitions\n\n", reps))
print(format(tab, digits = 3), row.names = FALSE)

if (!is.null(counts)) {
  work <- data.frame(
    z = names(cases),
    proposals = counts[, "proposals"],
    expected = vapply(cases, function(z) mean(expected_proposals(z)), 0),
    left_share = counts[, "left"] / counts[, "proposals"],
    terms_per_prop = counts[, "terms"] / counts[, "proposals"],
    levy_pairs = counts[, "levy"],
    tilt_rej = counts[, "tilt"],
    ig_rej = counts[, "ig_trunc"],
    row.names = NULL
  )
  cat("\nWork per accepted PG(1, z) draw, counted over 1e6 draws. expected: exact\n",
      "mean number of proposals, cosh(Z) (p + q); left_share: share of proposals\n",
      "from the inverse Gaussian piece; terms_per_prop: series terms per proposal;\n",
      "levy_pairs: (E1, E2) pairs drawn for the truncated Levy proposal (|z| < 3.125);\n",
      "tilt_rej: its exp(-Z^2 x/2) rejections; ig_rej: inverse Gaussian draws\n",
      "above t = 0.64 (|z| >= 3.125).\n\n", sep = "")
  print(format(work, digits = 6), row.names = FALSE)
}
