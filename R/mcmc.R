# Bayesian fit by Gibbs sampling: moe_mcmc() (front end), moe_mcmc_fit()
# (workhorse on matrices), the chain runner and continuation.
#
# Structure of a fit (class c("moe_mcmc", "moe_fit")), built by
# new_moe_fit(): the fields every fit has (call, K, formula, gating, terms,
# gating_terms, xlevels, zlevels, contrasts, zcontrasts, na.action, y, X, Z,
# weights, model, coefficients), plus:
#   draws         numeric array [kept iterations, chains, P], dimnames
#                 list(NULL, "chain1".., par_names(colnames(X), colnames(Z), K)):
#                 every kept draw ON THE ORIGINAL SCALE, AS SAMPLED (expert
#                 labels may switch; no relabelling);
#   loglik_draws  matrix [kept iterations, chains]: total log-likelihood
#                 sum_i w_i log p(y_i | x_i, z_i, draw), original scale;
#   coefficients  list(alpha, sigma2, W[, V, tau]): posterior means of the
#                 raw draws (coef() and summary() use relabelled draws
#                 instead, through moe_point.moe_mcmc() in R/estimates.R);
#   gate, expert  the gate and expert objects (the fit's spec, R/spec.R);
#   loglik        max(loglik_draws), so logLik() works (a point summary, not a
#                 maximum-likelihood value);
#   prior         the moe_prior() used; control  the moe_mcmc_control();
#   iter          iterations per chain so far, warm-up included; warmup, thin;
#   chains        number of chains; seed  the seed the streams derive from;
#   init          "em" or "random"; scaling  moe_scaling() of the data;
#   state         one element per chain: list(alpha, sigma2, W[, V, tau])
#                 (internal scale, final draw), adapt and xstate (the
#                 adaptation states of the gate and the expert family, when
#                 they have one), rng (the integer .Random.seed, kind
#                 L'Ecuyer-CMRG, after the chain), pg_every (the schedule
#                 of Polya-Gamma gating draws after warm-up, 1 when the
#                 warm-up found the Metropolis-Hastings moves stuck),
#                 iterations_done (warm-up included);
#   accept        softmax gate with linear experts (the fused kernel of
#                 src/mcmc_fused.c): the share of the gating Metropolis-
#                 Hastings moves accepted after warm-up, one per chain
#                 (gate_update "pg+mh", "mh" or "collapsed"), NULL without
#                 them; other models (the generic kernel): a chains x blocks
#                 matrix of acceptance rates of their Metropolis blocks
#                 (variant_blocks()), NULL without blocks;
#   gating_moves  softmax gate with linear experts: integer matrix
#                 [chains, 6] of gating move counts (gating_move_names:
#                 accepted and proposed Metropolis-Hastings moves and sweeps
#                 with a Polya-Gamma draw, in warm-up and after), summed
#                 over runs; NULL for the other models;
#   timing        CPU seconds (user + system) of each chain, summed over runs;
#   em            the moe_em_fit() result used to start the chains, or NULL.
# Draws are kept from post-warm-up sweeps t = 1, 2, ... with t %% thin == 0.

