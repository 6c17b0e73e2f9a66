"""Configuration: the original SymErgion JSON format plus GGUF options, and all environment reading.

Each part lives in its own module, and callers import from it: ``schema`` (the records and the
built-in default), ``sampling`` (``Sampling``, the engine's input, which pulls in nothing else),
``parse`` (validation, section by section), ``load`` (finding and reading the file),
``environment`` (every setting read from the environment) and ``paths`` (which repository paths a
task may name). This package module imports none of them, so importing one stays small.
"""
