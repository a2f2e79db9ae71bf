# Frozen chains from random starts, through the public API: 2-expert data
# sets (n = 1000, one covariate, random truths), each fitted by
# moe_mcmc(y ~ x, K = 2, chains = 2, iter = 1500, init = "random"); a chain
# is frozen when its gating draws never change after warm-up. Counts the
# frozen chains, the chains with a gating acceptance below 1% after warm-up
# and whether each of those was named by a warning.
#
# Run: Rscript bench/gating-freeze.R   (or `make bench`); settings:
# FREEZE_SETS (default 40 data sets), FREEZE_SEED (default 1). Writes
# bench/results/gating-freeze.md when run from the package root.
suppressPackageStartupMessages(library(bayesmoe))
nsets <- as.integer(Sys.getenv("FREEZE_SETS", "40"))
seed0 <- as.integer(Sys.getenv("FREEZE_SEED", "1"))
rows <- list()
t0 <- proc.time()
for (s in seq_len(nsets)) {
  set.seed(seed0 * 1000 + s)
  n <- 1000
  x <- runif(n)
  k <- ifelse(runif(n) < plogis(rnorm(1, 0, 3) + rnorm(1, 0, 6) * x), 1, 2)
  a <- rnorm(2, 0, 5)
  b <- rnorm(2, 0, 5)
  d <- data.frame(x = x, y = a[k] + b[k] * x + runif(2, 0.2, 1)[k] * rnorm(n))
  warned <- character()
  fit <- withCallingHandlers(
    moe_mcmc(y ~ x, data = d, K = 2, chains = 2, iter = 1500, init = "random", seed = s,
             progress = FALSE),
    warning = function(w) {
      warned <<- c(warned, conditionMessage(w))
      invokeRestart("muffleWarning")
    })
  gate <- grep("^gate", dimnames(fit$draws)[[3L]])
  for (ch in 1:2) {
    G <- fit$draws[, ch, gate, drop = FALSE]
    frozen <- all(apply(G, 3L, function(v) length(unique(v)) == 1L))
    named <- any(grepl(sprintf("^Chains? [0-9, ]*\\b%d\\b", ch), warned))
    rows[[length(rows) + 1L]] <- data.frame(set = s, chain = ch, frozen = frozen,
                                            accept = unname(fit$accept[ch]),
                                            warned = named)
  }
}
res <- do.call(rbind, rows)
cpu <- sum((proc.time() - t0)[1:2])
low <- res$accept < 0.01
lines <- c(
  "# Frozen chains from random starts (bench/gating-freeze.R)", "",
  sprintf("%s, bayesmoe %s, %s; %d data sets x 2 chains, seed %d; %.0f s CPU.",
          format(Sys.time(), "%Y-%m-%d %H:%M %Z"), utils::packageVersion("bayesmoe"),
          R.version.string, nsets, seed0, cpu), "",
  "| chains | frozen | acceptance < 1% | of those named by a warning | min acceptance | median acceptance |",
  "|---|---|---|---|---|---|",
  sprintf("| %d | %d | %d | %d | %.3f | %.3f |", nrow(res), sum(res$frozen), sum(low),
          sum(res$warned[low]), min(res$accept), stats::median(res$accept)))
writeLines(lines)
if (dir.exists(file.path("bench", "results"))) {
  writeLines(lines, file.path("bench", "results", "gating-freeze.md"))
}
