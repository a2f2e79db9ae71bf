# Bit-identity of two builds of bayesmoe: every fitting path (EM with each
# gate, FFN experts and least squares; MCMC with the four gating updates,
# weights, each gate, FFN experts, continuation; marginal likelihood) run
# with fixed seeds on simulated data by both builds, each in its own R
# process, and the kept draws, estimates, log-likelihoods, iteration counts
# and acceptance counts compared. For refactors of the engine (the one-engine
# redesign: the default paths are identical; the variant paths agree to
# rounding except the warm-up of the "mh" update of the gate variants and
# EM with a ridge, see NEWS.md).
#
# Usage: Rscript tools/engine-identity.R LIB_BEFORE LIB_AFTER
# (two libraries with a build of bayesmoe each). Prints one line per
# difference (maximum relative difference) and "identical" when there is
# none.
args <- commandArgs(TRUE)
if (length(args) != 2L) stop("usage: Rscript tools/engine-identity.R LIB_BEFORE LIB_AFTER")

runs <- function() {
  # Reference outputs of every fitting path, to compare builds bit for bit.
  set.seed(1)
  n <- 300
  x <- runif(n, -2, 2); z <- x
  g <- ifelse(runif(n) < plogis(3 * x), 1, 2)
  y <- ifelse(g == 1, 1 + 2 * x, -1 - x) + rnorm(n, sd = 0.4)
  x2 <- rnorm(n)
  d <- data.frame(y, x, x2)
  d3 <- d; g3 <- sample(3, n, TRUE); d3$y <- c(-2, 0, 2)[g3] + x * c(1, -1, 0.5)[g3] + rnorm(n, sd = 0.3)
  res <- list()
  strip <- function(f) f[intersect(names(f), c("coefficients", "par", "loglik", "iter", "draws", "accept", "gating_moves", "R", "trace", "status", "state", "theta", "sigma2"))]
  res$em <- strip(moe_em(y ~ x, data = d, K = 2, seed = 1))
  res$em3 <- strip(moe_em(y ~ x + x2, data = d3, K = 3, seed = 2, gating = ~ x))
  res$em_ridge <- strip(moe_em(y ~ x, data = d3, K = 3, seed = 1, control = moe_em_control(ridge = 0.5, gate_steps = 3)))
  res$em_w <- strip(moe_em(y ~ x, data = d, K = 2, seed = 1, weights = rep(c(1, 2), n / 2)))
  gates <- list(topk = gate_topk(2), temp = gate_temperature(0.5), templ = gate_temperature(1, learn = TRUE),
                hier = gate_hierarchical(c(1, 1, 2)), soft = gate_softmax())
  for (nm in names(gates)) {
    res[[paste0("emv_", nm)]] <- strip(suppressWarnings(moe_em(y ~ x, data = d3, K = 3, seed = 1, gate = gates[[nm]], starts = 3)))
  }
  res$em_ffn <- strip(suppressWarnings(moe_em(y ~ x, data = d, K = 2, seed = 1, expert = expert_ffn(2), starts = 2)))
  for (gu in c("collapsed", "pg", "pg+mh", "mh")) {
    res[[paste0("mc_", gu)]] <- strip(suppressWarnings(moe_mcmc(y ~ x, data = d3, K = 3, chains = 2, iter = 300, warmup = 150, seed = 3,
                         control = moe_mcmc_control(gate_update = gu, em_starts = 2))))
  }
  res$mc_w <- strip(suppressWarnings(moe_mcmc(y ~ x, data = d, K = 2, chains = 1, iter = 200, seed = 4, weights = rep(c(1, 3), n / 2))))
  for (nm in names(gates)) for (gu in c("pg", "mh", "pg+mh")) {
    res[[paste0("mcv_", nm, gu)]] <- strip(suppressWarnings(moe_mcmc(y ~ x, data = d3, K = 3, gate = gates[[nm]], chains = 1,
                         iter = 200, warmup = 100, seed = 5, control = moe_mcmc_control(gate_update = gu, em_starts = 2))))
  }
  res$mc_ffn <- strip(suppressWarnings(moe_mcmc(y ~ x, data = d, K = 2, expert = expert_ffn(2), chains = 1, iter = 150, warmup = 100, seed = 6,
                         control = moe_mcmc_control(em_starts = 2))))
  f <- suppressWarnings(moe_mcmc(y ~ x, data = d, K = 2, chains = 2, iter = 200, seed = 7))
  res$cont <- strip(suppressWarnings(moe_mcmc(f, iter = 100)))
  res$ml <- suppressWarnings(moe_marglik(f))[c("logml")]
  res$ls <- strip(moe_ls(y ~ x, data = d, K = 2, seed = 1))
  res$lsffn <- strip(suppressWarnings(moe_ls(y ~ x, data = d, K = 2, seed = 1, expert = expert_ffn(2))))
  res}

run_in <- function(lib) {
  out <- tempfile(fileext = ".rds")
  script <- tempfile(fileext = ".R")
  writeLines(c(sprintf("library(bayesmoe, lib.loc = %s)", deparse(lib)),
               paste("runs <-", paste(deparse(runs), collapse = "\n")),
               sprintf("saveRDS(runs(), %s)", deparse(out))), script)
  system2(file.path(R.home("bin"), "Rscript"), script, stdout = FALSE, stderr = FALSE)
  readRDS(out)
}
a <- run_in(args[1])
b <- run_in(args[2])
same <- TRUE
for (nm in names(a)) for (f in c("draws", "coefficients", "loglik", "iter", "accept",
                                  "gating_moves", "logml")) {
  x <- a[[nm]][[f]]; y <- b[[nm]][[f]]
  if (is.null(x) && is.null(y)) next
  # parameter lists: the parameters (a build may store the model's spec)
  if (f == "coefficients") { x <- x[names(x) != "spec"]; y <- y[names(y) != "spec"] }
  if (identical(x, y)) next
  same <- FALSE
  nx <- suppressWarnings(as.numeric(unlist(x))); ny <- suppressWarnings(as.numeric(unlist(y)))
  if (length(nx) != length(ny)) {
    cat(sprintf("%-16s %-12s length %d vs %d\n", nm, f, length(nx), length(ny)))
    next
  }
  ok <- is.finite(nx) & is.finite(ny)
  d <- max(c(0, abs(nx[ok] - ny[ok]) / pmax(1, abs(nx[ok]))))
  cat(sprintf("%-16s %-12s max relative difference %.3g\n", nm, f, d))
}
if (same) cat("identical\n")