#' Control settings of the Gibbs sampler
#'
#' @param em_starts Number of EM starts used by `init = "em"`.
#' @param em_control Settings of those EM runs, from [moe_em_control()].
#' @param init_tol With `init = "em"`, the chains start from the distinct,
#'   non-degenerate EM solutions whose log-likelihood is within `init_tol`
#'   of the best one (best first, recycled when there are fewer solutions
#'   than chains). Solutions far below the best are local modes with
#'   negligible posterior mass in which a chain could stay stuck.
#' @param refresh With `progress = TRUE`, print progress every `refresh`
#'   iterations; `NULL` prints about ten times per chain.
#' @param gate_update How the gating vectors are updated in each sweep,
#'   given the allocations of the observations to the experts:
#'   `"pg+mh"` draws each of them in turn from its Polya-Gamma
#'   augmented conditional, then makes a joint Metropolis-Hastings step on
#'   all of them, proposing one Fisher-scoring step of the multinomial
#'   logistic regression from the current value (Gamerman, 1997); `"pg"`
#'   makes the Polya-Gamma draws only; `"mh"` the Metropolis-Hastings step
#'   (plus the scheduled Polya-Gamma draws of `pg_every`). The
#'   Polya-Gamma draws alone mix slowly when the gates are steep (nearly
#'   separated experts) or the gating vectors are correlated a posteriori;
#'   the Metropolis-Hastings step fixes both at the cost of two passes over
#'   the data without random numbers. `"mh"` skips most Polya-Gamma draws,
#'   the most expensive part of a sweep. `"collapsed"` (the default)
#'   integrates the allocations out: `gate_steps` Metropolis-Hastings steps
#'   on the gating vectors given the experts only (target p(W | experts,
#'   y), the mixture likelihood; proposal one Newton step from the current
#'   value, with the negative Hessian as precision, or the complete-data
#'   information where that is not positive definite), then the
#'   allocations from their conditional given the new gating vectors and
#'   the experts, the `"mh"` step given the allocations, and the experts.
#'   Drawing gating vectors and allocations jointly removes their strong
#'   posterior dependence, the main cause of slow mixing of the predictive
#'   mean on well separated problems; chosen as the default by measurement
#'   on the benchmark in `bench/mcmc-vs-brms.R`
#'   (`bench/results/mcmc-vs-brms.md`). All four updates leave the
#'   posterior invariant.
#'
#'   **Why `"collapsed"` and `"mh"` cannot freeze.** A Metropolis-Hastings
#'   proposal built from the current point (one Newton or Fisher-scoring
#'   step) is exact, but far from the posterior mode the step can overshoot
#'   so badly that the move back is never proposed: a chain started there
#'   would keep its gating coefficients for ever (this happened from
#'   random starts before version 0.1.0 was released). Both updates
#'   therefore also make the Polya-Gamma draw of the gating vectors, a Gibbs
#'   step that moves from every point: in warm-up in every sweep after 10
#'   sweeps in a row without an accepted Metropolis-Hastings move (warm-up
#'   draws are discarded, so this choice does not change the posterior),
#'   and after warm-up on a fixed schedule, every `pg_every`-th sweep, which
#'   keeps the chain irreducible. A chain that accepted fewer than 5% of
#'   its Metropolis-Hastings moves in the second half of its warm-up sits
#'   where those proposals do not fit the posterior (typically an expert
#'   with nearly no gate weight, where the gating posterior is flat up to a
#'   steep wall); it makes the Polya-Gamma draw in every sweep after warm-up
#'   instead (chosen once, kept when the fit is continued). In warm-up the
#'   collapsed update also moves, after a sweep whose steps were all
#'   rejected, to the point its proposal is centred on (the Newton point of
#'   the collapsed posterior) or halfway to it when the posterior density is
#'   higher there: from a start far below the mode, such as the capped gate
#'   of an EM start stopped by separation (a step gate), the Newton proposal
#'   lands near the mode but is rejected because the move back is
#'   improbable, and the Polya-Gamma draws move a steep gate by tiny steps.
#'   Warm-up draws are discarded, and after warm-up the update is the
#'   Metropolis-Hastings one above. The acceptance rate of each chain after
#'   warm-up is stored in the fit (`accept`, all gating Metropolis-Hastings
#'   moves) with the counts behind it (`gating_moves`, warm-up and
#'   sampling), shown by `summary()`; [moe_mcmc()] warns (class
#'   `bayesmoe_warning_gating_stall`) when a chain accepted fewer than 1% of
#'   its moves after warm-up. Simulation-based calibration of the defaults
#'   from starts drawn from the prior is in `vignette("validation")`.
#'
#'   The sampler of the gating variants (`gate =` other than
#'   [gate_softmax()]) has no collapsed update and runs `"collapsed"` as
#'   `"pg+mh"`; with FFN experts the gating update is the Polya-Gamma one
#'   whatever `gate_update` says.
#' @param gate_steps With `gate_update = "collapsed"`, the number of
#'   collapsed Metropolis-Hastings steps per sweep, 1 to 100 (ignored
#'   otherwise). Each step costs one pass over the data, of the five a
#'   sweep makes with the default 2. On large data, where nearly every step
#'   is accepted, one step mixed as well per CPU second as two or better
#'   (`bench/results/scale.md` in the package sources), so `gate_steps = 1`
#'   is the faster choice there. 2 stays the default: in the simulation-based
#'   calibration of `vignette("validation")` ("One step per sweep") one
#'   step left more chains mixing slowly on a small, hard problem (n = 1000,
#'   K = 3), and the validation studies were made with two.
#' @param pg_every With `gate_update = "collapsed"` or `"mh"`: after
#'   warm-up, every `pg_every`-th sweep also makes the Polya-Gamma draw of
#'   the gating vectors (see `gate_update`), a whole number from 1 (every
#'   sweep) to 10000. `Inf` turns the scheduled draws off; the chain is then
#'   no longer guaranteed to move (for studying the sampler only).
#' @param threads OpenMP threads inside each chain (softmax gate with linear
#'   experts, `gate_update = "collapsed"`: the passes over the observations),
#'   a whole number >= 1; never more than the machine has (and none beyond
#'   one where the package was built without OpenMP). The observations are
#'   cut into fixed chunks whose sums are added in a fixed order; the
#'   uniforms of the allocations are drawn by one thread, and the
#'   Polya-Gamma draws of the gating (`pg_every`) chunk by chunk, each chunk
#'   from its own stream of a fast generator (xoshiro256+) seeded from R's
#'   generator, so the draws are the same for any number of threads and
#'   `set.seed()` still reproduces them. (With case weights above 1 the
#'   Polya-Gamma draws use R's generator in one thread.) The EM warm start
#'   (`init = "em"`) runs on as many threads (`threads` of
#'   [moe_em_control()], which overrides that of `em_control`). Chains run in
#'   parallel through `future` instead (see [moe_mcmc()]); threads help one
#'   long chain on a large data set.
#' @param info_obs With `gate_update = "collapsed"` (softmax gate, linear
#'   experts): the number of observations the precisions of the Newton
#'   proposals are computed from. With more observations than that, the
#'   gating information (the `K (K - 1) / 2` blocks of `q x q` sums over the
#'   observations that a proposal and its reverse density need, most of the
#'   cost of a sweep with several covariates and experts) is summed over a
#'   fixed systematic subsample, every `s`-th observation with
#'   `s = ceiling(n / info_obs)`, and scaled up to all of them by their case
#'   weights; the gradient, the target and the allocations still use every
#'   observation. The precision is then still a fixed function of the point,
#'   so the Metropolis-Hastings steps leave the posterior exactly invariant;
#'   only the proposals change, by a relative error of order
#'   `1 / sqrt(info_obs)`, which leaves the acceptance rate as it is (see
#'   `bench/results/scale.md`). Data sets with at most `info_obs`
#'   observations give the same draws as with `Inf` (every observation). A
#'   whole number >= 1000, or `Inf`.
#' @return A list of class `moe_mcmc_control`.
#' @references
#' Gamerman, D. (1997). Sampling from the posterior distribution in
#' generalized linear mixed models. *Statistics and Computing* 7, 57-68.
#' @examples
#' moe_mcmc_control(em_starts = 5)
#' @export
moe_mcmc_control <- function(em_starts = 10, em_control = moe_em_control(),
                             init_tol = 10, refresh = NULL,
                             gate_update = c("collapsed", "pg+mh", "pg", "mh"),
                             gate_steps = 2, pg_every = 20, threads = 1,
                             info_obs = 50000) {
  call <- sys.call()
  if (!inherits(em_control, "moe_em_control")) {
    abort(sprintf("`em_control` must be made by `moe_em_control()`, not %s.",
                  describe(em_control)), call = call, arg = "em_control")
  }
  ctl <- list(
    em_starts = check_number(em_starts, "em_starts", lower = 1, whole = TRUE, call = call),
    em_control = em_control,
    init_tol = check_number(init_tol, "init_tol", lower = 0, allow_inf = TRUE, call = call),
    refresh = if (is.null(refresh)) NULL else
      check_number(refresh, "refresh", lower = 1, whole = TRUE, call = call),
    gate_update = check_choice(gate_update, c("collapsed", "pg+mh", "pg", "mh"),
                               "gate_update", call),
    gate_steps = check_number(gate_steps, "gate_steps", lower = 1, upper = 100,
                              whole = TRUE, call = call),
    pg_every = if (identical(pg_every, Inf)) Inf else
      check_number(pg_every, "pg_every", lower = 1, upper = 10000, whole = TRUE, call = call),
    threads = check_number(threads, "threads", lower = 1, upper = 1024, whole = TRUE,
                           call = call),
    info_obs = if (identical(info_obs, Inf)) Inf else
      check_number(info_obs, "info_obs", lower = 1000, upper = .Machine$integer.max,
                   whole = TRUE, call = call)
  )
  structure(ctl, class = "moe_mcmc_control")
}

