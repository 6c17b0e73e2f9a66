"""Inference engines: the interface, llama.cpp, and a fake for unit tests.

Importing this package must stay cheap: llama_cpp is imported only by ``engine.llama``.
"""
