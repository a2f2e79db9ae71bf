# The least-squares (regression) form of the mixture of experts:
#
#   y = sum_k g_k(z) h(x; eta_k) + noise,   g = softmax(z'W),  W[, K] = 0,
#
# fitted by minimising the (weighted) residual sum of squares over the gating
# and expert parameters with Levenberg-Marquardt in C (src/ls.c), from
# several starts. This is the model of the least-squares theory of
# mixtures of experts (Nguyen, Ho and Rinaldo, 2024), in which linear experts
# need far more data than strongly identifiable (FFN) experts.
#
# A fit (class c("moe_ls", "moe_fit")) holds the fields of every fit (call,
# K, formula, gating, terms, ..., y, X, Z, weights, model), `coefficients` =
# list(alpha (P_e x K, original scale), W (q x K, reference column zero),
# sigma2 (the noise variance RSS / sum(weights)), spec), `expert`, `gate`
# (softmax), `rss`, `loglik` (Gaussian, at sigma2), `iter`, `status`,
# `starts` (one row per start), `scaling`, `control`.

#' Control settings of least-squares fits
#'
#' @param maxit Maximum number of Levenberg-Marquardt steps per start.
#' @param tol Convergence tolerance: a start stops when a step lowers the
#'   objective by less than `tol` times it.
#' @param ridge Ridge penalty \eqn{\lambda \sum \theta_j^2} added to the
#'   residual sum of squares, on the internal (standardised) scale, for the
#'   gating coefficients and, with [expert_ffn()] experts, the hidden-layer
#'   weights and biases. When an expert is redundant (more experts than the
#'   data need) plain least squares can drive these parameters to infinity
#'   (a step-function gate around a few observations); the tiny default
#'   keeps them finite and is negligible otherwise. `0` gives plain least
#'   squares.
#' @return A list of class `moe_ls_control`.
#' @examples
#' moe_ls_control(maxit = 200)
#' @export
moe_ls_control <- function(maxit = 1000, tol = 1e-10, ridge = 1e-6) {
  call <- sys.call()
  structure(list(
    maxit = check_number(maxit, "maxit", lower = 1, whole = TRUE, call = call),
    tol = check_number(tol, "tol", lower = 0, call = call),
    ridge = check_number(ridge, "ridge", lower = 0, call = call)
  ), class = "moe_ls_control")
}

