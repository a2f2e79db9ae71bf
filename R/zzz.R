# Package load hook: lazy registration of S3 methods for generics of packages
# in Suggests (posterior::as_draws_array(), coda::as.mcmc.list()).

.onLoad <- function(libname, pkgname) {
  s3_register("posterior::as_draws_array", "moe_mcmc")
  s3_register("coda::as.mcmc.list", "moe_mcmc")
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
