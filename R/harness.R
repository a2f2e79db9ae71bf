# The contraction-rate harness (Nguyen, Nguyen and Ho, 2023): for every
# sample size n and replicate, simulate from a truth, fit (EM or MCMC),
# compute the losses, and fit the log-log slope of the mean loss on n.
#
# Reproducibility: every (n, replicate) task gets its own L'Ecuyer-CMRG
# stream, derived from `seed` in a fixed task order, and sets it itself, so
# the results are identical whether the tasks run sequentially or through
# any future plan.

#' Contraction rates of fits from simulated data
#'
#' For every sample size in `n` and every replicate, `moe_contraction()`
#' simulates a data set from `truth` with [rmoe()], fits a mixture of `K`
#' experts (by EM through [moe_em_fit()], or by MCMC through [moe_mcmc()]),
#' and computes the Voronoi loss ([voronoi_loss()]: D1 when `K` equals the
#' number of true experts, D2 when it is larger) and the conditional-density
#' distances ([density_loss()]). The slope of the logarithm of the mean loss
#' (over replicates) on \eqn{\log n} estimates the contraction rate; the theory
#' for softmax-gated Gaussian mixtures of experts (the density framework, not
#' the least-squares regression form) gives \eqn{\sqrt{\log n / n}}, a slope
#' close to \eqn{-1/2}, for the density distances and for D1 and D2, while
#' inside a Voronoi cell of two fitted atoms \eqn{\beta_1} and \eqn{b} move at
#' \eqn{n^{-1/8}} and \eqn{a} and \eqn{\sigma^2} at \eqn{n^{-1/4}} (recorded with
#' `cells = TRUE`).
#'
#' `method = "ls"` studies the least-squares regression form instead
#' ([moe_ls()]; Nguyen, Ho and Rinaldo, 2024): data
#' \eqn{y = \sum_k g_k(x) h(x; \eta_k) + \varepsilon} with \eqn{x} uniform
#' on \eqn{[-1, 1]} and noise standard deviation `truth$sd` (or the common
#' `sigma` of the truth), fitted by [moe_ls_fit()] with `K` experts of the
#' truth's kind (linear, or [expert_ffn()] networks: see [moe_truth()]);
#' the losses are the Voronoi loss for strongly identifiable experts
#' ([voronoi_loss_strong()], infimum over gating translations, recorded as
#' `"D_strong"`) and the \eqn{L^2} distance of the fitted and true
#' regression functions over \eqn{x} (`"l2"`). With `init = "near_truth"`
#' (the default for this method) the truth is one more start (for
#' `K` larger than the number of true experts, its first expert split in two
#' of half the gating weight each), so that the study measures the error of
#' the least-squares estimator rather than the optimiser's failures to find
#' it. The theory gives rates near \eqn{n^{-1/2}} for FFN experts and the
#' regression function, and slower than any polynomial rate for the
#' parameters of linear experts. This method needs one covariate;
#' `reference`, `translation`, `rbar`, `probs`, `mcmc` and `density_draws`
#' do not apply to it.
#'
#' Replicates run through [future.apply::future_lapply()] when the
#' future.apply package is installed (set a [future::plan()] to run them in
#' parallel), sequentially otherwise. When the progressr package is
#' installed, each finished (n, replicate) task is a step of one
#' [progressr::progressor()] ("n = 200, replicate 3 of 10"), shown once
#' handlers are enabled (`progressr::handlers(global = TRUE)` or
#' `progressr::with_progress()`; under `Rscript` also
#' `options(progressr.enable = TRUE)`). Each (n, replicate) task has its own
#' L'Ecuyer-CMRG random number stream derived from `seed`, so the results
#' are identical whatever the plan. The caller's random number state is left
#' untouched.
#'
#' EM fits use the data as simulated, with an intercept and the covariates
#' for both the experts and the gating. `init = "near_truth"` starts EM from
#' the truth, perturbed as in the published simulation code (an oracle start,
#' not available for real data): each fitted expert is mapped to a true one
#' by a random onto map that sends the last fitted expert to the reference;
#' gating vectors get \eqn{N(0, (0.005 n^{-0.083})^2)} noise (one draw per
#' expert), expert coefficients \eqn{N(0, (0.05 n^{-0.083})^2)} and variances
#' \eqn{|N(0, (0.005 n^{-1/4})^2)|} (added to the true variance; the published
#' code adds it to the standard deviation). MCMC fits call
#' `moe_mcmc(y ~ x, data = sim, K = K, seed = <from the task's stream>, ...)`
#' with the arguments in `mcmc`; their losses are computed for every
#' posterior draw (density distances on `density_draws` evenly spaced draws)
#' and summarised by the posterior mean and the `probs` quantile.
#'
#' @section Checkpoints and clusters:
#' With `checkpoint = dir` every finished task is written to `dir` as soon as
#' it finishes (by the process that ran it, to a temporary file then renamed,
#' so a file is complete or absent), together with a fingerprint of the study
#' (an MD5 sum of the truth, the settings, the task table and the random
#' number streams). Running the same call again after an interruption
#' (Ctrl-C, a killed R session, a dead worker) reads the finished tasks and
#' runs only the others: each task has its own L'Ecuyer-CMRG stream fixed by
#' `seed` and its place in the task table, so the results are identical to
#' those of an uninterrupted run (except the CPU seconds in `$runs`). A call
#' whose arguments make another study (other `n`, `reps`, `seed`, truth or
#' settings; `drop_n` may change) is refused with an error of class
#' `bayesmoe_error_checkpoint`. Tasks are saved as they finish when the
#' directory is visible to the workers (any local plan, or a shared file
#' system on a cluster); otherwise when their results reach the main R
#' session.
#'
#' A task whose code fails (an error outside the fit, whose own errors are
#' recorded in `$runs`) does not stop the others: the result lists it in
#' `$failed` (task number, `n`, `rep`, its random number stream and the error
#' message), with a warning of class `bayesmoe_warning_task`. Rerun it alone
#' with the same arguments and `task_ids = $failed$task` (with the checkpoint
#' the same call without `task_ids` also runs just the missing tasks). When
#' a worker dies the run stops with an error of class
#' `bayesmoe_error_worker`; the tasks finished by then are in the
#' checkpoint. The tasks run through [future.apply::future_lapply()], so
#' the backend is any [future::plan()]: `multisession` on one machine,
#' `cluster` on several, or a scheduler through future.batchtools (see
#' `vignette("contraction", package = "bayesmoe")`).
#'
#' @section Random number of experts:
#' With `K = prior_K(...)` the number of experts is random, as in the
#' random-K regime of the theory (a mixture of finite mixtures, Miller and
#' Harrison 2018). Each replicate fits [moe_mcmc()] with every \eqn{K}
#' the prior charges (all with the same seed from the replicate's stream),
#' computes the log marginal likelihoods ([moe_marglik()]: closed form for
#' \eqn{K = 1}, bridge sampling otherwise), the posterior
#' \eqn{P(K = k \mid y) \propto p(k) p(y \mid k)} and its Monte Carlo
#' error, and the density losses of the **model-averaged** posterior: the
#' mixture of the fixed-K posteriors with weights \eqn{P(K = k \mid y)},
#' whose posterior mean of a loss is \eqn{\sum_k P(K = k \mid y) E(loss
#' \mid K = k, y)} and whose quantile is that of the draws of all fits
#' pooled with weights \eqn{P(K = k \mid y) / S_k} (fits with weight below
#' 1e-10 are left out). When the prior puts all its mass on one \eqn{K}
#' (`prior_K("custom", probs = )`), only that \eqn{K} is fitted and the
#' study equals the fixed-K study with the same seed. The largest fit is also
#' post-processed by Merge-Truncate-Merge ([moe_mtm()] with `weights =
#' "gate"`, the default radius and constant), the second K-selection
#' strategy. `losses` may be `"hellinger"` and `"tv"` (default: both); the
#' fits use the softmax gate and linear experts, an exchangeable gating
#' prior, and, unless `mcmc` says otherwise, 2 chains of 1000 iterations
#' (500 warm-up) each. The result also has `K_post` (per sample size,
#' replicate and \eqn{K}: prior, log marginal likelihood and its error,
#' posterior probability and its error, CPU seconds of the fit), `K_est`
#' (per replicate and strategy: \eqn{P(K = k^*)}, the mean and the mode
#' of \eqn{K}) and `K_table` (per strategy and sample size: the mean over
#' replicates of \eqn{P(K = k^*)} and its standard error; see
#' [moe_contraction_K()]).
#'
#' @param truth A truth from [moe_truth()], e.g. [moe_truth_example()].
#' @param n Sample sizes: whole numbers >= 10 (sorted, duplicates dropped).
#' @param reps Number of replicates per sample size.
#' @param K Number of fitted experts (default: as many as the truth), or a
#'   prior on the number of experts from [prior_K()] (`method = "mcmc"`
#'   only; see "Random number of experts").
#' @param method `"em"`, `"mcmc"` ([moe_mcmc()]) or `"ls"` (least squares
#'   in the regression form, see Details).
#' @param losses Which losses: any of `"D"` (the Voronoi loss, recorded as
#'   `"D1"` or `"D2"`), `"hellinger"` and `"tv"` (covariate-averaged
#'   Hellinger and total-variation distances); for `method = "ls"` any of
#'   `"D"` (recorded as `"D_strong"`) and `"l2"` (default: both).
#' @param seed A seed (whole number) for reproducible results, or `NULL` to
#'   draw one from the current random number stream.
#' @param init EM starts: `"default"` (the starts of [moe_em_fit()]) or
#'   `"near_truth"` (oracle starts, see Details; needs `K >= truth$K`). For
#'   `method = "ls"` (default there: `"near_truth"`) whether the truth is one
#'   more start.
#' @param starts Number of EM starts per fit; `NULL` gives 5, or for
#'   near-truth starts 1 when `K == truth$K` and 5 otherwise (as in the
#'   published runs). For `method = "ls"` the number of data-driven
#'   least-squares starts (`NULL`: 3).
#' @param x_design Covariate design of the simulated data, see [rmoe()].
#' @param drop_n Number of smallest sample sizes left out of the slope fits
#'   (pre-asymptotic points); change it afterwards with
#'   [moe_contraction_slopes()].
#' @param cells Record the per-parameter distances in the largest Voronoi
#'   cell ([voronoi_cells()])? Default: when `K > truth$K`.
#' @param reference,translation,rbar Passed to [voronoi_loss()].
#'   `translation = NULL` (default) uses the infimum over translations of the
#'   fitted gating for over-fitted fits (`K > truth$K`), where the loss under
#'   the reference convention does not vanish when two fitted atoms share the
#'   reference's cell, and the reference convention (with the best fitted
#'   reference, as the published exact-fitted results) otherwise.
#' @param probs For MCMC fits: the upper posterior quantile reported besides
#'   the posterior mean.
#' @param control EM settings, [moe_em_control()]; `NULL` uses
#'   `moe_em_control(maxit = 2000)`. For `method = "ls"`:
#'   [moe_ls_control()], `NULL` using `moe_ls_control(maxit = 500)`.
#' @param mcmc For `method = "mcmc"`: a named list of further arguments of
#'   [moe_mcmc()] among `gate`, `expert`, `prior`, `chains`, `iter`,
#'   `warmup`, `thin`, `init`, `control` and `progress` (the study sets the
#'   formula, data, `K` and seeds). Names and values are checked before any
#'   fit, as `moe_mcmc()` checks them; it must be empty for the other
#'   methods.
#' @param density_draws For MCMC fits: the number of posterior draws on
#'   which density distances are computed.
#' @param checkpoint `NULL`, or a directory (created if needed) where every
#'   finished (n, replicate) task is saved at once; see "Checkpoints and
#'   clusters". Needs a `seed`.
#' @param task_ids `NULL` (all tasks), or the numbers of the tasks to run:
#'   task \eqn{i} is row \eqn{i} of `expand.grid(rep = seq_len(reps), n = n)`
#'   (`n` sorted; the column `task` of `$failed`). The result holds the tasks
#'   run and those found in
#'   the `checkpoint`.
#' @return An object of class `moe_contraction`, a list with
#'   * `results`: a data frame with one row per sample size, replicate, loss
#'     and statistic: `n`, `rep`, `loss` (`"D1"`, `"D2"`, `"hellinger"`,
#'     `"tv"`, `"D_strong"`, `"l2"`), `statistic` (`"estimate"` for EM and
#'     least squares; `"mean"` and e.g. `"q90"`,
#'     the posterior mean and upper quantile, for MCMC) and `value`;
#'   * `cells` (when recorded): per sample size and replicate the size of the
#'     largest Voronoi cell and the largest distance of `beta1`, `a`, `b`,
#'     `sigma2` among its atoms (posterior means for MCMC);
#'   * `slopes`: the OLS slope of the log mean loss on \eqn{\log n}, named by
#'     loss (`"D1"` or `"D2"`, `"hellinger"`, `"tv"`), after dropping the
#'     `drop_n` smallest n; `cell_slopes` the same for the per-parameter
#'     distances in two-atom cells (when recorded);
#'   * `runs`: per fit the CPU seconds, EM iterations, log-likelihood, status
#'     and the first warning or error message;
#'   * `truth` and `settings`;
#'   * when tasks failed, `failed`: per failed task its number, `n`, `rep`,
#'     random number stream (`.Random.seed` as text) and error message (see
#'     "Checkpoints and clusters");
#'   * with a prior on K: `K_post`, `K_est` and `K_table` (see "Random
#'     number of experts").
#' @seealso [moe_contraction_slopes()], [plot.moe_contraction()],
#'   [moe_contraction_K()],
#'   `vignette("contraction", package = "bayesmoe")`.
#' @references Nguyen, H., Nguyen, T. and Ho, N. (2023). Demystifying softmax
#'   gating function in Gaussian mixture of experts. *NeurIPS 2023*.
#'   arXiv:2305.03288.
#'
#'   Nguyen, H., Ho, N. and Rinaldo, A. (2024). On least squares estimation
#'   in softmax gating mixture of experts. *ICML 2024*. arXiv:2402.02952.
#' @examples
#' tru <- moe_truth_example("p4")
#' st <- moe_contraction(tru, n = c(250, 500, 1000), reps = 2, seed = 1)
#' st
#' st$slopes
#' plot(st)
#' # the least-squares regression form with network experts
#' ffn <- moe_truth(beta0 = 0.5, beta1 = 3, eta = cbind(c(2, 0.5, 1.5, -0.5), c(-3, 1, 1, 0.5)),
#'                  sigma = c(0.1, 0.1), expert = expert_ffn(1))
#' ls <- moe_contraction(ffn, n = c(200, 800), reps = 2, method = "ls", seed = 1)
#' ls$slopes
#' # a random number of experts: the model-averaged posterior
#' rk <- moe_contraction(tru, n = c(150, 300), reps = 1, K = prior_K(K_max = 3),
#'                       method = "mcmc", mcmc = list(chains = 1, iter = 100),
#'                       density_draws = 5, seed = 1)
#' rk
#' @export
moe_contraction <- function(truth, n, reps = 40, K = truth$K, method = c("em", "mcmc", "ls"),
                            losses = c("D", "hellinger"), seed = NULL,
                            init = c("default", "near_truth"), starts = NULL,
                            x_design = c("uniform", "grid"), drop_n = 0, cells = NULL,
                            reference = c("best", "fixed"), translation = NULL,
                            rbar = c(1, 4, 6), probs = 0.9, control = NULL, mcmc = list(),
                            density_draws = 100, checkpoint = NULL, task_ids = NULL) {
  call <- sys.call()
  if (!inherits(truth, "moe_truth")) {
    abort(sprintf("`truth` must be made by `moe_truth()`, not %s.", describe(truth)),
          call = call, arg = "truth")
  }
  if (missing(n)) abort("`n` must be supplied: the sample sizes.", call = call, arg = "n")
  if (!is.numeric(n) || !length(n) || any(!is.finite(n)) || any(n < 10) ||
      any(abs(n - round(n)) > 1e-8)) {
    abort(sprintf("`n` must be whole numbers >= 10, not %s.", describe(n)),
          call = call, arg = "n")
  }
  n <- sort(unique(as.integer(round(n))))
  reps <- check_number(reps, "reps", lower = 1, whole = TRUE, call = call)
  random_K <- is.list(K) || inherits(K, "moe_prior_K")
  prior_K <- NULL
  if (random_K) {
    prior_K <- check_prior_K(K, "K", call, K_max = marglik_kmax("mixture"),
                             why = "the marginal likelihoods relabel the draws over all K! permutations")
    K <- max(which(prior_K$probs > 0))
  } else {
    K <- check_number(K, "K", lower = 1, whole = TRUE, call = call)
  }
  method <- check_choice(method, c("em", "mcmc", "ls"), "method", call)
  if (random_K && method != "mcmc") {
    abort(sprintf("`method` must be \"mcmc\" with a prior on the number of experts (`K = prior_K(...)`), not \"%s\": the posterior over K needs posterior draws.",
                  method), call = call, arg = "method")
  }
  ls <- method == "ls"
  if (ls && missing(losses)) losses <- c("D", "l2")
  if (random_K && missing(losses)) losses <- c("hellinger", "tv")
  if (random_K && is.character(losses) && "D" %in% losses) {
    abort("`losses` must be among \"hellinger\", \"tv\" with a prior on the number of experts: the Voronoi loss of a draw depends on its number of experts (use a fixed `K` for it).",
          call = call, arg = "losses")
  }
  allowed <- if (ls) c("D", "l2") else c("D", "hellinger", "tv")
  if (!is.character(losses) || !length(losses) || !all(losses %in% allowed)) {
    abort(sprintf("`losses` must be a subset of %s%s, not %s.",
                  paste0("\"", allowed, "\"", collapse = ", "),
                  if (ls) " for `method = \"ls\"`" else "", describe(losses)),
          call = call, arg = "losses")
  }
  losses <- unique(losses)
  seed <- check_seed(seed, call)
  if (ls && missing(init)) init <- "near_truth"
  init <- check_choice(init, c("default", "near_truth"), "init", call)
  if (!ls && truth_is_ffn(truth)) {
    abort(sprintf("`truth` must have linear experts for `method = \"%s\"`; truths with `expert_ffn()` experts need `method = \"ls\"`.",
                  method), kind = "expert", call = call, arg = "truth")
  }
  if ((ls || random_K) && truth_is_family(truth)) {
    abort(sprintf("`truth` must have Gaussian experts for %s; truths of %s experts take `method = \"em\"` or `\"mcmc\"` with a fixed `K`.",
                  if (ls) "`method = \"ls\"`" else "a prior on the number of experts",
                  expert_label(truth$expert)), kind = "family", call = call, arg = "truth")
  }
  ls_truth <- if (ls) contraction_ls_truth(truth, call)
  if (init == "near_truth" && method == "em" && K < truth$K) {
    abort(sprintf("`init = \"near_truth\"` needs `K` >= the number of true experts (%d), not %d.",
                  truth$K, K), call = call, arg = "init")
  }
  if (is.null(starts)) {
    starts <- if (ls) 3L else if (init == "near_truth" && K == truth$K) 1L else 5L
  }
  starts <- check_number(starts, "starts", lower = 1, whole = TRUE, call = call)
  x_design <- check_choice(x_design, c("uniform", "grid"), "x_design", call)
  if (ls && x_design == "grid") {
    abort("`x_design` must be \"uniform\" for `method = \"ls\"` (x is drawn uniformly on [-1, 1]).",
          call = call, arg = "x_design")
  }
  if (x_design == "grid" && truth$d != 1L) {
    abort(sprintf("`x_design = \"grid\"` needs one covariate; `truth` has %d.", truth$d),
          call = call, arg = "x_design")
  }
  drop_n <- check_drop(drop_n, length(n), call)
  if (is.null(cells)) cells <- !ls && !random_K && K > truth$K
  cells <- check_flag(cells, "cells", call)
  if (random_K && cells) {
    abort("`cells` must be FALSE with a prior on the number of experts (the Voronoi cells need a fixed `K`).",
          call = call, arg = "cells")
  }
  if (ls && cells) {
    abort("`cells` must be FALSE for `method = \"ls\"` (the cells of `voronoi_cells()` need linear-Gaussian atoms).",
          call = call, arg = "cells")
  }
  reference <- check_choice(reference, c("best", "fixed"), "reference", call)
  if (is.null(translation)) translation <- K > truth$K
  translation <- check_flag(translation, "translation", call)
  rbar <- check_rbar(rbar, call)
  probs <- check_number(probs, "probs", lower = 0, upper = 1, call = call)
  if (is.null(control)) {
    control <- if (ls) moe_ls_control(maxit = 500) else moe_em_control(maxit = 2000)
  }
  ctl_class <- if (ls) "moe_ls_control" else "moe_em_control"
  if (!inherits(control, ctl_class)) {
    abort(sprintf("`control` must be made by `%s()`%s, not %s.", ctl_class,
                  if (ls) " for `method = \"ls\"`" else "", describe(control)),
          call = call, arg = "control")
  }
  if (!is.list(mcmc) || length(mcmc) && is.null(names(mcmc))) {
    abort(sprintf("`mcmc` must be a named list of arguments of `moe_mcmc()`, not %s.",
                  describe(mcmc)), call = call, arg = "mcmc")
  }
  mcmc <- check_contraction_mcmc(mcmc, method, K, call)
  if (random_K) mcmc <- check_random_k_mcmc(mcmc, K, call)
  density_draws <- check_number(density_draws, "density_draws", lower = 1, whole = TRUE,
                                call = call)

  settings <- list(n = n, reps = reps, K = K, method = method, losses = losses,
                   init = init, starts = starts, x_design = x_design, drop_n = drop_n,
                   cells = cells, reference = reference, translation = translation,
                   rbar = rbar, probs = probs,
                   control = control, mcmc = mcmc, density_draws = density_draws,
                   loss_name = if (ls) "D_strong" else voronoi_type("auto", K, truth$K),
                   ls_truth = ls_truth, random_K = random_K, prior_K = prior_K)
  if (random_K) settings$K <- NA_integer_
  tasks <- data.frame(n = rep(n, each = reps), rep = rep(seq_len(reps), length(n)))
  run_ids <- check_task_ids(task_ids, nrow(tasks), call)
  if (!is.null(checkpoint) && is.null(seed)) {
    abort("`seed` must be given with `checkpoint`: a resumed study must draw the same random numbers.",
          call = call, arg = "seed")
  }
  # without a seed, draw one from (and advance) the caller's stream
  if (is.null(seed)) seed <- sample.int(.Machine$integer.max, 1L)
  restore <- save_rng()
  on.exit(restore(), add = TRUE)
  settings$seed <- seed
  streams <- rng_streams(seed, nrow(tasks))
  labels <- sprintf("n = %d, replicate %d of %d", tasks$n, tasks$rep, reps)
  # the results depend on everything but drop_n (the slopes are refitted)
  ck <- checkpoint_open(checkpoint, "moe_contraction",
                        list(truth = truth, settings = settings[names(settings) != "drop_n"],
                             tasks = tasks, streams = streams),
                        nrow(tasks), labels, call)
  # one progress step per task (R/progress.R)
  tick <- progress_open(nrow(tasks), sprintf("moe_contraction(): %s, %d sample size%s x %d replicate%s",
                                             method, length(n), if (length(n) > 1L) "s" else "",
                                             reps, if (reps > 1L) "s" else ""))
  on.exit(progress_close(tick), add = TRUE)
  task <- progress_wrap(contraction_task, tick, labels)
  # MCMC tasks take seconds to minutes and grow with n (the tasks are in
  # order of n): one future per task balances the workers; the quick EM
  # and least-squares tasks are sent in one chunk per worker
  run <- run_tasks(task, run_ids, tasks = tasks, truth = truth, settings = settings,
                   streams = streams, ck = ck,
                   scheduling = if (method == "mcmc") Inf else 1, info = tasks,
                   on_resume = function(ids) {
                     for (i in ids) tick(sprintf("%s (from the checkpoint)", labels[i]))
                   }, call = call)
  x <- new_moe_contraction(run$values, tasks, truth, settings)
  if (nrow(run$failed)) {
    x$failed <- run$failed
    warn(sprintf("%d of %d tasks failed; their results are missing (the others are kept%s):\n%s\nRerun them alone with `task_ids = c(%s)`%s; `$failed` has their random number streams.",
                 nrow(run$failed), length(run_ids),
                 if (is.null(ck)) "" else " and in the checkpoint",
                 paste(failed_text(run$failed), collapse = "\n"),
                 paste(run$failed$task, collapse = ", "),
                 if (is.null(ck)) "" else " (or run the same call again: it resumes from the checkpoint)"),
         kind = "task", call = call, failed = run$failed)
  }
  x
}

