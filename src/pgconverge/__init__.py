"""pgconverge: SalesFlow's database optimization as code."""

__version__ = "0.1.0"
