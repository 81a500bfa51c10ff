"""otactl: deploy and provision an OTA Community Edition server on Kubernetes."""

__version__ = "0.1.0"
