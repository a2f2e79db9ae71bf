#' Control settings of the EM algorithm
#'
#' @param maxit Maximum number of EM iterations (E-steps) per start. The
#'   log-likelihood trace of a fit (`plot(fit, "loglik")`) keeps the first
#'   100,000 iterations.
#' @param tol Convergence tolerance on the relative change of the
#'   log-likelihood between two iterations.
#' @param var_floor Lower bound of every expert variance, relative to the
#'   variance of the response. An expert whose variance reaches it has
#'   collapsed onto a few observations; the fit reports it.
#' @param min_size Minimum effective number of observations (sum of
#'   responsibilities) below which an expert is considered empty and its
#'   parameters are not updated; `NULL` means the number of expert
#'   coefficients plus one.
#' @param gate_steps Number of damped Newton steps on the gating network per
#'   M-step (each one cannot decrease the likelihood).
#' @param ridge Ridge penalty on the gating coefficients (on the internal,
#'   standardised scale). `0` gives maximum likelihood; a small value keeps
#'   the gating finite when the experts separate the data perfectly.
#' @param strategy How the starts are run (see "Starts" in [moe_em()]):
#'   `"short"` (the default) runs every start for at most `short_maxit`
#'   iterations on a random subsample of `short_n` observations and only the
#'   `short_keep` best of them to convergence on all the data; `"full"` runs
#'   every start to convergence on all the data. The two are the same when
#'   there are at most `short_n` observations, when `starts <= short_keep`,
#'   with `init_par` and for gates and experts other than the softmax gate
#'   with linear experts (those always run `"full"`).
#' @param short_n Size of the subsample of the short runs (>= 10).
#' @param short_maxit Maximum number of EM iterations of a short run.
#' @param short_keep Number of short runs continued to convergence on all the
#'   data: the best by their log-likelihood on the subsample, degenerate ones
#'   (an empty expert, a variance at the floor) last.
#' @param sep_bound Separation threshold: a start stops as soon as a gating
#'   coefficient on the internal (standardised) scale exceeds `sep_bound` in
#'   absolute value and still grows, or converges beyond it: the gating is then
#'   numerically a step, whose maximum-likelihood coefficients are infinite
#'   (see "Separation" in [moe_em()]). `Inf` lets such starts run on until
#'   `maxit` or `tol`.
#' @param threads OpenMP threads of the EM passes for the softmax gate with
#'   linear Gaussian experts (the others run in one thread), a whole number
#'   of at least 1; never more than the machine has (one where the package
#'   was built without OpenMP). With more than 8,192 observations the passes run over
#'   fixed chunks of 8,192 whose sums are added in chunk order, so the fit is
#'   the same for any number of threads. [moe_mcmc()] runs its EM warm start
#'   with the `threads` of [moe_mcmc_control()].
#' @return A list of class `moe_em_control`.
#' @examples
#' moe_em_control(maxit = 500, tol = 1e-10)
#' # every start to convergence on all the data, no separation stop
#' moe_em_control(strategy = "full", sep_bound = Inf)
#' @export
moe_em_control <- function(maxit = 1000, tol = 1e-8, var_floor = 1e-6,
                           min_size = NULL, gate_steps = 1, ridge = 0,
                           strategy = c("short", "full"), short_n = 2000,
                           short_maxit = 20, short_keep = 2, sep_bound = 1e3,
                           threads = 1) {
  call <- sys.call()
  ctl <- list(
    maxit = check_number(maxit, "maxit", lower = 1, whole = TRUE, call = call),
    tol = check_number(tol, "tol", lower = 0, strict_lower = TRUE, call = call),
    var_floor = check_number(var_floor, "var_floor", lower = 0, strict_lower = TRUE,
                             upper = 1, call = call),
    min_size = if (is.null(min_size)) NULL else
      check_number(min_size, "min_size", lower = 0, strict_lower = TRUE, call = call),
    gate_steps = check_number(gate_steps, "gate_steps", lower = 1, whole = TRUE, call = call),
    ridge = check_number(ridge, "ridge", lower = 0, call = call),
    strategy = check_choice(strategy, c("short", "full"), "strategy", call),
    short_n = check_number(short_n, "short_n", lower = 10, whole = TRUE, call = call),
    short_maxit = check_number(short_maxit, "short_maxit", lower = 1, whole = TRUE, call = call),
    short_keep = check_number(short_keep, "short_keep", lower = 1, whole = TRUE, call = call),
    sep_bound = check_number(sep_bound, "sep_bound", lower = 0, strict_lower = TRUE,
                             allow_inf = TRUE, call = call),
    threads = check_number(threads, "threads", lower = 1, upper = 1024, whole = TRUE,
                           call = call)
  )
  structure(ctl, class = "moe_em_control")
}

