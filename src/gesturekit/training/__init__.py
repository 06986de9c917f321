"""Task glue: build a model, its data and its validation from a spec, then run the shared engine."""