# The tasks to run: all (NULL) or distinct whole numbers in 1..n_tasks.
check_task_ids <- function(ids, n_tasks, call = NULL) {
  if (is.null(ids)) return(seq_len(n_tasks))
  if (!is.numeric(ids) || !length(ids) || anyNA(ids) || any(abs(ids - round(ids)) > 1e-8) ||
      any(ids < 1) || any(ids > n_tasks) || anyDuplicated(round(ids))) {
    abort(sprintf("`task_ids` must be distinct whole numbers in 1..%d (rows of the task table), not %s.",
                  n_tasks, describe(ids)), call = call, arg = "task_ids")
  }
  sort(as.integer(round(ids)))
}

check_drop <- function(drop, n_sizes, call = NULL) {
  drop <- check_number(drop, "drop_n", lower = 0, whole = TRUE, call = call)
  if (drop > max(0L, n_sizes - 2L)) {
    abort(sprintf("`drop_n` must leave at least 2 sample sizes for the slope (there are %d), not %d.",
                  n_sizes, drop), call = call, arg = "drop_n")
  }
  drop
}

# Near-truth (oracle) starting parameters for K fitted experts at sample size
# n (as the published simulation code of Nguyen, Nguyen and Ho, 2023, draws
# them), on the original scale: list(alpha, sigma2, W).
near_truth_par <- function(truth, K, n) {
  ks <- truth$K
  d <- truth$d
  s <- integer(K)
  s[K] <- ks
  if (K > 1L) {
    vals <- c(seq_len(ks - 1L), sample.int(ks, K - ks, replace = TRUE))
    s[-K] <- vals[sample.int(K - 1L)]
  }
  tp <- truth_par(truth)
  W <- matrix(0, d + 1L, K)
  alpha <- matrix(0, d + 1L, K)
  sigma2 <- numeric(K)
  for (i in seq_len(K)) {
    if (i < K) W[, i] <- tp$W[, s[i]] + rnorm(1L, 0, 0.005 * n^-0.083)
    alpha[, i] <- tp$alpha[, s[i]] + rnorm(1L, 0, 0.05 * n^-0.083)
    sigma2[i] <- tp$sigma2[s[i]] + abs(rnorm(1L, 0, 0.005 * n^-0.25))
  }
  if (truth_is_family(truth)) {
    if (is.null(truth$sigma2)) sigma2[] <- 1  # GLM experts: the placeholder
    # t experts with estimated degrees of freedom: the true ones, last row
    if (!is.null(truth$df) && is.null(truth$expert$df)) alpha <- rbind(alpha, truth$df[s])
  }
  list(alpha = alpha, sigma2 = sigma2, W = W)
}