#' Maximum-likelihood fit of a softmax-gated mixture of experts by EM
#'
#' Fits the mixture-of-experts regression
#' \deqn{p(y \mid x, z) = \sum_{k=1}^K g_k(z)\, N(y;\, x^\top a_k,\, \sigma_k^2),
#'   \qquad g_k(z) = \frac{\exp(z^\top w_k)}{\sum_j \exp(z^\top w_j)},}{
#'   p(y | x, z) = sum_k g_k(z) N(y; x'a_k, sigma_k^2),  g_k(z) = softmax(z'w)_k,}
#' by an EM algorithm written in C: a log-space E-step, weighted least
#' squares for the experts and damped Newton steps for the gating network,
#' with the last expert as the gating reference (\eqn{w_K = 0}). Several
#' starts are run and the one with the highest log-likelihood among those
#' without a degenerate expert is kept.
#'
#' Requests whose results could not fit in memory (`starts` of `moe_em()`,
#' `nsim` of `simulate()`, `n_prop` of [moe_marglik()], chains and
#' iterations of `moe_mcmc()`) are refused before any work with a classed
#' error (`bayesmoe_error_size`) giving the memory they would need. The
#' limit is `getOption("bayesmoe.max_bytes")` when set, otherwise the
#' physical memory of the machine (64 GiB when it cannot be read); long but
#' feasible requests are never refused.
#'
#' The data are centred and scaled internally; all results are on the
#' original scale. Covariates and the response must be at most 1e100 in
#' absolute value and their nonzero values at least 1e-300 (denormal
#' numbers are refused); a covariate must vary by 0 or at least 1e-300, the
#' response by at least 1e-150 (its variance must be a normal number).
#' Within these bounds fits are equivariant: multiplying a covariate by
#' 1e17 divides its coefficients by 1e17.
#'
#' @section Starts:
#' Starts are: a deterministic split of the observations by their
#' least-squares residual, then alternately k-means++ partitions of the
#' standardised (covariates, response) and random Voronoi partitions (K
#' random observations as centres).
#'
#' By default (`strategy = "short"` in [moe_em_control()]) the starts are run
#' in two stages, the short-runs strategy of the mixture literature
#' (Biernacki, Celeux and Govaert, 2003; the subsample as in
#' Wehrens et al., 2004): every start is drawn on a random subsample of
#' `short_n` observations and runs there for at most `short_maxit`
#' iterations; the `short_keep` best of these short runs (by their
#' log-likelihood on the subsample, degenerate ones last, equal ones once)
#' then run to convergence on all the data, starting from the
#' responsibilities at their parameters. Only those are candidates for the
#' fit. `fit$starts` then also gives each start's `short_loglik` (on the
#' subsample) and `short_iter`; a start not continued has `loglik` `NA` and
#' `iter` 0, and its `start_par` are its subsample estimates. On large data
#' this costs a small fraction of running every start to convergence
#' (`strategy = "full"`, which gives the fits of earlier versions when
#' combined with `sep_bound = Inf`). With at most `short_n` observations,
#' `starts <= short_keep`, gates other than [gate_softmax()] or experts other
#' than linear ones, every start runs to convergence on all the data.
#'
#' @section Separation:
#' When the gate of the data is a step (the experts' regions are split
#' exactly along a line of the gating covariates), the maximum-likelihood
#' gating coefficients are infinite, as the coefficients of a logistic
#' regression on separated data: EM drives them up without end while the
#' log-likelihood creeps towards its supremum. A start stops as soon as a
#' gating coefficient on the internal scale (covariates standardised)
#' exceeds `sep_bound` of [moe_em_control()] (1000 by default: the gating
#' probability then goes from numerically 0 to numerically 1 within 0.07
#' standard deviations of a covariate) and still grows; its status reports
#' `"separation"`, as does that of a start converging beyond the bound. When
#' the fit returned has it, a warning of class `bayesmoe_warning_separation`
#' says so (like [glm()]'s "fitted probabilities numerically 0 or 1
#' occurred"): the gating coefficients then only locate the step. The
#' Bayesian fit [moe_mcmc()] is well defined on such data, since the prior
#' on the gating coefficients bounds them; `ridge` of [moe_em_control()]
#' keeps the EM estimates finite.
#'
#' @section Degenerate fits:
#' The likelihood of a mixture grows without bound as an expert's variance
#' shrinks onto a few observations it fits exactly, and EM finds such
#' solutions. Each is reported by a warning of class
#' `bayesmoe_warning_degenerate` saying what to do (fewer experts, a larger
#' `var_floor` in [moe_em_control()], or [moe_mcmc()]) when an expert
#' * holds fewer effective observations (sum of its responsibilities) than
#'   `min_size` of [moe_em_control()] (an empty expert) or than its number of
#'   parameters (its coefficients, its variance and its gating coefficients);
#' * has its variance at the floor `var_floor` (relative to the variance of
#'   the response); or
#' * has a variance below 0.001 times the residual variance of the one-expert
#'   (least-squares) fit, a spike: its few observations lie almost exactly on
#'   a line. With `tonedata`, `K = 3` gives an expert with variance 1.8e-05
#'   (the mean squared residual of `lm()` is 0.052) and raises the log-likelihood
#'   from 143 to 240, so that BIC prefers it.
#'
#' The `status` of each start (`fit$starts`) reports `"empty"` and
#' `"var_floor"`, and starts with those flags are ranked after all others.
#'
#' @references
#' Biernacki, C., Celeux, G. and Govaert, G. (2003). Choosing starting values
#' for the EM algorithm for getting the highest likelihood in multivariate
#' Gaussian mixture models. *Computational Statistics & Data Analysis* 41,
#' 561-575.
#'
#' Wehrens, R., Buydens, L. M. C., Fraley, C. and Raftery, A. E. (2004).
#' Model-based clustering for image segmentation and large datasets via
#' sampling. *Journal of Classification* 21, 231-253.
#'
#' @param formula A two-sided formula: the response and the expert
#'   covariates, as in [lm()]. Factors, interactions and `poly()` work.
#'   `offset()` terms add a known term to the mean of every expert
#'   (\eqn{x^\top a_k + o}), as in [lm()] and [glm()]: the experts regress
#'   the response minus the offset (the likelihood is that of the response),
#'   `fitted()`, `predict()` (with the offset evaluated in `newdata`),
#'   `residuals()` and `simulate()` add it back. The fit stores the offset in
#'   `$offset` and the response minus the offset in `$y`. Offsets are not
#'   allowed in `gating` (a term common to all experts cancels in the
#'   softmax) and the losses and truths refuse fits with one.
#' @param data A data frame holding the variables.
#' @param K Number of experts, a whole number >= 1. A model with more
#'   parameters than usable rows is warned of (class
#'   `bayesmoe_warning_overparameterised`); one with more than 10 times as
#'   many is refused.
#' @param gating A one-sided formula for the gating covariates; `NULL` (the
#'   default) uses the right-hand side of `formula` without its `offset()`
#'   terms. `~ 1` gives a mixture of regressions with constant weights.
#' @param family The distribution of the response given its expert, as in
#'   [glm()]: a family object, a family function or its name. `gaussian()`
#'   (the default) gives linear-Gaussian experts; see [moe_families] for the
#'   others. A family the package does not support is refused with an error
#'   of class `bayesmoe_error_family`.
#' @param gate The gating network: [gate_softmax()] (the default),
#'   [gate_topk()], [gate_temperature()] or [gate_hierarchical()].
#' @param expert The experts: [expert_linear()] (the default) or [expert_ffn()]
#'   (feed-forward networks; with softmax gating only, for now).
#' @param starts Number of starts (>= 1). A number whose results would not
#'   fit in memory is refused (see `options(bayesmoe.max_bytes)` in
#'   [moe_em()]'s Details).
#' @param seed Seed for the random starts, or `NULL` to use the current RNG
#'   state. With a seed the caller's RNG state is left untouched.
#' @param control Settings from [moe_em_control()].
#' @param subset,na.action,weights As in [lm()]. `weights` are case
#'   weights: observation i contributes `weights[i]` times its
#'   log-likelihood. Rows removed by `na.action` are reported by `print()`
#'   and `summary()`.
#' @return An object of class `c("moe_em", "moe_fit")`; see [summary.moe_em()],
#'   [predict.moe_fit()], [plot.moe_em()].
#' @examples
#' fit <- moe_em(tuned ~ stretchratio, data = tonedata, K = 2, seed = 1)
#' fit
#' summary(fit)
#' head(predict(fit, type = "gating"))
#' @export
moe_em <- function(formula, data, K, gating = NULL, family = gaussian(),
                   gate = gate_softmax(), expert = expert_linear(),
                   starts = 10, seed = NULL,
                   control = moe_em_control(), subset, na.action, weights) {
  call <- match.call()
  ecall <- sys.call()
  args <- check_fit_args(K, starts, seed, control, "moe_em_control", ecall)
  K <- args$K
  starts <- args$starts
  seed <- args$seed
  expert <- resolve_family(family, expert, ecall)
  vr <- check_variants(gate, expert, K, ecall)
  fr <- moe_frame(call, formula, gating, if (missing(data)) NULL else data,
                  parent.frame(), K, ecall, expert = vr$expert)
  check_expert_design(vr$expert, fr$X, ecall)
  check_npar(vr$gate, vr$expert, K, fr, "em", ecall)
  res <- with_seed(seed, moe_em_fit(fr$y, fr$X, fr$Z, fr$weights, K, starts, control,
                                    gate = vr$gate, expert = vr$expert,
                                    offset = if (is_glm_expert(vr$expert)) fr$offset,
                                    trials = fr$trials))
  fit <- new_moe_fit(fr, res, call = call, class = "moe_em")
  em_report(fit, ecall)
  fit
}

