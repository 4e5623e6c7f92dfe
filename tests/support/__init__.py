"""Test and benchmark support that is no part of the installed package."""
