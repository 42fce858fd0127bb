"""The lab's fixture (testkit.lab) for the doctor's lab tests: ``lab_up(plan)``."""

from testkit.lab import lab_up

__all__ = ["lab_up"]
