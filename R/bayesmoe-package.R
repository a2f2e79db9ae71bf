#' bayesmoe: Bayesian and maximum-likelihood softmax-gated mixture of experts
#'
#' Mixture-of-experts regression with a softmax gating network, fitted by EM
#' ([moe_em()]) with the hot loops in C.
#'
#' @keywords internal
#' @useDynLib bayesmoe, .registration = TRUE
#' @importFrom stats AIC BIC coef dnorm fitted logLik median model.frame
#'   model.matrix model.offset model.response model.weights nobs pnorm predict
#'   printCoefmat rnorm runif sd setNames simulate terms gaussian
#'   delete.response .getXlevels na.pass vcov residuals
#' @importFrom utils head tail
"_PACKAGE"
