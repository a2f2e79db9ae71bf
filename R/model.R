# Model frames and design matrices for the front ends (moe_em(), moe_mcmc()).
#
# `moe_frame()` turns the user's formulas into the pieces every fit stores:
# response, expert design X, gating design Z, case weights, terms, factor
# levels and the na.action record. All checks on the data happen here, before
# any C code runs.

check_formulas <- function(formula, gating, call) {
  if (missing(formula) || !inherits(formula, "formula") || length(formula) != 3L) {
    abort(sprintf("`formula` must be a two-sided formula such as `y ~ x`, not %s.",
                  if (missing(formula)) "missing" else describe(formula)),
          kind = "formula", call = call, arg = "formula")
  }
  if (!is.null(gating)) {
    if (!inherits(gating, "formula")) {
      abort(sprintf("`gating` must be a one-sided formula such as `~ x`, or NULL, not %s.",
                    describe(gating)), kind = "formula", call = call, arg = "gating")
    }
    if (length(gating) != 2L) {
      abort("`gating` must be a one-sided formula such as `~ x`; it has a response.",
            kind = "formula", call = call, arg = "gating")
    }
    # an offset shared by all experts adds the same term to every logit and
    # cancels in the softmax: it cannot mean anything, so it is refused
    if (has_offset(gating)) {
      abort("`gating` must not contain `offset()` terms: an offset common to all experts cancels in the softmax. Put offsets of the response in `formula`.",
            kind = "formula", call = call, arg = "gating")
    }
  }
}

# Whether the right-hand side of a formula holds an offset() term.
has_offset <- function(f) {
  !is.null(attr(terms(f, allowDotAsName = TRUE), "offset"))
}

# The right-hand side of `formula` without its offset() terms, as a
# one-sided formula (the default gating formula).
drop_offset <- function(formula) {
  rhs <- formula[-2L]
  if (!has_offset(rhs)) return(rhs)
  strip <- function(e) {
    if (is.call(e) && identical(e[[1L]], quote(offset))) return(NULL)
    if (is.call(e) && identical(e[[1L]], as.name("+"))) {
      parts <- lapply(as.list(e)[-1L], strip)
      parts <- parts[!vapply(parts, is.null, TRUE)]
      if (!length(parts)) return(NULL)
      if (length(parts) == 1L) return(parts[[1L]])
      return(as.call(c(as.name("+"), parts)))
    }
    if (is.call(e) && identical(e[[1L]], as.name("("))) {
      inner <- strip(e[[2L]])
      return(if (is.null(inner)) NULL else call("(", inner))
    }
    e
  }
  out <- strip(rhs[[2L]])
  rhs[[2L]] <- if (is.null(out)) 1 else out
  rhs
}

# The formula passed to model.frame(): the response and the union of the
# expert and gating right-hand sides.
combined_formula <- function(formula, gating) {
  f <- formula
  if (!is.null(gating)) f[[3L]] <- call("+", formula[[3L]], gating[[2L]])
  f
}

expand_dot <- function(formula, data) {
  if (!is.null(data) && "." %in% all.vars(formula)) {
    formula <- formula(terms(formula, data = data))
  }
  formula
}

