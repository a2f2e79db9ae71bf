# Gibbs sampler of bayesmoe against brms (NUTS) on the same 3-expert,
# one-covariate mixture of experts, and the cost of one Gibbs sweep against
# one log-likelihood pass in C.
#
# Run: Rscript bench/mcmc-vs-brms.R   (or `make bench`; brms and rstan are
# Suggests-only and optional: without them only the bayesmoe part runs).
# Settings: BENCH_N (default 1000), BENCH_ITER (2000), BENCH_CHAINS (4),
# BENCH_REPS (5: each bayesmoe fit is repeated with the same seed, which
# gives the same draws, and its median CPU time is used, as single timings
# on a shared machine vary by 10-30%);
# BENCH_BRMS_CACHE=<file.rds> saves the brms results (rows of the table and
# their messages) there, or reads them back when the file exists and was
# made with the same settings, so that the bayesmoe part can be re-run
# without recompiling and re-running Stan.
#
# Efficiency is measured on label-invariant quantities: the total
# log-likelihood of each draw and the predictive mean E(y | x) at five fixed
# x, by bulk ESS (posterior::ess_bulk) per CPU second of sampling (user +
# system; chains run one after the other on one core, so CPU = elapsed).
# brms' compile time is reported separately. The priors differ (brms
# defaults vs moe_prior() defaults); with n = 1000 both posteriors are
# dominated by the likelihood, and their means are printed side by side.
suppressPackageStartupMessages(library(bayesmoe))
if (!requireNamespace("posterior", quietly = TRUE)) stop("bench needs the posterior package")
n <- as.integer(Sys.getenv("BENCH_N", "1000"))
iter <- as.integer(Sys.getenv("BENCH_ITER", "2000"))
chains <- as.integer(Sys.getenv("BENCH_CHAINS", "4"))
x0 <- c(-2, -1, 0, 1, 2)
cpu <- function(t) sum(t[c("user.self", "sys.self")])

# Truth (original scale): gating logits (-8 x, 4 - 4 x, 0); experts
# y = 4 + x, y = 2 x, y = 6 - x, sd 0.3, 0.4, 0.5; x ~ U(-3, 3).
sim_three <- function(n) {
  x <- runif(n, -3, 3)
  eta <- cbind(-8 * x, 4 - 4 * x, 0)
  g <- exp(eta - apply(eta, 1L, max))
  k <- 1L + rowSums(runif(n) * rowSums(g) > t(apply(g, 1L, cumsum))[, 1:2])
  a <- rbind(c(4, 0, 6), c(1, 2, -1))
  data.frame(x = x, y = a[1L, k] + a[2L, k] * x + c(0.3, 0.4, 0.5)[k] * rnorm(n))
}
set.seed(2024)
d <- sim_three(n)

summ <- function(name, ll, pm, seconds) {
  # ll: [iter, chains]; pm: [iter, chains, 5]
  ess_ll <- posterior::ess_bulk(ll)
  ess_pm <- apply(pm, 3L, posterior::ess_bulk)
  rhat_pm <- apply(pm, 3L, posterior::rhat)
  cat(sprintf("%s: E(y | x) at x = %s: posterior mean %s; bulk ESS %s; Rhat %s\n", name,
              paste(x0, collapse = ", "),
              paste(format(apply(pm, 3L, mean), digits = 4), collapse = ", "),
              paste(round(ess_pm), collapse = ", "),
              paste(format(rhat_pm, digits = 3), collapse = ", ")))
  data.frame(sampler = name, cpu_s = seconds, mean_ll = mean(ll),
             rhat_ll = posterior::rhat(ll), ess_ll = ess_ll, ess_ll_s = ess_ll / seconds,
             rhat_pm_max = max(rhat_pm), ess_pm_min = min(ess_pm),
             ess_pm_s_min = min(ess_pm) / seconds, ess_pm_s_median = median(ess_pm) / seconds)
}