#' @rdname moe_em
#' @param y,X,Z,w Response vector, expert and gating design matrices (with
#'   column names) and case weights, for the matrix interface `moe_em_fit()`
#'   used by simulation studies (no formula handling; the data are only
#'   checked for types, shapes and finite values, not for collinearity).
#' @param init_par For `moe_em_fit()`: `NULL`, or a list of starting
#'   parameter sets (each a list with `alpha` (p x K), `sigma2` (K) and `W`
#'   (q x K, last column zero) on the original scale, as
#'   `coef(fit, matrix = TRUE)`); each one is a start, through the
#'   responsibilities at those parameters, and `starts` is ignored. Used by
#'   [moe_contraction()] for near-truth starts. Linear experts only; each set
#'   is checked (shapes, finite values, variances between 1e-100 and 1e100).
#' @param offset,trials For binomial and Poisson experts (`expert` from
#'   `family = binomial()` or `poisson()`): `NULL` or the offset of each
#'   row (in the linear predictor), and for binomial experts the trials of
#'   each row (`NULL`: 1), `y` being the proportion of successes.
#' @export
moe_em_fit <- function(y, X, Z, w = rep(1, length(y)), K, starts = 10,
                       control = moe_em_control(), init_par = NULL,
                       gate = gate_softmax(), expert = expert_linear(),
                       offset = NULL, trials = NULL) {
  call <- sys.call()
  K <- check_number(K, "K", lower = 1, whole = TRUE, call = call)
  starts <- check_number(starts, "starts", lower = 1, whole = TRUE, call = call)
  check_control(control, "moe_em_control", call)
  if (!is.null(init_par) && !is.list(init_par)) {
    abort(sprintf("`init_par` must be NULL or a list of parameter sets, not %s.",
                  describe(init_par)), call = call, arg = "init_par")
  }
  vr <- check_variants(gate, expert, K, call)
  gate <- vr$gate
  expert <- vr$expert
  spec <- make_spec(gate, expert)
  dat <- check_matrix_data(y, X, Z, w, K, call)
  y <- dat$y
  X <- dat$X
  Z <- dat$Z
  w <- dat$w
  if (!is.null(init_par)) init_par <- check_init_par(init_par, ncol(X), ncol(Z), K, expert, call)
  # each start keeps its parameters (twice: the run and start_par) and a
  # few numbers; only the best run keeps its responsibilities and trace
  nstart <- if (is.null(init_par)) starts else length(init_par)
  check_size(8 * nstart * (2 * (ncol(X) + ncol(Z) + 1) * K + 16),
             sprintf("%s starts, each keeping %d parameters twice, 8 bytes each",
                     format(nstart, big.mark = ",", scientific = FALSE), (ncol(X) + ncol(Z) + 1) * K),
             if (is.null(init_par)) "starts" else "init_par", call)
  sc <- moe_scaling(y, X, Z)
  if (is_glm_expert(expert)) sc <- glm_scaling(sc)
  s <- scale_data(sc, y, X, Z)
  if (is_glm_expert(expert)) s$family <- glm_family_data(expert, y, offset, trials)
  min_size <- if (is.null(control$min_size)) ncol(X) + 1 else control$min_size
  types <- if (is.null(init_par)) start_types(starts) else rep("given", length(init_par))
  starts <- length(types)
  short <- is.null(init_par) && control$strategy == "short" && is_softmax_linear(spec) &&
    length(y) > control$short_n && starts > control$short_keep
  se <- if (short) em_starts_short(s, w, types, K, control, min_size, spec) else
    em_starts_full(s, w, types, K, control, min_size, spec, init_par, y, X, Z)
  runs <- se$runs
  keep <- se$keep
  ll <- vapply(runs, `[[`, 0, "loglik")
  st <- vapply(runs, `[[`, 0L, "status")
  best <- keep$j
  r <- keep$run
  par <- user_par(par_to_original(sc, run_par(r, spec)))
  # the log-likelihood of the original response differs by the Jacobian of
  # the scaling y -> (y - my) / sy
  jac <- -sum(w) * log(sc$sy)
  ll <- ll + jac
  tab <- data.frame(start = seq_len(starts), type = types, loglik = ll,
                    iter = vapply(runs, `[[`, 0L, "iter"),
                    status = vapply(st, status_text, ""), stringsAsFactors = FALSE)
  if (short) {
    tab$short_loglik <- se$short_loglik - sum(w[se$sub]) * log(sc$sy)
    tab$short_iter <- se$short_iter
  }
  list(par = par, loglik = r$loglik + jac, iter = r$iter, status = r$status,
       trace = r$trace + jac, resp = r$resp, scaling = sc, min_size = min_size,
       var_floor = control$var_floor, control = control, starts = tab,
       best = best,
       start_par = lapply(runs, function(r) user_par(par_to_original(sc, run_par(r, spec)))),
       gate = gate, expert = expert)
}

