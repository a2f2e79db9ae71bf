# Precomputed runs of the vignette "Choosing the number of experts".
#
# Regenerates inst/extdata/choosing-k.rds: for a two-expert and two
# three-expert truths and a grid of sample sizes, moe_select() with the
# posterior over K (bridge sampling), Merge-Truncate-Merge of the over-fitted
# K = 6 fit, BIC and ICL; the sensitivity of MTM to its constant c and to the
# definition of the weights; and the same on the tone perception data.
#
# Run from the package root, with the package installed:
#   nice Rscript inst/scripts/choosing-k.R [output file]
# About 30 minutes of one core (the CPU seconds of every run are stored in
# the output). With CHOOSING_K_PART=mtm_alone only the last part (the
# stand-alone cost of the MTM strategy) is run and added to the existing
# output file.

library(bayesmoe)

out_file <- commandArgs(trailingOnly = TRUE)[1]
if (is.na(out_file)) out_file <- file.path("inst", "extdata", "choosing-k.rds")

# Softmax-gated linear-Gaussian experts with one covariate x ~ U(0, 1);
# alpha: 2 x K (intercepts, slopes), W: 2 x K gating (last column 0).
simulate <- function(n, truth, seed) {
  set.seed(seed)
  x <- runif(n)
  X <- cbind(1, x)
  eta <- X %*% truth$W
  g <- exp(eta - apply(eta, 1, max))
  g <- g / rowSums(g)
  k <- apply(g, 1, function(p) sample.int(length(p), 1, prob = p))
  y <- rowSums(X * t(truth$alpha[, k])) + rnorm(n, sd = truth$sigma[k])
  data.frame(x = x, y = y)
}

# "two" and "three": well-separated experts (the regression lines stay at
# least 1.5 apart, five noise s.d., on [0, 1]); "crossing": three experts of
# which two cross at x = 0.5, where all three gates are equal (a harder case).
truths <- list(
  two = list(k = 2L, alpha = cbind(c(0, 3), c(4, -3)), sigma = c(0.4, 0.4),
             W = cbind(c(-2, 4), c(0, 0))),
  three = list(k = 3L, alpha = cbind(c(4, -2), c(-3, 2), c(0.5, 0)), sigma = c(0.3, 0.3, 0.3),
               W = cbind(c(3, -6), c(-3, 6), c(0, 0))),
  crossing = list(k = 3L, alpha = cbind(c(0, 4), c(3, -2), c(-2, 1)), sigma = c(0.3, 0.3, 0.3),
                  W = cbind(c(3, -6), c(-3, 6), c(0, 0)))
)
settings <- list(n = c(200L, 500L, 1000L, 2000L, 4000L), K = 1:6, chains = 2L, iter = 2000L,
                 starts = 10L, c_grid = c(0.05, 0.1, 0.2, 0.5, 1),
                 weights = c("intercept", "gate"))
# a quick smoke run of the script (not for the vignette)
if (identical(Sys.getenv("CHOOSING_K_QUICK"), "true")) {
  settings$n <- c(200L, 400L)
  settings$iter <- 200L
  settings$starts <- 2L
}

# Stand-alone cost of the MTM strategy on the well-separated truths. Above,
# the over-fitted K = 6 fit is shared with the posterior route, so its cost
# is inside that route's. moe_select(method = "mtm") with the same seed
# refits exactly that K = 6 fit (same derived seed) and applies MTM (same
# seed): the estimate must be the same, and `cpu[["mtm"]]` is the cost of
# the strategy alone (one Gibbs fit + MTM). The EM fits, always run for BIC
# and ICL, do not enter MTM: one start each, and not counted.
mtm_alone <- function() {
  rows <- list()
  for (tn in c("two", "three")) {
    tr <- truths[[tn]]
    for (n in settings$n) {
      d <- simulate(n, tr, seed = 1000L + n + tr$k)
      sel <- moe_select(y ~ x, data = d, K = settings$K, method = "mtm",
                        chains = settings$chains, iter = settings$iter,
                        starts = 1L, seed = n, progress = FALSE)
      rows[[length(rows) + 1L]] <- data.frame(
        truth = tn, k_true = tr$k, n = n, K_max = max(settings$K),
        p_true = unname(sel$probs[as.character(tr$k)]), K_hat = sel$K_hat,
        cpu_mtm_strategy = sel$cpu[["mtm"]],
        cpu_sampler = sum(sel$fits$mtm$timing))
      cat(sprintf("MTM alone, %s experts, n = %d: P(K = k*) = %.3f, %.1f s\n",
                  tn, n, rows[[length(rows)]]$p_true, sel$cpu[["mtm"]]))
    }
  }
  do.call(rbind, rows)
}
if (identical(Sys.getenv("CHOOSING_K_PART"), "mtm_alone")) {
  res <- readRDS(out_file)
  settings <- res$settings
  res$mtm_alone <- mtm_alone()
  res$mtm_alone_created <- format(Sys.time(), "%Y-%m-%d")
  saveRDS(res, out_file, compress = "xz")
  cat(sprintf("Added $mtm_alone to %s; CPU %.0f s\n", out_file,
              sum(res$mtm_alone$cpu_mtm_strategy)))
  quit(save = "no")
}

