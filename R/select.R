# Choosing the number of experts: the prior on K (prior_K()) and
# moe_select(), which runs the two Bayesian strategies (posterior over K from
# marginal likelihoods; Merge-Truncate-Merge of an over-fitted fit) and the
# EM criteria (BIC, ICL) behind one call.

#' Choose the number of experts
#'
#' Fits mixtures of experts with a range of numbers of experts and chooses
#' among them with one or more of four methods:
#'
#' * `"posterior"`: the posterior \eqn{P(K = k \mid y) \propto p(k)\,
#'   p(y \mid k)} under the prior on \eqn{K} of `prior` (`moe_prior(K =
#'   prior_K(...))`; if `prior` has none, `prior_K("poisson", 1, K_max =
#'   max(K))`), restricted to the values in `K`. One [moe_mcmc()] fit per
#'   \eqn{k}; \eqn{\log p(y \mid k)} is exact for \eqn{k = 1} with
#'   Gaussian experts and estimated by bridge sampling ([moe_marglik()])
#'   otherwise. The Monte Carlo errors
#'   of the log marginal likelihoods are propagated to the probabilities (by
#'   simulation from normals with those standard errors: column
#'   `post_prob_se`).
#' * `"mtm"`: one over-fitted [moe_mcmc()] fit with \eqn{\max(K)} experts,
#'   post-processed by Merge-Truncate-Merge ([moe_mtm()]); `probs` are the
#'   frequencies of its estimate over the draws.
#' * `"bic"`, `"icl"`: the BIC and the ICL (BIC penalised by the entropy of
#'   the classification) of [moe_em()] fits, smaller is better; `probs` are
#'   `NA`.
#'
#' `family` (after `...`, so it is given by name) is passed on to every fit: with `binomial()` or `poisson()`
#' ([moe_glm_experts]) the marginal likelihoods use the family's likelihood
#' and the prior of its coefficients (see [moe_marglik()], "GLM experts"),
#' the MTM atoms are the gating slopes and the expert coefficients (no
#' variance coordinate), and BIC and ICL count the coefficients only. With
#' `student_t()` the marginal likelihoods use the normal importance density
#' (see [moe_marglik()]), which can be unreliable for over-fitted \eqn{k},
#' and the MTM atoms are the coefficients and \eqn{\sigma^2} (not df). A
#' family that [moe_em()] does not take is refused before any fit.
#'
#' The EM fits (and so BIC and ICL) are computed for every method, as a
#' frequentist comparison. With several methods the first one gives `probs`
#' and `K_hat`; the estimate of every method is in `K_hats`. Warnings of
#' the fits (empty or collapsed experts, which are expected when \eqn{k} is
#' too large) are collected in the component `warnings` instead of being
#' signalled; an unreliable marginal likelihood is signalled once, as a
#' warning of class `bayesmoe_warning_marglik`. When the \eqn{K} chosen by
#' any of the methods (BIC and ICL included) rests on a degenerate fit (an
#' EM fit warned of as degenerate, see "Degenerate fits" in [moe_em()]: the
#' chains start from it, and the marginal likelihood and MTM inherit its
#' spike; or an MCMC fit whose smallest expert variance has a posterior
#' median below 0.001 times the residual variance of a one-expert fit), a
#' warning of class `bayesmoe_warning_degenerate` names the methods: spike
#' experts make the likelihood, and so every criterion, favour too many
#' experts.
#'
#' Arguments in `...` are passed on by name: `chains`, `iter`, `warmup`,
#' `thin`, `init` and a `control` from [moe_mcmc_control()] to
#' [moe_mcmc()]; `starts` and a `control` from [moe_em_control()] to
#' [moe_em()]; `omega`, `c`, `r` and `weights` to [moe_mtm()];
#' `proposal`, `n_comp` and `n_prop` to [moe_marglik()]. Prepare `subset`s
#' and case weights in `data` beforehand.
#'
#' Progress: when the progressr package is installed, a call reports one
#' step per fit (the EM fit, the MCMC fit and the marginal likelihood of each
#' \eqn{K}, the MTM post-processing) through one [progressr::progressor()]
#' labelled with the values of \eqn{K} and the methods, each step named
#' ("MCMC, K = 3"), and the chains of each MCMC fit as messages; nothing is
#' shown until handlers are enabled (`progressr::handlers(global = TRUE)` or
#' `progressr::with_progress()`; under `Rscript` also
#' `options(progressr.enable = TRUE)`). `progress = TRUE` in `...` prints the same
#' steps as messages, one line each ("moe_select(): MCMC, K = 3 done"); the
#' chains' own progress lines are never printed.
#'
#' @inheritParams moe_em
#' @param K The numbers of experts to compare: distinct whole numbers >= 1
#'   (at most 8 with `method = "posterior"`: see [moe_marglik()]).
#' @param method One or more of `"posterior"`, `"mtm"`, `"bic"`, `"icl"`;
#'   when not given, `"posterior"`. All the methods given are run; the first
#'   one gives `probs` and `K_hat`.
#' @param prior The prior of the Bayesian fits, from [moe_prior()], with the
#'   prior on the number of experts in its `K` element.
#' @param seed `NULL` or a whole number from which the seeds of every fit
#'   are derived (the caller's random number state is then left untouched).
#' @param ... Settings of the fits, passed on by name (see Details).
#' @param checkpoint `NULL`, or a directory (created if needed) where every
#'   fit is saved as soon as it is made: the EM fit of each \eqn{k}, the
#'   MCMC fit of each \eqn{k} with its marginal likelihood, the over-fitted
#'   fit. Running the same call again after an interruption reads the saved
#'   fits and makes only the others, with the same seeds, so the result is
#'   the one of an uninterrupted run (except the CPU seconds). The directory
#'   belongs to one call: a call with other data, `K`, methods, prior, seed
#'   or settings is refused with an error of class
#'   `bayesmoe_error_checkpoint`. Needs a `seed`. The fits run through
#'   [future.apply::future_lapply()] (any [future::plan()]; see
#'   [moe_contraction()], "Checkpoints and clusters"); a fit that fails is
#'   reported in an error of class `bayesmoe_error_task` (its field
#'   `failed`: the fit, its `K`, the error message) after the others have
#'   been saved, so that the same call, once the cause is fixed, makes only
#'   the failed fits.
#' @return An object of class `moe_select`: `probs` (named by `K`; for
#'   `"mtm"` the frequencies of the values in `K`, which do not sum to one
#'   when the MTM estimate falls outside `K` in some draws, see `mtm$probs`),
#'   `K_hat`, `method`, `K_hats` (the estimate of every method run),
#'   `table` (one row per \eqn{k}: the prior probability, the log marginal
#'   likelihood and its Monte Carlo standard error, the posterior
#'   probability and its error, the MTM frequency, the EM log-likelihood,
#'   BIC and ICL), `fits` (lists `mcmc` and `em` of the fits by \eqn{k}, and
#'   `mtm`, the over-fitted fit), `marglik` (the [moe_marglik()] results),
#'   `mtm` (the [moe_mtm()] result), `prior_K`, `cpu` (CPU seconds per
#'   method), `warnings` and `degenerate` (the values of \eqn{K} whose EM
#'   or MCMC fit is degenerate; see Details).
#' @seealso [moe_marglik()], [moe_mtm()], [prior_K()]
#' @examples
#' sel <- moe_select(tuned ~ stretchratio, data = tonedata, K = 1:3,
#'                   method = c("posterior", "mtm", "bic"),
#'                   chains = 2, iter = 300, seed = 1)
#' sel
#' summary(sel)
#' plot(sel)
#' @export
moe_select <- function(formula, data, K = 1:6, gating = NULL,
                       method = c("posterior", "mtm", "bic", "icl"),
                       prior = moe_prior(), seed = NULL, ..., family = gaussian(),
                       checkpoint = NULL) {
  call <- match.call()
  ecall <- sys.call()
  # checked here, before any fit (the fits resolve it again); the fits get
  # the family object
  resolve_family(family, NULL, ecall)
  if (is.character(family)) family <- get(family, mode = "function", envir = parent.frame())
  if (is.function(family)) family <- family()
  Ks <- select_check_K(K, ecall)
  methods <- if (missing(method)) "posterior" else select_check_method(method, ecall)
  if (!inherits(prior, "moe_prior")) {
    abort(sprintf("`prior` must be made by `moe_prior()`, not %s.", describe(prior)),
          call = ecall, arg = "prior")
  }
  pk <- prior$K
  if (is.null(pk)) pk <- prior_K("poisson", lambda = 1, K_max = max(Ks))
  pk <- check_prior_K(pk, "prior$K", ecall)
  if (max(Ks) > pk$K_max) {
    abort(sprintf("`K` goes up to %d but the prior on the number of experts stops at `K_max` = %d.",
                  max(Ks), pk$K_max), call = ecall, arg = "K")
  }
  if ("posterior" %in% methods && !any(pk$probs[Ks] > 0)) {
    abort(sprintf("`prior$K` must give some prior probability to the K compared (%s).",
                  paste(Ks, collapse = ", ")), call = ecall, arg = "prior")
  }
  seed <- check_seed(seed, ecall)
  if ("posterior" %in% methods && max(Ks) > marglik_kmax("mixture")) {
    abort(sprintf("`K` must be at most %d with `method = \"posterior\"` (bridge sampling relabels the draws over all K! permutations), not up to %d; use `method = \"mtm\"` for more experts.",
                  marglik_kmax("mixture"), max(Ks)), call = ecall, arg = "K")
  }
  dots <- select_split_dots(list(...), ecall)
  if (missing(data)) data <- NULL
  # progress: one progressor step per fit (R/progress.R); `progress = TRUE`
  # prints a line per step instead of every chain's lines
  show <- if (is.null(dots$mcmc$progress)) FALSE else
    check_flag(dots$mcmc$progress, "progress", ecall)
  dots$mcmc$progress <- FALSE
  post <- "posterior" %in% methods
  n_steps <- length(Ks) * (1L + 2L * post) + ("mtm" %in% methods) * (2L - post)
  tick <- progress_open(n_steps, sprintf("moe_select(): K in {%s}, %s",
                                         paste(Ks, collapse = ", "),
                                         paste(methods, collapse = ", ")))
  on.exit(progress_close(tick), add = TRUE)
  step <- select_step(tick, show)
  seeds <- with_seed(seed, sample.int(.Machine$integer.max, 2L * length(Ks) + 1L))
  # the fits as tasks (R/checkpoint.R): an EM fit per K; with "posterior"
  # an MCMC fit and its marginal likelihood per K; with "mtm" alone the
  # over-fitted MCMC fit
  jobs <- rbind(data.frame(kind = "em", K = Ks, stringsAsFactors = FALSE),
                if (post) data.frame(kind = "posterior", K = Ks, stringsAsFactors = FALSE),
                if (!post && "mtm" %in% methods) {
                  data.frame(kind = "mtm", K = max(Ks), stringsAsFactors = FALSE)
                })
  job_steps <- lapply(seq_len(nrow(jobs)), function(j) {
    k <- jobs$K[j]
    switch(jobs$kind[j], em = sprintf("EM, K = %d", k),
           posterior = c(sprintf("MCMC, K = %d", k), sprintf("marginal likelihood, K = %d", k)),
           mtm = sprintf("MCMC, K = %d (over-fitted, for MTM)", k))
  })
  vars <- unique(c(all.vars(formula), if (!is.null(gating)) all.vars(gating)))
  if (is.null(data)) {
    # the fits may run in other R processes (futures): the formulas carry
    # the variables they name from their environments
    formula <- carry_vars(formula, vars)
    if (inherits(gating, "formula")) gating <- carry_vars(gating, vars)
  }
  ck <- NULL
  if (!is.null(checkpoint)) {
    if (is.null(seed)) {
      abort("`seed` must be given with `checkpoint`: resumed fits must draw the same random numbers.",
            call = ecall, arg = "seed")
    }
    key_data <- if (is.null(data)) {
      lapply(setNames(nm = vars), function(v) get0(v, envir = environment(formula)))
    } else data
    ck <- checkpoint_open(checkpoint, "moe_select",
                          list(formula = formula, data = key_data, K = Ks, gating = gating,
                               family = family, methods = methods, prior = prior, seed = seed, dots = dots,
                               jobs = jobs),
                          nrow(jobs), vapply(job_steps, `[[`, "", 1L), ecall)
  }
  task <- progress_wrap(select_task_fun(formula, data, gating, prior, dots, seeds, Ks, jobs,
                                        job_steps, step, family), tick, NULL)
  run <- run_tasks(task, seq_len(nrow(jobs)),
                   streams = rng_streams(seeds[length(seeds)], nrow(jobs)), ck = ck,
                   scheduling = Inf, info = jobs,
                   on_resume = function(ids) {
                     for (j in ids) for (w in job_steps[[j]]) step(sprintf("%s (from the checkpoint)", w))
                   }, call = ecall)
  if (nrow(run$failed)) {
    abort(sprintf("%d of %d fits failed:\n%s\n%s", nrow(run$failed), nrow(jobs),
                  paste(failed_text(run$failed[setdiff(names(run$failed), "stream")]),
                        collapse = "\n"),
                  if (is.null(ck)) "Give a `checkpoint` directory to keep the other fits when one fails." else
                    sprintf("The other fits are in the checkpoint \"%s\"; once the cause is fixed, the same call runs only the failed ones.",
                            ck$dir)),
          kind = "task", call = ecall, failed = run$failed)
  }
  res <- run$values
  of <- function(kind) res[jobs$kind == kind]
  # warnings in the order of a sequential run: EM fits, MCMC fits, marginal
  # likelihoods, the over-fitted fit
  warns <- c(unlist(lapply(of("em"), `[[`, "warns")),
             unlist(lapply(of("posterior"), `[[`, "warns")),
             unlist(lapply(of("posterior"), `[[`, "warns_ml")),
             unlist(lapply(of("mtm"), `[[`, "warns")))
  if (is.null(warns)) warns <- character()
  flags <- function(nm) unlist(lapply(res, `[[`, nm))
  unreliable <- as.integer(flags("unreliable"))
  degenerate_em <- as.integer(flags("degenerate_em"))
  cpu <- c(posterior = NA_real_, mtm = NA_real_, em = NA_real_)
  em <- setNames(lapply(of("em"), `[[`, "fit"), paste0("K", Ks))
  cpu[["em"]] <- sum(vapply(of("em"), `[[`, 0, "cpu"))
  bic <- vapply(em, function(f) BIC(f), 0)
  icl <- vapply(em, moe_icl, 0)

  # posterior over K from marginal likelihoods
  mcmc <- NULL
  ml <- NULL
  post_p <- post_se <- rep(NA_real_, length(Ks))
  logml <- logml_se <- rep(NA_real_, length(Ks))
  if (post) {
    cpu[["posterior"]] <- sum(vapply(of("posterior"), `[[`, 0, "cpu"))
    mcmc <- setNames(lapply(of("posterior"), `[[`, "fit"), paste0("K", Ks))
    ml <- setNames(lapply(of("posterior"), `[[`, "ml"), paste0("K", Ks))
    logml <- vapply(ml, `[[`, 0, "logml")
    logml_se <- vapply(ml, `[[`, 0, "se")
    pp <- select_posterior(logml, logml_se, log(pk$probs[Ks]), seeds[length(seeds)])
    post_p <- pp$probs
    post_se <- pp$se
  }

  # over-fitted fit + Merge-Truncate-Merge
  mtm_fit <- NULL
  mtm <- NULL
  mtm_freq <- rep(NA_real_, length(Ks))
  if ("mtm" %in% methods) {
    # the over-fitted fit is the posterior route's fit with max(K) experts
    # when that was run (same seed), else its own task
    if (post) {
      mtm_fit <- mcmc[[which.max(Ks)]]
      cpu_fit <- 0
    } else {
      mtm_fit <- of("mtm")[[1L]]$fit
      cpu_fit <- of("mtm")[[1L]]$cpu
    }
    run_mtm <- select_timed(do.call(moe_mtm, c(list(mtm_fit, seed = seeds[length(seeds)]),
                                               dots$mtm)))
    step("Merge-Truncate-Merge")
    cpu[["mtm"]] <- cpu_fit + run_mtm$cpu
    mtm <- run_mtm$value
    mtm_freq <- unname(mtm$probs[as.character(Ks)])
  }
  post <- post_p

  prior_k <- if ("posterior" %in% methods) unname(pk$probs[Ks] / sum(pk$probs[Ks])) else
    rep(NA_real_, length(Ks))
  tab <- data.frame(K = Ks, prior = prior_k,
                    logml = unname(logml), logml_se = unname(logml_se),
                    post_prob = unname(post), post_prob_se = unname(post_se),
                    mtm_freq = mtm_freq,
                    loglik_em = vapply(em, function(f) f$loglik, 0),
                    BIC = unname(bic), ICL = unname(icl), row.names = NULL)
  K_hats <- c(posterior = if ("posterior" %in% methods) Ks[which.max(post)] else NA_integer_,
              mtm = if ("mtm" %in% methods) mtm$K_hat else NA_integer_,
              bic = Ks[which.min(bic)], icl = Ks[which.min(icl)])
  if (length(unreliable)) {
    warn(sprintf("The marginal likelihood of K = %s is unreliable (bridge sampling did not converge or has an infinite error), and so are the posterior probabilities; see `$warnings`.",
                 paste(unreliable, collapse = ", ")), kind = "marglik", call = ecall)
  }
  primary <- methods[1L]
  # a choice resting on a spike expert (a variance near zero that the
  # likelihood rewards) is not to be trusted: the K whose EM fit is
  # degenerate (the chains start from it, and the marginal likelihood and
  # MTM inherit its spike) or whose posterior sits on a spike
  spiky <- if (length(mcmc)) Ks[vapply(mcmc, mcmc_has_spike, TRUE)] else integer()
  degenerate <- sort(unique(c(degenerate_em, spiky)))
  chosen <- K_hats[unique(c(methods, "bic", "icl"))]
  hit <- chosen[!is.na(chosen) & chosen %in% degenerate]
  if (length(hit)) {
    warn(sprintf("The K chosen by %s rests on a degenerate fit (an expert with a variance below %g times the residual variance of a one-expert fit, or fewer observations than parameters), which inflates the likelihood of larger K; compare smaller K, bound the variances (`moe_em_control(var_floor =)`, `moe_prior(c0 =, C0 =)`) and see `$warnings`.",
                 paste(sprintf("%s (K = %d)", names(hit), hit), collapse = ", "), spike_ratio),
         kind = "degenerate", call = ecall)
  }
  probs <- switch(primary, posterior = post, mtm = mtm_freq, rep(NA_real_, length(Ks)))
  structure(list(call = call, method = primary, methods = methods, K = Ks,
                 probs = setNames(probs, Ks), K_hat = unname(K_hats[[primary]]),
                 K_hats = K_hats[unique(c(methods, "bic", "icl"))], table = tab,
                 fits = list(mcmc = mcmc, em = em, mtm = mtm_fit), marglik = ml, mtm = mtm,
                 prior_K = pk, cpu = cpu, warnings = warns, degenerate = degenerate,
                 n = nobs(em[[1L]])),
            class = "moe_select")
}