# One (n, replicate) task: simulate, fit, compute losses. Runs on its own
# RNG stream; errors of the fit are recorded, not raised.
contraction_task <- function(i, tasks, truth, settings, streams) {
  assign(".Random.seed", streams[[i]], envir = globalenv())
  n <- tasks$n[i]
  st <- settings
  sim <- if (st$method == "ls") ls_simulate(st$ls_truth, n) else
    rmoe(n, truth, x_design = st$x_design)
  warning_msg <- NA_character_
  t0 <- proc.time()
  res <- withCallingHandlers(
    tryCatch(switch(st$method, em = contraction_em(sim, n, truth, st),
                    mcmc = if (isTRUE(st$random_K)) contraction_random(sim, truth, st) else
                      contraction_mcmc(sim, truth, st),
                    ls = contraction_ls(sim, st)),
             error = function(e) list(error = conditionMessage(e))),
    warning = function(w) {
      if (is.na(warning_msg)) warning_msg <<- conditionMessage(w)
      invokeRestart("muffleWarning")
    })
  secs <- sum((proc.time() - t0)[c("user.self", "sys.self")], na.rm = TRUE)
  if (!is.null(res$error)) {
    return(list(values = NULL, cells = NULL,
                run = data.frame(n = n, rep = tasks$rep[i], seconds = secs, iter = NA_integer_,
                                 loglik = NA_real_, status = "error", message = res$error,
                                 stringsAsFactors = FALSE)))
  }
  res$values <- data.frame(n = rep(n, nrow(res$values)), rep = tasks$rep[i], res$values,
                           stringsAsFactors = FALSE)
  if (!is.null(res$cells)) res$cells <- data.frame(n = n, rep = tasks$rep[i], res$cells)
  for (tb in intersect(c("K_post", "K_est"), names(res))) {
    res[[tb]] <- data.frame(n = n, rep = tasks$rep[i], res[[tb]], stringsAsFactors = FALSE)
  }
  res$run <- data.frame(n = n, rep = tasks$rep[i], seconds = secs, iter = res$iter,
                        loglik = res$loglik, status = res$status, message = warning_msg,
                        stringsAsFactors = FALSE)
  res
}

