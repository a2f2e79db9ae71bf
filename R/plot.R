# Base-graphics plots of fits. Curves against one covariate hold the other
# covariates at their median (numeric) or most frequent level (factor).

#' Plot a mixture-of-experts fit
#'
#' `what = "fit"` draws the data against one covariate, coloured by the most
#' likely expert, with every expert's mean and the predictive mean;
#' `"gating"` the gating probabilities against the covariate; `"loglik"`
#' (EM fits) the log-likelihood over the EM iterations. MCMC fits add
#' credible bands and the `"trace"` and `"density"` plots of the draws.
#'
#' @param x A fit from [moe_em()] or `moe_mcmc()`.
#' @param what Which plot.
#' @param covariate Name of the covariate for the horizontal axis; by default
#'   the first numeric variable of the model.
#' @param ... Further graphical parameters passed to [plot()].
#' @return `x`, invisibly.
#' @examples
#' fit <- moe_em(tuned ~ stretchratio, data = tonedata, K = 2, seed = 1)
#' plot(fit)
#' plot(fit, what = "gating")
#' plot(fit, what = "loglik")
#' @export
plot.moe_em <- function(x, what = c("fit", "gating", "loglik"), covariate = NULL, ...) {
  validate_moe_fit(x, "x")
  what <- check_choice(what, c("fit", "gating", "loglik"), "what")
  switch(what,
    fit = plot_fit(x, covariate, ...),
    gating = plot_gating(x, covariate, ...),
    loglik = plot(seq_along(x$trace), x$trace, type = "l", xlab = "EM iteration",
                  ylab = "log-likelihood", main = "EM log-likelihood", ...))
  invisible(x)
}

expert_colours <- function(K) {
  grDevices::hcl.colors(max(K, 2L), palette = "Dark 3")[seq_len(K)]
}

plot_covariate <- function(x, covariate) {
  mf <- x$model
  vars <- setdiff(unique(c(all.vars(delete.response(x$terms)),
                           all.vars(x$gating_terms))), all.vars(x$formula[[2L]]))
  numeric_vars <- vars[vapply(vars, function(v) v %in% names(mf) && is.numeric(mf[[v]]), TRUE)]
  if (is.null(covariate)) {
    if (!length(numeric_vars)) {
      abort("The model has no numeric covariate to plot against; give `covariate`.",
            kind = "input", arg = "covariate")
    }
    covariate <- numeric_vars[1L]
  }
  if (!is.character(covariate) || length(covariate) != 1L || !covariate %in% numeric_vars) {
    abort(sprintf("`covariate` must name a numeric covariate of the model (%s), not %s.",
                  paste0("\"", numeric_vars, "\"", collapse = ", "), describe(covariate)),
          kind = "input", arg = "covariate")
  }
  covariate
}

# A data frame varying `covariate` over its range, others at typical values.
covariate_grid <- function(x, covariate, length.out = 200L) {
  mf <- x$model
  rng <- range(mf[[covariate]])
  grid <- data.frame(seq(rng[1L], rng[2L], length.out = length.out))
  names(grid) <- covariate
  for (v in setdiff(names(mf), c(covariate, "(weights)"))) {
    col <- mf[[v]]
    if (is.matrix(col)) next
    grid[[v]] <- if (is.numeric(col)) stats::median(col) else {
      tab <- table(col)
      factor(names(tab)[which.max(tab)], levels = levels(as.factor(col)))
    }
  }
  grid
}

# `main` is short enough for a panel of half the usual figure width; the
# legend tells the expert means from the predictive mean.
plot_fit <- function(x, covariate = NULL, bands = NULL,
                     main = "Fitted means", ...) {
  covariate <- plot_covariate(x, covariate)
  xv <- x$model[[covariate]]
  K <- x$K
  cols <- expert_colours(K)
  map <- max.col(responsibilities(moe_point(x), x$X, x$Z, x$y), ties.method = "first")
  grid <- covariate_grid(x, covariate)
  em <- predict(x, grid, type = "expert")
  pm <- predict(x, grid, type = "mean")
  yobs <- x$y + fit_offset(x)  # x$y is the response minus the offset
  ylim <- range(yobs, if (!is.null(bands)) bands)
  plot(xv, yobs, col = grDevices::adjustcolor(cols[map], 0.7), pch = 19, cex = 0.6,
       xlab = covariate, ylab = deparse(x$formula[[2L]]), ylim = ylim,
       main = main, ...)
  if (!is.null(bands)) {
    graphics::polygon(c(grid[[covariate]], rev(grid[[covariate]])),
                      c(bands[, 1L], rev(bands[, 2L])),
                      col = grDevices::adjustcolor("grey40", 0.25), border = NA)
  }
  for (k in seq_len(K)) graphics::lines(grid[[covariate]], em[, k], col = cols[k], lty = 2, lwd = 2)
  graphics::lines(grid[[covariate]], pm, lwd = 2)
  graphics::legend("topleft", legend = c(paste("expert", seq_len(K)), "predictive mean"),
                   col = c(cols, "black"), lty = c(rep(2, K), 1), lwd = 2, bty = "n", cex = 0.8)
  invisible(grid)
}

plot_gating <- function(x, covariate = NULL, bands = NULL, main = "Gating probabilities", ...) {
  covariate <- plot_covariate(x, covariate)
  grid <- covariate_grid(x, covariate)
  g <- predict(x, grid, type = "gating")
  cols <- expert_colours(x$K)
  graphics::matplot(grid[[covariate]], g, type = "l", lty = 1, lwd = 2, col = cols,
                    ylim = c(0, 1), xlab = covariate, ylab = "gating probability",
                    main = main, ...)
  if (!is.null(bands)) {
    for (k in seq_len(x$K)) {
      graphics::polygon(c(grid[[covariate]], rev(grid[[covariate]])),
                        c(bands$lower[, k], rev(bands$upper[, k])),
                        col = grDevices::adjustcolor(cols[k], 0.2), border = NA)
    }
  }
  graphics::legend("right", legend = paste("expert", seq_len(x$K)), col = cols,
                   lty = 1, lwd = 2, bty = "n", cex = 0.8)
  invisible(grid)
}
