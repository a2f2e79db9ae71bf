# bayesmoe developer targets. `make demo` and `make check` work on a fresh
# machine with R: they install whatever R packages are missing first.
R       ?= R
RSCRIPT ?= Rscript
PKG     := bayesmoe
VERSION := $(shell sed -n 's/^Version: *//p' DESCRIPTION)
TARBALL := $(PKG)_$(VERSION).tar.gz
CHECKDIR := check

.PHONY: deps demo install document build check bench sanitize valgrind clean

deps:
	$(RSCRIPT) tools/install-deps.R

install: deps
	$(R) CMD INSTALL --preclean --no-multiarch .
	rm -f src/*.o src/*.so

document:
	$(RSCRIPT) -e 'roxygen2::roxygenise()'
	rm -f src/*.o src/*.so

demo: install
	$(RSCRIPT) -e 'demo("tone", package = "bayesmoe", ask = FALSE, echo = FALSE)'

build: deps
	rm -rf $(CHECKDIR) && mkdir -p $(CHECKDIR)
	cd $(CHECKDIR) && $(R) CMD build ..

# Remote checks (CRAN-incoming URL and archive look-ups, the clock check of
# file time stamps) are off by default so the check does not depend on the
# network; set CRAN_REMOTE=true to run them. The PDF manual needs pdflatex:
# without it the manual is skipped (its Rd sources are still checked).
CRAN_REMOTE ?= false
MANUAL := $(if $(shell command -v pdflatex 2>/dev/null),,--no-manual)
check: build
	cd $(CHECKDIR) && NOT_CRAN=true _R_CHECK_CRAN_INCOMING_REMOTE_=$(CRAN_REMOTE) \
	  _R_CHECK_SYSTEM_CLOCK_=$(CRAN_REMOTE) \
	  $(R) CMD check --as-cran $(MANUAL) $(TARBALL)

bench: install
	$(RSCRIPT) tools/install-deps.R --bench
	for f in bench/*.R; do echo "== $$f"; $(RSCRIPT) $$f || exit 1; done

clean:
	rm -rf $(CHECKDIR) src/*.o src/*.so demo-fit.png