#' Least-squares fit of the regression form of a mixture of experts
#'
#' Fits the regression function
#' \deqn{y = \sum_{k=1}^K g_k(z)\, h(x; \eta_k) + \varepsilon, \qquad
#'   g_k(z) = \frac{\exp(z^\top w_k)}{\sum_j \exp(z^\top w_j)},}{
#'   y = sum_k g_k(z) h(x; eta_k) + noise,  g_k(z) = softmax(z'w)_k,}
#' by least squares: the gating vectors \eqn{w_k} (expert \eqn{K} is the
#' reference, \eqn{w_K = 0}) and the expert parameters \eqn{\eta_k} minimise
#' the (weighted) residual sum of squares. Unlike [moe_em()], which fits the
#' mixture density \eqn{\sum_k g_k N(y; h(x; \eta_k), \sigma_k^2)}, this is
#' a nonlinear regression with one noise variance: the experts are averaged,
#' not mixed. It is the model in which the least-squares theory of mixtures
#' of experts shows that linear experts \eqn{h(x; a) = x^\top a} need far
#' more data than strongly identifiable experts such as the feed-forward
#' networks of [expert_ffn()] (Nguyen, Ho and Rinaldo, 2024); the loss of
#' that theory is [voronoi_loss_strong()], and section (a) of the vignette
#' "Gating and expert variants" reproduces the contrast (`method = "ls"` of
#' the contraction harness [moe_contraction()]).
#'
#' The minimisation is Levenberg-Marquardt with analytic derivatives, in C,
#' on the internal (centred and scaled) data, from `starts` starts: a
#' partition of the observations (as the EM starts of [moe_em()]: the first
#' by residual rank, then k-means++ and random partitions), each expert
#' fitted to its part (FFN experts from a random hidden layer) and the gating
#' fitted to the partition by a few Newton steps; the start with the
#' smallest residual sum of squares is kept. Results are on the original
#' scale. The noise variance is estimated by `RSS / sum(weights)` (maximum
#' likelihood), and `logLik()` is the Gaussian log-likelihood at it.
#'
#' @inheritParams moe_em
#' @param expert The experts: [expert_linear()] (the default) or
#'   [expert_ffn()].
#' @param control Settings from [moe_ls_control()].
#' @param subset,na.action As in [lm()].
#' @param weights Optional case weights: observation \eqn{i} contributes
#'   `weights[i]` times its squared residual.
#' @return An object of class `c("moe_ls", "moe_fit")` with methods
#'   `print()`, `summary()`, `coef()`, `vcov()` (Gauss-Newton), `predict()`
#'   (types `"mean"`, `"gating"`, `"expert"`), `fitted()`, `residuals()`,
#'   `logLik()` and `plot()`. A fit that reproduces the response exactly
#'   (residual standard deviation below 1e-10 times that of the response)
#'   has `exact = TRUE`, noise variance 0, log-likelihood `Inf` and NA
#'   standard errors, and warns (class `bayesmoe_warning_exact_fit`).
#' @references Nguyen, H., Ho, N. and Rinaldo, A. (2024). On least squares
#'   estimation in softmax gating mixture of experts. *ICML 2024*.
#'   arXiv:2402.02952.
#' @examples
#' set.seed(1)
#' x <- runif(400)
#' g <- plogis(10 * (x - 0.5))
#' y <- g * (1 - 2 * x) + (1 - g) * (3 * x) + rnorm(400, sd = 0.1)
#' fit <- moe_ls(y ~ x, data = data.frame(x, y), K = 2, starts = 3, seed = 1)
#' fit
#' predict(fit, data.frame(x = c(0.2, 0.8)))
#' @export
moe_ls <- function(formula, data, K, gating = NULL, expert = expert_linear(),
                   starts = 10, seed = NULL, control = moe_ls_control(),
                   subset, na.action, weights) {
  call <- match.call()
  ecall <- sys.call()
  args <- check_fit_args(K, starts, seed, control, "moe_ls_control", ecall)
  K <- args$K
  starts <- args$starts
  seed <- args$seed
  check_ls_expert(expert, ecall)
  fr <- moe_frame(call, formula, gating, if (missing(data)) NULL else data,
                  parent.frame(), K, ecall)
  check_expert_design(expert, fr$X, ecall)
  check_ls_rows(fr$weights, expert_npar(expert, ncol(fr$X)) * K + ncol(fr$Z) * (K - 1L),
                "data", ecall)
  res <- with_seed(seed, moe_ls_fit(fr$y, fr$X, fr$Z, fr$weights, K, expert, starts, control))
  fit <- new_moe_ls(fr, res, call)
  if ("maxit" %in% decode_status(fit$status)) {
    warn(sprintf("Least squares did not converge in %d steps; increase `maxit` in `moe_ls_control()`.",
                 control$maxit), kind = "convergence", call = ecall)
  }
  fit
}

# The fit object: the fields of new_moe_fit() with the LS parameter list
# (one noise variance), named.
new_moe_ls <- function(fr, res, call) {
  K <- ncol(res$par$alpha)
  ek <- paste0("expert", seq_len(K))
  par <- res$par
  par$alpha <- matrix(par$alpha, ncol = K,
                      dimnames = list(expert_par_names(res$expert, colnames(fr$X)), ek))
  par$W <- matrix(par$W, ncol(fr$Z), K, dimnames = list(colnames(fr$Z), ek))
  fit <- c(list(call = call, K = K, coefficients = par), frame_fields(fr),
           res[setdiff(names(res), "par")])
  structure(fit, class = c("moe_ls", "moe_fit"))
}

