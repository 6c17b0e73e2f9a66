"""What the repository's history teaches: the tasks and attempts read back from it, the training
data harvested from them, and the per-model statistics."""