# Build the model frame in the caller's frame, as lm() does. `mcall` is the
# front end's match.call(); `env` the environment it was called from.
# `expert`: GLM experts (R/family-glm.R) take their response as glm() does
# (glm_response(): the response, binomial trials) and keep the offset out of
# it: it enters their linear predictor.
moe_frame <- function(mcall, formula, gating, data, env, K, call, expert = NULL) {
  check_formulas(formula, gating, call)
  if (!is.null(data) && !is.data.frame(data) && !is.list(data) && !is.environment(data)) {
    abort(sprintf("`data` must be a data frame, not %s.", describe(data)),
          kind = "data", call = call, arg = "data")
  }
  formula <- expand_dot(formula, data)
  if (is.null(gating)) {
    gating <- drop_offset(formula)
  } else {
    environment(gating) <- environment(formula)
  }
  mf <- mcall[c(1L, match(c("data", "subset", "weights", "na.action"),
                          names(mcall), 0L))]
  mf$formula <- combined_formula(formula, gating)
  environment(mf$formula) <- environment(formula)
  mf$drop.unused.levels <- TRUE
  mf[[1L]] <- quote(stats::model.frame)
  mf <- tryCatch(eval(mf, env), error = function(e) {
    abort(sprintf("`formula`, `gating`, `subset` or `weights` cannot be evaluated in `data`: %s.",
                  sub("\\.$", "", conditionMessage(e))),
          kind = "data", call = call, arg = "formula")
  })
  if (nrow(mf) == 0L) {
    abort("`data` has no complete rows: every row has a missing value or was excluded by `subset`.",
          kind = "data", call = call, arg = "data")
  }
  y <- model.response(mf)
  trials <- NULL
  glm_fam <- !is.null(expert) && is_glm_expert(expert)
  if (glm_fam) {
    resp <- glm_response(expert, y, call)
    y <- resp$y
    trials <- resp$trials
  }
  if (!is.numeric(y) || is.matrix(y) && ncol(y) > 1L) {
    abort(sprintf("The response of `formula` must be a numeric vector, not %s.",
                  if (is.factor(y)) "a factor" else describe(y)),
          kind = "data", call = call, arg = "formula")
  }
  y <- as.numeric(y)
  mt <- inherit_predvars(terms(formula, data = data), attr(mf, "terms"))
  mtz <- inherit_predvars(terms(gating, data = data), attr(mf, "terms"))
  X <- build_design(mt, mf, "formula", "expert", call)
  Z <- build_design(mtz, mf, "gating", "gating", call)
  check_design(X, "formula", "expert", call)
  check_design(Z, "gating", "gating", call)
  if (any(!is.finite(y))) {
    nna <- sum(is.na(y))
    ninf <- sum(is.infinite(y))
    what <- c(if (nna) sprintf("%d missing value%s (NA or NaN; `na.action` kept %s)", nna,
                               if (nna == 1L) "" else "s", if (nna == 1L) "it" else "them"),
              if (ninf) sprintf("%d infinite value%s", ninf, if (ninf == 1L) "" else "s"))
    abort(sprintf("The response of `formula` must be finite; it has %s.",
                  paste(what, collapse = " and ")),
          kind = "data", call = call, arg = "formula")
  }
  if (any(abs(y) > data_max)) {
    abort(sprintf("The response of `formula` must be at most 1e100 in absolute value (rescale it), not %s.",
                  format(max(abs(y)), digits = 3)),
          kind = "data", call = call, arg = "formula")
  }
  check_response_range(y, "The response of `formula`", "formula", call)
  offset <- model_offset(mf, length(y), "formula", call)
  if (!is.null(offset) && !glm_fam) y <- y - offset
  w <- model.weights(mf)
  if (is.null(w)) {
    w <- rep(1, length(y))
  } else if (!is.numeric(w) || any(!is.finite(w)) || any(w < 0)) {
    abort("`weights` must be finite and non-negative.", kind = "data",
          call = call, arg = "weights")
  }
  n_used <- sum(w > 0)
  if (sd(y[w > 0]) == 0 || n_used < 2L) {
    abort("The response of `formula` is constant on the rows used; experts need variation in `y`.",
          kind = "data", call = call, arg = "formula")
  }
  if (!is.null(K) && K > n_used) {
    abort(sprintf("`K` must be at most the number of usable rows (%d), not %d.", n_used, K),
          kind = "input", call = call, arg = "K")
  }
  list(y = y, X = X, Z = Z, weights = as.numeric(w), offset = offset, trials = trials,
       terms = mt, gating_terms = mtz, formula = formula, gating = gating,
       xlevels = .getXlevels(mt, mf), zlevels = .getXlevels(mtz, mf),
       contrasts = attr(X, "contrasts"), zcontrasts = attr(Z, "contrasts"),
       na.action = attr(mf, "na.action"), model = mf)
}

# Tiny responses (see data_min): nonzero values below 1e-300 in absolute
# value, or values spanning less than 1e-150 (the variance, a square,
# underflows). `what` starts the message.
check_response_range <- function(y, what, arg, call) {
  if (any(y != 0 & abs(y) < data_min)) {
    abort(sprintf("%s must be 0 or at least 1e-300 in absolute value (rescale it); it has smaller nonzero values.",
                  what), kind = "data", call = call, arg = arg)
  }
  rg <- max(y) - min(y)
  if (rg > 0 && rg < resp_spread_min) {
    abort(sprintf("%s must vary by at least 1e-150 (rescale it) so that its variance is a normal number; its values span %s.",
                  what, format(rg, digits = 3)), kind = "data", call = call, arg = arg)
  }
}

