"""The lab's fixtures (testkit.lab): ``lab_up(plan)`` builds a lab and brings it down after the test."""

from testkit.lab import lab_up

__all__ = ["lab_up"]
