"""Oasis network simulator: the real sans-I/O swarm cores on a measured network model."""