# The offset of a model frame (the sum of its offset() terms), NULL when
# there is none; it must be finite and at most 1e100 in absolute value.
model_offset <- function(mf, n, arg, call) {
  o <- model.offset(mf)
  if (is.null(o)) return(NULL)
  if (!is.numeric(o) || length(o) != n || any(!is.finite(o)) || any(abs(o) > data_max)) {
    abort(sprintf("The `offset()` of `%s` must be finite numbers at most 1e100 in absolute value, one per row; %s.",
                  arg, if (is.numeric(o) && length(o) == n) "it has infinite, missing or larger values"
                  else sprintf("it is %s", describe(o))),
          kind = "data", call = call, arg = arg)
  }
  as.numeric(o)
}

# The offset of a fit (0 without one) and the design of its own data, as
# new_design() returns it for new data: `y` is the response minus the offset
# (the response the experts regress), `offset` the offset (0 without one).
fit_offset <- function(object) if (is.null(object$offset)) 0 else object$offset

fit_design <- function(object) {
  list(X = object$X, Z = object$Z, y = object$y,
       offset = rep_len(fit_offset(object), nrow(object$X)), trials = object$trials)
}

# The offset of a design (0 when it has none).
des_offset <- function(des) if (is.null(des$offset)) 0 else des$offset

# Give the terms of one formula the `predvars` (data-dependent bases such as
# poly() or ns() coefficients) computed by model.frame() for the combined
# formula, so that predictions on new data use the same bases, as in lm().
inherit_predvars <- function(sub, full) {
  pv <- attr(full, "predvars")
  if (is.null(pv)) return(sub)
  full_vars <- vapply(as.list(attr(full, "variables"))[-1L], deparse1, "")
  sub_vars <- as.list(attr(sub, "variables"))[-1L]
  idx <- match(vapply(sub_vars, deparse1, ""), full_vars)
  if (anyNA(idx)) return(sub)
  attr(sub, "predvars") <- as.call(c(quote(list), as.list(pv)[-1L][idx]))
  sub
}

build_design <- function(tt, mf, arg, what, call) {
  tryCatch(model.matrix(tt, mf), error = function(e) {
    abort(sprintf("The %s design of `%s` cannot be built: %s.", what, arg,
                  sub("\\.$", "", conditionMessage(e))),
          kind = "data", call = call, arg = arg)
  })
}

# Largest absolute value of the data (response and covariates): squares and
# the variances derived from them must stay far from overflow. (The messages
# spell it "1e100".)
data_max <- 1e100

# Smallest absolute value of a nonzero datum (covariates and response), and
# of the spread of a covariate column: below it numbers are denormal or
# close to it (from 2.2e-308), lose precision, and the coefficients on the
# original scale (divided by the spread of their covariate) overflow. The
# response must vary by at least `resp_spread_min`: its variance (the square)
# must be a normal number. (The messages spell them "1e-300" and "1e-150".)
data_min <- 1e-300
resp_spread_min <- 1e-150

# Covariate columns the arithmetic cannot carry: nonzero values below
# data_min in absolute value, or values that differ by less than data_min
# without being equal. `subject` starts the message ("The expert covariates
# of `formula`"); `names` names the columns of M.
check_column_range <- function(M, names, subject, arg, call) {
  cols <- function(bad) paste0("column", if (sum(bad) > 1L) "s" else "", " ",
                               paste0("`", names[bad], "`", collapse = ", "))
  tiny <- colSums(M != 0 & abs(M) < data_min) > 0
  if (any(tiny)) {
    abort(sprintf("%s must be 0 or at least 1e-300 in absolute value (rescale them); %s ha%s smaller nonzero values.",
                  subject, cols(tiny), if (sum(tiny) > 1L) "ve" else "s"),
          kind = "data", call = call, arg = arg)
  }
  rg <- apply(M, 2L, function(v) max(v) - min(v))
  narrow <- rg > 0 & rg < data_min
  if (any(narrow)) {
    abort(sprintf("%s must vary by 0 or at least 1e-300 (rescale or centre them); the values of %s differ by less.",
                  subject, cols(narrow)),
          kind = "data", call = call, arg = arg)
  }
}