#' Bayesian fit of a softmax-gated mixture of experts by Gibbs sampling
#'
#' Samples the posterior of the mixture-of-experts regression
#' \deqn{p(y \mid x, z) = \sum_{k=1}^K g_k(z)\, N(y;\, x^\top a_k,\, \sigma_k^2),
#'   \qquad g_k(z) = \frac{\exp(z^\top w_k)}{\sum_j \exp(z^\top w_j)},}{
#'   p(y | x, z) = sum_k g_k(z) N(y; x'a_k, sigma_k^2),  g_k(z) = softmax(z'w)_k,}
#' (expert \eqn{K} is the gating reference, \eqn{w_K = 0}) under the prior
#' [moe_prior()], with a Gibbs sampler written in C. Each sweep draws the
#' allocations of the observations to the experts, then every expert's
#' coefficients and variance from their conjugate Normal / inverse-gamma
#' conditional (an expert without observations is drawn from its prior),
#' then each non-reference gating vector given the others by Polya-Gamma
#' data augmentation (Polson, Scott and Windle, 2013; one vector at a time,
#' as Holmes and Held, 2006), which needs no tuning, optionally followed by a
#' joint Metropolis-Hastings step on all gating vectors given the
#' allocations. By default (`gate_update = "collapsed"` in
#' [moe_mcmc_control()]) the gating vectors are instead first updated with
#' the allocations integrated out, and the allocations then drawn given
#' them, which removes the strong dependence between the two on well
#' separated problems.
#'
#' **Scale.** The response and the non-intercept columns of both designs are
#' centred and scaled internally; the prior lives on that scale. Draws,
#' log-likelihoods and coefficients of the fit are on the original scale.
#'
#' **Chains and reproducibility.** The chains are independent. They run
#' through [future.apply::future_lapply()] when future.apply is installed, so
#' `future::plan(multisession)` (or any other plan) runs them in parallel,
#' and sequentially with [lapply()] otherwise. Chain \eqn{c} draws from its
#' own L'Ecuyer-CMRG stream, the \eqn{c}-th [parallel::nextRNGStream()]
#' after `set.seed(seed)`, so the same `seed` gives identical draws whatever
#' the plan. (The uniforms of the allocation draws of linear experts with
#' softmax gating come from a fast xoshiro256+ generator seeded in every
#' sweep by two draws of that stream, so the chain remains a function of
#' the stream alone.) With a seed the caller's RNG state is left untouched; with
#' `seed = NULL` one seed is drawn from the session RNG (and stored in the
#' fit).
#'
#' **Starting values.** `init = "em"` runs [moe_em_fit()] with
#' `control$em_starts` starts; chain 1 starts from the best solution and the
#' other chains from other distinct EM solutions near it (see
#' [moe_mcmc_control()]), their expert labels aligned to the best one.
#' `init = "random"` starts each chain from a draw from the prior.
#'
#' **Continuing a fit.** `moe_mcmc(fit, iter = 500)` continues every chain
#' of the fit `fit` from its stored final state and RNG state for `iter`
#' more iterations (no warm-up), appends the kept draws (same `thin`) and
#' returns the longer fit. The result is identical to a single run with the
#' same seed and the total number of iterations.
#'
#' **Case weights** must be whole numbers (frequency weights): observation
#' \eqn{i} stands for `weights[i]` identical observations, each with its own
#' allocation (the Polya-Gamma step then draws \eqn{PG(w_i, \cdot)}). Rows
#' with weight 0 are left out of the sampler.
#'
#' **Label switching.** Draws are stored as sampled; expert labels may
#' switch between and within chains. Label-invariant quantities (the
#' log-likelihood in `loglik_draws`, predictive means and densities) need
#' no relabelling; `coef()`, `summary()` and the expert-specific predictions
#' use draws relabelled by [moe_relabel()].
#'
#' @inheritParams moe_em
#' @param formula A two-sided formula: the response and the expert
#'   covariates, as in [lm()] (`offset()` terms work as in [moe_em()]); or a
#'   fit from `moe_mcmc()` to continue it (then only `iter` and `progress`
#'   may be given).
#' @param prior The prior, from [moe_prior()].
#' @param chains Number of chains.
#' @param iter Number of iterations (sweeps) per chain, warm-up included;
#'   when continuing a fit, the number of further iterations.
#' @param warmup Number of warm-up iterations discarded at the start of each
#'   chain.
#' @param thin Keep every `thin`-th iteration after the warm-up.
#' @param init Starting values: `"em"` or `"random"` (see Details).
#' @param seed `NULL` or a whole number from which the random number streams
#'   of the EM starts and of the chains are derived (see Details).
#' @param control Settings from [moe_mcmc_control()].
#' @param progress Print the progress of each chain from the sampler (a line
#'   "chain c: iteration i" every `refresh` iterations). Independently of it,
#'   when the progressr package is installed every call reports one step per
#'   finished chain through a [progressr::progressor()] labelled with `K` and the
#'   number of chains, which shows nothing until handlers are enabled:
#'   `progressr::handlers(global = TRUE)` once per session, or a call wrapped
#'   in `progressr::with_progress()`; under `Rscript` also
#'   `options(progressr.enable = TRUE)` (progressr reports in interactive
#'   sessions only by default). Chains in parallel workers report too.
#' @param subset,na.action,weights As in [lm()]; `weights` must be whole
#'   numbers (see Details).
#' @return An object of class `c("moe_mcmc", "moe_fit")`. Besides the
#'   fields of every fit it holds `draws`, an array \[kept iterations,
#'   chains, parameters\] of the draws on the original scale (parameter
#'   layout as [coef()]), `loglik_draws`, a matrix \[kept iterations,
#'   chains\] of the total log-likelihood of each draw, `loglik` (their
#'   maximum, used by [logLik()]), and the settings, the final `state` of
#'   every chain, `accept` (the acceptance rate of the gating
#'   Metropolis-Hastings moves after warm-up, per chain), `gating_moves`
#'   (the counts behind it, warm-up and after, and of the sweeps with a
#'   Polya-Gamma draw; see [moe_mcmc_control()]), `timing` (CPU seconds per chain)
#'   and `em` (the EM fit used for the starting values).
#' @references
#' Polson, N. G., Scott, J. G. and Windle, J. (2013). Bayesian inference for
#' logistic models using Polya-Gamma latent variables. *Journal of the
#' American Statistical Association* 108, 1339-1349.
#'
#' Holmes, C. C. and Held, L. (2006). Bayesian auxiliary variable models for
#' binary and multinomial regression. *Bayesian Analysis* 1, 145-168.
#' @examples
#' fit <- moe_mcmc(tuned ~ stretchratio, data = tonedata, K = 2,
#'                 chains = 2, iter = 200, seed = 1)
#' fit
#' dim(fit$draws)
#' colMeans(fit$loglik_draws)
#' # continue both chains for 100 more iterations
#' fit2 <- moe_mcmc(fit, iter = 100)
#' dim(fit2$draws)
#' @export
moe_mcmc <- function(formula, data, K, gating = NULL, family = gaussian(),
                     gate = gate_softmax(), expert = expert_linear(),
                     prior = moe_prior(),
                     chains = 4, iter = 2000, warmup = floor(iter / 2), thin = 1,
                     init = c("em", "random"), seed = NULL,
                     control = moe_mcmc_control(), progress = interactive(),
                     subset, na.action, weights) {
  call <- match.call()
  ecall <- sys.call()
  if (!missing(formula) && inherits(formula, "moe_mcmc")) {
    given <- setdiff(names(call)[-1L], c("", "formula", "iter", "progress"))
    if (length(given)) {
      abort(sprintf("Only `iter` and `progress` can be given when continuing a fit, not %s.",
                    paste0("`", given, "`", collapse = ", ")),
            call = ecall, arg = given[1L])
    }
    if (missing(iter)) {
      abort("`iter` must be given when continuing a fit: the number of further iterations.",
            call = ecall, arg = "iter")
    }
    return(mcmc_continue(formula, iter, check_flag(progress, "progress", ecall), ecall))
  }
  if (missing(K)) abort("`K` must be supplied: the number of experts.", call = ecall, arg = "K")
  K <- check_number(K, "K", lower = 1, whole = TRUE, call = ecall)
  set <- mcmc_settings(prior, chains, iter, warmup, thin, init, seed, control,
                       progress, ecall)
  expert <- resolve_family(family, expert, ecall)
  set[c("gate", "expert")] <- check_variants(gate, expert, K, ecall)
  fr <- moe_frame(call, formula, gating, if (missing(data)) NULL else data,
                  parent.frame(), K, ecall, expert = set$expert)
  check_expert_design(set$expert, fr$X, ecall)
  check_mcmc_size(set$chains, set$iter, set$warmup, set$thin,
                  npar = check_npar(set$gate, set$expert, K, fr, "mcmc", ecall), call = ecall)
  check_mcmc_weights(fr$weights, ecall, fr$trials)
  out <- mcmc_fit(fr$y, fr$X, fr$Z, fr$weights, K, set, ecall,
                  offset = if (is_glm_expert(set$expert)) fr$offset, trials = fr$trials)
  fit <- new_moe_fit(fr, out$res, call = call, class = "moe_mcmc")
  mcmc_report(out$status, ecall, out$res$gating_moves)
  fit
}

