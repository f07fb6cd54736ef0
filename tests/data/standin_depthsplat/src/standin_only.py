"""A module that only the stand-in checkout has."""

STANDIN = True
