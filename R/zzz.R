# Package load hook: lazy registration of S3 methods for generics of packages
# in Suggests (posterior, coda, rstantools, loo; methods in R/draws.R).

.onLoad <- function(libname, pkgname) {
  for (g in c("as_draws", "as_draws_array", "as_draws_df", "as_draws_matrix",
              "as_draws_list", "as_draws_rvars")) {
    s3_register(paste0("posterior::", g), "moe_mcmc")
  }
  s3_register("coda::as.mcmc", "moe_mcmc")
  s3_register("coda::as.mcmc.list", "moe_mcmc")
  s3_register("rstantools::posterior_predict", "moe_mcmc")
  s3_register("rstantools::posterior_epred", "moe_mcmc")
  s3_register("rstantools::log_lik", "moe_mcmc")
  s3_register("loo::loo", "moe_mcmc")
  s3_register("loo::waic", "moe_mcmc")
  # other fits (EM) get a classed error instead of "no applicable method"
  for (g in c("rstantools::posterior_predict", "rstantools::posterior_epred",
              "rstantools::log_lik")) {
    s3_register(g, "moe_fit", method = mcmc_only_method("object"))
  }
  for (g in c("loo::loo", "loo::waic")) s3_register(g, "moe_fit", method = mcmc_only_method("x"))
  invisible()
}

# Register `method` (by default the function `<generic>.<class>` of this
# namespace) for the S3 generic "pkg::generic" now if pkg is loaded, and
# whenever pkg is loaded later, without importing pkg (the approach of vctrs'
# s3_register()).
s3_register <- function(generic, class, method = NULL) {
  pieces <- strsplit(generic, "::", fixed = TRUE)[[1L]]
  if (length(pieces) != 2L) stop("internal error: `generic` must be \"pkg::generic\".")
  package <- pieces[[1L]]
  generic <- pieces[[2L]]
  if (is.null(method)) {
    method <- get(paste0(generic, ".", class), envir = topenv(parent.frame()))
  }
  register <- function(...) {
    envir <- asNamespace(package)
    if (exists(generic, envir = envir, inherits = FALSE)) {
      registerS3method(generic, class, method, envir = envir)
    }
  }
  setHook(packageEvent(package, "onLoad"), register)
  if (isNamespaceLoaded(package)) register()
  invisible()
}