# Rank of an EM run among the starts (smaller is better): runs with an empty
# expert, a variance at the floor or a non-finite log-likelihood after all
# others, then by decreasing log-likelihood.
run_key <- function(r) {
  bad <- bitwAnd(r$status, status_flags[["empty"]] + status_flags[["var_floor"]]) > 0L ||
    !is.finite(r$loglik)
  c(bad, if (is.finite(r$loglik)) -r$loglik else Inf)
}

key_less <- function(a, b) a[1L] < b[1L] || a[1L] == b[1L] && a[2L] < b[2L]

# Every start to convergence on all the (internal-scale) data `s`. Returns
# `runs` (one per start, without responsibilities and trace) and `keep`, the
# best run with everything (so that memory stays small).
em_starts_full <- function(s, w, types, K, control, min_size, spec, init_par, y, X, Z) {
  feats <- if (is.null(init_par)) start_features(s$y, s$X, s$Z)
  runs <- vector("list", length(types))
  keep <- NULL
  for (j in seq_along(types)) {
    R0 <- if (is.null(init_par)) start_resp(types[j], s$y, s$X, feats, K) else
      .Call(ffi_estep, y, X, Z, w, init_par[[j]]$alpha, init_par[[j]]$sigma2,
            init_par[[j]]$W)$resp
    rj <- em_run(s, w, R0, control, min_size, spec_gate(spec), spec_expert(spec))
    kj <- run_key(rj)
    if (is.null(keep) || key_less(kj, keep$key)) keep <- list(j = j, run = rj, key = kj)
    rj$resp <- NULL
    rj$trace <- NULL
    runs[[j]] <- rj
  }
  list(runs = runs, keep = keep)
}

