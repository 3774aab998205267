"""Shared code for the inpainting-localization pipeline: data layout, models, losses, metrics."""

import os

# OpenCV without Intel IPP, in every process that imports this package (before it imports cv2,
# which reads these once). IPP picks its kernels by CPU (AVX2 here, AVX-512 there) and its
# floating-point ones round differently: seamlessClone, the demo's poisson generator, gave other
# bytes on an AVX2 machine than on an AVX-512 one. OpenCV's own code gives the same bytes on
# both. Its one start-up warning ("IPP was disabled by OPENCV_IPP") is silenced with the
# others below ERROR; set either variable yourself to override.
os.environ.setdefault("OPENCV_IPP", "disabled")
os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
