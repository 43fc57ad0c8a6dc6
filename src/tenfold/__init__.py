"""tenfold: ten recent ML-systems papers as working, tested software."""

__version__ = "0.1.0"