# The short-runs strategy (softmax gate, linear experts): every start runs
# for at most `short_maxit` iterations on a subsample of `short_n` rows drawn
# without replacement; the `short_keep` best of them with distinct
# log-likelihoods continue to convergence on all the data, from the
# responsibilities at their parameters. The runs not continued keep their
# subsample parameters, an NA log-likelihood and 0 iterations. Returns
# `runs`, `keep` as em_starts_full() and the short runs' `short_loglik`
# (internal scale), `short_iter` and subsample `sub`.
em_starts_short <- function(s, w, types, K, control, min_size, spec) {
  n <- length(s$y)
  sub <- sort(sample.int(n, control$short_n))
  ss <- list(y = s$y[sub], X = s$X[sub, , drop = FALSE], Z = s$Z[sub, , drop = FALSE])
  ws <- w[sub]
  feats <- start_features(ss$y, ss$X, ss$Z)
  sctl <- control
  sctl$maxit <- control$short_maxit
  gate <- spec_gate(spec)
  expert <- spec_expert(spec)
  short <- lapply(types, function(type) {
    r <- em_run(ss, ws, start_resp(type, ss$y, ss$X, feats, K), sctl, min_size, gate, expert)
    r$resp <- NULL
    r$trace <- NULL
    r
  })
  keys <- vapply(short, run_key, numeric(2))
  ord <- order(keys[1L, ], keys[2L, ])
  sll <- vapply(short, `[[`, 0, "loglik")
  cont <- ord[1L]
  for (j in ord[-1L]) {
    if (length(cont) >= control$short_keep) break
    if (all(abs(sll[j] - sll[cont]) > 1e-6 * (1 + abs(sll[j])))) cont <- c(cont, j)
  }
  runs <- lapply(short, function(r) {
    r$loglik <- NA_real_
    r$iter <- 0L
    r
  })
  keep <- NULL
  for (j in cont) {
    R0 <- .Call(ffi_estep, s$y, s$X, s$Z, w, short[[j]]$alpha, short[[j]]$sigma2,
                short[[j]]$W)$resp
    rj <- em_run(s, w, R0, control, min_size, gate, expert)
    kj <- run_key(rj)
    if (is.null(keep) || key_less(kj, keep$key)) keep <- list(j = j, run = rj, key = kj)
    rj$resp <- NULL
    rj$trace <- NULL
    runs[[j]] <- rj
  }
  list(runs = runs, keep = keep, short_loglik = sll,
       short_iter = vapply(short, `[[`, 0L, "iter"), sub = sub)
}