check_design <- function(M, arg, what, call) {
  # refuse the columns flagged in `cols`: they must be `rule`, they have
  # `values` values
  refuse <- function(cols, rule, values) {
    if (!any(cols)) return(invisible())
    many <- sum(cols) > 1
    abort(sprintf("The %s covariates of `%s` must be %s; column%s %s ha%s %s values.",
                  what, arg, rule, if (many) "s" else "",
                  paste0("`", colnames(M)[cols], "`", collapse = ", "),
                  if (many) "ve" else "s", values),
          kind = "data", call = call, arg = arg)
  }
  refuse(colSums(!is.finite(M)) > 0, "finite", "infinite")
  refuse(colSums(abs(M) > data_max) > 0, "at most 1e100 in absolute value (rescale them)",
         "larger")
  if (ncol(M) == 0L) {
    abort(sprintf("`%s` gives no %s covariates; use `~ 1` for an intercept only.", arg, what),
          kind = "formula", call = call, arg = arg)
  }
  check_column_range(M, colnames(M), sprintf("The %s covariates of `%s`", what, arg), arg, call)
  qrM <- qr(M)
  if (qrM$rank < ncol(M)) {
    drop <- colnames(M)[qrM$pivot[seq.int(qrM$rank + 1L, ncol(M))]]
    abort(sprintf("The %s design of `%s` is rank deficient (collinear or constant columns): %s.",
                  what, arg, paste0("`", drop, "`", collapse = ", ")),
          kind = "collinear", call = call, arg = arg)
  }
}

# Checks of the matrix interfaces moe_em_fit() and moe_mcmc_fit(): types,
# shapes and finiteness of the data and K, cheap enough for simulation
# studies (no rank check). Returns the data coerced to doubles.
check_matrix_data <- function(y, X, Z, w, K, call = NULL) {
  if (is.matrix(y) && ncol(y) == 1L) y <- drop(y)
  if (!is.numeric(y) || is.matrix(y) || !length(y) || any(!is.finite(y)) ||
      any(abs(y) > data_max)) {
    abort(sprintf("`y` must be a non-empty vector of finite numbers at most 1e100 in absolute value, not %s.",
                  describe(y)),
          kind = "data", call = call, arg = "y")
  }
  check_response_range(y, "`y`", "y", call)
  n <- length(y)
  for (arg in c("X", "Z")) {
    M <- if (arg == "X") X else Z
    if (!is.matrix(M) || !is.numeric(M) || nrow(M) != n || ncol(M) < 1L || any(!is.finite(M)) ||
        any(abs(M) > data_max)) {
      abort(sprintf("`%s` must be a numeric matrix of finite values at most 1e100 in absolute value, with %d row%s (one per element of `y`) and at least one column, not %s.",
                    arg, n, if (n == 1L) "" else "s",
                    if (is.matrix(M)) sprintf("a %s %d x %d matrix", typeof(M), nrow(M), ncol(M))
                    else describe(M)),
            kind = "data", call = call, arg = arg)
    }
  }
  for (arg in c("X", "Z")) {
    M <- if (arg == "X") X else Z
    check_column_range(M, if (is.null(colnames(M))) seq_len(ncol(M)) else colnames(M),
                       sprintf("The values of `%s`", arg), arg, call)
  }
  if (!is.numeric(w) || is.matrix(w) || length(w) != n || any(!is.finite(w)) || any(w < 0)) {
    abort(sprintf("`w` must be %d finite non-negative weight%s (one per element of `y`), not %s.",
                  n, if (n == 1L) "" else "s", describe(w)),
          kind = "data", call = call, arg = "w")
  }
  used <- w > 0
  if (sum(used) < 2L || sd(y[used]) == 0) {
    abort("`y` must vary over at least two rows with positive weight; experts need variation in `y`.",
          kind = "data", call = call, arg = "y")
  }
  if (K > sum(used)) {
    abort(sprintf("`K` must be at most the number of rows with positive weight (%d), not %d.",
                  sum(used), K), kind = "input", call = call, arg = "K")
  }
  storage.mode(X) <- "double"
  storage.mode(Z) <- "double"
  # parameter names need column names
  if (is.null(colnames(X))) colnames(X) <- paste0("X", seq_len(ncol(X)))
  if (is.null(colnames(Z))) colnames(Z) <- paste0("Z", seq_len(ncol(Z)))
  for (arg in c("X", "Z")) {
    nm <- colnames(if (arg == "X") X else Z)
    if (anyDuplicated(nm) || anyNA(nm)) {
      abort(sprintf("`%s` must have distinct column names (parameters are named after them); %s repeated or missing.",
                    arg, paste0("`", unique(nm[duplicated(nm) | is.na(nm)]), "`", collapse = ", ")),
            kind = "data", call = call, arg = arg)
    }
  }
  list(y = as.double(y), X = X, Z = Z, w = as.double(w))
}