check_ls_expert <- function(expert, call) {
  if ((!inherits(expert, "moe_expert_linear") && !inherits(expert, "moe_expert_ffn")) ||
      is.null(rebuild_variant(expert))) {
    abort(sprintf("`expert` must be made by `expert_linear()` or `expert_ffn()`, not %s.",
                  describe_object(expert)), call = call, arg = "expert")
  }
}

# Codes of src/ls.c.
ls_type <- function(expert) if (inherits(expert, "moe_expert_ffn")) 1L else 0L
ls_hidden <- function(expert) if (inherits(expert, "moe_expert_ffn")) as.integer(expert$hidden) else 0L
ls_act <- function(expert) if (inherits(expert, "moe_expert_ffn")) ffn_act_code(expert) else 0L

#' @rdname moe_ls
#' @param y,X,Z,w Response vector, expert and gating design matrices (with
#'   column names) and case weights, for the matrix interface `moe_ls_fit()`
#'   used by simulation studies (no formula handling, no checks of the data).
#' @param init Optional starting parameters for `moe_ls_fit()`: a list with
#'   `alpha` (expert parameters, one column per expert) and `W` (gating
#'   coefficients, column `K` zero) on the original scale, tried as one more
#'   start (type `"init"`) after the `starts` others (e.g. the truth in a
#'   simulation study).
#' @export
moe_ls_fit <- function(y, X, Z, w = rep(1, length(y)), K, expert = expert_linear(),
                       starts = 10, control = moe_ls_control(), init = NULL) {
  call <- sys.call()
  K <- check_number(K, "K", lower = 1, whole = TRUE, call = call)
  starts <- check_number(starts, "starts", lower = 1, whole = TRUE, call = call)
  check_control(control, "moe_ls_control", call)
  check_ls_expert(expert, call)
  dat <- check_matrix_data(y, X, Z, w, K, call)
  y <- dat$y
  X <- dat$X
  Z <- dat$Z
  w <- dat$w
  check_expert_design(expert, X, call)
  p <- ncol(X)
  q <- ncol(Z)
  pe <- expert_npar(expert, p)
  # with no more rows than parameters the residual sum of squares is zero
  # and the Gaussian log-likelihood infinite
  check_ls_rows(w, pe * K + q * (K - 1L), "y", call)
  if (!is.null(init)) check_ls_init(init, pe, q, K, call)
  sc <- moe_scaling(y, X, Z)
  s <- scale_data(sc, y, X, Z)
  ffn <- inherits(expert, "moe_expert_ffn")
  Xf <- if (ffn) ffn_inputs(s$X) else matrix(0, length(y), 1L)
  types <- start_types(starts)
  feats <- start_features(s$y, s$X, s$Z)
  pen <- ls_penalty(expert, pe, q, K, if (is.null(control$ridge)) 0 else control$ridge, ncol(Xf))
  runs <- vector("list", starts)
  for (j in seq_len(starts)) {
    R0 <- start_resp(types[j], s$y, s$X, feats, K)
    th0 <- ls_start(s, Xf, w, R0, expert, K)
    runs[[j]] <- .Call(ffi_ls, s$y, s$X, s$Z, w, Xf, th0, K, ls_type(expert),
                       ls_hidden(expert), ls_act(expert), pen,
                       as.double(c(control$maxit, control$tol)))
  }
  if (!is.null(init)) {
    th0 <- c(as.vector(expert_to_internal(expert, sc, as.matrix(init$alpha))),
             if (K > 1L) as.vector((scaling_inverse(sc$z) %*% as.matrix(init$W))[, -K, drop = FALSE]))
    runs[[starts + 1L]] <- .Call(ffi_ls, s$y, s$X, s$Z, w, Xf, as.double(th0), K,
                                 ls_type(expert), ls_hidden(expert), ls_act(expert), pen,
                                 as.double(c(control$maxit, control$tol)))
    types <- c(types, "init")
  }
  rss <- vapply(runs, `[[`, 0, "rss")
  ok <- is.finite(rss)
  best <- order(!ok, ifelse(ok, rss, Inf))[1L]
  r <- runs[[best]]
  to_par <- function(r) {
    th <- r$theta
    alpha <- matrix(th[seq_len(pe * K)], pe, K)
    W <- matrix(0, q, K)
    if (K > 1L) W[, -K] <- th[pe * K + seq_len(q * (K - 1L))]
    alpha <- expert_to_original(expert, sc, alpha)
    if (ffn) alpha <- ffn_canonical(alpha, expert, ncol(Xf))
    list(alpha = alpha, W = sc$z$T %*% W, sigma2 = sc$sy^2 * r$rss / sum(w))
  }
  par <- to_par(r)
  sw <- sum(w)
  # a residual standard deviation below 1e-10 of the response's is an exact
  # fit up to rounding: variance 0 and an infinite log-likelihood, reported
  exact <- !(r$rss / sw > ls_exact_tol^2)
  if (exact) {
    par$sigma2 <- 0
    warn(sprintf("The least-squares fit reproduces the response exactly (residual standard deviation below %g times that of the response): the noise variance is 0, the Gaussian log-likelihood infinite and standard errors unavailable. The data carry no noise to estimate; use fewer experts or parameters, or data with noise.",
                 ls_exact_tol), kind = "exact_fit")
  }
  list(par = par, rss = if (exact) 0 else sc$sy^2 * r$rss, iter = r$iter, status = r$status,
       exact = exact,
       loglik = if (exact) Inf else -0.5 * sw * (log(2 * pi * par$sigma2) + 1), scaling = sc,
       control = control, expert = expert, gate = gate_softmax(),
       starts = data.frame(start = seq_along(runs), type = types, rss = sc$sy^2 * rss,
                           iter = vapply(runs, `[[`, 0L, "iter"),
                           status = vapply(runs, function(r) status_text(r$status), ""),
                           stringsAsFactors = FALSE),
       best = best)
}