# `f` (a formula) with an environment holding the variables `vars` found
# from its own (whose child it is), so that the formula evaluates the same in
# another process.
carry_vars <- function(f, vars) {
  env <- environment(f)
  if (is.null(env)) return(f)
  carry <- new.env(parent = env)
  for (v in vars) {
    val <- get0(v, envir = env)
    if (!is.null(val) && !is.function(val)) assign(v, val, envir = carry)
  }
  environment(f) <- carry
  f
}

# A progress step of moe_select(): a progressor step, and with `show` a
# message line. Made at top level so that it carries only `tick` and `show`
# to the workers.
select_step <- function(tick, show) {
  force(tick)
  force(show)
  function(what) {
    tick(what)
    if (show) message(sprintf("moe_select(): %s done", what))
  }
}

# The value of `expr` and the CPU seconds it took (children included).
select_timed <- function(expr) {
  t0 <- proc.time()
  val <- expr
  list(value = val, cpu = sum((proc.time() - t0)[c(1L, 2L, 4L, 5L)], na.rm = TRUE))
}

# The task function of moe_select(): task j fits row j of `jobs` (kind
# "em", "posterior" or "mtm"; K) with the seeds a sequential run uses, and
# returns list(fit, ml, warns, warns_ml, unreliable, degenerate_em, cpu).
# The fits' calls name `data` and `prior`, found in this function's frame
# (as in the frame of moe_select()), so that `update()` works as for a fit
# made directly. Warnings of class bayesmoe_warning are collected, labelled
# with the fit, not signalled.
select_task_fun <- function(formula, data, gating, prior, dots, seeds, Ks, jobs, job_steps,
                            step, family = gaussian()) {
  env <- environment()
  function(i, ...) {
    k <- jobs$K[i]
    ik <- match(k, Ks)
    warns <- character()
    unreliable <- integer()
    degenerate_em <- integer()
    collect <- function(expr, label) {
      withCallingHandlers(expr, bayesmoe_warning = function(w) {
        warns <<- c(warns, sprintf("%s: %s", label, conditionMessage(w)))
        if (inherits(w, "bayesmoe_warning_marglik")) unreliable <<- c(unreliable, k)
        if (inherits(w, "bayesmoe_warning_degenerate") && grepl("^EM", label)) {
          degenerate_em <<- c(degenerate_em, k)
        }
        invokeRestart("muffleWarning")
      })
    }
    labels <- job_steps[[i]]
    fit_mcmc <- function(seed_index) {
      do.call("moe_mcmc", c(list(formula = formula, data = quote(data), K = k,
                                 gating = gating, family = quote(family), prior = quote(prior),
                                 seed = seeds[seed_index]), dots$mcmc), envir = env)
    }
    out <- list()
    run <- select_timed(switch(jobs$kind[i],
      em = {
        out$fit <- collect(do.call("moe_em", c(list(formula = formula, data = quote(data),
                                                    K = k, gating = gating,
                                                    family = quote(family), seed = seeds[ik]),
                                               dots$em), envir = env), labels[1L])
        step(labels[1L])
      },
      posterior = {
        out$fit <- collect(fit_mcmc(length(Ks) + ik), labels[1L])
        step(labels[1L])
        w_fit <- warns
        warns <- character()
        exact <- k == 1L && inherits(spec_expert(fit_spec(out$fit)), "moe_expert_linear")
        out$ml <- if (exact) moe_marglik(out$fit, method = "exact") else
          collect(do.call(moe_marglik, c(list(out$fit, seed = seeds[length(Ks) + ik]),
                                         dots$ml)), labels[2L])
        step(labels[2L])
        out$warns_ml <- warns
        warns <- w_fit
      },
      mtm = {
        out$fit <- collect(fit_mcmc(length(Ks) + ik), labels[1L])
        step(labels[1L])
      }))
    c(out, list(warns = warns, unreliable = unreliable, degenerate_em = degenerate_em,
                cpu = run$cpu))
  }
}

