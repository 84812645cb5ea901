"""Adapters to real inference engines over HTTP, the embedded llama.cpp, and the twin."""