# Residual standard deviation, relative to the response's, below which a
# least-squares fit counts as exact (moe_ls_fit()).
ls_exact_tol <- 1e-10

# With no more rows than parameters the residual sum of squares is zero and
# the Gaussian log-likelihood infinite: refused.
check_ls_rows <- function(w, npar, arg, call) {
  if (sum(w > 0) <= npar) {
    abort(sprintf("`%s` must have more rows with positive weight (%d) than the model has parameters (%d); use a smaller `K` or more data.",
                  arg, sum(w > 0), npar), kind = "data", call = call, arg = arg)
  }
  invisible()
}

# `init` of moe_ls_fit(): alpha (pe x K) and W (q x K), finite.
check_ls_init <- function(init, pe, q, K, call) {
  ok_mat <- function(M, r) {
    (is.matrix(M) || (is.numeric(M) && r == 1L)) && is.numeric(M) &&
      length(M) == r * K && all(is.finite(M)) && all(abs(M) <= data_max)
  }
  if (!is.list(init) || !ok_mat(init$alpha, pe) || !ok_mat(init$W, q)) {
    abort(sprintf("`init` must be NULL or a list with finite matrices `alpha` (%d x %d) and `W` (%d x %d), not %s.",
                  pe, K, q, K, describe(init)), call = call, arg = "init")
  }
  invisible()
}

# Ridge weights of the flat internal parameters (NULL without a ridge): the
# gating coefficients and the FFN hidden layers.
ls_penalty <- function(expert, pe, q, K, ridge, D) {
  if (!(ridge > 0)) return(NULL)
  ex <- numeric(pe)
  if (inherits(expert, "moe_expert_ffn")) {
    ix <- ffn_index(expert$hidden, D)
    ex[c(ix$A, ix$d)] <- ridge
  }
  c(rep(ex, K), rep(ridge, q * (K - 1L)))
}