# The largest Voronoi cell (ties: lowest true atom) of every parameter set
# and the largest per-parameter distance among its atoms.
largest_cell_stats <- function(cl, K) {
  S <- nrow(cl) / K
  set <- rep(seq_len(S), each = K)
  sz <- matrix(cl$cell_size, K)
  cellm <- matrix(cl$cell, K)
  big <- vapply(seq_len(S), function(s) {
    m <- max(sz[, s])
    min(cellm[sz[, s] == m, s])
  }, 0L)
  keep <- cl$cell == big[set]
  agg <- function(v) as.numeric(tapply(v[keep], set[keep], max))
  data.frame(cell_size = as.integer(tapply(cl$cell_size[keep], set[keep], max)),
             beta1 = agg(cl$beta1), a = agg(cl$a), b = agg(cl$b), sigma2 = agg(cl$sigma2))
}

loss_values <- function(at, truth, st, fit_stat) {
  vals <- list()
  ref <- NULL
  if ("D" %in% st$losses || st$cells) {
    vl <- suppressWarnings(voronoi_compute(at, truth, "auto", st$rbar, "euclidean",
                                           st$reference, st$translation))
    ref <- vl$shift
    if ("D" %in% st$losses) vals[[st$loss_name]] <- vl$loss
  }
  for (ty in intersect(c("hellinger", "tv"), st$losses)) {
    idx <- if (at$S > st$density_draws) {
      unique(round(seq(1, at$S, length.out = st$density_draws)))
    } else seq_len(at$S)
    sub <- at
    sub$atoms <- at$atoms[, , idx, drop = FALSE]
    sub$S <- length(idx)
    vals[[ty]] <- density_loss_atoms(sub, loss_atoms(truth)$atoms, density_x(NULL, truth$d),
                                     match(ty, c("hellinger", "tv")) - 1L, 2000L, truth)
  }
  values <- do.call(rbind, lapply(names(vals), function(nm) {
    fs <- fit_stat(vals[[nm]])
    data.frame(loss = nm, statistic = names(fs), value = unname(fs), stringsAsFactors = FALSE)
  }))
  cells <- NULL
  if (st$cells) {
    cs <- largest_cell_stats(cells_from_atoms(at, truth, ref, 0L), at$K)
    fs <- lapply(cs[c("beta1", "a", "b", "sigma2")], fit_stat)
    cells <- data.frame(statistic = names(fs[[1L]]),
                        cell_size = as.integer(names(which.max(table(cs$cell_size)))),
                        beta1 = fs$beta1, a = fs$a, b = fs$b, sigma2 = fs$sigma2,
                        stringsAsFactors = FALSE)
  }
  list(values = values, cells = cells)
}

