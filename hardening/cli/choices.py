"""Choices that several commands share."""

from enum import Enum

from hardening.catalog import PROFILES
from hardening.report import FORMATS

# The hardening profiles, as the catalog names them.
Profile = Enum("Profile", {name: name for name in PROFILES}, type=str)
# The formats of the `check` and `attack` reports.
ReportFormat = Enum("ReportFormat", {name: name for name in FORMATS}, type=str)