# Starting parameters (internal scale) from starting responsibilities R0:
# each expert fitted to the observations weighted by its column of R0 (FFN
# experts from a random hidden layer), the gating by a few Newton steps of
# the multinomial logistic regression on R0 from W = 0.
ls_start <- function(s, Xf, w, R0, expert, K) {
  n <- length(s$y)
  q <- ncol(s$Z)
  alpha <- if (inherits(expert, "moe_expert_ffn")) {
    th <- ffn_start_theta(expert, ncol(Xf), K)
    for (k in seq_len(K)) {
      th[, k] <- .Call(ffi_ffn_mstep, s$y, Xf, w * R0[, k], th[, k],
                       as.integer(expert$hidden), ffn_act_code(expert),
                       c(5, 1e-12, 0))$theta
    }
    th
  } else {
    vapply(seq_len(K), function(k) {
      v <- w * R0[, k]
      A <- crossprod(s$X * v, s$X)
      drop(solve(A + diag(1e-8 * max(diag(A)), ncol(A)), crossprod(s$X, v * s$y)))
    }, numeric(ncol(s$X)))
  }
  alpha <- matrix(alpha, ncol = K)
  W <- matrix(0, q, K)
  if (K > 1L) {
    for (it in 1:5) {
      W <- .Call(ffi_gate_newton, s$y, s$X, s$Z, w, R0, W, 1e-6)$W
    }
  }
  c(as.vector(alpha), if (K > 1L) as.vector(W[, -K, drop = FALSE]))
}

# ---------------------------------------------------------------------------
# Methods

fit_title.moe_ls <- function(x) {
  sprintf("Least-squares mixture of %d %s expert%s with softmax gating (regression form)",
          x$K, if (inherits(x$expert, "moe_expert_ffn")) expert_label(x$expert) else "linear",
          if (x$K > 1L) "s" else "")
}

# Flat parameters of an LS fit: expert parameters, gating, then sigma2.
ls_coef_names <- function(object) {
  K <- object$K
  en <- expert_par_names(object$expert, colnames(object$X))
  c(unlist(lapply(seq_len(K), function(k) paste0("expert", k, ":", en))),
    if (K > 1L) unlist(lapply(seq_len(K - 1L), function(k)
      paste0("gate", k, ":", colnames(object$Z)))))
}

ls_theta <- function(par, K) {
  c(as.vector(par$alpha), if (K > 1L) as.vector(par$W[, -K, drop = FALSE]))
}

#' @export
coef.moe_ls <- function(object, matrix = FALSE, ...) {
  par <- object$coefficients
  if (isTRUE(matrix)) return(par)
  c(setNames(ls_theta(par, object$K), ls_coef_names(object)), sigma2 = par$sigma2)
}

# The regression function and its Jacobian at the estimate, on the original
# scale, for designs X, Z.
ls_eval <- function(object, X, Z, jac = FALSE, theta = NULL) {
  ex <- object$expert
  storage.mode(X) <- "double"
  storage.mode(Z) <- "double"
  Xf <- if (inherits(ex, "moe_expert_ffn")) ffn_inputs(X) else matrix(0, nrow(X), 1L)
  if (is.null(theta)) theta <- ls_theta(object$coefficients, object$K)
  .Call(ffi_ls_eval, rep(0, nrow(X)), X, Z, rep(1, nrow(X)), Xf, as.double(theta),
        object$K, ls_type(ex), ls_hidden(ex), ls_act(ex), jac)
}

#' @export
vcov.moe_ls <- function(object, ...) {
  if (isTRUE(object$exact)) {
    nm <- ls_coef_names(object)
    warn("The least-squares fit is exact (noise variance 0); standard errors are NA.",
         kind = "exact_fit")
    return(matrix(NA_real_, length(nm), length(nm), dimnames = list(nm, nm)))
  }
  J <- ls_eval(object, object$X, object$Z, jac = TRUE)$J
  info <- crossprod(J * object$weights, J) / object$coefficients$sigma2
  nm <- ls_coef_names(object)
  V <- invert_information(info, "The Gauss-Newton information is not invertible (an over-fitted or weakly identified fit); standard errors are NA.")
  if (is.null(V)) V <- matrix(NA_real_, nrow(info), ncol(info))
  dimnames(V) <- list(nm, nm)
  V
}