contraction_em <- function(sim, n, truth, st) {
  X <- cbind("(Intercept)" = 1, as.matrix(sim[truth$xnames]))
  init_par <- if (st$init == "near_truth") {
    lapply(seq_len(st$starts), function(j) near_truth_par(truth, st$K, n))
  }
  fam <- truth_is_family(truth)
  # binomial truths: proportions of the trials, as moe_em_fit() takes them
  trials <- if (!is.null(truth$trials)) {
    if (is.null(sim$trials)) rep(truth$trials, n) else sim$trials
  }
  y <- if (is.null(trials)) sim$y else sim$y / trials
  fit <- moe_em_fit(y, X, X, K = st$K, starts = st$starts, control = st$control,
                    init_par = init_par, expert = if (fam) truth$expert else expert_linear(),
                    trials = trials)
  d <- truth$d
  lay <- list(p = d + 1L, q = d + 1L, d = d, covariates = truth$xnames, x_int = 1L,
              x_cov = 1L + seq_len(d), z_int = 1L, z_cov = 1L + seq_len(d))
  at <- loss_atoms(truth_from_par(fit$par, lay, if (fam) truth$expert, trials))
  out <- loss_values(at, truth, st, function(v) c(estimate = v))
  c(out, list(iter = fit$iter, loglik = fit$loglik, status = status_text(fit$status)))
}

# The truth of the regression form as ls_simulate() takes it: list(alpha,
# W, sd, expert) for designs cbind("(Intercept)" = 1, x = x).
contraction_ls_truth <- function(truth, call) {
  if (truth$d != 1L) {
    abort(sprintf("`truth` must have one covariate for `method = \"ls\"`, not %d.", truth$d),
          call = call, arg = "truth")
  }
  sd <- truth$sd
  if (is.null(sd)) {
    if (diff(range(truth$sigma)) > 0) {
      abort("`truth` must have one noise sd for `method = \"ls\"`: give `sd` to `moe_truth()` (its experts have different `sigma`).",
            call = call, arg = "truth")
    }
    sd <- unname(truth$sigma[1L])
  }
  par <- truth_par(truth)
  nm <- c("(Intercept)", "x")
  W <- unname(par$W)
  rownames(W) <- nm
  alpha <- par$alpha
  if (!truth_is_ffn(truth)) rownames(alpha) <- nm
  list(alpha = alpha, W = W, sd = sd, expert = truth_expert(truth))
}

# One least-squares fit (method = "ls"): moe_ls_fit() on the regression-form
# data, the strong Voronoi loss (infimum over translations) and the L2
# distance of the regression functions.
contraction_ls <- function(sim, st) {
  lt <- st$ls_truth
  init <- if (st$init == "near_truth") ls_split_truth(lt, st$K)
  fit <- moe_ls_fit(sim$y, sim$X, sim$X, K = st$K, expert = lt$expert, starts = st$starts,
                    control = st$control, init = init)
  vals <- list()
  if ("D" %in% st$losses) {
    at <- strong_atoms(fit$par$alpha, fit$par$W, lt$expert)
    vals$D_strong <- as.numeric(strong_loss_atoms(at, st$K, strong_atoms(lt$alpha, lt$W, lt$expert),
                                                  1L, "infimum"))
  }
  if ("l2" %in% st$losses) vals$l2 <- ls_l2(fit$par, lt)
  values <- data.frame(loss = names(vals), statistic = "estimate", value = unlist(vals, use.names = FALSE),
                       stringsAsFactors = FALSE)
  list(values = values, cells = NULL, iter = fit$iter, loglik = fit$loglik,
       status = status_text(fit$status))
}

contraction_mcmc <- function(sim, truth, st) {
  lhs <- if (!is.null(sim$trials)) "cbind(y, trials - y)" else "y"
  f <- stats::as.formula(paste(lhs, "~", paste(truth$xnames, collapse = " + ")))
  fam <- if (truth_is_family(truth)) truth_family_object(truth$expert) else stats::gaussian()
  args <- utils::modifyList(list(formula = f, data = sim, K = st$K, family = fam,
                                 seed = sample.int(.Machine$integer.max, 1L),
                                 progress = FALSE), st$mcmc)
  fit <- do.call(moe_mcmc, args)
  at <- loss_atoms(fit)
  qname <- sprintf("q%g", 100 * st$probs)
  out <- loss_values(at, truth, st, function(v) {
    setNames(c(mean(v, na.rm = TRUE), stats::quantile(v, st$probs, na.rm = TRUE, names = FALSE)),
             c("mean", qname))
  })
  ll <- fit$loglik_draws
  c(out, list(iter = NA_integer_, loglik = if (is.null(ll)) NA_real_ else mean(ll),
              status = "ok"))
}

new_moe_contraction <- function(out, tasks, truth, settings) {
  results <- do.call(rbind, lapply(out, `[[`, "values"))
  if (is.null(results)) {
    results <- data.frame(n = integer(), rep = integer(), loss = character(),
                          statistic = character(), value = numeric(),
                          stringsAsFactors = FALSE)
  }
  rownames(results) <- NULL
  cells <- if (settings$cells) do.call(rbind, lapply(out, `[[`, "cells"))
  if (!is.null(cells)) rownames(cells) <- NULL
  runs <- do.call(rbind, lapply(out, `[[`, "run"))
  rownames(runs) <- NULL
  x <- structure(list(results = results, cells = cells, runs = runs, truth = truth,
                      settings = settings),
                 class = "moe_contraction")
  if (isTRUE(settings$random_K)) {
    bind <- function(nm) {
      v <- do.call(rbind, lapply(out, `[[`, nm))
      if (!is.null(v)) rownames(v) <- NULL
      v
    }
    x$K_post <- bind("K_post")
    x$K_est <- bind("K_est")
    x$K_table <- random_k_table(x$K_est, truth$K)
  }
  sl <- moe_contraction_slopes(x, drop = settings$drop_n)
  is_cell <- sl$kind == "cell"
  x$slopes <- setNames(sl$slope[!is_cell], sl$loss[!is_cell])
  x$cell_slopes <- if (any(is_cell)) setNames(sl$slope[is_cell], sl$loss[is_cell])
  x
}