tables <- list()
khats <- list()
sens <- list()
traces <- list()
for (tn in names(truths)) {
  tr <- truths[[tn]]
  for (n in settings$n) {
    d <- simulate(n, tr, seed = 1000L + n + tr$k)
    t0 <- proc.time()
    sel <- moe_select(y ~ x, data = d, K = settings$K,
                      method = c("posterior", "mtm", "bic", "icl"),
                      chains = settings$chains, iter = settings$iter,
                      starts = settings$starts, seed = n, progress = FALSE)
    cpu <- sum((proc.time() - t0)[1:2])
    tables[[length(tables) + 1L]] <- cbind(truth = tn, k_true = tr$k, n = n, sel$table)
    khats[[length(khats) + 1L]] <- data.frame(
      truth = tn, k_true = tr$k, n = n, method = names(sel$K_hats),
      K_hat = unname(sel$K_hats), cpu = cpu,
      cpu_posterior = sel$cpu[["posterior"]], cpu_em = sel$cpu[["em"]],
      cpu_mtm = sel$cpu[["mtm"]])
    for (w in settings$weights) for (cc in settings$c_grid) {
      m <- moe_mtm(sel$fits$mtm, c = cc, weights = w, seed = 1)
      sens[[length(sens) + 1L]] <- data.frame(
        truth = tn, k_true = tr$k, n = n, weights = w, c = cc, omega = m$omega,
        threshold = m$threshold, p_true = unname(m$probs[tr$k]), K_hat = m$K_hat)
    }
    traces[[paste(tn, n)]] <- data.frame(chain = sel$mtm$draw$chain,
                                         iteration = sel$mtm$draw$iteration, K = sel$mtm$K)
    cat(sprintf("%s experts, n = %d: posterior P(K = k*) = %.3f, MTM %.3f, K_hat %s; %.0f s\n",
                tn, n, sel$table$post_prob[tr$k], sel$table$mtm_freq[tr$k],
                paste(names(sel$K_hats), sel$K_hats, collapse = " "), cpu))
  }
}

# the tone perception data (n = 150)
t0 <- proc.time()
tone <- moe_select(tuned ~ stretchratio, data = tonedata, K = 1:4,
                   method = c("posterior", "mtm", "bic", "icl"),
                   chains = settings$chains, iter = settings$iter, starts = settings$starts,
                   seed = 1, progress = FALSE)
tone_cpu <- sum((proc.time() - t0)[1:2])
tone_sens <- do.call(rbind, lapply(settings$c_grid, function(cc) {
  m <- moe_mtm(tone$fits$mtm, c = cc, seed = 1)
  data.frame(c = cc, threshold = m$threshold, t(m$probs), check.names = FALSE)
}))

res <- list(
  settings = settings, truths = truths,
  table = do.call(rbind, tables), K_hat = do.call(rbind, khats),
  mtm_sensitivity = do.call(rbind, sens), mtm_traces = traces,
  tone = list(table = tone$table, K_hats = tone$K_hats, cpu = tone_cpu,
              mtm_sensitivity = tone_sens,
              em = lapply(tone$fits$em, function(f) f$coefficients)),
  mtm_alone = mtm_alone(),
  created = format(Sys.time(), "%Y-%m-%d"),
  versions = c(R = R.version.string, bayesmoe = as.character(utils::packageVersion("bayesmoe")))
)
dir.create(dirname(out_file), showWarnings = FALSE, recursive = TRUE)
saveRDS(res, out_file, compress = "xz")
cat(sprintf("Wrote %s; total CPU %.0f s\n", out_file,
            sum(res$K_hat$cpu[!duplicated(res$K_hat[c("truth", "n")])]) + tone_cpu))