#' @rdname moe_mcmc
#' @param y,X,Z,w Response vector, expert and gating design matrices (with
#'   column names) and case weights, for the matrix interface
#'   `moe_mcmc_fit()` used by simulation studies (no formula handling; the
#'   data are only checked for types, shapes and finite values). It
#'   returns the list of estimation results that `moe_mcmc()` turns into a
#'   fit (`par` holds the posterior means).
#' @param offset,trials For binomial and Poisson experts: the offset and the
#'   binomial trials of each row, as in [moe_em_fit()].
#' @export
moe_mcmc_fit <- function(y, X, Z, w = rep(1, length(y)), K, prior = moe_prior(),
                         chains = 4, iter = 2000, warmup = floor(iter / 2),
                         thin = 1, init = c("em", "random"), seed = NULL,
                         control = moe_mcmc_control(), progress = FALSE,
                         gate = gate_softmax(), expert = expert_linear(),
                         offset = NULL, trials = NULL) {
  call <- sys.call()
  K <- check_number(K, "K", lower = 1, whole = TRUE, call = call)
  set <- mcmc_settings(prior, chains, iter, warmup, thin, init, seed, control,
                       progress, call)
  set[c("gate", "expert")] <- check_variants(gate, expert, K, call)
  dat <- check_matrix_data(y, X, Z, w, K, call)
  check_mcmc_weights(dat$w, call, trials)
  out <- mcmc_fit(dat$y, dat$X, dat$Z, dat$w, K, set, call, offset, trials)
  mcmc_report(out$status, call, out$res$gating_moves)
  out$res
}

# Check the sampler settings; returns them in a list.
mcmc_settings <- function(prior, chains, iter, warmup, thin, init, seed, control,
                          progress, call) {
  if (!inherits(prior, "moe_prior")) {
    abort(sprintf("`prior` must be made by `moe_prior()`, not %s.", describe(prior)),
          call = call, arg = "prior")
  }
  check_control(control, "moe_mcmc_control", call)
  chains <- check_number(chains, "chains", lower = 1, whole = TRUE, call = call)
  iter <- check_number(iter, "iter", lower = 1, whole = TRUE, call = call)
  warmup <- check_number(warmup, "warmup", lower = 0, upper = iter - 1, whole = TRUE,
                         call = call)
  thin <- check_number(thin, "thin", lower = 1, upper = iter - warmup, whole = TRUE,
                       call = call)
  check_mcmc_size(chains, iter, warmup, thin, call = call)
  init <- check_choice(init, c("em", "random"), "init", call)
  list(prior = prior, chains = chains, iter = iter, warmup = warmup, thin = thin,
       init = init, seed = check_seed(seed, call), control = control,
       progress = check_flag(progress, "progress", call))
}