#' Slopes of a contraction study
#'
#' Fits \eqn{\log(\text{mean loss}) = a + \text{slope} \cdot \log n} by
#' ordinary least squares for every loss of a [moe_contraction()] study, the
#' mean being over replicates at each sample size (posterior means for MCMC
#' fits), after leaving out the `drop` smallest sample sizes. For studies that
#' recorded Voronoi cells, the same is done for the largest per-parameter
#' distance in cells of `cell_size` atoms (replicates whose largest cell has
#' another size are left out).
#'
#' @param x A [moe_contraction()] study.
#' @param drop Number of smallest sample sizes to leave out.
#' @param statistic For MCMC studies: `"mean"` (default) or the quantile
#'   statistic (e.g. `"q90"`).
#' @param cell_size Cell size for the per-parameter slopes.
#' @return A data frame with one row per loss (and per parameter): `loss`,
#'   `kind` (`"loss"` or `"cell"`), `slope`, `intercept` (\eqn{a}; the fitted
#'   curve is \eqn{e^a n^{slope}}), `theory` (the theoretical slope: -1/2 for
#'   losses, \eqn{-1/(2\bar r)} for \eqn{\beta_1} and \eqn{b} and
#'   \eqn{-1/\bar r} for \eqn{a} and \eqn{\sigma^2}, \eqn{\bar r} = `rbar[cell_size]`),
#'   `n_min`, `n_max` and `sizes` (the number of sample sizes used).
#' @examples
#' tru <- moe_truth_example("p4")
#' st <- moe_contraction(tru, n = c(250, 500, 1000, 2000), reps = 3, seed = 1)
#' moe_contraction_slopes(st)
#' moe_contraction_slopes(st, drop = 1)
#' @export
moe_contraction_slopes <- function(x, drop = 0, statistic = NULL, cell_size = 2) {
  call <- sys.call()
  if (!inherits(x, "moe_contraction")) {
    abort(sprintf("`x` must be made by `moe_contraction()`, not %s.", describe(x)),
          call = call, arg = "x")
  }
  n_all <- x$settings$n
  drop <- check_number(drop, "drop", lower = 0, whole = TRUE, call = call)
  if (drop > max(0L, length(n_all) - 2L)) {
    abort(sprintf("`drop` must leave at least 2 sample sizes for the slope (there are %d), not %d.",
                  length(n_all), drop), call = call, arg = "drop")
  }
  stats_avail <- unique(x$results$statistic)
  if (is.null(statistic)) statistic <- if (x$settings$method == "mcmc") "mean" else "estimate"
  if (!is.character(statistic) || length(statistic) != 1L ||
      length(stats_avail) && !statistic %in% stats_avail) {
    abort(sprintf("`statistic` must be one of %s, not %s.",
                  paste0("\"", stats_avail, "\"", collapse = ", "), describe(statistic)),
          call = call, arg = "statistic")
  }
  cell_size <- check_number(cell_size, "cell_size", lower = 2, whole = TRUE, call = call)
  keep_n <- n_all[seq.int(drop + 1L, length(n_all))]
  fit_one <- function(n, v) {
    m <- tapply(v, n, function(z) mean(z[is.finite(z)]))
    nn <- as.numeric(names(m))
    ok <- nn %in% keep_n & is.finite(m) & m > 0
    if (sum(ok) < 2L) return(c(NA_real_, NA_real_, NA_real_, NA_real_, sum(ok)))
    cf <- stats::coef(stats::lm.fit(cbind(1, log(nn[ok])), log(m[ok])))
    c(cf[2L], cf[1L], min(nn[ok]), max(nn[ok]), sum(ok))
  }
  res <- x$results[x$results$statistic == statistic, , drop = FALSE]
  rows <- lapply(unique(res$loss), function(l) {
    r <- res[res$loss == l, ]
    c(list(loss = l, kind = "loss"), as.list(fit_one(r$n, r$value)), theory = -0.5)
  })
  if (!is.null(x$cells)) {
    cl <- x$cells[x$cells$statistic == statistic & x$cells$cell_size == cell_size, , drop = FALSE]
    rb <- x$settings$rbar
    r <- if (cell_size <= length(rb)) rb[cell_size] else NA_real_
    th <- c(beta1 = -1 / (2 * r), a = -1 / r, b = -1 / (2 * r), sigma2 = -1 / r)
    for (p in c("beta1", "a", "b", "sigma2")) {
      rows[[length(rows) + 1L]] <- c(list(loss = p, kind = "cell"),
                                     as.list(fit_one(cl$n, cl[[p]])), theory = th[[p]])
    }
  }
  out <- do.call(rbind, lapply(rows, function(r) {
    data.frame(loss = r$loss, kind = r$kind, slope = r[[3L]], intercept = r[[4L]],
               theory = r$theory, n_min = r[[5L]], n_max = r[[6L]], sizes = as.integer(r[[7L]]),
               stringsAsFactors = FALSE)
  }))
  if (is.null(out)) {
    out <- data.frame(loss = character(), kind = character(), slope = numeric(),
                      intercept = numeric(), theory = numeric(), n_min = numeric(),
                      n_max = numeric(), sizes = integer(), stringsAsFactors = FALSE)
  }
  out
}

contraction_title <- function(x) {
  st <- x$settings
  if (isTRUE(st$random_K)) {
    pk <- st$prior_K
    return(sprintf("Contraction study: MCMC, random K (%s), model-averaged posterior; truth with %d expert%s",
                   random_k_prior_text(pk), x$truth$K, if (x$truth$K > 1L) "s" else ""))
  }
  sprintf("Contraction study: %s, K = %d fitted expert%s, truth with %d expert%s (%s)",
          switch(st$method, em = "EM", mcmc = "MCMC", ls = "least squares (regression form)"), st$K, if (st$K > 1L) "s" else "",
          x$truth$K, if (x$truth$K > 1L) "s" else "",
          if (st$K > x$truth$K) "over-fitted" else if (st$K == x$truth$K) "exact-fitted"
          else "under-fitted")
}

contraction_design <- function(x) {
  st <- x$settings
  if (isTRUE(st$random_K)) {
    Ks <- which(st$prior_K$probs > 0)
    return(sprintf("%d sample size%s from %s to %s, %d replicate%s each; fits with K in {%s}, %s chain%s x %s iterations; seed %d",
                   length(st$n), if (length(st$n) > 1L) "s" else "",
                   format(min(st$n), big.mark = ","), format(max(st$n), big.mark = ","),
                   st$reps, if (st$reps > 1L) "s" else "", paste(Ks, collapse = ", "),
                   format(st$mcmc$chains), if (st$mcmc$chains > 1) "s" else "",
                   format(st$mcmc$iter), st$seed))
  }
  sprintf("%d sample size%s from %s to %s, %d replicate%s each; %s starts%s; seed %d",
          length(st$n), if (length(st$n) > 1L) "s" else "", format(min(st$n), big.mark = ","),
          format(max(st$n), big.mark = ","), st$reps, if (st$reps > 1L) "s" else "",
          if (st$init == "near_truth" && st$method != "ls") "near-truth (oracle)" else "default",
          paste0(if (st$method != "mcmc") sprintf(" x %d", st$starts) else "",
                 if (st$init == "near_truth" && st$method == "ls") " plus the truth (oracle)" else ""),
          st$seed)
}

#' @export
print.moe_contraction <- function(x, digits = 3L, ...) {
  digits <- check_digits(digits, call = sys.call())
  cat(contraction_title(x), "\n", contraction_design(x), "\n", sep = "")
  nerr <- sum(x$runs$status == "error")
  nmax <- sum(grepl("maxit", x$runs$status))
  nwarn <- sum(!is.na(x$runs$message) & x$runs$status != "error")
  if (nerr || nmax || nwarn) {
    cat(sprintf("Of %d fits: %d failed, %d did not converge, %d raised warnings (see `$runs`).\n",
                nrow(x$runs), nerr, nmax, nwarn))
  }
  if (!is.null(x$failed)) {
    cat(sprintf("%d task%s failed and %s missing (see `$failed`).\n", nrow(x$failed),
                if (nrow(x$failed) > 1L) "s" else "", if (nrow(x$failed) > 1L) "are" else "is"))
  }
  cat(sprintf("Slope of log mean loss on log n (theory: -0.5)%s:\n",
              if (x$settings$drop_n > 0L) sprintf(", %d smallest n dropped", x$settings$drop_n)
              else ""))
  print(round(x$slopes, digits))
  if (!is.null(x$K_table)) {
    cat(sprintf("P(K = %d | data), mean over replicates (s.e.), and mean of E(K | data):\n",
                x$truth$K))
    print_k_table(x$K_table, digits)
  }
  if (!is.null(x$cell_slopes)) {
    cat("Per-parameter slopes in two-atom cells (theory: beta1, b -0.125; a, sigma2 -0.25):\n")
    print(round(x$cell_slopes, digits))
  }
  invisible(x)
}