# `init_par` of moe_em_fit(): a non-empty list of parameter sets, each a
# list with finite `alpha` (p x K), positive `sigma2` (K) and `W` (q x K),
# bounded like the data (1e100; variances in [1e-100, 1e100]). The starting
# responsibilities come from the softmax-linear E-step, so the experts must
# be linear. Returns the sets with their matrices as doubles.
check_init_par <- function(init_par, p, q, K, expert, call = NULL) {
  if (!inherits(expert, "moe_expert_linear")) {
    abort(sprintf("`init_par` must be NULL with `expert = %s`: starting parameter sets are only available for linear experts.",
                  expert_call(expert)), call = call, arg = "init_par")
  }
  if (!length(init_par)) {
    abort("`init_par` must be NULL or a non-empty list of parameter sets, not an empty list.",
          call = call, arg = "init_par")
  }
  ok_mat <- function(M, r) {
    is.numeric(M) && (is.matrix(M) || r == 1L) && length(M) == r * K &&
      all(is.finite(M)) && all(abs(M) <= data_max)
  }
  lapply(seq_along(init_par), function(j) {
    par <- init_par[[j]]
    ok <- is.list(par) && ok_mat(par$alpha, p) && ok_mat(par$W, q) &&
      is.numeric(par$sigma2) && length(par$sigma2) == K && all(is.finite(par$sigma2)) &&
      all(par$sigma2 >= 1e-100 & par$sigma2 <= 1e100)
    if (!ok) {
      abort(sprintf("`init_par[[%d]]` must be a list with finite `alpha` (%d x %d), `sigma2` (%d variances in [1e-100, 1e100]) and `W` (%d x %d), as `coef(fit, matrix = TRUE)`, not %s.",
                    j, p, K, K, q, K,
                    if (!is.list(par)) describe(par) else if (!length(par)) "an empty list"
                    else if (is.null(names(par))) sprintf("an unnamed %s", describe(par))
                    else sprintf("a list with %s", paste0("`", names(par), "`", collapse = ", "))),
            call = call, arg = "init_par")
    }
    list(alpha = matrix(as.double(par$alpha), p, K), sigma2 = as.double(par$sigma2),
         W = matrix(as.double(par$W), q, K))
  })
}

# The parameter list of one EM run (or chain state): list(alpha, sigma2, W)
# plus V, tau and the spec of a variant.
run_par <- function(r, spec) {
  gate <- spec_gate(spec)
  par <- list(alpha = r$alpha, sigma2 = r$sigma2, W = r$W)
  if (inherits(gate, "moe_gate_hierarchical")) par$V <- r$V
  if (isTRUE(gate$learn)) par$tau <- r$tau
  c(par, list(spec = spec))
}

# The EM controls as ffi_em() takes them (MOE_EMCTL_* in src/moe.h).
em_control_c <- function(control, min_size) {
  c(maxit = as.double(control$maxit), tol = control$tol, var_floor = control$var_floor,
    min_size = as.double(min_size), gate_steps = as.double(control$gate_steps),
    ridge = control$ridge, sep_bound = control$sep_bound,
    # controls saved before `threads` existed run with one thread
    threads = if (is.null(control$threads)) 1 else as.double(control$threads))
}