# The sweep fields of the C control (moe_mcmc_control in src/moe.h):
# gate_mode, gate_steps, pg_every (0: never), threads, info_obs (0: all).
gate_mode <- function(control) {
  mode <- gate_update_codes[[control$gate_update]]
  pg <- if (is.infinite(control$pg_every)) 0L else as.integer(control$pg_every)
  # controls saved before `threads` existed run with one thread, those saved
  # before `info_obs` with the information of every observation
  threads <- if (is.null(control$threads)) 1L else as.integer(control$threads)
  info <- if (is.null(control$info_obs) || is.infinite(control$info_obs)) 0L else
    as.integer(control$info_obs)
  c(mode, as.integer(control$gate_steps), pg, threads, info)
}

# Codes of the gating updates (moe_mcmc_control.gate_mode in src/moe.h).
gate_update_codes <- c(pg = 0L, "pg+mh" = 1L, mh = 2L, collapsed = 3L)

# The controls of one chain as ffi_gibbs() takes them (MOE_MCTL_* in
# src/moe.h); `mode` is c(gate_mode, gate_steps, pg_every, threads, info_obs).
mcmc_control_c <- function(warmup, iter, thin, offset, refresh, chain, mode) {
  c(warmup = warmup, iter = iter, thin = thin, offset = offset, refresh = refresh,
    chain = chain, gate_mode = mode[1L], gate_steps = mode[2L], pg_every = mode[3L],
    threads = mode[4L], info_obs = mode[5L])
}

# Names of the gating move counts a chain returns (MOE_ACC_* in src/moe.h).
gating_move_names <- c("accepted_warmup", "proposed_warmup", "accepted", "proposed",
                       "pg_warmup", "pg")

# `trials` (binomial experts): the Polya-Gamma draws take whole numbers
# weights x trials.
check_mcmc_weights <- function(w, call, trials = NULL) {
  if (!is.numeric(w) || any(!is.finite(w)) || any(w < 0)) {
    abort("`weights` must be finite and non-negative.", kind = "data", call = call,
          arg = "weights")
  }
  bad <- abs(w - round(w)) > 1e-8 | w > .Machine$integer.max
  if (any(bad)) {
    abort(sprintf("`weights` must be whole numbers for `moe_mcmc()` (frequency weights: observation i counts `weights[i]` times), not %s.",
                  describe(w[which(bad)[1L]])), kind = "data", call = call, arg = "weights")
  }
  if (!is.null(trials) && any(w * trials > .Machine$integer.max)) {
    abort("`weights` times the binomial trials must be at most 2^31 - 1 for `moe_mcmc()`.",
          kind = "data", call = call, arg = "weights")
  }
}

# The sampler on matrices: scaling, starting values, chains, results.
# Returns list(res = the estimation results, status = C status per chain).
mcmc_fit <- function(y, X, Z, w, K, set, call, offset = NULL, trials = NULL) {
  storage.mode(X) <- "double"
  storage.mode(Z) <- "double"
  y <- as.double(y)
  w <- as.double(round(w))
  seed <- set$seed
  if (is.null(seed)) seed <- sample.int(.Machine$integer.max, 1L)
  spec <- make_spec(set$gate, set$expert)
  mcmc_variant_check(spec, set, call)
  sc <- moe_scaling(y, X, Z)
  glm_fam <- is_glm_expert(set$expert)
  if (glm_fam) sc <- glm_scaling(sc)
  s <- mcmc_data(sc, y, X, Z, w,
                 if (glm_fam) glm_family_data(set$expert, y, offset, trials))
  pc <- prior_internal(set$prior, expert_prior_npar(set$expert, ncol(X)), ncol(Z), call)
  em <- NULL
  inits <- rep(list(NULL), set$chains)
  if (set$init == "em") {
    # the warm start runs on the chains' threads
    em_ctl <- set$control$em_control
    em_ctl$threads <- set$control$threads
    em <- with_seed(seed, moe_em_fit(y, X, Z, w, K, set$control$em_starts,
                                     em_ctl, gate = set$gate,
                                     expert = set$expert, offset = offset, trials = trials))
    inits <- em_inits(em, sc, set$chains, set$control$init_tol,
                      cap = 10 * sqrt(max(pc$s_w2)))
    # the responsibilities (n x K) are not needed after the starts
    em$resp <- NULL
  }
  streams <- chain_streams(seed, set$chains)
  runs <- run_chains(set$chains, s, pc, K, inits = inits, states = NULL,
                     streams = streams, warmup = set$warmup,
                     iter = set$iter - set$warmup, thin = set$thin,
                     offsets = rep(0L, set$chains),
                     refresh = mcmc_refresh(set, set$iter),
                     gate_mode = gate_mode(set$control), spec = spec)
  out <- mcmc_collect(runs, sc, colnames(X), colnames(Z), K, sum(w), spec)
  fused <- is_softmax_linear(spec)
  accept <- if (fused) {
    gating_accept(out$moves, gate_mode(set$control), K)
  } else {
    variant_accept_rates(NULL, 0, out$accept, set$iter - set$warmup)
  }
  res <- list(par = user_par(out$par), loglik = out$loglik, draws = out$draws,
              loglik_draws = out$loglik_draws, prior = set$prior, control = set$control,
              iter = set$iter, warmup = set$warmup, thin = set$thin, chains = set$chains,
              seed = seed, init = set$init, scaling = sc, state = out$state,
              accept = accept, gating_moves = if (fused) out$moves,
              timing = out$timing, em = em, gate = spec$gate, expert = spec$expert)
  list(res = res, status = out$status, accept = accept)
}

mcmc_refresh <- function(set, total) {
  if (!isTRUE(set$progress)) return(0L)
  if (!is.null(set$control$refresh)) return(as.integer(set$control$refresh))
  as.integer(max(1, ceiling(total / 10)))
}

# Internal-scale data of the rows with positive weight, as the C sampler
# takes it; `family`: the data of GLM experts (glm_family_data()).
mcmc_data <- function(sc, y, X, Z, w, family = NULL) {
  s <- scale_data(sc, y, X, Z)
  keep <- w > 0
  list(y = s$y[keep], X = s$X[keep, , drop = FALSE], Z = s$Z[keep, , drop = FALSE],
       w = as.double(w[keep]), family = glm_family_rows(family, keep))
}

