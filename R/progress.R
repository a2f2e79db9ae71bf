# Progress of long calls, reported through progressr (in Suggests) when it
# is installed: one progressor per call of moe_mcmc() (a step per chain),
# moe_select() (a step per K and method) and moe_contraction() (a step per
# (n, replicate) task), labelled with the call and its size, each step with
# a message saying what was done. progressr only signals conditions: nothing
# is shown unless the user enables handlers (`progressr::handlers(global =
# TRUE)` or `progressr::with_progress()`, and in batch mode
# `options(progressr.enable = TRUE)`), and the steps reach the user from
# future workers too.
#
# Calls made inside a reporting call (the fits of moe_select() or of a
# contraction task) open no progressor of their own: their messages go to
# the outer one without advancing it (amount 0), so there is one bar. The
# reporter of the call in progress is the option `bayesmoe.progress` of the
# R process (NULL when none), so that the calls in a future's worker find
# the one their task set, whatever version of the package the worker loads.

# A reporter `tick(message, amount = 1)` for a call of `steps` steps labelled
# `label`; its progressor finishes when the frame `envir` exits. The caller
# must `on.exit(progress_close(tick), add = TRUE)`.
progress_open <- function(steps, label, envir = parent.frame()) {
  outer <- getOption("bayesmoe.progress")
  if (is.function(outer)) return(nested_tick(outer))
  if (!requireNamespace("progressr", quietly = TRUE)) return(void_tick)
  tick <- progressor_tick(progressr::progressor(steps = steps, label = label, envir = envir))
  options(bayesmoe.progress = tick)
  tick
}

progress_close <- function(tick) {
  if (identical(getOption("bayesmoe.progress"), tick)) options(bayesmoe.progress = NULL)
  invisible()
}

# The reporters are made by small top-level functions so that their
# environments hold nothing but the progressor (they travel to futures).
void_tick <- function(message = NULL, amount = 1) invisible()

progressor_tick <- function(p) {
  force(p)
  function(message = NULL, amount = 1) {
    if (is.null(message)) p(amount = amount) else p(message = message, amount = amount)
    invisible()
  }
}

nested_tick <- function(outer) {
  force(outer)
  function(message = NULL, amount = 1) outer(message, amount = 0)
}

# `FUN(i, ...)` for lapply() / future_lapply() that reports a step with
# message `labels[i]` when it returns (none when `labels` is NULL: FUN
# reports its own steps), and makes the calls inside it (also in a future's
# worker) report to `tick`. The returned function refers only to
# base R and to the objects in its environment.
progress_wrap <- function(FUN, tick, labels) {
  force(FUN)
  force(tick)
  force(labels)
  nest <- nested_tick
  function(i, ...) {
    old <- options(bayesmoe.progress = nest(tick))
    on.exit(options(old), add = TRUE)
    res <- FUN(i, ...)
    if (!is.null(labels)) tick(labels[i])
    res
  }
}