# Whether the posterior of an MCMC fit sits on a spike expert: the median
# over the draws of the smallest expert variance is below spike_ratio times
# the residual variance of the least-squares fit (R/em.R).
mcmc_has_spike <- function(fit) {
  # experts without a dispersion (GLM experts) have no variance to collapse
  if (!expert_dispersion(spec_expert(fit_spec(fit)))) return(FALSE)
  nm <- dimnames(fit$draws)[[3L]]
  s2 <- fit$draws[, , grepl(":sigma2$", nm), drop = FALSE]
  smallest <- apply(s2, c(1L, 2L), min)
  ref <- ls_residual_variance(fit$y, fit$X, fit$weights)
  ref > 0 && isTRUE(stats::median(smallest, na.rm = TRUE) < spike_ratio * ref)
}

select_check_K <- function(K, call) {
  ok <- is.numeric(K) && length(K) >= 1L && !anyNA(K) && all(is.finite(K)) &&
    all(abs(K - round(K)) < 1e-8) && all(K >= 1) && !anyDuplicated(round(K))
  if (!ok) {
    abort(sprintf("`K` must be distinct whole numbers >= 1, not %s.",
                  if (is.numeric(K) && length(K) >= 1L && length(K) <= 10L)
                    paste0("c(", paste(format(K, trim = TRUE), collapse = ", "), ")")
                  else describe(K)),
          call = call, arg = "K")
  }
  sort(as.integer(round(K)))
}

