"""The pass, read straight down: state -> plan -> execute -> publish (see docs/architecture.md)."""
