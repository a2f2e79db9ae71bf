`%||%` <- function(a, b) if (is.null(a)) b else a

# Shared machinery of the malformed-input tests: run a call and classify the
# outcome as a valid result, a classed bayesmoe error, or a defect (any other
# error, or a result with non-finite values where finite ones are promised).
classify_call <- function(expr_fun, validate) {
  out <- tryCatch(
    withCallingHandlers(list(kind = "value", value = expr_fun()),
                        warning = function(w) invokeRestart("muffleWarning")),
    bayesmoe_error = function(e) list(kind = "classed_error", message = conditionMessage(e)),
    error = function(e) list(kind = "other_error", message = conditionMessage(e)))
  if (out$kind == "value") {
    ok <- tryCatch(isTRUE(validate(out$value)), error = function(e) FALSE)
    if (!ok) out$kind <- "invalid_value"
  }
  out
}

# A fit is valid when its log-likelihood and every parameter are finite and
# the variances positive.
valid_fit <- function(fit) {
  inherits(fit, "moe_fit") && is.finite(as.numeric(logLik(fit))) &&
    all(is.finite(unlist(fit$coefficients))) && all(fit$coefficients$sigma2 > 0)
}

# A pool of values that do not belong where a scalar number or a formula is
# expected.
nasty_values <- list(NULL, NA, NA_real_, NaN, Inf, -Inf, 0, -1, 1.5, 1e8, 1e-8, -1e-8,
                     "a", TRUE, FALSE, list(), 1:3, c(2, 3), character(0), numeric(0),
                     factor("a"), mean, data.frame(), matrix(1, 2, 2), 2L, 1e300,
                     .Machine$integer.max + 1)
