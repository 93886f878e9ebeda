"""datakit-data: push and pull a project's data/ folder to and from S3 with datakit."""

__version__ = "0.9.0"
