# Install the R packages needed to build, test and check bayesmoe and to
# build its vignettes, when they are missing. On Debian/Ubuntu as root the
# prebuilt r-cran-* binaries (and pandoc and qpdf) are used, which takes a minute;
# elsewhere packages come from CRAN with install.packages().
#
# Usage: Rscript tools/install-deps.R [--bench] [--site]
# --site adds pkgdown, for `make site` only (not a check dependency).
args <- commandArgs(trailingOnly = TRUE)
need <- c("knitr", "rmarkdown", "testthat", "roxygen2", "coda", "posterior",
          "loo", "future", "future.apply", "flexmix", "pkgload", "pkgbuild", "progressr",
          "bayesplot", "rstantools")
if ("--bench" %in% args) need <- c(need, "bench", "brms", "rstan")
if ("--site" %in% args) need <- c(need, "pkgdown")
installed <- rownames(installed.packages())
missing <- setdiff(need, installed)
have_pandoc <- nzchar(Sys.which("pandoc"))
# qpdf: `R CMD check --as-cran` warns without it (PDF size checks)
have_qpdf <- nzchar(Sys.which("qpdf"))

apt_ok <- nzchar(Sys.which("apt-get")) && identical(Sys.info()[["effective_user"]], "root")
if (apt_ok && (length(missing) || !have_pandoc || !have_qpdf)) {
  debs <- c(paste0("r-cran-", tolower(missing)), if (!have_pandoc) "pandoc",
            if (!have_qpdf) "qpdf")
  message("Installing with apt-get: ", paste(debs, collapse = " "))
  system2("apt-get", c("update", "-qq"))
  for (d in debs) {
    rc <- system2("apt-get", c("install", "-y", "-qq", "--no-install-recommends", d),
                  env = "DEBIAN_FRONTEND=noninteractive")
    if (rc != 0) message("apt-get could not install ", d, "; will try CRAN")
  }
  missing <- setdiff(need, rownames(installed.packages()))
}
if (length(missing)) {
  message("Installing from CRAN: ", paste(missing, collapse = " "))
  repos <- getOption("repos")
  if (is.null(repos) || identical(unname(repos["CRAN"]), "@CRAN@")) {
    repos <- c(CRAN = "https://cloud.r-project.org")
  }
  lib <- .libPaths()[1L]
  if (file.access(lib, 2L) != 0L) {
    lib <- Sys.getenv("R_LIBS_USER")
    dir.create(lib, recursive = TRUE, showWarnings = FALSE)
    .libPaths(c(lib, .libPaths()))
  }
  install.packages(missing, repos = repos, lib = lib)
}
still <- setdiff(need, rownames(installed.packages()))
if (length(still)) stop("Could not install: ", paste(still, collapse = ", "))
if (!nzchar(Sys.which("pandoc")) && !(requireNamespace("rmarkdown", quietly = TRUE) &&
                                      rmarkdown::pandoc_available())) {
  stop("pandoc is needed to build the vignettes; install it from https://pandoc.org")
}
if (!nzchar(Sys.which("qpdf"))) {
  message("qpdf is not installed: `R CMD check --as-cran` will warn about PDF size checks; install it from https://qpdf.sourceforge.io")
}
message("All dependencies are installed.")
