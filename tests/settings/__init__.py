"""Tests of the user's settings: the store functions and ``/v1/settings`` end to end."""
