"""Writes: every change to the knowledge base goes through a function here.

Each validates fully (`full_clean`, which also checks database constraints), saves inside a
transaction and appends to the event log. Names are `<entity>_<action>`.
"""