## ---- bayesmoe ----
if (requireNamespace("future", quietly = TRUE)) future::plan(future::sequential)
reps_fit <- as.integer(Sys.getenv("BENCH_REPS", "5"))
# `reps_fit` fits with the same seed (the same draws, checked); the fit is
# returned with the median of their chain CPU times in `cpu_chains`, all of
# them in `cpu_all`, and the CPU time of its whole call (EM start included)
# in `cpu_call`.
timed_fit <- function(control = moe_mcmc_control()) {
  fits <- lapply(seq_len(reps_fit), function(r) {
    t <- system.time(f <- moe_mcmc(y ~ x, data = d, K = 3, chains = chains, iter = iter,
                                   seed = 1, progress = FALSE, control = control))
    f$cpu_call <- cpu(t)
    f
  })
  same <- vapply(fits, function(f) identical(f$draws, fits[[1L]]$draws), NA)
  if (!all(same)) stop("repeated fits with the same seed gave different draws")
  out <- fits[[1L]]
  out$cpu_all <- vapply(fits, function(f) sum(f$timing), 0)
  out$cpu_chains <- stats::median(out$cpu_all)
  out
}
fit <- timed_fit()
S <- dim(fit$draws)[1L]
pred_mean <- function(draws, x0, K = 3L) {
  # draws: [S, chains, P] in the layout of coef(); predictive mean at x0
  D <- matrix(draws, ncol = dim(draws)[3L])
  p <- 2L
  q <- 2L
  out <- vapply(x0, function(x) {
    eta <- matrix(0, nrow(D), K)
    mu <- matrix(0, nrow(D), K)
    for (k in seq_len(K)) {
      mu[, k] <- D[, (k - 1L) * (p + 1L) + 1L] + x * D[, (k - 1L) * (p + 1L) + 2L]
      if (k < K) eta[, k] <- D[, (p + 1L) * K + (k - 1L) * q + 1L] +
          x * D[, (p + 1L) * K + (k - 1L) * q + 2L]
    }
    g <- exp(eta - apply(eta, 1L, max))
    rowSums(g * mu) / rowSums(g)
  }, numeric(nrow(D)))
  array(out, c(dim(draws)[1:2], length(x0)))
}
pm_moe <- pred_mean(fit$draws, x0)
cat(sprintf("bayesmoe: n = %d, %d chains x %d iterations; CPU %.2f s in total (EM start included); in the chains, median of %d fits %.2f s (all: %s)\n",
            n, chains, iter, fit$cpu_call, reps_fit, fit$cpu_chains,
            paste(sprintf("%.2f", fit$cpu_all), collapse = ", ")))
cat("bayesmoe: mean log-likelihood per chain:", format(colMeans(fit$loglik_draws), nsmall = 2),
    "; gating MH acceptance", format(mean(fit$accept), digits = 2), "\n")
cat("bayesmoe: Rhat of the log-likelihood", format(posterior::rhat(fit$loglik_draws), digits = 4),
    "; largest difference of the chain means", format(diff(range(colMeans(fit$loglik_draws))), digits = 3), "\n")
res <- summ("bayesmoe (collapsed, default)", fit$loglik_draws, pm_moe, fit$cpu_chains)
# the other gating updates: Polya-Gamma draws (and the MH refresh), Metropolis-Hastings only
fit_pgmh <- timed_fit(moe_mcmc_control(gate_update = "pg+mh"))
res <- rbind(res, summ("bayesmoe (PG + MH)", fit_pgmh$loglik_draws,
                       pred_mean(fit_pgmh$draws, x0), fit_pgmh$cpu_chains))
fit_pg <- timed_fit(moe_mcmc_control(gate_update = "pg"))
res <- rbind(res, summ("bayesmoe (PG only)", fit_pg$loglik_draws,
                       pred_mean(fit_pg$draws, x0), fit_pg$cpu_chains))
fit_mh <- timed_fit(moe_mcmc_control(gate_update = "mh"))
res <- rbind(res, summ("bayesmoe (MH only)", fit_mh$loglik_draws,
                       pred_mean(fit_mh$draws, x0), fit_mh$cpu_chains))