select_check_method <- function(method, call) {
  choices <- c("posterior", "mtm", "bic", "icl")
  if (!is.character(method) || length(method) == 0L || anyNA(method) ||
      !all(method %in% choices)) {
    abort(sprintf("`method` must be one or more of %s, not %s.",
                  paste0("\"", choices, "\"", collapse = ", "), describe(method)),
          call = call, arg = "method")
  }
  unique(method)
}

# Route the arguments in `...` to the functions that take them.
select_split_dots <- function(dots, call) {
  out <- list(mcmc = list(), em = list(), mtm = list(), ml = list())
  if (!length(dots)) return(out)
  nm <- names(dots)
  if (is.null(nm) || any(!nzchar(nm))) {
    abort("Every argument in `...` must be named.", call = call, arg = "...")
  }
  route <- list(mcmc = c("chains", "iter", "warmup", "thin", "init", "progress"),
                em = "starts", mtm = c("omega", "c", "r", "weights"),
                ml = c("proposal", "n_comp", "n_prop"))
  for (i in seq_along(dots)) {
    if (nm[i] == "control") {
      to <- if (inherits(dots[[i]], "moe_mcmc_control")) "mcmc" else
        if (inherits(dots[[i]], "moe_em_control")) "em" else NA
      if (is.na(to)) {
        abort(sprintf("`control` must be made by `moe_mcmc_control()` or `moe_em_control()`, not %s.",
                      describe(dots[[i]])), call = call, arg = "control")
      }
    } else {
      to <- names(route)[vapply(route, function(r) nm[i] %in% r, TRUE)]
      if (!length(to)) {
        abort(sprintf("`...` has an argument `%s` that no fit takes; see ?moe_select for those passed on.",
                      nm[i]), call = call, arg = nm[i])
      }
    }
    out[[to]][[nm[i]]] <- dots[[i]]
  }
  out
}

