"""Models: timm backbones, offline weight sources, and the classification head."""

from imagefit.models.factory import ImageClassifier, build_classifier, create_backbone, preprocess_for

__all__ = ["ImageClassifier", "build_classifier", "create_backbone", "preprocess_for"]
