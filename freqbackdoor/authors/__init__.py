"""The authors' published artefacts: their trained Keras models and their trigger files."""