# Posterior probabilities of K from log marginal likelihoods and log prior
# probabilities (over the K compared), with Monte Carlo standard errors by
# simulating the log marginal likelihoods from normals with their s.e.
select_posterior <- function(logml, se, log_prior, seed, nsim = 2000L) {
  lp <- logml + log_prior
  norm <- function(v) {
    e <- exp(v - max(v))
    e / sum(e)
  }
  probs <- norm(lp)
  se_p <- rep(NA_real_, length(lp))
  if (all(is.finite(se))) {
    sims <- with_seed(seed, vapply(seq_len(nsim), function(i)
      norm(lp + stats::rnorm(length(lp), 0, se)), numeric(length(lp))))
    se_p <- apply(matrix(sims, length(lp)), 1L, stats::sd)
  }
  list(probs = probs, se = se_p)
}

#' @rdname moe_select
#' @param x,object A `moe_select` object.
#' @param digits Number of significant digits to print.
#' @export
print.moe_select <- function(x, digits = max(3L, getOption("digits") - 3L), ...) {
  digits <- check_digits(digits, call = sys.call())
  cat(sprintf("Number of experts, K in {%s}, n = %d\n", paste(x$K, collapse = ", "), x$n))
  lab <- c(posterior = "posterior probabilities", mtm = "Merge-Truncate-Merge frequencies",
           bic = "BIC (EM)", icl = "ICL (EM)")
  if (x$method %in% c("posterior", "mtm")) {
    cat(sprintf("%s:\n", tools_upper(lab[[x$method]])))
    print(round(x$probs, digits))
  }
  est <- vapply(names(x$K_hats), function(m) sprintf("%s %s", m, format(x$K_hats[[m]])), "")
  cat(sprintf("Selected K = %d (%s); estimates: %s\n", x$K_hat, x$method,
              paste(est, collapse = ", ")))
  invisible(x)
}

