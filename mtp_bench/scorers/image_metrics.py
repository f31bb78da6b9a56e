"""Sample-quality numbers of generated images, from the features and class probabilities of a classifier (numpy and
scipy only).

- :func:`frechet_distance`: the Fréchet distance between two Gaussians fitted to feature sets,
  ``|mu1 - mu2|^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2))`` — the formula of FID, here in the feature space of a small
  classifier trained on the task's own images, so it is named ``classifier_frechet_distance``, never FID.
- :func:`classifier_score`: the Inception Score's formula with that classifier, ``exp(E_x KL(p(y|x) || p(y)))``:
  1 when every sample gets the same class distribution, up to the number of classes when each sample is confidently
  one class and the classes are balanced.
- :func:`class_consistency`: the share of samples the classifier assigns to the class they were conditioned on.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import linalg


def gaussian(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance (unbiased, rows are samples) of a feature set."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or len(features) < 2:
        raise ValueError("a Gaussian needs a (samples, features) array with at least 2 samples")
    return features.mean(axis=0), np.cov(features, rowvar=False)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2). A singular product gets a small diagonal offset
    before the square root (as the usual FID code does); the imaginary part from rounding is dropped."""
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    sigma1, sigma2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    with warnings.catch_warnings():  # singular products are expected (dead ReLU features) and handled below
        warnings.simplefilter("ignore")
        covmean = linalg.sqrtm(sigma1 @ sigma2)
        if not np.isfinite(covmean).all():
            offset = np.eye(len(sigma1)) * 1e-6
            covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    covmean = np.real(covmean)
    diff = mu1 - mu2
    value = float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))
    return max(value, 0.0)  # rounding can leave a tiny negative for identical sets


def classifier_score(probabilities: np.ndarray, eps: float = 1e-12) -> float:
    """``exp(E_x KL(p(y|x) || p(y)))`` over the rows of ``probabilities`` (one class distribution per sample)."""
    p = np.asarray(probabilities, dtype=np.float64)
    marginal = p.mean(axis=0, keepdims=True)
    kl = (p * (np.log(p + eps) - np.log(marginal + eps))).sum(axis=1)
    return float(np.exp(kl.mean()))


def class_consistency(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Share of rows whose most probable class is the conditioning label."""
    predicted = np.asarray(probabilities).argmax(axis=1)
    return float((predicted == np.asarray(labels)).mean())
