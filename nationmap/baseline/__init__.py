"""The classical baseline every score is reported beside: per-pixel gradient-boosted trees."""

from nationmap.baseline.classifier import MODEL_KIND, PixelClassifier, PixelClassifierConfig, fit_pixel_classifier
from nationmap.baseline.features import WINDOWS, feature_names, pixel_features

__all__ = ["MODEL_KIND", "PixelClassifier", "PixelClassifierConfig", "WINDOWS", "feature_names",
           "fit_pixel_classifier", "pixel_features"]
