"""Insight KB: the Django project package and the knowledge-base app."""
