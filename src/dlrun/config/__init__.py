"""The configuration: the one schema, Hydra's composition with one-line errors, validation, `dlrun
list` and `--help`, and where configs and stored runs come from."""
