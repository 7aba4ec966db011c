"""Building blocks, the one builder, and the search spaces that generate ArchSpecs."""