# Starting values from the EM starts: the best solution first, then the other
# distinct non-degenerate solutions within `tol` of it, recycled; labels
# aligned to the best; internal scale. The gating coefficients of a start
# stopped by separation (far out in the tails of the prior) are scaled down
# to at most `cap` in absolute value: the same partition of the gating space
# (the argmax of the logits), softer, where the posterior is.
em_inits <- function(em, sc, chains, tol, cap = Inf) {
  st <- em$starts
  degenerate <- grepl("empty|var_floor", st$status) | !is.finite(st$loglik)
  ord <- order(degenerate, -ifelse(is.finite(st$loglik), st$loglik, -Inf))
  best <- em$best
  ord <- c(best, setdiff(ord, best))
  ll <- st$loglik
  cand <- best
  for (j in ord[-1L]) {
    if (degenerate[j] || !(ll[j] >= ll[best] - tol)) next
    if (all(abs(ll[j] - ll[cand]) > 1e-6 * (1 + abs(ll[j])))) cand <- c(cand, j)
  }
  spec <- make_spec(em$gate, em$expert)
  pars <- lapply(em$start_par[cand], function(par) par_to_internal(sc, with_spec(par, spec)))
  for (j in which(grepl("separation", st$status[cand]))) {
    pars[[j]]$W <- pars[[j]]$W * min(1, cap / max(abs(pars[[j]]$W)))
  }
  pars <- lapply(pars, align_labels, ref = pars[[1L]])
  pars[(seq_len(chains) - 1L) %% length(pars) + 1L]
}

# Permute the experts of `par` to best match `ref` (squared distance of the
# expert coefficients and log variances), re-referencing the gating.
align_labels <- function(par, ref) {
  K <- length(par$sigma2)
  if (K == 1L) return(par)
  feat <- function(p) rbind(p$alpha, log(p$sigma2))
  fr <- feat(ref)
  fp <- feat(par)
  cost <- outer(seq_len(K), seq_len(K), Vectorize(function(i, j) sum((fr[, i] - fp[, j])^2)))
  gate <- spec_gate(par$spec)
  perm <- if (inherits(gate, "moe_gate_hierarchical")) {
    drop(assign_perms(array(cost, c(1L, K, K)), gate = gate))
  } else best_assignment(cost)
  permute_par(par, perm)
}

# Run the chains, in parallel through future.apply when it is installed,
# reporting a progress step per finished chain (R/progress.R).
run_chains <- function(chains, s, pc, K, inits, states, streams, warmup, iter,
                       thin, offsets, refresh, gate_mode, spec) {
  args <- list(s = s, pc = pc, K = K, inits = inits, states = states,
               streams = streams, warmup = warmup, iter = iter, thin = thin,
               offsets = offsets, refresh = refresh, gate_mode = gate_mode, spec = spec)
  tick <- progress_open(chains, sprintf("moe_mcmc(): K = %d, %d chain%s of %d iterations",
                                        K, chains, if (chains > 1L) "s" else "",
                                        warmup + iter))
  on.exit(progress_close(tick), add = TRUE)
  fun <- progress_wrap(mcmc_chain, tick,
                       sprintf("K = %d: chain %d of %d done", K, seq_len(chains), chains))
  if (requireNamespace("future.apply", quietly = TRUE)) {
    do.call(future.apply::future_lapply,
            c(list(X = seq_len(chains), FUN = fun), args,
              list(future.seed = FALSE)))
  } else {
    do.call(lapply, c(list(X = seq_len(chains), FUN = fun), args))
  }
}

# One chain (runs in a future): from `states[[chain]]` (continuation, with
# its RNG state) or from `inits[[chain]]` (NULL: a draw from the prior) with
# the stream `streams[[chain]]`. Every gate and expert family runs through
# the one Gibbs driver of src/mcmc.c (gibbs_chain_c()).
mcmc_chain <- function(chain, s, pc, K, inits, states, streams, warmup, iter,
                       thin, offsets, refresh, gate_mode, spec) {
  gate <- spec_gate(spec)
  expert <- spec_expert(spec)
  mode <- chain_gate_mode(spec, gate_mode)
  st <- if (is.null(states)) NULL else states[[chain]]
  rng <- if (is.null(st)) streams[[chain]] else st$rng
  p <- ncol(s$X)
  q <- ncol(s$Z)
  # the fused kernel (softmax gate, linear experts) reports its gating moves
  # (res$moves); the generic one also its Metropolis blocks (res$accept)
  fused <- is_softmax_linear(spec)
  blocks <- if (fused) character() else variant_blocks(spec, K, mode[1L])
  nbg <- length(blocks) - length(expert_accept_names(expert, K))
  run <- with_rng_state(rng, {
    par <- if (!is.null(st)) st else
      if (is.null(inits[[chain]])) chain_prior_draw(pc, K, spec, s$X) else inits[[chain]]
    adapt <- if (!is.null(st$adapt)) st$adapt else variant_adapt_init(spec, q, K)
    xstate <- if (!is.null(st$xstate)) st$xstate else expert_state_init(expert, K)
    # a continued chain keeps the Polya-Gamma schedule its warm-up chose
    if (!is.null(st$pg_every)) mode[3L] <- st$pg_every
    ctl <- mcmc_control_c(warmup, iter, thin, offsets[chain], refresh, chain, mode)
    t0 <- proc.time()
    res <- gibbs_chain_c(s, pc, K, par, gate, expert, adapt, xstate, ctl, nbg)
    res$cpu <- sum((proc.time() - t0)[1:2])
    res
  })
  res <- run$value
  if (!fused) {
    res$accept <- setNames(as.numeric(res$accept) /
                             rep(c(1, expert_accept_scale(expert)),
                                 c(nbg, length(res$accept) - nbg)), blocks)
  }
  pe <- expert_npar(expert, p)
  state <- list(alpha = matrix(res$alpha_end, pe, K), sigma2 = res$sigma2_end,
                W = matrix(res$W_end, q, K))
  if (gate$type == "hierarchical") state$V <- matrix(res$V_end, q, gate$G)
  if (isTRUE(gate$learn)) state$tau <- res$tau_end
  if (length(res$state_end)) state$adapt <- res$state_end
  if (length(res$xstate_end)) state$xstate <- res$xstate_end
  state <- c(state, list(rng = run$state, pg_every = res$pg_every,
                         iterations_done = (if (is.null(st)) 0L else st$iterations_done) +
                           res$done))
  list(res = res, rng = run$state, p = p, q = q, state = state)
}