#' @export
logLik.moe_ls <- function(object, ...) {
  structure(object$loglik, df = length(ls_coef_names(object)) + 1L,
            nobs = loglik_nobs(object), class = "logLik")
}

#' @export
predict.moe_ls <- function(object, newdata = NULL, type = c("mean", "gating", "expert"), ...) {
  check_dots_empty(sys.call(), ...)
  type <- check_choice(type, c("mean", "gating", "expert"), "type")
  des <- if (is.null(newdata)) fit_design(object) else new_design(object, newdata)
  par <- object$coefficients
  ek <- paste0("expert", seq_len(object$K))
  switch(type,
    mean = {
      f <- ls_eval(object, des$X, des$Z)$f + des$offset
      names(f) <- rownames(des$X)
      f
    },
    gating = {
      g <- exp(log_softmax_rows(des$Z %*% par$W))
      dimnames(g) <- list(rownames(des$X), ek)
      g
    },
    expert = {
      m <- expert_mean(object$expert, des$X, par$alpha) + des$offset
      dimnames(m) <- list(rownames(des$X), ek)
      m
    })
}

#' @export
residuals.moe_ls <- function(object, ...) object$y + fit_offset(object) - fitted(object)

#' @export
print.moe_ls <- function(x, digits = max(3L, getOption("digits") - 3L), ...) {
  digits <- check_digits(digits, call = sys.call())
  cat(fit_title(x), "\n\n", sep = "")
  cat("Call:\n", paste(deparse(x$call), collapse = "\n"), "\n\n", sep = "")
  par <- x$coefficients
  cat("Expert parameters (columns):\n")
  print(par$alpha, digits = digits)
  if (x$K > 1L) {
    cat("\nGating coefficients (expert ", x$K, " is the reference):\n", sep = "")
    print(par$W[, -x$K, drop = FALSE], digits = digits)
  }
  cat(sprintf("\nResidual standard deviation: %s (RSS %s); n = %d%s.\n",
              format(signif(sqrt(par$sigma2), digits)), format(signif(x$rss, digits)),
              nobs(x), if (length(x$na.action)) sprintf(" (%d observation%s deleted due to missingness)",
                                                        length(x$na.action),
                                                        if (length(x$na.action) > 1L) "s" else "") else ""))
  invisible(x)
}

#' @export
summary.moe_ls <- function(object, ...) {
  est <- coef(object)
  V <- suppressWarnings(vcov(object))
  se <- c(sqrt(diag(V)), NA)
  tv <- est / se
  tab <- cbind(Estimate = est, `Std. Error` = se, `t value` = tv)
  ll <- logLik(object)
  structure(list(call = object$call, K = object$K, coefficients = tab,
                 title = fit_title(object), rss = object$rss, sigma = sqrt(object$coefficients$sigma2),
                 nobs = nobs(object), df = attr(ll, "df"), loglik = as.numeric(ll),
                 AIC = AIC(object), BIC = BIC(object), iter = object$iter,
                 status = status_text(object$status),
                 converged = !("maxit" %in% decode_status(object$status)),
                 starts = object$starts, se_available = all(is.finite(se[-length(se)])),
                 exact = isTRUE(object$exact), na.action = object$na.action),
            class = "summary.moe_ls")
}