# Design matrices for new data, using the terms and factor levels of a fit.
new_design <- function(object, newdata) {
  tx <- delete.response(object$terms)
  tz <- delete.response(object$gating_terms)
  if (!is.data.frame(newdata) && !is.list(newdata)) {
    abort(sprintf("`newdata` must be a data frame, not %s.", describe(newdata)),
          kind = "data", arg = "newdata")
  }
  get_mm <- function(tt, levels, contrasts, ref, offset = FALSE) {
    check_new_levels(newdata, levels)
    mf <- tryCatch(model.frame(tt, newdata, na.action = na.pass, xlev = levels),
                   error = function(e) {
                     abort(sprintf("`newdata` lacks variables the fit needs: %s.",
                                   sub("\\.$", "", conditionMessage(e))),
                           kind = "data", arg = "newdata")
                   })
    M <- tryCatch(model.matrix(tt, mf, contrasts.arg = contrasts), error = function(e) NULL)
    # a variable of another type (character for numeric, ...) gives other
    # columns than the fit's design
    if (is.null(M) || !identical(colnames(M), ref)) {
      abort(sprintf("The variables of `newdata` must have the types they had in the fit: the design has columns %s, not %s.",
                    paste0("`", ref, "`", collapse = ", "),
                    if (is.null(M)) "none" else paste0("`", colnames(M), "`", collapse = ", ")),
            kind = "data", arg = "newdata")
    }
    if (any(is.infinite(M))) {
      abort("The covariates of `newdata` must be finite or NA (NA gives NA predictions); they have infinite values.",
            kind = "data", arg = "newdata")
    }
    # the bound of the data of a fit: beyond it logits and means overflow
    if (any(abs(M) > data_max, na.rm = TRUE)) {
      abort(sprintf("The covariates of `newdata` must be at most 1e100 in absolute value, as in the data of a fit (rescale them); the design has %s.",
                    format(max(abs(M), na.rm = TRUE), digits = 3)),
            kind = "data", arg = "newdata")
    }
    if (offset) {
      o <- model.offset(mf)
      if (is.null(o)) o <- 0
      if (!is.numeric(o) || any(is.infinite(o)) || any(abs(o) > data_max, na.rm = TRUE)) {
        abort("The `offset()` of the fit evaluated in `newdata` must be finite or NA (NA gives NA predictions) and at most 1e100 in absolute value.",
              kind = "data", arg = "newdata")
      }
      attr(M, "offset") <- rep_len(as.numeric(o), nrow(M))
    }
    M
  }
  X <- get_mm(tx, object$xlevels, object$contrasts, colnames(object$X), offset = TRUE)
  offset <- attr(X, "offset")
  attr(X, "offset") <- NULL
  Z <- get_mm(tz, object$zlevels, object$zcontrasts, colnames(object$Z))
  y <- NULL
  resp <- all.vars(object$terms)[attr(object$terms, "response")]
  if (length(resp) == 1L && is.data.frame(newdata) && resp %in% names(newdata)) {
    y <- tryCatch(eval(object$formula[[2L]], newdata, environment(object$formula)),
                  error = function(e) NULL)
    # GLM experts: the response as glm() takes it (R/family-glm.R)
    if (!is.null(y) && is_glm_expert(object$expert)) {
      r <- glm_response(object$expert, y, NULL)
      return(list(X = X, Z = Z, y = r$y, offset = offset, trials = r$trials))
    }
    if (!is.null(y) && (!is.numeric(y) || length(y) != nrow(X) || any(is.infinite(y)) ||
                        any(abs(y) > data_max, na.rm = TRUE))) {
      abort(sprintf("The response in `newdata` must be numeric, finite or NA and at most 1e100 in absolute value, with one value per row; %s.",
                    if (is.factor(y)) "it is a factor" else if (is.numeric(y) && length(y) == nrow(X))
                      "it has infinite or larger values" else sprintf("it is %s", describe(y))),
            kind = "data", arg = "newdata")
    }
    if (!is.null(y)) y <- as.numeric(y) - offset
  }
  # without an offset in the fit it is 0 (a vector, so rows line up)
  list(X = X, Z = Z, y = y, offset = offset)
}