# The gating update of a chain: c(mode, gate_steps, pg_every, ...) of gate_mode()
# as the C driver takes it. The collapsed update (mode 3) is the fused
# kernel's (softmax gate, linear experts): other models run it as "pg+mh"
# (mode 1); FFN experts, whose expert moves dominate the mixing, draw the
# gating by Polya-Gamma draws alone (mode 0).
chain_gate_mode <- function(spec, gate_mode) {
  if (is_softmax_linear(spec) || gate_mode[1L] != 3L) return(gate_mode)
  gate_mode[1L] <- if (inherits(spec_expert(spec), "moe_expert_ffn")) 0L else 1L
  gate_mode
}

# A draw from the prior on the internal scale (the starting state of a chain
# without EM starting values).
chain_prior_draw <- function(pc, K, spec, X) {
  expert <- spec_expert(spec)
  if (inherits(expert, "moe_expert_ffn")) {
    return(ffn_prior_draw(pc, expert, ncol(ffn_inputs(X)), K))
  }
  par <- prior_draw_spec(pc, K, spec)
  if (is_glm_expert(expert)) par <- glm_prior_draw(pc, K, par)
  if (inherits(expert, "moe_expert_t")) par <- t_complete_draw(par, pc, K)
  par
}

# The C call of one chain (the caller holds the RNG state): data `s`
# (internal scale, whole weights >= 1), prior `pc` (prior_internal()),
# starting parameters `par` (internal scale), the gate's adaptation state,
# the expert family's state, the controls c(warmup, iter, thin, offset,
# refresh, chain, gate_mode, gate_steps, pg_every) and the number of
# Metropolis blocks of the gate.
gibbs_chain_c <- function(s, pc, K, par, gate, expert, adapt, xstate, ctl, nbg) {
  tau <- if (isTRUE(gate$learn)) par$tau else if (is.null(gate$tau)) 1 else gate$tau
  y <- if (is.null(s$family)) s$y else s$family$y
  .Call(ffi_gibbs, as.double(y), expert_design(expert, s$X), s$Z, as.double(s$w),
        as.double(par$alpha), as.double(par$sigma2), as.double(par$W),
        if (gate$type == "hierarchical") as.double(par$V),
        as.double(tau), gate_c(gate, K), expert_c_data(expert, s),
        if (isTRUE(gate$learn)) as.double(gate$prior), pc, as.integer(ctl),
        as.double(adapt), as.double(xstate), as.integer(nbg))
}

# Kept draws of one chain on the original scale: an S x P matrix in the
# layout of par_flatten().
draws_to_original <- function(sc, res, p, q, K) {
  S <- length(res$loglik)
  if (S == 0L) return(matrix(0, 0L, (p + 1L) * K + q * (K - 1L)))
  A <- sc$sy * (sc$x$T %*% matrix(res$alpha, p))
  if (sc$x$intercept > 0L) A[sc$x$intercept, ] <- A[sc$x$intercept, ] + sc$my
  ex <- matrix(rbind(A, sc$sy^2 * as.vector(res$sigma2)), (p + 1L) * K, S)
  if (K > 1L) {
    G <- array(sc$z$T %*% matrix(res$W, q), c(q, K, S))[, -K, , drop = FALSE]
    ex <- rbind(ex, matrix(G, q * (K - 1L), S))
  }
  t(ex)
}

# Gather the chains' results into the fit's draws, log-likelihoods, states.
mcmc_collect <- function(runs, sc, xnames, znames, K, sum_w, spec) {
  chains <- length(runs)
  p <- length(xnames)
  q <- length(znames)
  nm <- par_names(xnames, znames, K, spec)
  S <- length(runs[[1L]]$res$loglik)
  draws <- array(NA_real_, c(S, chains, length(nm)),
                 dimnames = list(NULL, paste0("chain", seq_len(chains)), nm))
  ll <- matrix(NA_real_, S, chains, dimnames = list(NULL, paste0("chain", seq_len(chains))))
  jac <- -sum_w * log(sc$sy)
  status <- integer(chains)
  for (ch in seq_len(chains)) {
    r <- runs[[ch]]$res
    draws[, ch, ] <- if (is_softmax_linear(spec)) draws_to_original(sc, r, p, q, K) else
      variant_draws_to_original(sc, r, p, q, K, spec)
    ll[, ch] <- r$loglik + jac
    draws[is.na(r$loglik), ch, ] <- NA_real_ # slots a stopped chain did not fill
    status[ch] <- r$status
  }
  theta <- colMeans(matrix(draws, S * chains, length(nm)), na.rm = TRUE)
  list(draws = draws, loglik_draws = ll,
       par = par_unflatten(theta, p, q, K, spec),
       loglik = if (all(is.na(ll))) NA_real_ else max(ll, na.rm = TRUE),
       state = lapply(runs, `[[`, "state"),
       moves = matrix(vapply(runs, function(r) r$res$moves, integer(length(gating_move_names))),
                      chains, byrow = TRUE,
                      dimnames = list(paste0("chain", seq_len(chains)), gating_move_names)),
       accept = do.call(rbind, lapply(runs, function(r) r$res$accept)),
       timing = vapply(runs, function(r) r$res$cpu, 0),
       status = status)
}