# One EM run from starting responsibilities R0 (n x K) on the internal-scale
# data `s`: the one EM driver of src/em.c, for every gate and expert family
# (it picks the fused kernel for the softmax gate with linear experts).
em_run <- function(s, w, R0, control, min_size, gate, expert) {
  if (!inherits(expert, "moe_expert_linear") && !is_glm_expert(expert) &&
      !inherits(gate, "moe_gate_softmax")) {
    abort_unavailable(sprintf("`gate = %s` with `expert = %s`", gate_call(gate),
                              expert_call(expert)), "moe_em")
  }
  K <- ncol(R0)
  X <- expert_design(expert, s$X)
  ctl <- em_control_c(control, min_size)
  y <- if (is.null(s$family)) s$y else s$family$y
  .Call(ffi_em, y, X, s$Z, as.double(w), R0, expert_start(expert, ncol(X), K), ctl,
        gate_c(gate, K), expert_c_data(expert, s),
        if (isTRUE(gate$learn)) as.double(gate$prior))
}

start_types <- function(starts) {
  c("residual", rep_len(c("kmeans++", "random"), starts - 1L))
}

# Features on which partitions are drawn: the non-intercept covariates of
# both designs (each column once) and the response, on the internal scale.
start_features <- function(y, X, Z) {
  zcols <- setdiff(colnames(Z), c("(Intercept)", colnames(X)))
  cbind(X[, colnames(X) != "(Intercept)", drop = FALSE], Z[, zcols, drop = FALSE], y)
}

# Starting responsibilities (n x K) on the internal scale: a partition made
# soft (0.9 on the assigned expert) so that no expert starts empty.
start_resp <- function(type, y, X, feats, K) {
  n <- length(y)
  if (K == 1L) return(matrix(1, n, 1L))
  lab <- switch(type,
    residual = {
      res <- qr.resid(qr(X), y)
      cut(rank(res, ties.method = "first"), K, labels = FALSE)
    },
    "kmeans++" = kmeanspp_partition(feats, K),
    random = {
      centres <- feats[sample.int(n, K), , drop = FALSE]
      nearest_centre(feats, centres)
    })
  R0 <- matrix(0.1 / (K - 1), n, K)
  R0[cbind(seq_len(n), lab)] <- 0.9
  R0
}

nearest_centre <- function(feats, centres) {
  d <- vapply(seq_len(nrow(centres)), function(k)
    rowSums(sweep(feats, 2L, centres[k, ])^2), numeric(nrow(feats)))
  max.col(-matrix(d, nrow(feats)), ties.method = "first")
}

kmeanspp_partition <- function(feats, K) {
  n <- nrow(feats)
  idx <- sample.int(n, 1L)
  d2 <- rowSums(sweep(feats, 2L, feats[idx, ])^2)
  for (k in seq_len(K - 1L)) {
    pr <- if (sum(d2) > 0) d2 else rep(1, n)
    idx <- c(idx, sample.int(n, 1L, prob = pr))
    d2 <- pmin(d2, rowSums(sweep(feats, 2L, feats[idx[k + 1L], ])^2))
  }
  centres <- feats[idx, , drop = FALSE]
  if (n > K && nrow(unique(centres)) == K) {
    km <- tryCatch(stats::kmeans(feats, centres, iter.max = 20L),
                   error = function(e) NULL, warning = function(w) NULL)
    if (!is.null(km)) return(km$cluster)
  }
  nearest_centre(feats, centres)
}

