"""2D image editors used by Iterative Dataset Update. ``base.ImageEditor`` is the interface."""
