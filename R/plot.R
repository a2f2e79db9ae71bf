# Base-graphics plots of fits. Curves against one covariate hold the other
# covariates at their median (numeric) or most frequent level (factor).

#' Plot a mixture-of-experts fit
#'
#' `what = "fit"` draws the data against one covariate, each point coloured
#' by its most probable expert (largest membership probability), every
#' expert's mean in its colour with an opacity equal to its gating
#' probability (a line fades out where its gate carries no weight) and the
#' predictive mean dashed; `"gating"` the gating probabilities against the
#' covariate; `"loglik"` (EM fits) the log-likelihood over the EM
#' iterations. MCMC fits add credible bands (named in the legend) and the
#' `"trace"` and `"density"` plots of the draws. Legends go to the corner or
#' side where they cover the fewest points, lines and bands.
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
  # variables only inside offset() terms are not columns of the model frame:
  # their medians in the data of the fit, when it can be found
  miss <- setdiff(all.vars(delete.response(x$terms)), names(grid))
  if (length(miss)) {
    dat <- tryCatch(eval(x$call$data, environment(x$formula)), error = function(e) NULL)
    for (v in miss) {
      if (is.list(dat) && is.numeric(dat[[v]])) grid[[v]] <- stats::median(dat[[v]])
    }
  }
  grid
}

# Data against the covariate, each point coloured by its most probable
# expert (largest membership probability); each expert's mean drawn with an
# opacity equal to its gating probability, so a line fades out where its gate
# carries no weight; the predictive mean dashed; the band `bands` (columns
# lower, upper on the grid) shaded and named `band_label` in the legend. The
# legend goes where it covers the fewest points, lines and band.
plot_fit <- function(x, covariate = NULL, bands = NULL, band_label = NULL,
                     main = "Fitted means", ...) {
  covariate <- plot_covariate(x, covariate)
  xv <- x$model[[covariate]]
  K <- x$K
  cols <- expert_colours(K)
  map <- max.col(responsibilities(moe_point(x), x$X, x$Z, x$y, x$offset, x$trials),
                 ties.method = "first")
  grid <- covariate_grid(x, covariate)
  gx <- grid[[covariate]]
  em <- predict(x, grid, type = "expert")
  pm <- predict(x, grid, type = "mean")
  g <- predict(x, grid, type = "gating")
  # x$y is the response minus the offset (GLM experts: the response)
  yobs <- if (is_glm_expert(x$expert)) x$y else x$y + fit_offset(x)
  ylim <- range(yobs, if (!is.null(bands)) bands, finite = TRUE)
  plot(xv, yobs, col = grDevices::adjustcolor(cols[map], 0.7), pch = 19, cex = 0.6,
       xlab = covariate, ylab = deparse(x$formula[[2L]]), ylim = ylim,
       main = main, ...)
  if (!is.null(bands)) {
    graphics::polygon(c(gx, rev(gx)), c(bands[, 1L], rev(bands[, 2L])),
                      col = grDevices::adjustcolor("grey40", 0.25), border = NA)
  }
  m <- length(gx)
  for (k in seq_len(K)) {
    # opacity of each segment: the gating probability at its midpoint
    a <- pmin(1, pmax(0.03, (g[-1L, k] + g[-m, k]) / 2))
    rgbk <- grDevices::col2rgb(cols[k]) / 255
    graphics::segments(gx[-m], em[-m, k], gx[-1L], em[-1L, k], lwd = 2.5,
                       col = grDevices::rgb(rep(rgbk[1L], m - 1L), rep(rgbk[2L], m - 1L),
                                            rep(rgbk[3L], m - 1L), alpha = a))
  }
  graphics::lines(gx, pm, lwd = 2, lty = 2)
  leg <- c(paste("expert", seq_len(K)), "predictive mean")
  lcol <- c(cols, "black")
  lty <- c(rep(1, K), 2)
  pch <- c(rep(19, K), NA)
  fill <- NULL
  if (!is.null(bands)) {
    leg <- c(leg, if (is.null(band_label)) "band" else band_label)
    lcol <- c(lcol, grDevices::adjustcolor("grey40", 0.25))
    lty <- c(lty, NA)
    pch <- c(pch, 15)
  }
  occupied <- rbind(cbind(xv, yobs, yobs),
                    cbind(rep(gx, K + 1L), c(em, pm), c(em, pm)),
                    if (!is.null(bands)) cbind(gx, bands[, 1L], bands[, 2L]))
  args <- list(legend = leg, col = lcol, lty = lty, pch = pch, lwd = 2, pt.cex = 1.2,
               bty = "n", cex = 0.8, inset = 0.01,
               title = "points: most probable expert", title.adj = 0)
  do.call(graphics::legend, c(list(legend_spot(args, occupied)), args))
  invisible(grid)
}

# The legend position (a keyword of legend()) whose box covers the fewest of
# the `occupied` items: rows (x, low, high), a point when low = high, a
# vertical stretch of a band otherwise. Needs the plot to be drawn.
legend_spot <- function(args, occupied,
                        spots = c("topright", "topleft", "bottomright", "bottomleft",
                                  "top", "bottom", "right", "left")) {
  ok <- stats::complete.cases(occupied)
  occupied <- occupied[ok, , drop = FALSE]
  hits <- vapply(spots, function(s) {
    r <- do.call(graphics::legend, c(list(s), args, list(plot = FALSE)))$rect
    sum(occupied[, 1L] >= r$left & occupied[, 1L] <= r$left + r$w &
          occupied[, 3L] >= r$top - r$h & occupied[, 2L] <= r$top)
  }, 0)
  spots[which.min(hits)]
}

plot_gating <- function(x, covariate = NULL, bands = NULL, band_label = NULL,
                        main = "Gating probabilities", ...) {
  covariate <- plot_covariate(x, covariate)
  grid <- covariate_grid(x, covariate)
  gx <- grid[[covariate]]
  g <- predict(x, grid, type = "gating")
  K <- x$K
  cols <- expert_colours(K)
  graphics::matplot(gx, g, type = "l", lty = 1, lwd = 2, col = cols,
                    ylim = c(0, 1), xlab = covariate, ylab = "gating probability",
                    main = main, ...)
  if (!is.null(bands)) {
    for (k in seq_len(K)) {
      graphics::polygon(c(gx, rev(gx)), c(bands$lower[, k], rev(bands$upper[, k])),
                        col = grDevices::adjustcolor(cols[k], 0.2), border = NA)
    }
  }
  leg <- paste("expert", seq_len(K))
  pch <- NA
  if (!is.null(bands)) {
    leg <- c(leg, if (is.null(band_label)) "band" else band_label)
    cols <- c(cols, grDevices::adjustcolor("grey40", 0.3))
    pch <- c(rep(NA, K), 15)
  }
  occupied <- rbind(cbind(rep(gx, K), as.vector(g), as.vector(g)),
                    if (!is.null(bands)) cbind(rep(gx, K), as.vector(bands$lower),
                                               as.vector(bands$upper)))
  args <- list(legend = leg, col = cols, lty = c(rep(1, K), if (!is.null(bands)) NA),
               pch = pch, pt.cex = 1.5, lwd = 2, bty = "n", cex = 0.8, inset = 0.01)
  do.call(graphics::legend, c(list(legend_spot(args, occupied)), args))
  invisible(grid)
}