# Report degenerate or non-converged fits as classed warnings.
em_report <- function(fit, call) {
  flags <- decode_status(fit$status)
  if ("maxit" %in% flags) {
    warn(sprintf("EM did not converge in %d iterations; increase `maxit` in `moe_em_control()`.",
                 fit$control$maxit), kind = "convergence", call = call)
  }
  if ("separation" %in% flags) separation_report(fit, call)
  nk <- colSums(fit$resp * fit$weights)
  empty <- which(nk < fit$min_size)
  if (length(empty)) {
    warn(sprintf("Expert%s %s ha%s fewer than %g effective observations (empty expert); consider a smaller `K`.",
                 if (length(empty) > 1) "s" else "", paste(empty, collapse = ", "),
                 if (length(empty) > 1) "ve" else "s", fit$min_size),
         kind = "degenerate", call = call)
  }
  # experts without a variance (binomial, Poisson) cannot collapse onto a
  # spike
  if (!expert_dispersion(spec_expert(fit))) return(invisible(fit))
  sigma2 <- fit$coefficients$sigma2
  collapsed <- which(sigma2 <= fit$var_floor * fit$scaling$sy^2 * (1 + 1e-8))
  if (length(collapsed)) {
    warn(sprintf("Expert%s %s collapsed onto too few observations (variance at the floor); consider a smaller `K`.",
                 if (length(collapsed) > 1) "s" else "", paste(collapsed, collapse = ", ")),
         kind = "degenerate", call = call)
  }
  # experts above the floor that still fit a few observations almost
  # exactly, or hold fewer observations than they have parameters
  deg <- degenerate_experts(sigma2, nk, fit)
  spike <- setdiff(which(deg$spike), collapsed)
  small <- setdiff(which(deg$small), c(empty, spike, collapsed))
  if (length(spike) || length(small)) {
    what <- c(if (length(spike)) sprintf(
      "expert%s %s ha%s a variance below %g times the residual variance of a one-expert fit (%s: a spike fitting a few observations almost exactly, which inflates the likelihood and so BIC)",
      if (length(spike) > 1) "s" else "", paste(spike, collapse = ", "),
      if (length(spike) > 1) "ve" else "s", spike_ratio,
      paste(sprintf("%s = %s", paste0("sigma2[", spike, "]"),
                    format(signif(sigma2[spike], 2))), collapse = ", ")),
      if (length(small)) sprintf(
        "expert%s %s hold%s fewer observations (%s) than %s parameters (%d)",
        if (length(small) > 1) "s" else "", paste(small, collapse = ", "),
        if (length(small) > 1) "" else "s",
        # rounded down, so that a size just below the count does not print as it
        paste(format(floor(100 * nk[small]) / 100), collapse = ", "),
        if (length(small) > 1) "their" else "its", deg$npar))
    floor_hint <- signif(spike_ratio * deg$ref / fit$scaling$sy^2, 1)
    if (!(floor_hint > 0 && floor_hint <= 1)) floor_hint <- spike_ratio
    warn(sprintf("Degenerate fit: %s. Use fewer experts, a variance floor (`control = moe_em_control(var_floor = %s)` keeps variances above %g times the residual variance and ranks starts reaching it last), or the Bayesian fit `moe_mcmc()`, whose inverse-gamma prior on the variances (`moe_prior(c0, C0)`) pulls them away from zero.",
                 paste(what, collapse = "; "), format(floor_hint), spike_ratio),
         kind = "degenerate", call = call)
  }
  invisible(fit)
}

# The separation warning: which gating vectors ran away (on the internal
# scale, where `sep_bound` applies), what that means and what to do.
separation_report <- function(fit, call) {
  W <- par_to_internal(fit$scaling, with_spec(fit$coefficients, fit_spec(fit)))$W
  big <- apply(abs(W), 2L, max)
  k <- which(big > fit$control$sep_bound)
  if (!length(k)) k <- which.max(big)
  warn(sprintf(paste(
    "Separation: the gating coefficients of expert%s %s ran away (largest |coefficient| %s on the",
    "standardised scale, above `sep_bound` = %s): fitted gating probabilities numerically 0 or 1",
    "occurred, the gate is a step and its maximum-likelihood coefficients are infinite. EM stopped",
    "after %d iterations, so the gating coefficients (and their standard errors) only say where the",
    "step is. The Bayesian fit `moe_mcmc()` is well defined here: its prior on the gating",
    "coefficients (`moe_prior()`) bounds them; `moe_em_control(ridge = )` also keeps them finite."),
    if (length(k) > 1L) "s" else "", paste(k, collapse = ", "), format(signif(max(big), 3)),
    format(fit$control$sep_bound), fit$iter), kind = "separation", call = call)
}

# An expert variance below `spike_ratio` times the residual variance of a
# one-expert (least-squares) fit is a spike: the expert fits a few
# observations almost exactly.
spike_ratio <- 1e-3

# Which experts of a fit are degenerate beyond the EM's own flags: `spike`,
# a variance below spike_ratio times `ref` (the weighted residual variance
# of the least-squares fit on the expert design; no check when it is 0), and
# `small`, an effective size `nk` (sum of the weighted responsibilities)
# below the number of parameters of an expert, `npar` (its coefficients,
# its variance and, for K > 1, its gating coefficients).
degenerate_experts <- function(sigma2, nk, fit) {
  ref <- ls_residual_variance(fit$y, fit$X, fit$weights)
  K <- length(sigma2)
  npar <- expert_npar(spec_expert(fit), ncol(fit$X)) +
    1L + if (K > 1L) ncol(fit$Z) else 0L
  list(spike = if (ref > 0) sigma2 < spike_ratio * ref else logical(K),
       small = if (K > 1L) nk < npar else logical(K), ref = ref, npar = npar)
}

ls_residual_variance <- function(y, X, w) {
  keep <- w > 0
  sw <- sqrt(w[keep])
  r <- qr.resid(qr(X[keep, , drop = FALSE] * sw), y[keep] * sw)
  sum(r^2) / sum(w[keep])
}