## ---- cost of one sweep against one log-likelihood pass ----
# Measured in the same run, alternating: 7 repetitions of 300 sweeps of one
# chain (the C sampler through bayesmoe:::gibbs_chain_c(), internal-scale
# data, from the final state of chain 1, every draw kept with its
# log-likelihood, as in the fits above) for each
# gating update ("collapsed" with the default gate_steps), and of 300 log-likelihood passes (ffi_loglik); medians of
# the CPU time per observation per expert.
s <- bayesmoe:::mcmc_data(fit$scaling, fit$y, fit$X, fit$Z, fit$weights)
st <- fit$state[[1L]]
pc <- bayesmoe:::prior_internal(fit$prior, ncol(fit$X), ncol(fit$Z))
reps <- 7L
sweeps <- 300L
per <- function(t, m) 1e9 * cpu(t) / (m * n * 3)
modes <- c("pg", "pg+mh", "mh", "collapsed")
spec <- bayesmoe:::make_spec(gate_softmax(), expert_linear())
# one chain of `sweeps` sweeps of the fused kernel (no Metropolis blocks
# besides the gating moves) with gating update `mode` and the fit's
# gate_steps and pg_every, drawing from the session's RNG
sweep_chain <- function(mode) {
  gm <- bayesmoe:::gate_mode(fit$control)
  gm[1L] <- match(mode, modes) - 1L
  bayesmoe:::gibbs_chain_c(s, pc, 3L, st, gate_softmax(), expert_linear(),
                           bayesmoe:::variant_adapt_init(spec, ncol(s$Z), 3L), numeric(),
                           bayesmoe:::mcmc_control_c(0L, sweeps, 1L, 0L, 0L, 1L, gm), 0L)
}
tm <- matrix(NA_real_, reps, 5L, dimnames = list(NULL, c("loglik", modes)))
set.seed(3)
for (r in seq_len(reps)) {
  tm[r, "loglik"] <- per(system.time(for (u in seq_len(sweeps))
    .Call(bayesmoe:::ffi_loglik, s$y, s$X, s$Z, s$w, st$alpha, st$sigma2, st$W)), sweeps)
  for (mode in modes) {
    tm[r, mode] <- per(system.time(sweep_chain(mode)), sweeps)
  }
}
med <- apply(tm, 2L, median)
cat(sprintf("cost per observation per expert (median of %d): log-likelihood pass %.1f ns; Gibbs sweep with gating %s\n",
            reps, med[["loglik"]],
            paste(sprintf("\"%s\" %.1f ns (%.1f x the pass)", names(med)[-1L], med[-1L],
                          med[-1L] / med[["loglik"]]), collapse = ", ")))

