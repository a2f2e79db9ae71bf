# Classed conditions and argument checks shared by every front end.
#
# Every user-facing error is an `errorCondition()` with classes
# `bayesmoe_error_<kind>` and `bayesmoe_error`, raised before any C code runs.
# Messages follow the form "`arg` must be <what>, not <value>."

abort <- function(message, kind = "input", call = NULL, ...) {
  cnd <- errorCondition(message,
                        class = c(paste0("bayesmoe_error_", kind), "bayesmoe_error"),
                        call = call, ...)
  stop(cnd)
}

warn <- function(message, kind, call = NULL, ...) {
  cnd <- warningCondition(message,
                          class = c(paste0("bayesmoe_warning_", kind), "bayesmoe_warning"),
                          call = call, ...)
  warning(cnd)
}

# A short description of a value for error messages.
describe <- function(x) {
  if (is.null(x)) return("NULL")
  if (inherits(x, "formula")) {
    return(if (length(x) == 2L) "a one-sided formula" else "a two-sided formula")
  }
  if (is.function(x)) return("a function")
  if (is.data.frame(x)) return("a data frame")
  if (is.list(x)) return(sprintf("a list of length %d", length(x)))
  if (length(x) == 0L) return(sprintf("an empty %s vector", typeof(x)))
  if (length(x) > 1L) {
    cl <- class(x)[1L]
    return(sprintf("%s %s vector of length %d",
                   if (grepl("^[aeiou]", cl)) "an" else "a", cl, length(x)))
  }
  if (is.character(x)) return(sprintf("\"%s\"", x))
  if (is.factor(x)) return("a factor")
  if (is.logical(x) || is.numeric(x)) return(format(x, digits = 7))
  class(x)[1L]
}

check_number <- function(x, arg, lower = -Inf, upper = Inf, whole = FALSE,
                         strict_lower = FALSE, allow_inf = FALSE, call = NULL) {
  what <- if (whole) "a whole number" else "a number"
  bounds <- if (is.finite(lower) && strict_lower) {
    sprintf(" > %s", format(lower))
  } else if (is.finite(lower)) {
    sprintf(" >= %s", format(lower))
  } else ""
  if (is.finite(upper)) bounds <- paste0(bounds, if (nzchar(bounds)) " and" else "",
                                         sprintf(" <= %s", format(upper)))
  ok <- is.numeric(x) && length(x) == 1L && !is.na(x) &&
    (allow_inf || is.finite(x))
  if (ok && whole) ok <- is.infinite(x) || abs(x - round(x)) < 1e-8
  if (ok) ok <- (if (strict_lower) x > lower else x >= lower) && x <= upper
  if (!ok) {
    abort(sprintf("`%s` must be %s%s, not %s.", arg, what, bounds, describe(x)),
          kind = "input", call = call, arg = arg)
  }
  if (whole && is.finite(x) && abs(x) > .Machine$integer.max) {
    abort(sprintf("`%s` must be a whole number of at most %d in absolute value, not %s.",
                  arg, .Machine$integer.max, describe(x)),
          kind = "input", call = call, arg = arg)
  }
  if (whole && is.finite(x)) as.integer(round(x)) else as.numeric(x)
}

check_flag <- function(x, arg, call = NULL) {
  if (!is.logical(x) || length(x) != 1L || is.na(x)) {
    abort(sprintf("`%s` must be TRUE or FALSE, not %s.", arg, describe(x)),
          call = call, arg = arg)
  }
  x
}

check_seed <- function(seed, call = NULL) {
  if (is.null(seed)) return(NULL)
  check_number(seed, "seed", whole = TRUE, call = call)
}

# match.arg() with a classed error naming the argument: `x` is the user's
# value (the whole default vector means "the first choice"), exact or unique
# partial matches are accepted.
check_choice <- function(x, choices, arg, call = NULL) {
  if (identical(x, choices)) return(choices[1L])
  if (is.character(x) && length(x) == 1L && !is.na(x)) {
    i <- pmatch(x, choices)
    if (!is.na(i)) return(choices[i])
  }
  abort(sprintf("`%s` must be one of %s, not %s.", arg,
                paste0("\"", choices, "\"", collapse = ", "), describe(x)),
        call = call, arg = arg)
}

# `digits` of a print method: NULL means the default, otherwise a whole number
# from 1 to 22 (the range print() accepts).
check_digits <- function(digits, call = NULL) {
  if (is.null(digits)) return(max(3L, getOption("digits") - 3L))
  check_number(digits, "digits", lower = 1, upper = 22, whole = TRUE, call = call)
}

# `...` of a function that takes no further arguments must be empty: a
# misspelt or unsupported argument (`se = TRUE`, `interval = "confidence"`
# where there is none) is an error naming it, never silently ignored. Call
# as `check_dots_empty(call, ...)`; the arguments are not evaluated.
check_dots_empty <- function(call, ...) {
  n <- ...length()
  if (!n) return(invisible())
  nm <- names(match.call(expand.dots = FALSE)$...)
  if (is.null(nm)) nm <- character(n)
  nm[!nzchar(nm)] <- paste0("..", which(!nzchar(nm)))
  abort(sprintf("`...` must be empty; unknown argument%s %s.", if (n > 1L) "s" else "",
                paste0("`", nm, "`", collapse = ", ")),
        call = call, arg = "...", dots = nm)
}

# `control` must come from its constructor `ctor` (a function name).
check_control <- function(control, ctor, call = NULL) {
  if (!inherits(control, ctor)) {
    abort(sprintf("`control` must be made by `%s()`, not %s.", ctor, describe(control)),
          call = call, arg = "control")
  }
  invisible(control)
}

# The arguments the fitting front ends share: `K` (required), `starts`,
# `seed` and a `control` made by `ctor`, checked in that order. Returns
# list(K, starts, seed).
check_fit_args <- function(K, starts, seed, control, ctor, call = NULL) {
  if (missing(K)) abort("`K` must be supplied: the number of experts.", call = call, arg = "K")
  K <- check_number(K, "K", lower = 1, whole = TRUE, call = call)
  starts <- check_number(starts, "starts", lower = 1, whole = TRUE, call = call)
  seed <- check_seed(seed, call)
  check_control(control, ctor, call)
  list(K = K, starts = starts, seed = seed)
}

# A short description of a fit (its class) or of any other value, for error
# messages.
describe_fit <- function(x) {
  if (is.object(x)) sprintf("an object of class \"%s\"", class(x)[1L]) else describe(x)
}

# `level` of an interval: a number strictly between 0 and 1.
check_level <- function(level, call = NULL) {
  if (!is.numeric(level) || length(level) != 1L || is.na(level) || !(level > 0 && level < 1)) {
    abort(sprintf("`level` must be a number strictly between 0 and 1, not %s.",
                  describe(level)), call = call, arg = "level")
  }
  level
}
