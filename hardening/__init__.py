"""ami-hardening: lock down an AMI against root login, sudo, user-data and label-based boot."""

__version__ = "0.1.0"
