#' Tone perception data
#'
#' The classic example of a mixture of regressions: in a tone perception
#' experiment a pure fundamental tone was played to a trained musician
#' together with electronically generated overtones whose frequencies were
#' stretched by a ratio; the musician tuned an adjustable tone to the
#' perceived octave of the fundamental. Two strategies appear: some answers
#' follow the stretched overtones (tuned ratio close to the stretch ratio),
#' others the fundamental (tuned ratio close to 2).
#'
#' @format A data frame with 150 rows (trials) and 2 variables:
#' \describe{
#'   \item{stretchratio}{Ratio by which the overtones were stretched.}
#'   \item{tuned}{Ratio of the tone the musician tuned to the fundamental.}
#' }
#' @source Cohen, E. A. (1984). Some effects of inharmonic partials on
#'   interval perception. *Music Perception* 1(3), 323--349.
#'   Copied from the `tonedata` data set of the mixtools package (version
#'   2.0.0, GPL >= 2), Benaglia, Chauveau, Hunter and Young (2009),
#'   *Journal of Statistical Software* 32(6).
#' @references De Veaux, R. D. (1989). Mixtures of linear regressions.
#'   *Computational Statistics & Data Analysis* 8(3), 227--245.
#' @examples
#' plot(tuned ~ stretchratio, data = tonedata)
"tonedata"
