"""Choices that several commands share."""

from enum import Enum


class Profile(str, Enum):
    """The hardening profiles."""

    marketplace = "marketplace"
    sealed = "sealed"


class ReportFormat(str, Enum):
    """The formats of the `check` and `attack` reports."""

    table = "table"
    json = "json"
    junit = "junit"
    html = "html"
