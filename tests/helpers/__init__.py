"""Helpers the tests share: plain functions, classes and constants, imported by name.

Fixtures stay in the conftest files, which pytest finds by place (or, when tests in several
directories need them, in tests/fixtures); what a test module imports lives here, by concern, so
that no test imports a conftest file.
"""
