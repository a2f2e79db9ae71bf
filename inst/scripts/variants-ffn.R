# Precomputed results of section (a) "Linear versus FFN experts" of the
# vignette "Gating and expert variants" (vignettes/variants.Rmd).
#
# Run from the package root with the package installed:
#   nice -n 10 Rscript inst/scripts/variants-ffn.R
# Writes inst/extdata/variants-ffn.rds. About 8 minutes of CPU on one core
# (one R process; set BAYESMOE_QUICK=true for a two-minute trial run that
# writes to tempdir() instead).
#
# Part 1: the curved two-expert truth of the tests (sin- and tanh-shaped
#   experts, softmax gate in x, n = 2,000): log-likelihoods of EM fits of
#   the mixture density with linear and with FFN experts, and of an MCMC run
#   with FFN experts.
# Part 2: the least-squares (regression-form) contraction study that the
#   theory is about (Nguyen, Ho and Rinaldo, 2024): a two-expert truth with
#   FFN experts fitted by FFN experts, and a two-expert truth with linear
#   experts fitted by linear experts, both exactly specified (K = 2) and
#   over-specified (K = 3); for every n, replicates of moe_ls_fit() and the
#   strong Voronoi loss (voronoi_loss_strong(), gating translation infimum)
#   plus the L2 distance of the regression functions, all by
#   moe_contraction(method = "ls"). Slopes: OLS of the log
#   median (and of the log mean) over the replicates on log n.

library(bayesmoe)
quick <- identical(Sys.getenv("BAYESMOE_QUICK"), "true")
t_start <- proc.time()

# ---- part 1: log-likelihoods on the curved truth ---------------------------
set.seed(15)
n <- 2000
x <- runif(n, -1, 1)
first <- runif(n) < plogis(6 * x)
y <- ifelse(first, sin(3 * x) + 1, 2 * tanh(3 * x) - 1) + rnorm(n, sd = 0.15)
curved <- data.frame(x = x, y = y)
tm_lin <- system.time(lin <- moe_em(y ~ x, data = curved, K = 2, starts = 5, seed = 1))
tm_ffn <- system.time(ffn <- suppressWarnings(
  moe_em(y ~ x, data = curved, K = 2, expert = expert_ffn(2), starts = 3, seed = 1,
         control = moe_em_control(maxit = if (quick) 200 else 1000, tol = 1e-8)),
  classes = "bayesmoe_warning_convergence"))
tm_mc <- system.time(mc <- moe_mcmc(y ~ x, data = curved, K = 2, expert = expert_ffn(2),
                                    chains = 2, iter = if (quick) 200 else 1000, seed = 2,
                                    control = moe_mcmc_control(em_starts = 2)))
grid <- data.frame(x = seq(-1, 1, length.out = 101))
loglik <- data.frame(
  model = c("EM, linear experts", "EM, FFN experts (2 hidden units)",
            "MCMC, FFN experts (2 hidden units)"),
  loglik = c(as.numeric(logLik(lin)), as.numeric(logLik(ffn)), as.numeric(logLik(mc))),
  df = c(attr(logLik(lin), "df"), attr(logLik(ffn), "df"), attr(logLik(mc), "df")),
  seconds = c(tm_lin[1] + tm_lin[2], tm_ffn[1] + tm_ffn[2], tm_mc[1] + tm_mc[2]),
  stringsAsFactors = FALSE)
curves <- list(grid = grid$x,
               linear = predict(lin, grid, type = "expert"),
               ffn = predict(ffn, grid, type = "expert"),
               ffn_gate = predict(ffn, grid, type = "gating"),
               mcmc_loglik_range = range(mc$loglik_draws),
               mcmc_accept = mc$accept)
sub <- curved[seq_len(600), ]

# ---- part 2: least-squares contraction -------------------------------------
# Two experts with well separated gating regions (gate slope -4 in x), each
# expert curved inside its own region; noise sd 0.05; x ~ Uniform(-1, 1).
truths <- list(
  ffn = moe_truth(beta0 = c(0, 0), beta1 = c(-4, 0),
                  eta = cbind(c(5, 2.5, 1.5, 0), c(-5, 2.5, 1, 0.5)), sigma = c(0.05, 0.05),
                  expert = expert_ffn(1), sd = 0.05),
  linear = moe_truth(beta0 = c(0, 0), beta1 = c(-4, 0), a = c(2, -1), b = c(1, -0.5),
                     sigma = c(0.05, 0.05), sd = 0.05))
ns <- if (quick) c(500, 2000) else c(500, 1000, 2000, 4000, 8000)
reps <- if (quick) 2 else 16
runs <- list()
for (kind in names(truths)) for (K in c(2L, 3L)) {
  # two data-driven starts plus the (split) truth; the smallest RSS is kept
  st <- moe_contraction(truths[[kind]], n = ns, reps = reps, K = K, method = "ls",
                        losses = c("D", "l2"), starts = 2, seed = 7,
                        control = moe_ls_control(maxit = 500, tol = 1e-10))
  r <- st$results
  res <- merge(data.frame(n = r$n[r$loss == "D_strong"], rep = r$rep[r$loss == "D_strong"],
                          loss = r$value[r$loss == "D_strong"]),
               data.frame(n = r$n[r$loss == "l2"], rep = r$rep[r$loss == "l2"],
                          l2 = r$value[r$loss == "l2"]))
  res <- merge(res, st$runs[c("n", "rep", "status", "seconds")])
  res$truth <- kind
  res$K <- K
  runs[[paste(kind, K)]] <- res
  cat(sprintf("%-6s K = %d: %.0f s\n", kind, K, sum(res$seconds)))
}
contraction <- do.call(rbind, runs)
rownames(contraction) <- NULL
# OLS slopes of log(median or mean loss over the replicates) on log(n)
ls_slopes <- function(res, statistic) {
  vapply(c("loss", "l2"), function(cl) {
    m <- tapply(res[[cl]], res$n, statistic, na.rm = TRUE)
    unname(stats::coef(stats::lm(log(m) ~ log(as.numeric(names(m)))))[2L])
  }, 0)
}
slopes <- do.call(rbind, lapply(runs, function(r) {
  s <- ls_slopes(r, median)
  m <- ls_slopes(r, mean)
  data.frame(truth = r$truth[1], K = r$K[1], slope_loss = s[["loss"]], slope_l2 = s[["l2"]],
             slope_loss_mean = m[["loss"]], slope_l2_mean = m[["l2"]])
}))
rownames(slopes) <- NULL

out <- list(loglik = loglik, curves = curves, data = sub, contraction = contraction,
            slopes = slopes, truths = truths, n = ns, reps = reps,
            seconds = unname((proc.time() - t_start)[1] + (proc.time() - t_start)[2]),
            quick = quick, version = as.character(utils::packageVersion("bayesmoe")),
            date = format(Sys.time(), "%Y-%m-%d"))
file <- if (quick) file.path(tempdir(), "variants-ffn.rds") else
  file.path("inst", "extdata", "variants-ffn.rds")
dir.create(dirname(file), showWarnings = FALSE, recursive = TRUE)
saveRDS(out, file)
print(loglik)
print(slopes)
cat(sprintf("total %.0f s CPU; written to %s\n", out$seconds, file))