tools_upper <- function(s) paste0(toupper(substr(s, 1L, 1L)), substring(s, 2L))

#' @rdname moe_select
#' @export
summary.moe_select <- function(object, ...) {
  structure(list(table = object$table, K_hats = object$K_hats, method = object$method,
                 methods = object$methods, prior_K = object$prior_K, cpu = object$cpu,
                 n = object$n, mtm = if (!is.null(object$mtm))
                   object$mtm[c("omega", "c", "r", "threshold", "probs")] else NULL,
                 n_warnings = length(object$warnings)),
            class = "summary.moe_select")
}

#' @export
print.summary.moe_select <- function(x, digits = max(3L, getOption("digits") - 3L), ...) {
  digits <- check_digits(digits, call = sys.call())
  cat(sprintf("Choosing the number of experts (n = %d); methods run: %s\n", x$n,
              paste(x$methods, collapse = ", ")))
  if ("posterior" %in% x$methods) print(x$prior_K, digits = digits)
  tab <- x$table
  keep <- vapply(tab, function(v) !all(is.na(v)), TRUE)
  cat("\n")
  print(format(tab[, keep, drop = FALSE], digits = digits), row.names = FALSE)
  if (!is.null(x$mtm)) {
    cat(sprintf("\nMTM: omega = %s, c = %s, r = %s, threshold = %s.\n",
                format(signif(x$mtm$omega, digits)), format(x$mtm$c), format(x$mtm$r),
                format(signif(x$mtm$threshold, digits))))
  }
  cat(sprintf("\nEstimates: %s\n", paste(sprintf("%s K = %s", names(x$K_hats), x$K_hats),
                                        collapse = ", ")))
  cpu <- x$cpu[is.finite(x$cpu)]
  cat(sprintf("CPU seconds: %s\n", paste(sprintf("%s %.1f", names(cpu), cpu), collapse = ", ")))
  if (x$n_warnings) {
    cat(sprintf("%d warning%s of the fits collected (see `$warnings`).\n", x$n_warnings,
                if (x$n_warnings > 1L) "s" else ""))
  }
  invisible(x)
}