# Values of the factors of `newdata` that the fit did not see (`levels`:
# the xlevels of the fit), reported by name before model.frame() fails.
check_new_levels <- function(newdata, levels) {
  for (v in intersect(names(levels), names(newdata))) {
    vals <- newdata[[v]]
    if (!is.factor(vals) && !is.character(vals)) next
    vals <- unique(as.character(vals[!is.na(vals)]))
    new <- setdiff(vals, levels[[v]])
    if (length(new)) {
      abort(sprintf("`newdata` has %s of factor `%s` that the fit did not see: %s (the fit knows %s).",
                    if (length(new) == 1L) "a level" else "levels", v,
                    paste0("\"", new, "\"", collapse = ", "),
                    paste0("\"", levels[[v]], "\"", collapse = ", ")),
            kind = "data", arg = "newdata")
    }
  }
}

# Map parameters between the internal and the original scale: the expert
# and gate generics of the parameter list's `spec` (R/spec.R; the
# softmax gate with linear experts when it has none) map their own
# parameters; the result carries the spec.
par_to_original <- function(sc, par) {
  out <- gate_to_original(spec_gate(par$spec), sc, par)
  out$alpha <- expert_to_original(spec_expert(par$spec), sc, par$alpha)
  out$sigma2 <- sc$sy^2 * par$sigma2
  out$spec <- make_spec(spec_gate(par$spec), spec_expert(par$spec))
  out
}

par_to_internal <- function(sc, par) {
  out <- gate_to_internal(spec_gate(par$spec), sc, par)
  out$alpha <- expert_to_internal(spec_expert(par$spec), sc, par$alpha)
  out$sigma2 <- par$sigma2 / sc$sy^2
  out$spec <- make_spec(spec_gate(par$spec), spec_expert(par$spec))
  out
}

# Number of parameters against the number of usable rows, checked up front
# by the front ends after moe_frame(), as `K` is checked against the rows
# there. More parameters than rows is warned of (class
# bayesmoe_warning_overparameterised): the maximum likelihood estimate
# degenerates (experts collapse onto few rows, which the EM reports) and the
# posterior is driven by the prior. More than `npar_ratio` times the rows
# is refused with the count: such a run cannot learn from the data and is
# slow. Returns the number of parameters.
npar_ratio <- 10

check_npar <- function(gate, expert, K, fr, method = c("em", "mcmc"), call = NULL) {
  method <- match.arg(method)
  npar <- length(par_names(colnames(fr$X), colnames(fr$Z), K, make_spec(gate, expert)))
  n_used <- sum(fr$weights > 0)
  ffn <- inherits(expert, "moe_expert_ffn")
  what <- sprintf("%d expert%s%s ha%s %d parameters", K, if (K == 1L) "" else "s",
                  if (ffn) sprintf(" with %d hidden unit%s", expert$hidden,
                                   if (expert$hidden == 1L) "" else "s") else "",
                  if (K == 1L) "s" else "ve", npar)
  smaller <- if (ffn) "a smaller `K` or fewer hidden units" else "a smaller `K`"
  if (npar > npar_ratio * n_used) {
    abort(sprintf("The model must have at most %d times as many parameters as usable rows (%d): %s. Use %s, or more data.",
                  npar_ratio, n_used, what, smaller),
          kind = "input", call = call, arg = if (ffn && K == 1L) "expert" else "K")
  }
  if (npar > n_used) {
    warn(sprintf("The model has more parameters than usable rows (%d): %s. %s; consider %s.",
                 n_used, what,
                 if (method == "em") "The maximum likelihood estimate degenerates (experts collapse onto few rows)"
                 else "The posterior is driven by the prior",
                 smaller),
         kind = "overparameterised", call = call)
  }
  invisible(npar)
}
