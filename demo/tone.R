# A mixture of two regression experts on the tone perception data: the
# musician either follows the stretched overtones (tuned close to the
# stretch ratio) or the fundamental (tuned close to 2).
library(bayesmoe)
fit <- moe_em(tuned ~ stretchratio, data = tonedata, K = 2, seed = 1)
print(summary(fit))
png_file <- file.path(getwd(), "demo-fit.png")
grDevices::png(png_file, width = 1200, height = 500, res = 110)
op <- graphics::par(mfrow = c(1, 2))
plot(fit, what = "fit")
plot(fit, what = "gating")
graphics::par(op)
grDevices::dev.off()
cat("Plot written to", png_file, "\n")