#' @export
print.summary.moe_ls <- function(x, digits = max(3L, getOption("digits") - 3L), ...) {
  digits <- check_digits(digits, call = sys.call())
  cat(x$title, "\n\n", sep = "")
  cat("Call:\n", paste(deparse(x$call), collapse = "\n"), "\n\n", sep = "")
  tab <- x$coefficients[-nrow(x$coefficients), , drop = FALSE]
  groups <- sub(":.*$", "", rownames(tab))
  for (g in unique(groups)) {
    lab <- if (startsWith(g, "gate")) sprintf("Gating, %s (reference: expert %d):", g, x$K)
           else sprintf("%s%s:", toupper(substring(g, 1, 1)), substring(g, 2))
    cat(lab, "\n")
    tg <- tab[groups == g, , drop = FALSE]
    rownames(tg) <- sub("^[^:]*:", "", rownames(tg))
    printCoefmat(tg, digits = digits, na.print = "", has.Pvalue = FALSE)
    cat("\n")
  }
  if (isTRUE(x$exact)) {
    cat("Standard errors are NA: the fit reproduces the response exactly (noise variance 0, infinite log-likelihood).\n\n")
  } else if (!x$se_available) {
    cat("Standard errors are NA: the Gauss-Newton information is not invertible.\n\n")
  }
  cat(sprintf("Residual standard deviation: %s; RSS: %s; n = %d\n",
              format(signif(x$sigma, digits)), format(signif(x$rss, 7)), x$nobs))
  cat(sprintf("Gaussian log-likelihood: %s on %d df; AIC: %s   BIC: %s\n",
              format(signif(x$loglik, 7)), x$df, format(signif(x$AIC, 7)),
              format(signif(x$BIC, 7))))
  cat(sprintf("Levenberg-Marquardt: %s after %d steps (status: %s); best of %d starts.\n",
              if (x$converged) "converged" else "NOT converged", x$iter, x$status,
              nrow(x$starts)))
  rs <- x$starts$rss
  cat(sprintf("Starts reaching the smallest RSS (within 1e-6 relative): %d of %d.\n",
              sum(abs(rs - min(rs, na.rm = TRUE)) <= 1e-6 * min(rs, na.rm = TRUE), na.rm = TRUE),
              length(rs)))
  invisible(x)
}

#' Plot a least-squares mixture-of-experts fit
#'
#' `what = "fit"` draws the data against one covariate, coloured by the
#' expert with the largest gating probability, with every expert's mean
#' (dashed) and the fitted regression function (solid); `"gating"` the
#' gating probabilities.
#'
#' @param x A fit from [moe_ls()].
#' @param what Which plot.
#' @param covariate Name of the covariate for the horizontal axis; by default
#'   the first numeric variable of the model.
#' @param ... Further graphical parameters passed to [plot()].
#' @return `x`, invisibly.
#' @examples
#' set.seed(1)
#' x <- runif(300)
#' y <- plogis(10 * (x - 0.5)) * (1 - 2 * x) + rnorm(300, sd = 0.1)
#' fit <- moe_ls(y ~ x, data = data.frame(x, y), K = 2, starts = 2, seed = 1)
#' plot(fit)
#' plot(fit, what = "gating")
#' @export
plot.moe_ls <- function(x, what = c("fit", "gating"), covariate = NULL, ...) {
  what <- check_choice(what, c("fit", "gating"), "what")
  if (what == "gating") {
    plot_gating(x, covariate, ...)
    return(invisible(x))
  }
  covariate <- plot_covariate(x, covariate)
  xv <- x$model[[covariate]]
  K <- x$K
  cols <- expert_colours(K)
  map <- max.col(predict(x, type = "gating"), ties.method = "first")
  grid <- covariate_grid(x, covariate)
  em <- predict(x, grid, type = "expert")
  pm <- predict(x, grid, type = "mean")
  plot(xv, x$y, col = grDevices::adjustcolor(cols[map], 0.7), pch = 19, cex = 0.6,
       xlab = covariate, ylab = deparse(x$formula[[2L]]),
       main = "Data, expert means and fitted regression function", ...)
  for (k in seq_len(K)) graphics::lines(grid[[covariate]], em[, k], col = cols[k], lty = 2, lwd = 2)
  graphics::lines(grid[[covariate]], pm, lwd = 2)
  graphics::legend("topleft", legend = c(paste("expert", seq_len(K)), "regression function"),
                   col = c(cols, "black"), lty = c(rep(2, K), 1), lwd = 2, bty = "n", cex = 0.8)
  invisible(x)
}
