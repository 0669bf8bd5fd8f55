"""Errors of the fitting pipeline. Each names the file or input and what to do about it."""


class FitInputError(ValueError):
    """One input (image, landmarks) cannot be used; the batch reports it and goes on."""


class ImageLoadError(FitInputError):
    """An image file is missing, unreadable, empty, too large or of an unusable kind."""


class LandmarkFileError(FitInputError):
    """A landmark file is unreadable or does not hold 68 finite (x, y) points."""


class NoFaceError(FitInputError):
    """The face detector found no face in an image."""


class MissingDependencyError(ImportError):
    """An optional package (dlib, mediapipe) is not installed; the message names the pip extra."""
