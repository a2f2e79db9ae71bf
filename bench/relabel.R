# Benchmark of relabelling for many experts: CPU time of coef() of an MCMC
# fit (which relabels the draws, R/relabel.R) for K = 8, 20, 30, 50.
#
# Run from the package root after installing bayesmoe:
#   Rscript bench/relabel.R [iter]
#
# Data: n = 40 K points, expert k the line 3 k + (k - K/2) x plus N(0, 0.2^2)
# noise, x ~ U(-1, 1), gating on x. One chain of `iter` sweeps (default 40,
# half warm-up: 20 kept draws). Reported: the sampling time, coef() on the
# fresh fit (relabels: k-means relabelling, one assignment problem per draw
# and iteration) and coef() again (the relabelling is cached per fit), in
# CPU seconds (user + sys).

suppressPackageStartupMessages(library(bayesmoe))

args <- commandArgs(trailingOnly = TRUE)
iter <- if (length(args)) as.integer(args[1]) else 40L

cpu <- function(expr) {
  st <- system.time(expr)
  st[["user.self"]] + st[["sys.self"]]
}

res <- NULL
for (K in c(8L, 20L, 30L, 50L)) {
  set.seed(K)
  n <- 40L * K
  x <- runif(n, -1, 1)
  k <- sample.int(K, n, replace = TRUE)
  d <- data.frame(x = x, y = 3 * k + (k - K / 2) * x + 0.2 * rnorm(n))
  t_fit <- cpu(fit <- suppressWarnings(
    moe_mcmc(y ~ x, gating = ~ x, data = d, K = K, chains = 1L, iter = iter, seed = 1,
             progress = FALSE)))
  t_coef <- cpu(cf <- coef(fit))
  t_again <- cpu(cf2 <- coef(fit))
  stopifnot(identical(cf, cf2), all(is.finite(cf)))
  res <- rbind(res, data.frame(K = K, draws = dim(fit$draws)[1L], fit_s = t_fit,
                               coef_s = t_coef, coef_again_s = t_again))
}
print(res, row.names = FALSE)
