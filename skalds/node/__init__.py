"""The skald agent: one process per machine that runs workers in edge, node or single_process mode."""
