"""irlib: reproducible single-frame infrared small target detection with frozen foundation models."""

__version__ = "0.1.0"