# Continue every chain of `fit` for `iter` iterations and append the draws.
mcmc_continue <- function(fit, iter, progress, call) {
  validate_moe_fit(fit, "fit", call, continue = TRUE)
  iter <- check_number(iter, "iter", lower = 1, whole = TRUE, call = call)
  check_mcmc_size(length(fit$state), iter, 0, fit$thin, npar = dim(fit$draws)[3L], call = call)
  K <- fit$K
  spec <- fit_spec(fit)
  s <- mcmc_data(fit$scaling, fit$y, fit$X, fit$Z, fit$weights,
                 if (is_glm_expert(fit$expert))
                   glm_family_data(fit$expert, fit$y, fit$offset, fit$trials))
  pc <- prior_internal(fit$prior, expert_prior_npar(fit$expert, ncol(fit$X)), ncol(fit$Z),
                       call)
  offsets <- vapply(fit$state, function(st) st$iterations_done - fit$warmup, 0L)
  set <- list(progress = progress, control = fit$control)
  runs <- run_chains(fit$chains, s, pc, K, inits = NULL, states = fit$state,
                     streams = NULL, warmup = 0L, iter = iter, thin = fit$thin,
                     offsets = as.integer(offsets), refresh = mcmc_refresh(set, iter),
                     gate_mode = gate_mode(fit$control), spec = spec)
  out <- mcmc_collect(runs, fit$scaling, colnames(fit$X), colnames(fit$Z), K,
                      sum(fit$weights), spec)
  S0 <- dim(fit$draws)[1L]
  S1 <- dim(out$draws)[1L]
  draws <- array(NA_real_, c(S0 + S1, dim(fit$draws)[-1L]), dimnames = dimnames(fit$draws))
  draws[seq_len(S0), , ] <- fit$draws
  draws[S0 + seq_len(S1), , ] <- out$draws
  fit$draws <- draws
  fit$loglik_draws <- rbind(fit$loglik_draws, out$loglik_draws)
  P <- dim(draws)[3L]
  theta <- colMeans(matrix(draws, dim(draws)[1L] * fit$chains, P), na.rm = TRUE)
  fit$coefficients <- user_par(name_par(par_unflatten(theta, ncol(fit$X), ncol(fit$Z), K, spec),
                                        colnames(fit$X), colnames(fit$Z)))
  fit$loglik <- max(fit$loglik_draws, na.rm = TRUE)
  fused <- is_softmax_linear(spec)
  fit$accept <- if (fused) {
    fit$gating_moves <- fit$gating_moves + out$moves
    gating_accept(fit$gating_moves, gate_mode(fit$control), K)
  } else {
    variant_accept_rates(fit$accept, fit$iter - fit$warmup, out$accept, iter)
  }
  fit$iter <- fit$iter + iter
  fit$state <- out$state
  fit$timing <- fit$timing + out$timing
  mcmc_report(out$status, call, if (fused) out$moves)
  fit
}

# Share of the gating Metropolis-Hastings moves accepted after warm-up, one
# per chain, from the move counts (chains x gating_move_names; 0 for a
# chain that proposed none).
move_rate <- function(moves) {
  setNames(moves[, "accepted"] / pmax(moves[, "proposed"], 1L), rownames(moves))
}

# The fit's `accept`: move_rate(), or NULL when the sampler makes no
# Metropolis-Hastings move of the gating.
gating_accept <- function(moves, mode, K) {
  if (mode[1L] == 0L || K < 2L) return(NULL)
  move_rate(moves)
}

# Classed warnings for numerical trouble in the chains, and for chains whose
# gating Metropolis-Hastings moves were (almost) all rejected after warm-up
# (`moves`: the gating move counts, NULL for the variant sampler).
mcmc_report <- function(status, call, moves = NULL) {
  if (!is.null(moves) && any(moves[, "proposed"] > 0L)) {
    stuck <- which(moves[, "proposed"] > 0L & move_rate(moves) < 0.01)
    if (length(stuck)) {
      warn(sprintf("Chain%s %s accepted %s of %s gating Metropolis-Hastings moves after warm-up (less than 1%%): %s gating coefficients moved only by Polya-Gamma draws (see `?moe_mcmc_control`). Check the mixing (`summary()`, trace plots); a longer warm-up or `init = \"em\"` may help.",
                   if (length(stuck) > 1L) "s" else "", paste(stuck, collapse = ", "),
                   paste(moves[stuck, "accepted"], collapse = ", "),
                   paste(moves[stuck, "proposed"], collapse = ", "),
                   if (length(stuck) > 1L) "their" else "its"),
           kind = "gating_stall", call = call)
    }
  }
  bad <- which(bitwAnd(status, status_flags[["nonfinite"]]) > 0L)
  if (length(bad)) {
    warn(sprintf("Chain%s %s stopped early: a draw or its log-likelihood was not finite; the remaining draws are NA.",
                 if (length(bad) > 1L) "s" else "", paste(bad, collapse = ", ")),
         kind = "numerical", call = call)
  }
  ridge <- which(bitwAnd(status, status_flags[["not_pd"]]) > 0L)
  if (length(ridge)) {
    warn(sprintf("Chain%s %s needed a ridge to factorise a conditional precision matrix (nearly singular design).",
                 if (length(ridge) > 1L) "s" else "", paste(ridge, collapse = ", ")),
         kind = "numerical", call = call)
  }
  invisible(NULL)
}

fit_title.moe_mcmc <- function(x) {
  sprintf("Mixture of %d %s expert%s with %s (MCMC)", x$K, expert_label(x$expert),
          if (x$K > 1L) "s" else "", gate_label(x$gate))
}

#' @export
print.moe_mcmc <- function(x, digits = max(3L, getOption("digits") - 3L), ...) {
  validate_moe_fit(x, "x")
  digits <- check_digits(digits, call = sys.call())
  cat(fit_title(x), "\n\n", sep = "")
  cat("Call:\n", paste(deparse(x$call), collapse = "\n"), "\n\n", sep = "")
  S <- dim(x$draws)[1L]
  cat(strwrap(sprintf("Gibbs sampler: %d chain%s x %d iterations (%d warm-up, thin %d), %d kept draws per chain; init \"%s\".",
                      x$chains, if (x$chains > 1L) "s" else "", x$iter, x$warmup, x$thin, S,
                      x$init), width = 80), "", sep = "\n")
  par <- moe_point(x)
  print_experts(x, par, digits,
                sprintf("Posterior means -- expert coefficients, %s:",
                        expert_noise_label(fit_spec(x)$expert)))
  print_gating(x$gate, par, x$K, digits, prefix = "Posterior means -- ")
  na <- if (length(x$na.action)) sprintf(" (%d observation%s deleted due to missingness)",
                                         length(x$na.action),
                                         if (length(x$na.action) > 1) "s" else "") else ""
  cat("", strwrap(sprintf("n = %d%s; log-likelihood of the draws, mean per chain: %s", nobs(x), na,
                          paste(format(signif(colMeans(x$loglik_draws, na.rm = TRUE), 7)),
                                collapse = ", ")), width = 80, exdent = 2), sep = "\n")
  if (is.matrix(x$accept)) {
    cat("Metropolis-Hastings acceptance rates after warm-up (chains in rows):\n")
    print(round(x$accept, 3))
  } else if (!is.null(x$accept)) {
    cat(strwrap(sprintf("Acceptance rate of the gating Metropolis-Hastings moves per chain: %s",
                        paste(format(x$accept, digits = 2), collapse = ", ")),
                width = 80, exdent = 2), sep = "\n")
  }
  invisible(x)
}