#' Summarise and plot a contraction study
#'
#' `summary()` tabulates the losses per sample size (mean, median, standard
#' deviation over replicates) and the slopes ([moe_contraction_slopes()]).
#' `plot()` draws, for each loss, the loss of every replicate (grey) and
#' the mean over replicates (black) against n on log-log axes, the fitted
#' curve \eqn{e^a n^{slope}} (red, its formula in the legend) over the sample
#' sizes used for the fit, and a line of the theoretical slope -1/2 (blue,
#' dashed) through the fitted curve at the middle sample size. With
#' `what = "cells"` it draws the mean per-parameter distances in two-atom
#' cells with reference slopes -1/8 and -1/4. For a study with a prior on
#' the number of experts, a last panel draws \eqn{P(K = k^*)} against n
#' for both strategies (posterior over K and Merge-Truncate-Merge), with
#' bars of two standard errors over replicates; `what = "K"` draws that
#' panel alone.
#'
#' @param object,x A [moe_contraction()] study (or its summary for `print()`).
#' @param drop Number of smallest sample sizes left out of the slope fits.
#' @param what `"losses"`, `"cells"` or `"K"`.
#' @param losses Which losses to draw (default: all).
#' @param digits Digits to print.
#' @param ... Further graphical parameters for [plot()].
#' @return `summary()`: an object of class `summary.moe_contraction`;
#'   `plot()`: `x`, invisibly.
#' @examples
#' tru <- moe_truth_example("p4")
#' st <- moe_contraction(tru, n = c(250, 500, 1000, 2000), reps = 3, seed = 1)
#' summary(st)
#' plot(st)
#' @export
summary.moe_contraction <- function(object, drop = object$settings$drop_n, ...) {
  st <- if (object$settings$method == "mcmc") "mean" else "estimate"
  r <- object$results
  tab <- do.call(rbind, lapply(split(r, list(r$loss, r$statistic, r$n), drop = TRUE), function(g) {
    v <- g$value[is.finite(g$value)]
    data.frame(loss = g$loss[1L], statistic = g$statistic[1L], n = g$n[1L],
               mean = if (length(v)) mean(v) else NA_real_,
               median = if (length(v)) stats::median(v) else NA_real_,
               sd = if (length(v) > 1L) sd(v) else NA_real_, reps = length(v),
               stringsAsFactors = FALSE)
  }))
  if (!is.null(tab)) {
    tab <- tab[order(tab$loss, tab$statistic, tab$n), ]
    rownames(tab) <- NULL
  }
  structure(list(title = contraction_title(object), design = contraction_design(object),
                 table = tab, slopes = moe_contraction_slopes(object, drop = drop, statistic = st),
                 drop = drop, runs = object$runs, K_table = object$K_table,
                 k_true = object$truth$K),
            class = "summary.moe_contraction")
}

#' @rdname summary.moe_contraction
#' @export
print.summary.moe_contraction <- function(x, digits = 4L, ...) {
  digits <- check_digits(digits, call = sys.call())
  cat(x$title, "\n", x$design, "\n\n", sep = "")
  if (!is.null(x$table)) {
    cat("Losses per sample size (over replicates):\n")
    print(x$table, digits = digits, row.names = FALSE)
  }
  cat(sprintf("\nOLS slopes of log mean loss on log n%s:\n",
              if (x$drop > 0L) sprintf(" (%d smallest n dropped)", x$drop) else ""))
  sl <- x$slopes
  sl$fitted_curve <- sprintf("%s n^%s", format(signif(exp(sl$intercept), 3)),
                             format(round(sl$slope, 3)))
  print(sl[c("loss", "kind", "slope", "theory", "fitted_curve", "n_min", "n_max", "sizes")],
        digits = digits, row.names = FALSE)
  if (!is.null(x$K_table)) {
    cat(sprintf("\nP(K = %d | data) per sample size (mean over replicates, its s.e.; mean_K: mean of\nE(K | data); K_hat_true: share of replicates whose most probable K is %d):\n",
                x$k_true, x$k_true))
    print(x$K_table, digits = digits, row.names = FALSE)
  }
  runs <- x$runs
  cat(sprintf("\nFits: %d; failed: %d; not converged: %d; with warnings: %d (see `$runs`).\n",
              nrow(runs), sum(runs$status == "error"), sum(grepl("maxit", runs$status)),
              sum(!is.na(runs$message) & runs$status != "error")))
  invisible(x)
}

#' @rdname summary.moe_contraction
#' @export
plot.moe_contraction <- function(x, what = c("losses", "cells", "K"), losses = NULL,
                                 drop = x$settings$drop_n, ...) {
  what <- check_choice(what, c("losses", "cells", "K"), "what", sys.call())
  has_K <- !is.null(x$K_table)
  if (what == "K") {
    if (!has_K) {
      abort("`x` has no posterior over K; run `moe_contraction()` with `K = prior_K(...)`.",
            arg = "what")
    }
    plot_k_table(x$K_table, x$truth$K)
    return(invisible(x))
  }
  drop <- check_drop(drop, length(x$settings$n))
  stat <- if (x$settings$method == "mcmc") "mean" else "estimate"
  sl <- moe_contraction_slopes(x, drop = drop, statistic = stat)
  keep_n <- x$settings$n[seq.int(drop + 1L, length(x$settings$n))]
  if (what == "cells") {
    if (is.null(x$cells)) {
      abort("`x` has no Voronoi cells recorded; run `moe_contraction()` with `cells = TRUE`.",
            arg = "what")
    }
    plot_cells(x, sl, keep_n, stat, ...)
    return(invisible(x))
  }
  avail <- unique(x$results$loss)
  if (is.null(losses)) losses <- avail
  if (!is.character(losses) || !length(losses) || !all(losses %in% avail)) {
    abort(sprintf("`losses` must be a subset of %s, not %s.",
                  paste0("\"", avail, "\"", collapse = ", "), describe(losses)), arg = "losses")
  }
  op <- graphics::par(mfrow = c(1L, length(losses) + has_K))
  on.exit(graphics::par(op))
  for (l in losses) {
    r <- x$results[x$results$loss == l & x$results$statistic == stat &
                     is.finite(x$results$value) & x$results$value > 0, ]
    m <- tapply(r$value, r$n, mean)
    nn <- as.numeric(names(m))
    # room below the points for the legend (losses fall with n)
    lr <- log(range(r$value))
    args <- list(...)
    if (is.null(args$ylim)) args$ylim <- exp(c(lr[1L] - 0.6 * diff(lr), lr[2L]))
    do.call(plot, c(list(r$n, r$value, log = "xy", pch = 16, cex = 0.5,
                         col = grDevices::gray(0.6, 0.6),
                         xlab = "sample size n", ylab = sprintf("loss %s", l),
                         main = sprintf("%s (%s)", l, switch(x$settings$method,
                                                             mcmc = if (has_K) "model-averaged posterior mean" else "posterior mean",
                                                             em = "EM", ls = "least squares"))),
                    args))
    graphics::lines(nn, m, type = "b", pch = 19, cex = 0.8)
    s <- sl[sl$loss == l, ]
    leg <- c("replicates", "mean over replicates")
    col <- c(grDevices::gray(0.6), "black")
    lty <- c(NA, 1)
    pch <- c(16, 19)
    if (nrow(s) && is.finite(s$slope)) {
      ng <- exp(seq(log(min(keep_n)), log(max(keep_n)), length.out = 50))
      graphics::lines(ng, exp(s$intercept) * ng^s$slope, col = "red", lwd = 2)
      mid <- exp(mean(log(range(keep_n))))
      ref <- exp(s$intercept) * mid^s$slope * (ng / mid)^-0.5
      graphics::lines(ng, ref, col = "blue", lty = 2, lwd = 2)
      leg <- c(leg, sprintf("fit: %s n^%s", format(signif(exp(s$intercept), 3)),
                            format(round(s$slope, 3))), "slope -1/2 (theory)")
      col <- c(col, "red", "blue")
      lty <- c(lty, 1, 2)
      pch <- c(pch, NA, NA)
    }
    graphics::legend("bottomleft", legend = leg, col = col, lty = lty, pch = pch, bty = "n",
                     cex = 0.8)
  }
  if (has_K) plot_k_table(x$K_table, x$truth$K)
  invisible(x)
}