#' @rdname moe_select
#' @param which For `plot()`: `"probs"` (bar chart of `probs`), `"criteria"`
#'   (BIC, ICL and, when computed, \eqn{-2 \log p(y \mid K)} against K, all
#'   "smaller is better" on the deviance scale), or both (the default).
#' @export
plot.moe_select <- function(x, which = c("probs", "criteria"), ...) {
  choices <- c("probs", "criteria")
  if (!is.character(which) || !length(which) || anyNA(which) ||
      anyNA(i <- pmatch(which, choices, duplicates.ok = TRUE))) {
    abort(sprintf("`which` must be one or both of \"probs\", \"criteria\", not %s.",
                  describe(which)), call = sys.call(), arg = "which")
  }
  which <- unique(choices[i])
  has_probs <- !all(is.na(x$probs))
  if (!has_probs) which <- setdiff(which, "probs")
  if (!length(which)) which <- "criteria"
  if (length(which) == 2L) {
    op <- graphics::par(mfrow = c(1L, 2L))
    on.exit(graphics::par(op))
  }
  if ("probs" %in% which) {
    graphics::barplot(x$probs, names.arg = x$K, ylim = c(0, 1), xlab = "number of experts K",
                      ylab = if (x$method == "posterior") "posterior probability" else "frequency",
                      main = if (x$method == "posterior") "Posterior over K" else
                        "Merge-Truncate-Merge")
  }
  if ("criteria" %in% which) {
    tab <- x$table
    cols <- list(BIC = tab$BIC, ICL = tab$ICL)
    if (!all(is.na(tab$logml))) cols[["-2 log p(y|K)"]] <- -2 * tab$logml
    yl <- range(unlist(cols), finite = TRUE)
    graphics::plot(tab$K, cols[[1L]], type = "n", ylim = yl, xlab = "number of experts K",
                   ylab = "criterion (smaller is better)", main = "Criteria against K",
                   xaxt = "n")
    graphics::axis(1L, at = tab$K)
    for (j in seq_along(cols)) {
      graphics::lines(tab$K, cols[[j]], type = "b", pch = j, col = j, lty = j)
    }
    graphics::legend("topright", legend = names(cols), pch = seq_along(cols),
                     col = seq_along(cols), lty = seq_along(cols), bty = "n")
  }
  invisible(x)
}