## ---- brms ----
brms_ok <- requireNamespace("brms", quietly = TRUE) && requireNamespace("rstan", quietly = TRUE)
cache <- Sys.getenv("BENCH_BRMS_CACHE")
key <- list(n = n, iter = iter, chains = chains, data = d)
cached <- if (nzchar(cache) && file.exists(cache)) readRDS(cache) else NULL
if (!is.null(cached) && identical(cached$key, key)) {
  cat(sprintf("brms: results read from %s (run of %s):\n", cache, cached$date))
  cat(cached$log, sep = "\n")
  res <- rbind(res, cached$rows)
} else if (!brms_ok || identical(Sys.getenv("BENCH_BRMS"), "false")) {
  cat("brms or rstan is not installed (or BENCH_BRMS=false): brms comparison skipped.\n")
} else {
  suppressPackageStartupMessages(library(brms))
  # Debian keeps the Boost headers in the system include folder rather than
  # in BH: point rstan at it when its own setting is empty.
  bl <- tryCatch(rstan::rstan_options("boost_lib"), error = function(e) NULL)
  if ((is.null(bl) || !nzchar(bl) || !dir.exists(file.path(bl, "boost"))) &&
      dir.exists("/usr/include/boost")) {
    rstan::rstan_options(boost_lib = "/usr/include")
  }
  form <- bf(y ~ 1, mu1 ~ x, mu2 ~ x, mu3 ~ x, theta2 ~ x, theta3 ~ x)
  fam <- mixture(gaussian, gaussian, gaussian)
  t_compile <- system.time(b0 <- brm(form, data = d, family = fam, chains = 0,
                                     silent = 2, refresh = 0))
  cat(sprintf("brms: compile %.1f s elapsed (%.1f s CPU incl. the compiler)\n",
              t_compile[["elapsed"]], sum(t_compile[c(1, 2, 4, 5)], na.rm = TRUE)))
  # Starting values for Stan from bayesmoe's EM solution: brms orders the
  # components by their intercepts at the mean of x (centred predictors) and
  # takes the first as the gating reference.
  em <- fit$em$par
  xbar <- mean(d$x)
  ord <- order(em$alpha[1, ] + em$alpha[2, ] * xbar)
  em_init <- function() {
    a <- em$alpha[, ord]
    W <- em$W[, ord] - em$W[, ord[1]]
    list(ordered_Intercept = as.array(a[1, ] + a[2, ] * xbar),
         b_mu1 = as.array(a[2, 1]), b_mu2 = as.array(a[2, 2]), b_mu3 = as.array(a[2, 3]),
         sigma1 = sqrt(em$sigma2[ord[1]]), sigma2 = sqrt(em$sigma2[ord[2]]),
         sigma3 = sqrt(em$sigma2[ord[3]]),
         Intercept_theta2 = W[1, 2] + W[2, 2] * xbar, b_theta2 = as.array(W[2, 2]),
         Intercept_theta3 = W[1, 3] + W[2, 3] * xbar, b_theta3 = as.array(W[2, 3]))
  }
  run_brms <- function(label, init) {
    t_brms <- system.time(b <- update(b0, recompile = FALSE, chains = chains, iter = iter,
                                      cores = 1, seed = 1, refresh = 0, silent = 2,
                                      init = init))
    el <- rstan::get_elapsed_time(b$fit)
    Sb <- iter - floor(iter / 2)
    ll_b <- matrix(rowSums(log_lik(b)), Sb, chains)
    pm_b <- array(posterior_epred(b, newdata = data.frame(x = x0)), c(Sb, chains, length(x0)))
    cat(sprintf("%s: sampling CPU %.1f s (Stan warm-up + sampling per chain: %s s)\n", label,
                cpu(t_brms), paste(sprintf("%.1f", rowSums(el)), collapse = ", ")))
    np <- nuts_params(b)
    cat(sprintf("%s: %d divergent transitions, %d at max treedepth\n", label,
                sum(np$Value[np$Parameter == "divergent__"]),
                sum(np$Value[np$Parameter == "treedepth__"] >= 10)))
    cat(label, ": mean log-likelihood per chain: ", paste(format(colMeans(ll_b), nsmall = 2),
                                                         collapse = " "), "\n", sep = "")
    summ(label, ll_b, pm_b, cpu(t_brms))
  }
  log <- capture.output(rows <- rbind(
    run_brms("brms (NUTS, default inits)", "random"),
    run_brms("brms (NUTS, EM inits)", em_init)), split = TRUE)
  log <- c(sprintf("brms: compile %.1f s elapsed (%.1f s CPU incl. the compiler)",
                   t_compile[["elapsed"]], sum(t_compile[c(1, 2, 4, 5)], na.rm = TRUE)), log)
  if (nzchar(cache)) {
    saveRDS(list(key = key, date = format(Sys.time()), log = log, rows = rows), cache)
  }
  res <- rbind(res, rows)
  # the machine's speed drifts over minutes: time the default sampler again
  # after brms and use the median of all its timings
  late <- timed_fit()
  if (!identical(late$draws, fit$draws)) stop("the repeated default fit gave different draws")
  cat(sprintf("bayesmoe (collapsed, default), again after brms: chains %s s\n",
              paste(sprintf("%.2f", late$cpu_all), collapse = ", ")))
  fit$cpu_all <- c(fit$cpu_all, late$cpu_all)
  fit$cpu_chains <- stats::median(fit$cpu_all)
  res[1L, ] <- summ("bayesmoe (collapsed, default)", fit$loglik_draws, pm_moe, fit$cpu_chains)
  cat(sprintf("bayesmoe (collapsed, default): median of all %d timings %.2f s\n",
              length(fit$cpu_all), fit$cpu_chains))
}
print(res, digits = 4, row.names = FALSE)
for (j in grep("^brms", res$sampler)) {
  for (i in grep("^bayesmoe", res$sampler)) {
    cat(sprintf("ESS/s ratio %s / %s: log-likelihood %.0f x; predictive mean, min over x %.0f x, median %.0f x\n",
                res$sampler[i], res$sampler[j], res$ess_ll_s[i] / res$ess_ll_s[j],
                res$ess_pm_s_min[i] / res$ess_pm_s_min[j],
                res$ess_pm_s_median[i] / res$ess_pm_s_median[j]))
  }
}
# the spread of the default sampler's ratios over its repeated timings
j <- match("brms (NUTS, EM inits)", res$sampler)
if (!is.na(j)) {
  r_pm <- res$ess_pm_min[1L] / fit$cpu_all / res$ess_pm_s_min[j]
  r_ll <- res$ess_ll[1L] / fit$cpu_all / res$ess_ll_s[j]
  cat(sprintf("over the %d timings of the default sampler: log-likelihood %.0f-%.0f x; predictive mean, min over x %.0f-%.0f x\n",
              length(fit$cpu_all), min(r_ll), max(r_ll), min(r_pm), max(r_pm)))
}