random_k_prior_text <- function(pk) {
  switch(pk$type,
         poisson = sprintf("K - 1 ~ Poisson(%s), K <= %d", format(pk$lambda), pk$K_max),
         geometric = sprintf("K - 1 ~ geometric, mean %s, K <= %d", format(pk$lambda), pk$K_max),
         uniform = sprintf("K uniform on 1..%d", pk$K_max),
         custom = sprintf("given prior on 1..%d", pk$K_max))
}

print_k_table <- function(tab, digits) {
  f <- function(v) formatC(v, digits = digits, format = "f")
  out <- data.frame(strategy = tab$strategy, n = tab$n,
                    `P(K = k*)` = sprintf("%s (%s)", f(tab$p_true), f(tab$se)),
                    `E(K)` = f(tab$mean_K), check.names = FALSE)
  print(out, row.names = FALSE, right = FALSE)
}

# P(K = k*) against n, per strategy, with +- 2 Monte Carlo standard errors.
plot_k_table <- function(tab, kstar) {
  strat <- unique(tab$strategy)
  cols <- c(posterior = "black", mtm = "#d95f02")
  lab <- c(posterior = "posterior over K", mtm = "Merge-Truncate-Merge")
  graphics::plot(range(tab$n), c(0, 1), type = "n", log = "x", xlab = "sample size n",
                 ylab = sprintf("P(K = %d)", kstar), main = "Probability of the true K")
  graphics::abline(h = 1, col = "grey", lty = 3)
  for (s in strat) {
    r <- tab[tab$strategy == s, ]
    graphics::lines(r$n, r$p_true, type = "b", pch = 19, col = cols[[s]])
    se <- ifelse(is.finite(r$se), r$se, 0)
    graphics::segments(r$n, pmax(r$p_true - 2 * se, 0), r$n, pmin(r$p_true + 2 * se, 1),
                       col = cols[[s]])
  }
  graphics::legend("bottomright", legend = c(lab[strat], "+- 2 s.e. over replicates"),
                   col = c(cols[strat], "black"), lty = 1, pch = c(rep(19, length(strat)), NA),
                   bty = "n", cex = 0.8)
  invisible(NULL)
}

plot_cells <- function(x, sl, keep_n, stat, ...) {
  cl <- x$cells[x$cells$statistic == stat & x$cells$cell_size == 2L, , drop = FALSE]
  pars <- c("beta1", "b", "a", "sigma2")
  cols <- c(beta1 = "#1b9e77", b = "#d95f02", a = "#7570b3", sigma2 = "#e7298a")
  means <- sapply(pars, function(p) tapply(cl[[p]], cl$n, mean))
  if (!length(means)) {
    abort("`x` has no replicate whose largest Voronoi cell has two atoms.", arg = "what")
  }
  means <- matrix(means, ncol = length(pars), dimnames = list(sort(unique(cl$n)), pars))
  nn <- as.numeric(rownames(means))
  ok <- is.finite(means) & means > 0
  graphics::matplot(nn, means, log = "xy", type = "b", pch = 19, lty = 1, col = cols[pars],
                    xlab = "sample size n", ylab = "largest distance in the two-atom cell",
                    ylim = range(means[ok]), main = "Per-parameter distances, two-atom cells", ...)
  mid <- exp(mean(log(range(keep_n))))
  ng <- exp(seq(log(min(keep_n)), log(max(keep_n)), length.out = 50))
  at_mid <- exp(mean(log(means[ok])))
  graphics::lines(ng, at_mid * (ng / mid)^(-1 / 8), lty = 2, lwd = 2)
  graphics::lines(ng, at_mid * (ng / mid)^(-1 / 4), lty = 3, lwd = 2)
  s <- sl[sl$kind == "cell", ]
  lab <- vapply(pars, function(p) sprintf("%s (slope %s)", p,
                                          format(round(s$slope[s$loss == p], 3))), "")
  graphics::legend("bottomleft", legend = c(lab, "n^(-1/8)", "n^(-1/4)"),
                   col = c(cols[pars], "black", "black"), lty = c(1, 1, 1, 1, 2, 3),
                   pch = c(19, 19, 19, 19, NA, NA), bty = "n", cex = 0.8)
  invisible(NULL)
}

# The arguments of moe_mcmc() a contraction study may set through `mcmc`
# (formula, data, K and seed come from the study itself).
contraction_mcmc_args <- c("gate", "expert", "prior", "chains", "iter", "warmup", "thin",
                           "init", "control", "progress")

# Check `mcmc` of moe_contraction() before any fit: names among
# contraction_mcmc_args, values as moe_mcmc() checks them (its
# mcmc_settings() and check_variants()); errors name `mcmc$<arg>`.
check_contraction_mcmc <- function(mcmc, method, K, call) {
  if (!length(mcmc)) return(mcmc)
  if (method != "mcmc") {
    abort(sprintf("`mcmc` must be empty unless `method = \"mcmc\"`; it would be ignored with `method = \"%s\"` (it has %s).",
                  method, paste0("`", names(mcmc), "`", collapse = ", ")),
          call = call, arg = "mcmc")
  }
  nm <- names(mcmc)
  bad <- nm[is.na(nm) | !nzchar(nm) | !nm %in% contraction_mcmc_args | duplicated(nm)]
  if (length(bad)) {
    abort(sprintf("`mcmc` must name distinct arguments of `moe_mcmc()` among %s, not %s.",
                  paste0("`", contraction_mcmc_args, "`", collapse = ", "),
                  paste0("`", ifelse(is.na(bad), "NA", bad), "`", collapse = ", ")),
          call = call, arg = "mcmc")
  }
  f <- formals(moe_mcmc)
  get <- function(a) if (a %in% nm) mcmc[[a]] else eval(f[[a]])
  iter <- get("iter")
  warmup <- if ("warmup" %in% nm) mcmc$warmup else
    if (is.numeric(iter) && length(iter) == 1L && !is.na(iter)) floor(iter / 2) else 0
  tryCatch({
    mcmc_settings(get("prior"), get("chains"), iter, warmup, get("thin"), get("init"),
                  NULL, get("control"), if ("progress" %in% nm) mcmc$progress else FALSE,
                  call)
    check_variants(get("gate"), get("expert"), K, call)
  }, bayesmoe_error = function(e) {
    arg <- e$arg
    msg <- conditionMessage(e)
    if (!is.null(arg)) msg <- sub(sprintf("`%s`", arg), sprintf("`mcmc$%s`", arg), msg, fixed = TRUE)
    abort(msg, kind = sub("^bayesmoe_error_", "", class(e)[1L]), call = call,
          arg = "mcmc")
  })
  mcmc
}

# The settings of the fixed-K fits of a random-K study: softmax gating and
# linear experts (those the marginal likelihoods handle), an exchangeable
# gating prior for K >= 3, no prior on K inside `mcmc$prior` (it is `K`),
# and lighter defaults than moe_mcmc()'s for `chains` and `iter`
# (random_k_mcmc_defaults).
random_k_mcmc_defaults <- list(chains = 2L, iter = 1000L)

check_random_k_mcmc <- function(mcmc, K_max, call) {
  bad <- intersect(c("gate", "expert"), names(mcmc))
  if (length(bad)) {
    abort(sprintf("`mcmc` must not set %s with a prior on the number of experts: the marginal likelihoods need the softmax gate and linear experts.",
                  paste0("`", bad, "`", collapse = " or ")), call = call, arg = "mcmc")
  }
  pr <- mcmc$prior
  if (!is.null(pr) && !is.null(pr$K)) {
    abort("`mcmc$prior` must not carry a prior on the number of experts: give it as `K`.",
          call = call, arg = "mcmc")
  }
  if (!is.null(pr) && K_max >= 3L && !isTRUE(pr$exchangeable)) {
    abort("`mcmc$prior` must be exchangeable (`moe_prior(exchangeable = TRUE)`) with a prior on K reaching K >= 3: the marginal likelihoods rely on the posterior being invariant under relabelling.",
          call = call, arg = "mcmc")
  }
  utils::modifyList(random_k_mcmc_defaults, mcmc)
}
